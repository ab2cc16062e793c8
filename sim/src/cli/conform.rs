//! `simbench conform`: the conformance suite ([`crate::conform`]).

use std::io::Write;

use super::args::{ConformArgs, OutputFormat};
use super::{CliError, Exit};
use crate::conform::{self, known::Known, Options};

pub(super) fn conform(
    a: &ConformArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let known = Known::load(&a.known).map_err(CliError::BadInput)?;
    let bin_dir = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
            .ok_or_else(|| {
                CliError::BadInput("cannot tell where simbench is; pass --bin-dir DIR".into())
            })?,
    };
    let opts = Options {
        case: a.case.clone(),
        bin_dir,
    };
    conform::select(opts.case.as_deref()).map_err(CliError::BadInput)?;
    writeln!(
        err,
        "simbench conform: running {} on real sockets and in the simulator...",
        opts.case.as_deref().unwrap_or("every case")
    )?;
    let report = conform::run_suite(&opts, &known).map_err(CliError::BadInput)?;
    match a.format {
        OutputFormat::Table => out.write_all(conform::table::render(&report).as_bytes())?,
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report).expect("report serializes");
            s.push('\n');
            out.write_all(s.as_bytes())?;
        }
    }
    if report.skipped.is_none() {
        writeln!(
            err,
            "simbench conform: the real logs (frame logs, event log, data) are in {}/conform-{}-<case>/",
            std::env::temp_dir().join("simbench-conform").display(),
            std::process::id()
        )?;
    }
    if let Some(why) = &report.skipped {
        writeln!(
            err,
            "simbench conform: the real side did not run: {why}; {}",
            if a.allow_skip {
                "--allow-skip: exit 0, nothing was compared"
            } else {
                "nothing was compared, so this is no pass (exit 1); --allow-skip accepts it"
            }
        )?;
        return Ok(if a.allow_skip {
            Exit::Success
        } else {
            Exit::Failed
        });
    }
    Ok(if report.failed() {
        Exit::Failed
    } else {
        Exit::Success
    })
}
