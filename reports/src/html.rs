//! report.html: the report of one run as a single self-contained page (no
//! script, no external resource), for a browser or an attachment to an
//! incident ticket. On top: the verdict, each failed expectation's message
//! and the hypothesis verdicts; then a sequence diagram of the agents worth
//! a look ([`crate::sequence`]); then the sections of the terminal report,
//! built from the same tables.

use comfy_table::Table;

use crate::junit::escape;
use crate::run::{self, RunView};
use crate::timeline::{self, TimelineOptions};
use crate::verdicts;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
h1{margin-bottom:0.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:0.5em 0}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td{white-space:pre-wrap}\
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;font-size:0.85em}\
.verdict{font-weight:bold;padding:0.4em 0.8em;display:inline-block}\
.pass{background:#e3f6e3;color:#1a5e1a}.fail{background:#fbe3e3;color:#8a1c1c}\
td.PASS{color:#1a5e1a;font-weight:bold}td.FAIL{color:#8a1c1c;font-weight:bold}\
ul.failed{color:#8a1c1c;font-weight:bold}svg.seq{display:block;background:#fff;border:1px solid #ddd;margin:0.5em 0}";

/// The whole page. `timeline` says how much of the frame log to show, as
/// for the terminal report.
pub fn render(view: &RunView, timeline: &TimelineOptions) -> String {
    let sc = view.scenario;
    let mut h =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>simbench: {} (seed {})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&sc.name),
        view.seed()
    ));
    h.push_str(&format!(
        "<h1>{}</h1>\n<p>{}</p>\n",
        escape(&sc.name),
        escape(&sc.summary)
    ));
    let class = if view.failed() == 0 { "pass" } else { "fail" };
    h.push_str(&format!(
        "<p class=\"verdict {class}\">{}</p>\n",
        escape(&run::verdict(view))
    ));
    // What a reader looks for first: the failed expectations and the
    // verdicts, then the picture.
    let failures: Vec<&str> = view
        .expectations
        .iter()
        .filter(|(_, r)| !r.passed)
        .map(|(_, r)| r.message.as_str())
        .collect();
    if !failures.is_empty() {
        h.push_str("<ul class=\"failed\">\n");
        for m in &failures {
            h.push_str(&format!("<li>{}</li>\n", escape_text(m)));
        }
        h.push_str("</ul>\n");
    }
    section(
        &mut h,
        "Verdicts (H1..H7; server: the server's log alone, full: every point)",
    );
    let sections = verdicts::sections(view.outcome);
    match &sections {
        None => h.push_str("<p>no agents in the outcome</p>\n"),
        Some((fleet, _)) => h.push_str(&table(fleet)),
    }
    section(
        &mut h,
        "Sequence (the agents with write errors, drops, unanswered Pings or commands; time runs down)",
    );
    h.push_str(&crate::sequence::render(sc, view.frames));
    if let Some((_, affected)) = &sections {
        if !affected.is_empty() {
            section(&mut h, "Evidence per affected agent (H1..H7)");
        }
        for (heading, t) in affected {
            h.push_str(&format!("<h3>{}</h3>\n", escape_text(heading)));
            h.push_str(&table(t));
        }
    }
    section(&mut h, "Summary");
    h.push_str(&table(&run::summary(view)));
    section(&mut h, "Hosts");
    h.push_str(&table(&run::hosts(sc, view.outcome)));
    section(&mut h, "Faults in force");
    match run::faults_table(sc) {
        Some(t) => h.push_str(&table(&t)),
        None => h.push_str("<p>none</p>\n"),
    }
    section(
        &mut h,
        &format!(
            "Timeline (point {}; every frame is in frames.jsonl)",
            timeline.point
        ),
    );
    h.push_str(&format!(
        "<pre>{}</pre>\n",
        escape_text(&timeline::render(view.frames, timeline))
    ));
    section(&mut h, "Expectations");
    match run::expectations_table(view.expectations) {
        None => h.push_str("<p>none (the scenario has no [[expect]] tables)</p>\n"),
        Some(t) => h.push_str(&table(&t)),
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn section(h: &mut String, title: &str) {
    h.push_str(&format!("<h2>{}</h2>\n", escape_text(title)));
}

/// A comfy table as an HTML table: its header row, then every row; a cell
/// whose whole text is `PASS` or `FAIL` gets that class.
pub fn table(t: &Table) -> String {
    let mut h = String::from("<table>\n");
    if let Some(header) = t.header() {
        h.push_str("<tr>");
        for c in header.cell_iter() {
            h.push_str(&format!("<th>{}</th>", escape_text(&c.content())));
        }
        h.push_str("</tr>\n");
    }
    for row in t.row_iter() {
        h.push_str("<tr>");
        for c in row.cell_iter() {
            let text = c.content();
            match text.as_str() {
                "PASS" | "FAIL" => h.push_str(&format!("<td class=\"{text}\">{text}</td>")),
                _ => h.push_str(&format!("<td>{}</td>", escape_text(&text))),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// Escapes element text: like [`escape`], but newlines and tabs stay as
/// they are (they are not attribute values here).
fn escape_text(text: &str) -> String {
    escape(text)
        .replace("&#10;", "\n")
        .replace("&#13;", "\r")
        .replace("&#9;", "\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_keeps_header_rows_and_escapes_markup() {
        let mut t = crate::style::table();
        t.set_header(vec!["observe", "result"]);
        t.add_row(vec!["agents.<a>&b", "PASS"]);
        t.add_row(vec!["line one\nline two", "FAIL"]);
        let h = table(&t);
        assert!(
            h.contains("<tr><th>observe</th><th>result</th></tr>"),
            "{h}"
        );
        assert!(
            h.contains("<td>agents.&lt;a&gt;&amp;b</td><td class=\"PASS\">PASS</td>"),
            "{h}"
        );
        assert!(h.contains("<td>line one\nline two</td>"), "{h}");
        assert!(h.contains("<td class=\"FAIL\">FAIL</td>"), "{h}");
    }
}
