//! The command examples of docs/cli.md (and README.md's first command),
//! run: every `simbench ...` line of a fenced block that is not a synopsis
//! runs in a fresh directory (the lines of one block in order, sharing it)
//! and must exit as the docs say: 2 when the block shows an `error:` after
//! it (and then with that message), 0 otherwise. The examples that cannot
//! run in a test are listed in [`SKIPPED`] with the reason; the list must
//! stay exact, so a renamed example is noticed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Examples not run here, by their exact text, and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "simbench sweep udp-4433-blocked --seeds 1..1001 --partition 3/4 --jobs 2",
        "250 runs of a scenario: minutes, for a CI machine",
    ),
    (
        "simbench diagnose srv/frames.jsonl a1.frames.jsonl a2.frames.jsonl --events srv/events.jsonl --events a1.events.jsonl",
        "the logs of a real deployment",
    ),
];

/// Subcommands whose examples are never run in a test.
const NOT_IN_TESTS: &[(&str, &str)] = &[
    ("bench", "a measurement: minutes of runs, one at a time"),
    ("conform", "needs root and network namespaces"),
];

/// One example: its text, what follows it in the block, its line.
#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    /// `error: ...` when the docs show the command failing.
    error: Option<String>,
    /// Examples of one block share a directory, in order.
    block: usize,
}

