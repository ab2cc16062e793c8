//! The suite's output: one table `check | real | simulated | tolerance |
//! match`, or the report as JSON.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use super::{Report, Status};

/// The report as a table for people, with a closing summary.
pub fn render(report: &Report) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["check", "real", "simulated", "tolerance", "match"]);
    for r in &report.rows {
        t.add_row([
            r.check.as_str(),
            &clip(&r.real),
            &clip(&r.simulated),
            r.tolerance.as_str(),
            r.status.label(),
        ]);
    }
    let mut s = String::new();
    if let Some(why) = &report.skipped {
        s.push_str(&format!("real side SKIPPED: {why}\n"));
    }
    s.push_str(&t.to_string());
    s.push('\n');
    let count = |st: Status| report.rows.iter().filter(|r| r.status == st).count();
    s.push_str(&format!(
        "{} checks: {} match, {} known differences, {} differ, {} listed but now match, {} skipped\n",
        report.rows.len(),
        count(Status::Match),
        count(Status::Known),
        count(Status::Differs),
        count(Status::NowMatches),
        count(Status::Skipped),
    ));
    for check in &report.stale {
        s.push_str(&format!(
            "the known-differences list names `{check}`, which is no check of the suite: remove it\n"
        ));
    }
    for (case, wall) in &report.real_wall_s {
        s.push_str(&format!("real {case}: {wall:.1} s wall\n"));
    }
    s
}

fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(MAX - 1).collect();
        c.push('…');
        c
    }
}
