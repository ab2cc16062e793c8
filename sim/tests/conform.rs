//! `simbench conform`'s command line: bad input exits 2 and names the
//! valid choices. (The suite itself needs root and a minute and a half; CI
//! runs it from `.ci/run`.)

use std::process::Command;

fn simbench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("simbench runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_case_exits_2_and_lists_the_cases() {
    let (code, _, err) = simbench(&["conform", "--case", "no-such-case"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no conformance case `no-such-case`"), "{err}");
    assert!(err.contains("udp-4433-blocked"), "{err}");
}

#[test]
fn a_missing_known_differences_list_exits_2_and_says_what_to_pass() {
    let (code, _, err) = simbench(&["conform", "--known", "/nonexistent/known.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--known FILE"), "{err}");
}

#[test]
fn help_names_the_requirements_and_the_exit_codes() {
    let (code, out, _) = simbench(&["conform", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("nftables") && out.contains("--allow-skip"),
        "{out}"
    );
}
