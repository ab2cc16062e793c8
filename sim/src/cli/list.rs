//! `simbench list`: the shipped catalogue as a table.

use std::io::Write;

use reports::catalogue::ListRow;
use reports::style::count;

use super::{source, CliError, Exit};

pub(super) fn list(out: &mut dyn Write, err: &mut dyn Write) -> Result<Exit, CliError> {
    let files = source::catalogue()?;
    let mut rows = Vec::new();
    let mut broken = 0;
    for f in &files {
        match source::load(&source::ScenarioRef::Name(f.name.clone())) {
            Ok(l) => {
                if l.scenario.name != f.name {
                    writeln!(
                        err,
                        "warning: scenarios/{}.toml says name = {:?}; `simbench run` finds it as `{}`, so make them the same",
                        f.name, l.scenario.name, f.name
                    )?;
                }
                rows.push(ListRow {
                    name: f.name.clone(),
                    incident: l.scenario.incident,
                    summary: l.scenario.summary,
                });
            }
            Err(e) => {
                broken += 1;
                writeln!(err, "error: {e}")?;
                rows.push(ListRow {
                    name: f.name.clone(),
                    incident: "-".into(),
                    summary: "(does not parse; the error is on stderr)".into(),
                });
            }
        }
    }
    let table = reports::catalogue::list(&rows).to_string();
    writeln!(out, "{}", super::printable(&table))?;
    writeln!(
        out,
        "{} in the catalogue; run one with `simbench run <name>`",
        count(files.len(), "scenario", "scenarios")
    )?;
    Ok(if broken > 0 {
        Exit::BadInput
    } else {
        Exit::Success
    })
}