fn docs(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `simbench` lines of the fenced blocks of `text`.
fn examples(text: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let (mut in_block, mut block) = (false, 0);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("```") {
            in_block = !in_block;
            block += 1;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.trim();
        let command = line.strip_prefix("$ ").unwrap_or(line);
        // `RUST_LOG=... simbench ...`: the environment is part of it.
        let starts = command
            .split_whitespace()
            .find(|w| !w.contains('='))
            .is_some_and(|w| w == "simbench");
        if !starts {
            continue;
        }
        // A comment after two spaces is not part of the command.
        let command = command.split("  #").next().unwrap_or(command).trim();
        // Synopses: placeholders and optional flags.
        if command.contains('<') || command.contains('[') || command.contains("...") {
            continue;
        }
        let error = lines
            .get(i + 1)
            .filter(|next| next.starts_with("error:"))
            .map(|next| next.to_string());
        out.push(Example {
            line: i + 1,
            command: command.to_string(),
            error,
            block,
        });
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("simbench-docs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A catalogue of smoke and a renamed copy: `check` examples run it in
/// seconds instead of the whole catalogue's minutes.
fn small_catalogue(dir: &Path) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let smoke = std::fs::read_to_string(shipped.join("smoke.toml")).unwrap();
    let catalogue = dir.join("catalogue");
    std::fs::create_dir_all(&catalogue).unwrap();
    std::fs::write(catalogue.join("smoke.toml"), &smoke).unwrap();
    std::fs::write(
        catalogue.join("smoke-again.toml"),
        smoke.replacen("name = \"smoke\"", "name = \"smoke-again\"", 1),
    )
    .unwrap();
    catalogue
}

/// Runs one example in `cwd`: (exit code, stdout, stderr).
fn run(example: &Example, cwd: &Path, catalogue: &Path) -> (i32, String, String) {
    let mut words = example.command.split_whitespace();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simbench"));
    cmd.current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("SIMBENCH_SCENARIOS")
        .env_remove("NO_COLOR");
    for w in words.by_ref() {
        match w.split_once('=') {
            Some((k, v)) => {
                cmd.env(k, v);
            }
            None => break, // `simbench`
        }
    }
    let args: Vec<&str> = words.collect();
    if args.first() == Some(&"check") {
        cmd.env("SIMBENCH_SCENARIOS", catalogue);
    }
    let out = cmd.args(&args).output().expect("run simbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The files an example needs that the docs describe in prose.
fn fixtures(cwd: &Path) {
    // docs/cli.md's malformed file: line 2, column 12 is "5 parsecs".
    std::fs::write(
        cwd.join("my.toml"),
        "name = \"my\"\nduration = \"5 parsecs\"\n",
    )
    .unwrap();
}

fn check_examples(name: &str, all: Vec<Example>) -> (Vec<String>, usize) {
    let tmp = temp_dir(name);
    let catalogue = small_catalogue(&tmp);
    let mut problems = Vec::new();
    let mut skipped_seen = Vec::new();
    let mut ran = 0;
    let mut current_block = None;
    let mut cwd = tmp.clone();
    for ex in &all {
        let sub = ex
            .command
            .split_whitespace()
            .find(|w| !w.contains('=') && *w != "simbench")
            .unwrap_or("");
        if NOT_IN_TESTS.iter().any(|(s, _)| *s == sub) {
            continue;
        }
        if SKIPPED.iter().any(|(c, _)| *c == ex.command) {
            skipped_seen.push(ex.command.clone());
            continue;
        }
        if current_block != Some(ex.block) {
            current_block = Some(ex.block);
            cwd = tmp.join(format!("block-{}", ex.block));
            std::fs::create_dir_all(&cwd).unwrap();
            fixtures(&cwd);
        }
        let (code, stdout, stderr) = run(ex, &cwd, &catalogue);
        ran += 1;
        let expected = if ex.error.is_some() { 2 } else { 0 };
        if code != expected {
            problems.push(format!(
                "{name}:{}: `{}` exited {code}, the docs say {expected}\n{stdout}\n{stderr}",
                ex.line, ex.command
            ));
            continue;
        }
        if let Some(error) = &ex.error {
            if stderr.lines().next() != Some(error.as_str()) {
                problems.push(format!(
                    "{name}:{}: `{}` printed\n{stderr}\nthe docs show\n{error}",
                    ex.line, ex.command
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    problems.extend(skipped_seen.into_iter().map(|c| format!("skipped: {c}")));
    (problems, ran)
}

#[test]
fn the_cli_docs_examples_exit_as_documented() {
    let all = examples(&docs("docs/cli.md"));
    assert!(all.len() >= 10, "{all:?}");
    let (problems, ran) = check_examples("cli", all);
    // list, run (several), the two failing ones, check, junit-merge, diagnose, RUST_LOG...
    assert!(ran >= 12, "only {ran} examples ran");
    let (skipped, problems): (Vec<String>, Vec<String>) = problems
        .into_iter()
        .partition(|p| p.starts_with("skipped: "));
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // Every listed skip is still an example of the docs.
    for (c, why) in SKIPPED {
        assert!(
            skipped.iter().any(|s| s == &format!("skipped: {c}")),
            "SKIPPED lists `{c}` ({why}), which docs/cli.md no longer shows"
        );
    }
}

#[test]
fn the_readme_first_command_runs_as_written() {
    // `cargo run --release -p sim --bin simbench -- run smoke ...`: the part
    // after `--` is simbench's command line. The second command is the
    // test suite itself, which cannot run inside one of its tests.
    let readme = docs("README.md");
    let first = readme
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .nth(1)
        .expect("README.md opens with a command block");
    let (cargo, args) = first.split_once(" -- ").expect("cargo run ... -- args");
    assert!(
        cargo.starts_with("cargo run") && cargo.contains("--bin simbench"),
        "{first}"
    );
    let ex = Example {
        line: 0,
        command: format!("simbench {args}"),
        error: None,
        block: 0,
    };
    let tmp = temp_dir("readme");
    let (code, stdout, stderr) = run(&ex, &tmp, &tmp);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // What the README says it writes.
    let out = tmp.join("out/smoke");
    for f in [
        "report.json",
        "frames.jsonl",
        "events.jsonl",
        "report.html",
        "capture.pcapng",
        "keylog.txt",
    ] {
        assert!(readme.contains(&format!("`{f}`")), "README.md names {f}");
        assert!(out.join(f).is_file(), "{f} not written");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
