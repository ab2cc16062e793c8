//! The `simbench` binary, run for real: each test compares the whole
//! output (exit code, stdout, stderr) with a snapshot in
//! `tests/snapshots/` with insta. A mismatch fails with insta's diff and
//! leaves `<name>.snap.new` beside the snapshot: `cargo insta review`
//! accepts or rejects each, `INSTA_UPDATE=always cargo test -p sim --test
//! cli` accepts them all (look at `git diff` after). On CI (`CI` set)
//! nothing is written.
//!
//! Masked before comparing: the wall time (every line containing
//! `wall time` ends in `[masked]` after those words) and each test's
//! temporary directory (`[TMP]`). Everything else, digests included, is
//! deterministic.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run of the binary gave.
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A fresh, empty directory for one test, named after it; removed when the
/// test passes, kept for a look when it fails.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp_dir(test: &str) -> TempDir {
    // The pid padded to a fixed width: paths shown in tables then have one
    // width whatever the pid, and so do the masked tables.
    let dir = std::env::temp_dir().join(format!("simbench-cli-{test}-{:010}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's temp dir");
    TempDir(dir)
}

/// Runs simbench in `cwd` with `args`; `catalogue` replaces the shipped one.
fn simbench(cwd: &Path, args: &[&str], catalogue: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simbench"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("SIMBENCH_SCENARIOS");
    if let Some(c) = catalogue {
        cmd.env("SIMBENCH_SCENARIOS", c);
    }
    let out = cmd.output().expect("run the simbench binary");
    Output {
        code: out.status.code().expect("simbench exits with a code"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// The snapshot text of an output: exit code, stdout, stderr, masked.
fn render(out: &Output, tmp: &Path) -> String {
    let mask = |text: &str| {
        let text = text.replace(&tmp.display().to_string(), "[TMP]");
        let mut masked = String::new();
        for line in text.lines() {
            match line.find("wall time") {
                Some(i) => {
                    masked.push_str(&line[..i + "wall time".len()]);
                    masked.push_str(" [masked]");
                }
                None => masked.push_str(line),
            }
            masked.push('\n');
        }
        masked
    };
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.code,
        mask(&out.stdout),
        progress_sorted(&mask(&out.stderr))
    )
}

/// Whether `line` is one of the progress lines `check` and `sweep` print
/// when stderr is not a terminal (`     PASS [ 3/6] [   0.84s] smoke (run 1 of 2)`).
fn is_progress_line(line: &str) -> bool {
    let t = line.trim_start();
    ["PASS [", "FAIL [", "ERROR ["]
        .iter()
        .any(|p| t.starts_with(p))
        && line.len() - t.len() >= 4
}

/// The progress lines with their counter and wall time masked and sorted
/// (runs finish in any order when several run at once), where the first
/// of them was.
fn progress_sorted(text: &str) -> String {
    let mut progress: Vec<String> = Vec::new();
    let mut first = None;
    let mut rest = Vec::new();
    for line in text.lines() {
        // How many cores the machine has is not the output's business, nor
        // whether a run took long enough to show its progress
        // (`run NAME: 0:04.000 of 1:00.000 simulated, 21.4 s`, after 3 s of wall time).
        if line.starts_with("note: --jobs ")
            || (line.starts_with("run ") && line.contains(" simulated, "))
        {
            continue;
        }
        if is_progress_line(line) {
            first.get_or_insert(rest.len());
            let (status, tail) = line.trim_start().split_once(" [").unwrap();
            let tail = tail.split_once("] ").map_or("", |(_, t)| t);
            let tail = match tail.strip_prefix('[') {
                Some(t) => t.split_once("] ").map_or("", |(_, t)| t),
                None => tail,
            };
            progress.push(format!("{status:>9} [n] [masked] {tail}"));
        } else {
            rest.push(line.to_string());
        }
    }
    progress.sort();
    if let Some(at) = first {
        rest.splice(at..at, progress);
    }
    rest.iter().map(|l| format!("{l}\n")).collect()
}

/// Compares `actual` with `tests/snapshots/<name>.snap` (insta).
fn snapshot(name: &str, actual: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, actual));
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A scenario that runs fine and whose first expectation cannot hold.
const NEVER_99: &str = r#"name = "never-99"
summary = "One agent; an expectation that cannot hold."
incident = "test"
seed = 3
duration = "20s"

[[agent]]
name = "solo"
site = "lab"

[[expect]]
observe = "counts.commands_completed"
equals = 99

[[expect]]
observe = "agents.solo.online"
equals = true
"#;

/// A catalogue of two: the shipped smoke scenario and `never-99`.
fn small_catalogue(tmp: &Path) -> PathBuf {
    let dir = tmp.join("catalogue");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(shipped().join("smoke.toml"), dir.join("smoke.toml")).unwrap();
    std::fs::write(dir.join("never-99.toml"), NEVER_99).unwrap();
    dir
}

#[test]
fn list_shows_every_scenario_of_the_catalogue() {
    let tmp = temp_dir("list");
    let catalogue = small_catalogue(&tmp);
    let out = simbench(&tmp, &["list"], Some(&catalogue));
    assert_eq!(out.code, 0);
    snapshot("list", &render(&out, &tmp));
}

#[test]
fn list_of_the_shipped_catalogue_has_a_row_per_file() {
    let tmp = temp_dir("list-shipped");
    let out = simbench(&tmp, &["list"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut files = 0;
    for entry in std::fs::read_dir(shipped()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            files += 1;
            let sc = format::load(&path).expect("every shipped scenario parses");
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert!(
                out.stdout
                    .lines()
                    .any(|l| l.contains(&format!("│ {stem} ")) && l.contains(&sc.incident)),
                "no row for {stem}:\n{}",
                out.stdout
            );
        }
    }
    assert!(
        out.stdout.contains(&format!("{files} scenario")),
        "{}",
        out.stdout
    );
}

#[test]
fn run_smoke_prints_the_whole_report_and_writes_the_logs() {
    let tmp = temp_dir("run-smoke");
    let out = simbench(&tmp, &["run", "smoke", "--seed", "7"], None);
    snapshot("run-smoke-seed-7", &render(&out, &tmp));
    assert_eq!(out.code, 0);
    // The files are there, and they are what the report says.
    let dir = tmp.join("out/smoke-7");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let digest = report["digest"].as_str().unwrap();
    assert!(
        out.stdout.contains(&format!("│ digest    ┆ {digest} │")),
        "{}",
        out.stdout
    );
    assert_eq!(report["seed"], 7);
    let frames = std::fs::read_to_string(dir.join("frames.jsonl")).unwrap();
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert_eq!(report["counts"]["frames"], frames.lines().count());
    assert_eq!(report["counts"]["events"], events.lines().count());
    assert!(out.stdout.contains(&format!(
        "{} frames, {} events",
        frames.lines().count(),
        events.lines().count()
    )));
    // The page has the report's sections and the same digest and verdict.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    for needle in [
        "<h2>Hosts</h2>",
        "<h2>Faults in force</h2>",
        "<h2>Timeline",
        "<h2>Verdicts",
        "<h2>Expectations</h2>",
        &format!("<tr><td>digest</td><td>{digest}</td></tr>"),
        "<p class=\"verdict pass\">PASS: ",
    ] {
        assert!(
            html.contains(needle),
            "no `{needle}` in report.html:\n{html}"
        );
    }
    // capture.pcapng: a section, a raw-IPv4 interface, then the packets,
    // opening with the first enrollment's SYN to the server's HTTPS port,
    // the secrets of each session in blocks among them (the first before
    // the first encrypted record, which follows the SYN).
    let pcap = std::fs::read(dir.join("capture.pcapng")).unwrap();
    let word = |at: usize| u32::from_le_bytes(pcap[at..at + 4].try_into().unwrap());
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < pcap.len() {
        blocks.push((word(at), at));
        at += word(at + 4) as usize;
    }
    let kinds: Vec<u32> = blocks.iter().take(3).map(|(k, _)| *k).collect();
    assert_eq!(kinds, [0x0a0d_0d0a, 1, 6], "SHB, IDB, first packet");
    assert!(
        blocks.iter().filter(|(k, _)| *k == 0x0a).count() > 1,
        "the sessions' secrets in Decryption Secrets Blocks"
    );
    assert_eq!(
        pcap[blocks[1].1 + 8..blocks[1].1 + 10],
        101u16.to_le_bytes()
    );
    let first = &pcap[blocks[2].1 + 28..];
    assert_eq!((first[0], first[9]), (0x45, 6), "IPv4 carrying TCP");
    assert_eq!(u16::from_be_bytes([first[22], first[23]]), 7171);
    assert_eq!(first[33], 0x02, "SYN");
}

#[test]
fn run_prints_a_verdict_table_for_each_affected_agent() {
    let tmp = temp_dir("run-verdicts");
    let out = simbench(&tmp, &["run", "h3-agent-command-path-broken"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stdout = &out.stdout;
    let at = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{stdout}"))
    };
    // After the timeline, before the expectations.
    let fleet = at("\nVerdicts (H1..H7");
    let agent = at("\nVerdicts for pst-server (row 5, unacked cmd-0002)\n");
    assert!(at("\nTimeline") < fleet && fleet < agent && agent < at("\nExpectations\n"));
    let line = |from: usize, needle: &str| {
        stdout[from..]
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or("")
    };
    let row = line(fleet, "│ pst-server ");
    assert!(
        row.contains("┆ yes ") && row.contains("┆ H2 H3 H4 ") && row.contains("┆ H3 "),
        "{stdout}"
    );
    assert!(line(fleet, "│ nyc-server ").contains("┆ no "), "{stdout}");
    let h3 = line(agent, "│ H3 ");
    for cell in [
        "┆ supported    ┆ supported ",
        "┆ injected ",
        "The agent read Command",
    ] {
        assert!(h3.contains(cell), "{cell}: {stdout}");
    }
    // The agent that is not affected has no table of its own.
    assert_eq!(stdout.matches("Verdicts for").count(), 1, "{stdout}");
}

#[test]
fn field_incidents_report_html_draws_the_broken_agents() {
    let tmp = temp_dir("field-html");
    let out = simbench(&tmp, &["run", "field-incident", "--out", "fi"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let html = std::fs::read_to_string(tmp.join("fi/report.html")).unwrap();
    assert!(
        !html.contains("<script") && !html.contains(" src=") && !html.contains("<link"),
        "nothing runs, nothing is fetched"
    );
    // The verdicts come before the diagrams, and each broken agent has one.
    let verdicts = html.find("<h2>Verdicts").expect("a verdicts section");
    let sequence = html.find("<h2>Sequence").expect("a sequence section");
    assert!(verdicts < sequence);
    for agent in ["nyc-7", "pst-3", "lax-2"] {
        assert!(html.contains(&format!("<h3>{agent}: ")), "{agent}");
    }
    assert!(html.matches("<svg ").count() >= 3);
    assert!(html.contains("<g class=\"dropped\">"), "the path's drops");
    assert!(
        html.contains("<g class=\"write-error\">"),
        "the server's write errors"
    );
    assert!(html.contains("Command cmd-0007 WRITE ERROR"));
    assert!(
        html.contains("<rect class=\"fault\""),
        "fault windows are shaded"
    );
    // The terminal timeline shows the incident, not only probe handshakes.
    assert!(out.stdout.contains("write_error"), "{}", out.stdout);
    assert!(out.stdout.contains("Command cmd-"), "{}", out.stdout);
}

#[test]
fn a_copied_binary_has_the_catalogue_and_replays_from_anywhere() {
    let tmp = temp_dir("copied");
    let bin = tmp.join("simbench");
    std::fs::copy(env!("CARGO_BIN_EXE_simbench"), &bin).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .current_dir(&*tmp)
            .env_remove("SIMBENCH_SCENARIOS")
            .env_remove("RUST_LOG");
        // The copy's write descriptor can live on for a moment in a child
        // that another test thread forked while it was open (until that
        // child execs): exec then fails with ETXTBSY. Try again, a bounded
        // number of times.
        let mut tries = 0;
        let out = loop {
            match cmd.output() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, stdout, _) = run(&["list"]);
    assert_eq!(code, 0);
    let shipped_files = std::fs::read_dir(shipped())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert!(
        stdout.contains(&format!("{shipped_files} scenarios in the catalogue")),
        "{stdout}"
    );
    // --scenarios DIR replaces the built-in catalogue.
    let catalogue = small_catalogue(&tmp);
    let (code, stdout, _) = run(&["list", "--scenarios", catalogue.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("2 scenarios in the catalogue"), "{stdout}");
    // A failing run's replay command names the file by its absolute path.
    std::fs::write(tmp.join("never.toml"), NEVER_99).unwrap();
    let (code, stdout, _) = run(&["run", "never.toml"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains(&format!(
            "replay: simbench run {} --seed 3",
            tmp.join("never.toml").display()
        )),
        "{stdout}"
    );
}

#[test]
fn run_stays_inside_its_out_dir_escapes_controls_and_bounds_reads() {
    let tmp = temp_dir("hostile");
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let evil = NEVER_99
        .replace("name = \"never-99\"", "name = \"../..\"")
        .replace(
            "summary = \"One agent; an expectation that cannot hold.\"",
            "summary = \"x\\u001b[2J\\u202Eevil\"",
        );
    std::fs::write(work.join("evil.toml"), evil).unwrap();
    let out = simbench(&work, &["run", "evil.toml"], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(work.join("out/_..-3/report.json").is_file());
    let escaped = std::fs::read_dir(&*tmp).unwrap().count();
    assert_eq!(escaped, 1, "nothing written beside work/");
    assert!(!out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{202e}'));
    assert!(
        out.stdout.contains("x\\u{1b}[2J\\u{202e}evil"),
        "{}",
        out.stdout
    );
    let out = simbench(&work, &["run", "/dev/zero"], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("larger than 4 MiB"), "{}", out.stderr);
}

#[test]
fn run_format_json_prints_report_json_only() {
    let tmp = temp_dir("run-json");
    let out = simbench(
        &tmp,
        &[
            "run", "smoke", "--seed", "7", "--format", "json", "--out", "here",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    let file = std::fs::read_to_string(tmp.join("here/report.json")).unwrap();
    assert_eq!(out.stdout, file, "stdout is report.json, byte for byte");
    let doc: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["seed"], 7);
    assert_eq!(doc["scenario"], "smoke");
    assert_eq!(doc["digest"].as_str().map(str::len), Some(64));
    let verdict = &doc["verdict"];
    assert_eq!(verdict["kind"], "run");
    assert_eq!(verdict["passed"], true);
    assert_eq!(verdict["simbench_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(verdict["digest"], doc["digest"]);
    let smoke = std::fs::read(shipped().join("smoke.toml")).unwrap();
    assert_eq!(
        verdict["scenario_file"]["sha256"],
        sha256_hex(&smoke),
        "the hash of the scenario file's bytes"
    );
    let expectations = verdict["expectations"].as_array().unwrap();
    assert_eq!(expectations.len(), 7);
    assert!(expectations
        .iter()
        .all(|e| e["passed"] == true && !e["observed"].is_null()));
}

/// SHA-256 of `bytes` in lowercase hex, from `sha256sum` so the test does
/// not share simbench's code.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) runs");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn a_failing_run_check_and_sweep_give_json_verdicts_of_one_family() {
    let tmp = temp_dir("json-family");
    let catalogue = small_catalogue(&tmp);
    let file = catalogue.join("never-99.toml");
    let run = simbench(
        &tmp,
        &["run", file.to_str().unwrap(), "--format", "json"],
        None,
    );
    assert_eq!(run.code, 1);
    let run: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let v = &run["verdict"];
    assert_eq!(v["passed"], false);
    assert_eq!(
        (
            v["expectations_passed"].as_u64(),
            v["expectations_failed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let first = &v["expectations"][0];
    assert_eq!(first["observe"], "counts.commands_completed");
    assert_eq!(first["op"], "equals");
    assert_eq!(first["expected"], 99);
    assert_eq!(first["observed"], 0);
    assert_eq!(first["passed"], false);
    assert_eq!(
        v["scenario_file"]["sha256"],
        sha256_hex(NEVER_99.as_bytes())
    );

    let check = simbench(&tmp, &["check", "--format", "json"], Some(&catalogue));
    assert_eq!(check.code, 1);
    let check: serde_json::Value = serde_json::from_str(&check.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {}", check.stdout));
    assert_eq!(check["summary"]["failed"], 1);
    assert_eq!(check["summary"]["passed"], 1);
    let never = &check["scenarios"][0];
    assert_eq!(never["scenario"], "never-99");
    assert_eq!(never["result"], "FAIL");
    assert_eq!(never["digests"].as_array().unwrap().len(), 2);
    assert_eq!(
        never["digests"][0], run["digest"],
        "check's run is the same run"
    );
    assert_eq!(never["expectations"], v["expectations"]);

    let sweep = simbench(
        &tmp,
        &["sweep", "smoke", "--seeds", "1..=2", "--format", "json"],
        Some(&catalogue),
    );
    assert_eq!(sweep.code, 0);
    let sweep: serde_json::Value = serde_json::from_str(&sweep.stdout).unwrap();
    assert_eq!(sweep["results"].as_array().unwrap().len(), 2);
    for (doc, kind, passed) in [
        (v, "run", false),
        (&check, "check", false),
        (&sweep, "sweep", true),
    ] {
        assert_eq!(doc["kind"], kind);
        assert_eq!(doc["schema"], 1);
        assert_eq!(doc["simbench_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["passed"], passed, "{kind}");
    }
}

#[test]
fn run_with_a_failing_expectation_exits_1_and_prints_the_replay_command() {
    let tmp = temp_dir("run-fail");
    let file = tmp.join("never-99.toml");
    std::fs::write(&file, NEVER_99).unwrap();
    let out = simbench(&tmp, &["run", file.to_str().unwrap()], None);
    snapshot("run-failing-expectation", &render(&out, &tmp));
    assert_eq!(out.code, 1);
    assert!(out
        .stdout
        .contains(&format!("replay: simbench run {} --seed 3", file.display())));
    assert!(
        tmp.join("out/never-99-3/report.json").is_file(),
        "files are written on failure too"
    );
}

#[test]
fn a_malformed_scenario_exits_2_naming_file_and_line() {
    let tmp = temp_dir("malformed");
    let file = tmp.join("parsecs.toml");
    std::fs::write(
        &file,
        "name = \"parsecs\"\nduration = \"5 parsecs\"\nsummary = \"s\"\nincident = \"i\"\nseed = 1\n",
    )
    .unwrap();
    let out = simbench(&tmp, &["run", file.to_str().unwrap()], None);
    snapshot("run-malformed", &render(&out, &tmp));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&format!("{}:2:", file.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(r#""90s", "5m", "1h30m""#),
        "valid forms: {}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn an_unknown_scenario_name_exits_2_with_did_you_mean() {
    let tmp = temp_dir("unknown");
    let catalogue = small_catalogue(&tmp);
    let out = simbench(&tmp, &["run", "smoek"], Some(&catalogue));
    snapshot("run-unknown-name", &render(&out, &tmp));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("did you mean `smoke`?"));
    // The real catalogue, too.
    let out = simbench(&tmp, &["run", "smok"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("did you mean `smoke`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_writes_junit_with_two_cases_per_scenario() {
    let tmp = temp_dir("check");
    let junit = tmp.join("reports/junit.xml");
    let out = simbench(
        &tmp,
        &[
            "check",
            "--filter",
            "smoke",
            "--junit",
            junit.to_str().unwrap(),
            "--jobs",
            "2",
        ],
        None,
    );
    snapshot("check-filter-smoke", &render(&out, &tmp));
    assert_eq!(out.code, 0);
    let matching = std::fs::read_dir(shipped())
        .unwrap()
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
        .filter(|n| n.contains("smoke"))
        .count();
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file is written");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    assert_eq!(xml.matches("<testsuite ").count(), 1);
    assert_eq!(xml.matches("</testsuite>").count(), 1);
    assert_eq!(xml.matches("<testcase ").count(), 2 * matching);
    assert_eq!(xml.matches("</testcase>").count(), 2 * matching);
    assert!(xml.contains("<testcase name=\"expectations\" classname=\"smoke\""));
    assert!(xml.contains("<testcase name=\"determinism\" classname=\"smoke\""));
    assert!(xml.contains(&format!(
        "tests=\"{}\" skipped=\"0\" failures=\"0\" errors=\"0\"",
        2 * matching
    )));
    assert!(!xml.contains("<failure") && !xml.contains("<error"));
}

#[test]
fn check_reports_failing_and_broken_scenarios_in_junit() {
    let tmp = temp_dir("check-fail");
    let catalogue = small_catalogue(&tmp);
    std::fs::write(
        catalogue.join("broken.toml"),
        "name = \"broken\"\nduration = \"5 parsecs\"\n",
    )
    .unwrap();
    let junit = tmp.join("junit.xml");
    let out = simbench(
        &tmp,
        &["check", "--junit", junit.to_str().unwrap()],
        Some(&catalogue),
    );
    snapshot("check-failures", &render(&out, &tmp));
    assert_eq!(out.code, 1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 6);
    // quick-junit writes `message` before `type`.
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert_eq!(xml.matches(" type=\"expectation\"").count(), 1, "{xml}");
    assert_eq!(xml.matches("<error ").count(), 1, "{xml}");
    assert_eq!(
        xml.matches(" type=\"invalid-scenario\"").count(),
        1,
        "{xml}"
    );
    assert_eq!(xml.matches("<skipped ").count(), 1);
    assert!(
        xml.contains("tests=\"6\" skipped=\"1\" failures=\"1\" errors=\"1\""),
        "{xml}"
    );
    // Error and skipped cases carry a <system-out> too, as docs/cli.md says.
    assert_eq!(xml.matches("<system-out>").count(), 6, "{xml}");
    assert!(xml.contains("not run: invalid-scenario"), "{xml}");

    // junit-merge: this file and a passing share make one suite.
    let other = tmp.join("share-2.xml");
    let out = simbench(
        &tmp,
        &[
            "check",
            "--filter",
            "smoke",
            "--junit",
            other.to_str().unwrap(),
        ],
        Some(&catalogue),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let merged = tmp.join("merged/all.xml");
    let out = simbench(
        &tmp,
        &[
            "junit-merge",
            merged.to_str().unwrap(),
            junit.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        out.code, 1,
        "a failure in a share fails the merge: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("merged 2 files into ")
            && out
                .stdout
                .contains(": 8 tests, 1 failures, 1 errors, 1 skipped"),
        "{}",
        out.stdout
    );
    let xml = std::fs::read_to_string(&merged).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 1, "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 8);
    assert_eq!(xml.matches("<system-out>").count(), 8);
    let out = simbench(&tmp, &["junit-merge", "x.xml", "no-such.xml"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no-such.xml: cannot read it"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_partitions_split_the_catalogue_and_jobs_are_capped() {
    let tmp = temp_dir("check-partition");
    let catalogue = small_catalogue(&tmp);
    // Sorted: never-99, smoke. count:2/2 keeps the second.
    let out = simbench(
        &tmp,
        &["check", "--partition", "count:2/2", "--jobs", "100000"],
        Some(&catalogue),
    );
    snapshot("check-partition-2-of-2", &render(&out, &tmp));
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("note: --jobs 100000 capped at "),
        "{}",
        out.stderr
    );
    // Both shares of either strategy together run each scenario once.
    for strategy in ["count", "hash"] {
        let mut ran = Vec::new();
        for k in 1..=2 {
            let p = format!("{strategy}:{k}/2");
            let out = simbench(&tmp, &["check", "--partition", &p], Some(&catalogue));
            for name in ["never-99", "smoke"] {
                if out
                    .stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("│ {name} ")))
                {
                    ran.push(name);
                }
            }
        }
        ran.sort_unstable();
        assert_eq!(ran, ["never-99", "smoke"], "{strategy}");
    }
    let out = simbench(&tmp, &["check", "--partition", "3/2"], Some(&catalogue));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("valid forms: K/N"), "{}", out.stderr);
}

#[test]
fn check_with_a_filter_that_matches_nothing_exits_2() {
    let tmp = temp_dir("check-none");
    let catalogue = small_catalogue(&tmp);
    let out = simbench(&tmp, &["check", "--filter", "nothing"], Some(&catalogue));
    snapshot("check-filter-nothing", &render(&out, &tmp));
    assert_eq!(out.code, 2);
}

#[test]
fn sweep_runs_every_seed_in_parallel() {
    let tmp = temp_dir("sweep");
    let out = simbench(
        &tmp,
        &["sweep", "smoke", "--seeds", "1..3", "--jobs", "2"],
        None,
    );
    snapshot("sweep-smoke-1-3", &render(&out, &tmp));
    assert_eq!(out.code, 0);
}

#[test]
fn sweep_partitions_split_the_seeds() {
    let tmp = temp_dir("sweep-partition");
    let out = simbench(
        &tmp,
        &[
            "sweep",
            "smoke",
            "--seeds",
            "1..5",
            "--partition",
            "1/2",
            "--jobs",
            "2",
        ],
        None,
    );
    snapshot("sweep-smoke-partition-1-of-2", &render(&out, &tmp));
    assert_eq!(out.code, 0);
    // count:1/2 keeps the 1st and 3rd seed of the range.
    assert!(
        out.stdout
            .contains("partition count:1/2 keeps 2 seeds of them: 1, 3\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn sweep_lists_failing_seeds_with_their_replay_commands() {
    let tmp = temp_dir("sweep-fail");
    std::fs::write(tmp.join("never-99.toml"), NEVER_99).unwrap();
    // A path relative to the working directory, so that table widths in the
    // snapshot do not depend on where the temp dir is.
    let out = simbench(
        &tmp,
        &[
            "sweep",
            "never-99.toml",
            "--seeds",
            "1..=3",
            "--partition",
            "hash:1/2",
            "--jobs",
            "1",
        ],
        None,
    );
    snapshot("sweep-failing-seeds", &render(&out, &tmp));
    assert_eq!(out.code, 1);
    // hash:1/2 of seeds 1..=3 is 1 and 3 (docs/cli.md).
    for seed in [1, 3] {
        assert!(
            out.stdout.contains(&format!(
                "simbench run {}/never-99.toml --seed {seed} ",
                tmp.display()
            )),
            "a relative path replays as an absolute one: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("--seed 2 "));
}

#[test]
fn bad_flag_values_exit_2_and_name_the_valid_forms() {
    let tmp = temp_dir("bad-flags");
    let out = simbench(&tmp, &["sweep", "smoke", "--seeds", "9..1"], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("valid forms: A..B"), "{}", out.stderr);
    let out = simbench(
        &tmp,
        &["sweep", "smoke", "--seeds", "1..3", "--partition", "3/2"],
        None,
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("valid forms: K/N"), "{}", out.stderr);
    let out = simbench(&tmp, &["run", "smoke", "--seed", "x"], None);
    assert_eq!(out.code, 2);
    let out = simbench(&tmp, &["run", "smoke", "--format", "yaml"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("table") && out.stderr.contains("json"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_shows_examples() {
    let tmp = temp_dir("help");
    for sub in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["sweep", "--help"],
    ] {
        let out = simbench(&tmp, sub, None);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("Example"), "{sub:?}: {}", out.stdout);
    }
}

#[test]
fn diagnose_reads_a_runs_logs_and_rejects_a_bad_line() {
    let tmp = temp_dir("diagnose");
    let run = simbench(&tmp, &["run", "smoke", "--seed", "7", "--out", "o"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = simbench(
        &tmp,
        &["diagnose", "o/frames.jsonl", "--events", "o/events.jsonl"],
        None,
    );
    snapshot("diagnose-smoke-seed-7", &render(&out, &tmp));
    assert_eq!(out.code, 0, "a healthy run has no affected agent");
    let json = simbench(
        &tmp,
        &["diagnose", "o/frames.jsonl", "--format", "json"],
        None,
    );
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["server"].as_array().unwrap().len(), 3);
    assert_eq!(doc["server"][0]["affected"], false);
    std::fs::write(tmp.join("bad.jsonl"), "{\"t_us\":1}\n").unwrap();
    let bad = simbench(&tmp, &["diagnose", "bad.jsonl"], None);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("bad.jsonl:1: not a frame log record"),
        "{}",
        bad.stderr
    );
}

#[test]
fn bench_measures_each_selected_scenario_and_refuses_bad_flags() {
    let tmp = temp_dir("bench");
    let out = simbench(
        &tmp,
        &[
            "bench", "--filter", "smoke", "--repeat", "2", "--format", "json",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r["scenario"].as_str(), r["runs"].as_u64()),
        (Some("smoke"), Some(2))
    );
    assert_eq!(r["sim_s"], 180.0);
    assert!(r["frames"].as_u64() > Some(0));
    let (min, median) = (
        r["wall_min_s"].as_f64().unwrap(),
        r["wall_median_s"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= median, "{r}");
    assert!(r["error"].is_null());

    let bad = simbench(&tmp, &["bench", "--repeat", "0"], None);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("--repeat 0: runs of each scenario must be 1 to 20"),
        "{}",
        bad.stderr
    );
    let none = simbench(&tmp, &["bench", "--filter", "no-such-thing"], None);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no shipped scenario matches"),
        "{}",
        none.stderr
    );
}
