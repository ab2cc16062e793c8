//! `simbench diagnose`: the hypothesis engine on frame and event logs read
//! from files, so a log captured by a real `fleet-server --frame-log` gets
//! the same verdicts as a simulated run.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use comfy_table::Table;
use proto::frame::{EventRecord, FrameRecord};
use serde::de::DeserializeOwned;

use super::args::{DiagnoseArgs, OutputFormat};
use super::{CliError, Exit};
use crate::diagnose::read::{self, Log, Source};
use crate::diagnose::{diagnose as engine, Diagnosis, Status, View};

/// Most characters of a name (agent, connection) a table cell shows.
const MAX_CELL_CHARS: usize = 64;
/// Most characters of one reason or next-step line.
const MAX_LINE_CHARS: usize = 2000;

fn read_log<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    err: &mut dyn Write,
) -> Result<Log<T>, CliError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::BadInput(format!("cannot read the {what} {name}: {e}")))?;
    let log = read::read_jsonl(std::io::BufReader::new(file), &name, what)
        .map_err(|e| CliError::BadInput(escape(&e.to_string()).into_owned()))?;
    if let Some(line) = log.cut_last_line {
        writeln!(
            err,
            "simbench: warning: {}:{line}: the last line is cut (a crash while writing?); read the {} records before it",
            escape(&name),
            log.records.len()
        )?;
    }
    Ok(log)
}

/// Reads and merges `paths` in time order; the sources when more than one.
fn read_logs<T: DeserializeOwned>(
    paths: &[std::path::PathBuf],
    what: &'static str,
    t_us: impl Fn(&T) -> u64,
    err: &mut dyn Write,
) -> Result<(Vec<T>, Vec<Source>), CliError> {
    let logs = paths
        .iter()
        .map(|p| read_log(p, what, err))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(read::merge(logs, t_us))
}

/// Whether the terminal would act on `c` instead of showing it: C0 and C1
/// controls (ESC starts an escape sequence), DEL, and the Unicode bidi
/// controls that reorder what follows (Trojan Source).
fn is_hidden(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every control and bidi character written as `\u{..}`, so what
/// a log says is shown, never obeyed.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` escaped and cut to `max` characters (with the count left out).
fn show(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return escape(s).into_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{}...(+{} chars)", escape(&head), n - max)
}

fn ids(d: &Diagnosis, status: Status) -> String {
    reports::verdicts::ids(d.with(status))
}

/// Runs the engine on the files and prints the verdicts.
pub fn diagnose(
    args: &DiagnoseArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let (frames, frame_src) = read_logs::<FrameRecord>(&args.frames, "frame log", |r| r.t_us, err)?;
    let (events, _) = read_logs::<EventRecord>(&args.events, "event log", |r| r.t_us, err)?;
    if let Some(path) = &args.merged {
        write_merged(path, &frames)?;
    }
    let server = engine(&frames, &events, View::Server);
    let full = engine(&frames, &events, View::Full);
    let affected = server.iter().chain(&full).any(|d| d.affected);
    if args.format == OutputFormat::Json {
        let doc = serde_json::json!({ "server": server, "full": full });
        let text = serde_json::to_string_pretty(&doc).expect("diagnoses serialize");
        // serde_json escapes controls; bidi controls it leaves raw.
        writeln!(out, "{}", escape_json(&text))?;
    } else {
        writeln!(
            out,
            "{} frame records, {} events",
            frames.len(),
            events.len()
        )?;
        if args.frames.len() > 1 {
            let counts = count_by_log(&frame_src, args.frames.len());
            let names: Vec<String> = args
                .frames
                .iter()
                .zip(counts)
                .map(|(p, n)| format!("{} ({n})", show(&p.display().to_string(), MAX_LINE_CHARS)))
                .collect();
            writeln!(
                out,
                "merged by t_us: {}; record numbers count in the merged log{}",
                names.join(", "),
                match &args.merged {
                    Some(p) => format!(" ({})", show(&p.display().to_string(), MAX_LINE_CHARS)),
                    None => " (--merged FILE writes it)".into(),
                }
            )?;
        }
        for (title, ds) in [("server point only", &server), ("every point", &full)] {
            write_view(out, title, ds)?;
        }
    }
    Ok(if affected {
        Exit::Failed
    } else {
        Exit::Success
    })
}

fn count_by_log(src: &[Source], logs: usize) -> Vec<usize> {
    let mut n = vec![0; logs];
    for s in src {
        n[s.log] += 1;
    }
    n
}

/// JSON text with the bidi controls written as `\uXXXX` (they can only
/// occur inside strings, where that escape means the same character).
fn escape_json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c != '\n' && is_hidden(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn write_merged(path: &Path, frames: &[FrameRecord]) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::BadInput(format!(
            "cannot write the merged log {}: {e}",
            path.display()
        ))
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(fail)?);
    for r in frames {
        serde_json::to_writer(&mut w, r).map_err(|e| fail(e.into()))?;
        w.write_all(b"\n").map_err(fail)?;
    }
    w.flush().map_err(fail)
}

/// One view's table and its evidence lines; every string from the log is
/// escaped and bounded ([`show`]).
fn write_view(out: &mut dyn Write, title: &str, ds: &[Diagnosis]) -> Result<(), CliError> {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "agent",
        "affected",
        "row",
        "supported",
        "refuted",
        "inconclusive",
    ]);
    for d in ds {
        t.add_row([
            show(&d.agent, MAX_CELL_CHARS),
            if d.affected {
                "yes".into()
            } else {
                "no".into()
            },
            d.row.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            ids(d, Status::Supported),
            ids(d, Status::Refuted),
            ids(d, Status::Inconclusive),
        ]);
    }
    writeln!(out, "\nVerdicts, {title}\n{t}")?;
    let line = |s: &str| show(s, MAX_LINE_CHARS);
    for d in ds.iter().filter(|d| d.affected) {
        writeln!(
            out,
            "\n{} (row {}):",
            line(&d.agent),
            d.row.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
        )?;
        for v in &d.verdicts {
            writeln!(
                out,
                "  {} {:<12} {} [records {:?}]",
                v.hypothesis,
                format!("{:?}", v.status).to_lowercase(),
                line(&v.reason),
                v.records
            )?;
        }
    }
    for d in ds {
        for v in d.named.iter().filter(|v| v.status == Status::Supported) {
            writeln!(
                out,
                "\n{}: {} supported: {} [records {:?}, events {:?}]",
                line(&d.agent),
                v.hypothesis,
                line(&v.reason),
                v.records,
                v.events
            )?;
        }
        for q in &d.queued {
            writeln!(
                out,
                "\n{}: {} {}: {}",
                line(&d.agent),
                line(&q.command_id),
                line(&q.status),
                line(&q.reason)
            )?;
        }
        for n in &d.next {
            writeln!(
                out,
                "\n{}: next step ({}): {}",
                line(&d.agent),
                n.between.join(" vs "),
                line(&n.experiment)
            )?;
        }
    }
    Ok(())
}
