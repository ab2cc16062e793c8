//! capture.pcapng, from the `simbench` binary: two runs of one seed give
//! the same bytes, report.json names its hash, tshark decrypts the TLS and
//! QUIC inside with the secrets the file carries, and `--artifacts` chooses
//! the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("simbench-capture-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's temp dir");
    dir
}

/// `simbench ARGS` in `cwd`; (exit code, stdout, stderr).
fn simbench(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("SIMBENCH_SCENARIOS")
        .env_remove("SSLKEYLOGFILE")
        .output()
        .expect("run the simbench binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_into(cwd: &Path, scenario: &str, out: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["run", scenario, "--out", out];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = simbench(cwd, &args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    cwd.join(out)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn two_runs_of_one_seed_give_byte_identical_captures_named_in_report_json() {
    let tmp = temp_dir("repeat");
    let a = run_into(&tmp, "smoke", "a", &[]);
    let b = run_into(&tmp, "smoke", "b", &[]);
    let (ca, cb) = (
        std::fs::read(a.join("capture.pcapng")).unwrap(),
        std::fs::read(b.join("capture.pcapng")).unwrap(),
    );
    assert!(ca.len() > 10_000, "{} bytes", ca.len());
    assert!(ca == cb, "the captures of two runs of seed 7 differ");
    assert_eq!(
        std::fs::read(a.join("keylog.txt")).unwrap(),
        std::fs::read(b.join("keylog.txt")).unwrap()
    );
    // The hash sits beside the digest in report.json, under `artifacts`.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("report.json")).unwrap()).unwrap();
    let listed = &report["artifacts"]["capture.pcapng"];
    assert_eq!(listed["sha256"], hex::encode(sha2::Sha256::digest(&ca)));
    assert_eq!(listed["bytes"], ca.len());
    let keylog = std::fs::read_to_string(a.join("keylog.txt")).unwrap();
    assert_eq!(
        report["artifacts"]["keylog.txt"]["sha256"],
        hex::encode(sha2::Sha256::digest(keylog.as_bytes()))
    );
    // Another seed, other bytes.
    let c = run_into(&tmp, "smoke", "c", &["--seed", "8"]);
    assert!(std::fs::read(c.join("capture.pcapng")).unwrap() != ca);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn tshark(file: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tshark_decrypts_a_command_inside_tls_and_the_quic_streams() {
    if Command::new("tshark").arg("--version").output().is_err() {
        // .ci/run installs tshark; a machine without it cannot check this.
        eprintln!("tshark not installed: skipping the decryption check");
        return;
    }
    let tmp = temp_dir("tshark");
    let dir = run_into(&tmp, "smoke", "run", &["--artifacts", "capture,frames"]);
    assert_eq!(files(&dir), ["capture.pcapng", "frames.jsonl"]);
    let capture = dir.join("capture.pcapng");
    // The Commands the agent read on 8443, the TLS port of the proxy:
    // WebSocket Text frames whose payload tshark could only see decrypted.
    let shown = tshark(
        &capture,
        &[
            "-Y",
            "tls && tcp.srcport == 8443 && websocket.payload.text contains \"\\\"type\\\":\\\"Command\\\"\"",
            "-T",
            "fields",
            "-e",
            "websocket.payload.text",
        ],
    )
    .expect("tshark runs");
    let commands: Vec<serde_json::Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!commands.is_empty(), "no decrypted Command on 8443");
    let id = commands[0]["command_id"].as_str().expect("a command_id");
    // The same command, as the agent's frame log has it.
    let frames = std::fs::read_to_string(dir.join("frames.jsonl")).unwrap();
    assert!(
        frames.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["point"] == "agent:pst-1" && v["msg"] == "Command" && v["command_id"] == id
        }),
        "{id} not in the agent's frame log"
    );
    // The agent's masked frames (its Acks) decode too: the masks are valid.
    let acks = tshark(
        &capture,
        &[
            "-Y",
            &format!("tcp.dstport == 8443 && websocket.mask == 1 && websocket.payload.text contains \"{id}\""),
        ],
    )
    .unwrap();
    assert!(
        acks.lines().count() >= 1,
        "no masked frame from the agent names {id}"
    );
    // QUIC: frames inside the encrypted packets (only visible decrypted).
    let quic = tshark(
        &capture,
        &["-Y", "quic.stream.stream_id || quic.stream.len"],
    )
    .unwrap();
    assert!(quic.lines().count() > 0, "no decrypted QUIC stream frame");
    // Every QUIC packet decrypts, and (7171 decoded as TLS: Wireshark
    // calls that port Tibia) every TLS record is HTTP or WebSocket inside.
    assert_eq!(
        tshark(&capture, &["-Y", "quic.decryption_failed"]).unwrap(),
        ""
    );
    let opaque = tshark(
        &capture,
        &[
            "-d",
            "tcp.port==7171,tls",
            "-Y",
            "tls.app_data && !http && !websocket",
        ],
    )
    .unwrap();
    assert_eq!(opaque, "", "TLS records not decrypted");
    assert!(!tshark(
        &capture,
        &["-d", "tcp.port==7171,tls", "-Y", "tls && http.request"]
    )
    .unwrap()
    .is_empty());
    // Nothing malformed.
    assert_eq!(tshark(&capture, &["-Y", "_ws.malformed"]).unwrap(), "");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn artifacts_choose_the_files_and_a_bad_name_is_refused() {
    let tmp = temp_dir("artifacts");
    let dir = run_into(&tmp, "smoke", "some", &["--artifacts", "report,keylog"]);
    assert_eq!(files(&dir), ["keylog.txt", "report.json"]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert!(report["artifacts"]["capture.pcapng"].is_null());
    assert!(report["artifacts"]["keylog.txt"]["sha256"].is_string());
    run_into(&tmp, "smoke", "none", &["--artifacts", "none"]);
    assert!(!tmp.join("none").exists(), "none: no directory");
    let (code, _, stderr) = simbench(&tmp, &["run", "smoke", "--artifacts", "report,captur"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unknown artifact `captur` (did you mean `capture`?)"),
        "{stderr}"
    );
    // check writes the first run's files of each scenario under --out.
    let (code, stdout, stderr) = simbench(
        &tmp,
        &[
            "check",
            "--filter",
            "smoke",
            "--artifacts",
            "capture",
            "--out",
            "checked",
            "--jobs",
            "1",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(files(&tmp.join("checked")), ["smoke-7"]);
    assert_eq!(files(&tmp.join("checked/smoke-7")), ["capture.pcapng"]);
    // sweep: one directory per seed.
    let (code, stdout, stderr) = simbench(
        &tmp,
        &[
            "sweep",
            "smoke",
            "--seeds",
            "1..=2",
            "--artifacts",
            "report",
            "--out",
            "swept",
            "--jobs",
            "1",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(files(&tmp.join("swept")), ["smoke-1", "smoke-2"]);
    assert_eq!(files(&tmp.join("swept/smoke-2")), ["report.json"]);
    // Without --artifacts, check and sweep write no run files (as before).
    let (code, _, _) = simbench(&tmp, &["sweep", "smoke", "--seeds", "3", "--jobs", "1"]);
    assert_eq!(code, 0);
    assert!(!tmp.join("out").exists());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// One run of a shipped scenario with its own seed, capture on.
fn capture_of(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    let sc = format::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let spec = sim::scenario::resolve(&sc, None).unwrap_or_else(|e| panic!("{e}"));
    let out = sim::run::run_with(
        &spec,
        sim::run::RunOptions {
            capture: true,
            key_log: true,
            ..Default::default()
        },
    )
    .expect("the run finishes");
    let keys = out.key_log.expect("secrets kept");
    assert!(keys.lines().count() >= 4, "{name}: {keys}");
    let Some(sim::run::Pcap::Bytes(pcap)) = out.pcap else {
        panic!("{name}: captured in memory")
    };
    pcap
}

#[test]
fn captures_repeat_across_faults_restarts_upgrades_and_lossy_links() {
    // Drops on the path, stalled writes, a broken agent, QUIC blocked, a
    // server restart, an upgrade (new agent processes), random loss.
    for name in [
        "h6-several-failure-modes",
        "udp-4433-blocked",
        "wake-server-restart",
        "upgrade-ok",
        "lossy-site",
    ] {
        let (a, b) = (capture_of(name), capture_of(name));
        assert!(a.len() > 1000, "{name}: {} bytes", a.len());
        assert!(
            a == b,
            "{name}: two runs of its seed wrote different captures"
        );
    }
}
