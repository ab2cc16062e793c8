//! `simbench diagnose` on logs from the field, which are untrusted input
//! (issue 17): escape sequences and bidi controls in names are shown, not
//! obeyed; a huge name costs linear time; `/dev/zero` is refused after a
//! bounded read; a last line cut by a crash is read up to the cut, with a
//! warning.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("simbench-untrusted-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn simbench(cwd: &PathBuf, args: &[&str]) -> (i32, String, String, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

/// A server log of one agent `name`: a command written and never acked
/// (so the agent is affected and its name is printed in every section).
fn log_of(name: &str) -> String {
    let rec = |t: u64, dir: &str, stage: &str, frame: &str, extra: &str| {
        let mut v = serde_json::json!({
            "t_us": t, "point": "server", "conn": "c1", "peer": name,
            "dir": dir, "stage": stage, "frame": frame,
        });
        if !extra.is_empty() {
            let e: serde_json::Value = serde_json::from_str(extra).unwrap();
            v.as_object_mut()
                .unwrap()
                .extend(e.as_object().unwrap().clone());
        }
        v.to_string()
    };
    let mut lines = vec![rec(
        1_000_000,
        "rx",
        "read",
        "text",
        r#"{"msg":"Heartbeat"}"#,
    )];
    let mut t = 2_000_000;
    for seq in 1..=3 {
        lines.push(rec(
            t,
            "tx",
            "written",
            "ping",
            &format!(r#"{{"ping_seq":{seq}}}"#),
        ));
        lines.push(rec(
            t + 1000,
            "rx",
            "read",
            "pong",
            &format!(r#"{{"ping_seq":{seq}}}"#),
        ));
        t += 30_000_000;
    }
    lines.push(rec(
        t,
        "tx",
        "enqueued",
        "text",
        r#"{"msg":"Command","command_id":"cmd-0001"}"#,
    ));
    lines.push(rec(
        t + 10,
        "tx",
        "written",
        "text",
        r#"{"msg":"Command","command_id":"cmd-0001"}"#,
    ));
    for seq in 4..=8 {
        t += 30_000_000;
        lines.push(rec(
            t,
            "tx",
            "written",
            "ping",
            &format!(r#"{{"ping_seq":{seq}}}"#),
        ));
        lines.push(rec(
            t + 1000,
            "rx",
            "read",
            "pong",
            &format!(r#"{{"ping_seq":{seq}}}"#),
        ));
    }
    lines.join("\n") + "\n"
}

#[test]
fn escape_sequences_and_bidi_controls_in_names_are_shown_escaped() {
    let d = dir("escape");
    let evil = "pc\u{1b}]0;owned\u{7}\u{1b}[2J-\u{202e}gpj.exe\u{2066}";
    std::fs::write(d.join("f.jsonl"), log_of(evil)).unwrap();
    for format in ["table", "json"] {
        let (code, out, err, _) = simbench(&d, &["diagnose", "f.jsonl", "--format", format]);
        assert_eq!(code, 1, "the agent is affected: {out}{err}");
        for c in ['\u{1b}', '\u{7}', '\u{202e}', '\u{2066}'] {
            assert!(!out.contains(c), "{format}: raw {c:?} in {out}");
        }
        if format == "table" {
            assert!(
                out.contains("pc\\u{001b}]0;owned\\u{0007}\\u{001b}[2J-\\u{202e}gpj.exe\\u{2066}"),
                "{out}"
            );
        } else {
            // Still JSON, and it still names the agent exactly.
            let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(doc["server"][0]["agent"], evil);
        }
    }
}

#[test]
fn a_huge_name_costs_linear_time_and_is_cut_in_the_table() {
    let d = dir("huge");
    // Just under the 1 MiB record bound.
    let name = "n".repeat(1_000_000);
    std::fs::write(d.join("f.jsonl"), log_of(&name)).unwrap();
    let (code, out, err, took) = simbench(&d, &["diagnose", "f.jsonl"]);
    assert_eq!(code, 1, "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        out.contains(&format!("{}...(+{} chars)", "n".repeat(64), 1_000_000 - 64)),
        "cut in the table"
    );
    assert!(out.len() < 100_000, "{} bytes of output", out.len());
    // A 1 MiB + 1 record is refused, naming the bound.
    std::fs::write(d.join("g.jsonl"), log_of(&"n".repeat(1 << 20))).unwrap();
    let (code, _, err, _) = simbench(&d, &["diagnose", "g.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("g.jsonl:1: a line longer than 1048576 bytes is not a frame log record"),
        "{err}"
    );
}

#[test]
fn dev_zero_is_refused_after_a_bounded_read() {
    let d = dir("zero");
    std::fs::write(d.join("f.jsonl"), log_of("pc-1")).unwrap();
    let (code, _, err, took) = simbench(&d, &["diagnose", "/dev/zero"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/dev/zero:1: a line longer than"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (code, _, err, _) = simbench(&d, &["diagnose", "f.jsonl", "--events", "/dev/zero"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/dev/zero:1: a line longer than 1048576 bytes is not a event log record"),
        "{err}"
    );
}

#[test]
fn a_last_line_cut_by_a_crash_is_read_up_to_the_cut_with_a_warning() {
    let d = dir("cut");
    let full = log_of("pc-1");
    let cut = &full[..full.len() - 30];
    std::fs::write(d.join("f.jsonl"), cut).unwrap();
    let (code, out, err, _) = simbench(&d, &["diagnose", "f.jsonl"]);
    assert_eq!(code, 1, "{err}");
    let n = full.lines().count();
    assert!(
        err.contains(&format!("warning: f.jsonl:{n}: the last line is cut")),
        "{err}"
    );
    assert!(
        out.starts_with(&format!("{} frame records", n - 1)),
        "{out}"
    );
    // A bad line before the last is still an error.
    let mut lines: Vec<&str> = full.lines().collect();
    lines[2] = &lines[2][..20];
    std::fs::write(d.join("g.jsonl"), lines.join("\n") + "\n").unwrap();
    let (code, _, err, _) = simbench(&d, &["diagnose", "g.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("g.jsonl:3: not a frame log record"), "{err}");
}
