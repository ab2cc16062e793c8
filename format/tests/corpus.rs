//! The bad-file corpus: every file in `tests/bad/` must fail with exactly
//! the message in `<file>.expected` beside it. `SNAP_UPDATE=1 cargo test -p
//! format --test corpus` rewrites the expected files; otherwise a mismatch
//! fails with a diff.

use std::fs;
use std::path::{Path, PathBuf};

fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    files.sort();
    files
}

fn diff(expected: &str, actual: &str) -> String {
    let mut out = String::new();
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("  {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("- {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("+ {y}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn bad_files_give_the_expected_messages() {
    let update = std::env::var("SNAP_UPDATE").is_ok_and(|v| v == "1");
    let files = files_in("tests/bad", ".toml");
    assert!(
        files.len() >= 12,
        "the corpus has only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(path).unwrap();
        let shown = format!("tests/bad/{name}");
        let err = match format::parse_scenario(&shown, &text) {
            Ok(_) => {
                failures.push(format!("{name}: parsed without an error"));
                continue;
            }
            Err(e) => e,
        };
        let actual = format!("{err}\n");
        let prefix = format!(
            "{shown}:{}:{}: ",
            err.line().unwrap(),
            err.column().unwrap()
        );
        assert!(actual.starts_with(&prefix), "{actual} vs {prefix}");
        assert_eq!(format!("{prefix}{}\n", err.message()), actual);
        let expected_path = path.with_extension("toml.expected");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Err(_) => failures.push(format!(
                "{name}: no {} (run with SNAP_UPDATE=1 to write it)\n+ {actual}",
                expected_path.file_name().unwrap().to_string_lossy()
            )),
            Ok(expected) if expected != actual => {
                failures.push(format!("{name}:\n{}", diff(&expected, &actual)))
            }
            Ok(_) => {}
        }
    }
    for expected in files_in("tests/bad", ".toml.expected") {
        let toml = expected.with_extension("");
        if !toml.exists() {
            failures.push(format!("{} has no .toml beside it", expected.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files differ (SNAP_UPDATE=1 rewrites the expected files):\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn error_kinds_of_the_corpus() {
    use format::ErrorKind::*;
    let cases = [
        ("syntax", Syntax),
        ("duplicate-key", Syntax),
        ("unknown-key-top", UnknownKey),
        ("missing-keys", MissingKey),
        ("wrong-type", WrongType),
        ("bad-duration", BadDuration),
        ("unknown-fault-kind", UnknownFaultKind),
        ("unknown-action", UnknownAction),
        ("unknown-switch", UnknownSwitch),
        ("unknown-preset", UnknownPreset),
        ("unknown-agent-fault", UnknownAgent),
        ("unknown-site", UnknownSite),
        ("duplicate-agent", DuplicateAgent),
        ("from-after-until", TimeOrder),
        ("at-past-duration", PastDuration),
        ("expect-no-operator", ExpectOperator),
        ("expect-two-operators", ExpectOperator),
        ("unknown-path", UnknownPath),
        ("path-unknown-agent", UnknownAgent),
        ("unknown-choice", UnknownChoice),
    ];
    for (name, kind) in cases {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/bad/{name}.toml"));
        let err = format::load(&path).unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
    }
}

#[test]
fn unreadable_file() {
    let err = format::load(Path::new("/nonexistent/scenario.toml")).unwrap_err();
    assert_eq!(err.kind(), format::ErrorKind::Io);
    assert_eq!(err.line(), None);
    assert!(err
        .to_string()
        .starts_with("/nonexistent/scenario.toml: cannot read the scenario file: "));
}
