//! `simbench diagnose`: the hypothesis engine on frame and event logs read
//! from files, so a log captured by a real `fleet-server --frame-log` gets
//! the same verdicts as a simulated run.

use std::io::Write;
use std::path::Path;

use comfy_table::Table;
use proto::frame::{EventRecord, FrameRecord};
use serde::de::DeserializeOwned;

use super::args::{DiagnoseArgs, OutputFormat};
use super::{CliError, Exit};
use crate::diagnose::{diagnose as engine, Diagnosis, Status, View};

fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::BadInput(format!("cannot read the {what} {}: {e}", path.display()))
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                CliError::BadInput(format!(
                    "{}:{}: not a {what} record: {e} (see docs/observation.md for the format)",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

fn ids(d: &Diagnosis, status: Status) -> String {
    reports::verdicts::ids(d.with(status))
}

/// Runs the engine on the files and prints the verdicts.
pub fn diagnose(args: &DiagnoseArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let frames: Vec<FrameRecord> = read_jsonl(&args.frames, "frame log")?;
    let events: Vec<EventRecord> = match &args.events {
        Some(p) => read_jsonl(p, "event log")?,
        None => Vec::new(),
    };
    let server = engine(&frames, &events, View::Server);
    let full = engine(&frames, &events, View::Full);
    let affected = server.iter().chain(&full).any(|d| d.affected);
    if args.format == OutputFormat::Json {
        let doc = serde_json::json!({ "server": server, "full": full });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).expect("diagnoses serialize")
        )?;
    } else {
        writeln!(
            out,
            "{} frame records, {} events",
            frames.len(),
            events.len()
        )?;
        for (title, ds) in [("server point only", &server), ("every point", &full)] {
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
                    d.agent.clone(),
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
            for d in ds.iter().filter(|d| d.affected) {
                writeln!(
                    out,
                    "\n{} (row {}):",
                    d.agent,
                    d.row.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
                )?;
                for v in &d.verdicts {
                    writeln!(
                        out,
                        "  {} {:<12} {} [records {:?}]",
                        v.hypothesis,
                        format!("{:?}", v.status).to_lowercase(),
                        v.reason,
                        v.records
                    )?;
                }
            }
            for d in ds {
                for v in d.named.iter().filter(|v| v.status == Status::Supported) {
                    writeln!(
                        out,
                        "\n{}: {} supported: {} [records {:?}, events {:?}]",
                        d.agent, v.hypothesis, v.reason, v.records, v.events
                    )?;
                }
                for q in &d.queued {
                    writeln!(
                        out,
                        "\n{}: {} {}: {}",
                        d.agent, q.command_id, q.status, q.reason
                    )?;
                }
                for n in &d.next {
                    writeln!(
                        out,
                        "\n{}: next step ({}): {}",
                        d.agent,
                        n.between.join(" vs "),
                        n.experiment
                    )?;
                }
            }
        }
    }
    Ok(if affected {
        Exit::Failed
    } else {
        Exit::Success
    })
}
