//! A sweep sharded over CI machines: each machine's `sweep --partition K/N
//! --junit` file holds one case per seed it ran, and `junit-merge` puts the
//! machines' files back together with every seed once (docs/cli.md, "A
//! sweep across CI machines").

use std::path::Path;
use std::process::Command;

fn simbench(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("simbench runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cases(xml: &str) -> Vec<String> {
    xml.match_indices("<testcase ")
        .map(|(i, _)| {
            let rest = &xml[i..];
            let name = rest.find("name=\"").map(|n| &rest[n + 6..]).unwrap_or("");
            name[..name.find('"').unwrap_or(0)].to_string()
        })
        .collect()
}

#[test]
fn partitioned_sweeps_write_junit_that_merges_into_every_seed_once() {
    let dir = std::env::temp_dir().join(format!("simbench-sweep-junit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for k in 1..=3 {
        let (code, err) = simbench(
            &dir,
            &[
                "sweep",
                "smoke",
                "--seeds",
                "1..6",
                "--partition",
                &format!("hash:{k}/3"),
                "--junit",
                &format!("part-{k}.xml"),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(&format!("JUnit XML: part-{k}.xml")), "{err}");
    }
    // Each machine's file holds only its own seeds; together, all five.
    let mut all: Vec<String> = (1..=3)
        .flat_map(|k| cases(&std::fs::read_to_string(dir.join(format!("part-{k}.xml"))).unwrap()))
        .collect();
    all.sort();
    assert_eq!(all, ["seed 1", "seed 2", "seed 3", "seed 4", "seed 5"]);

    let (code, err) = simbench(
        &dir,
        &[
            "junit-merge",
            "all.xml",
            "part-1.xml",
            "part-2.xml",
            "part-3.xml",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let merged = std::fs::read_to_string(dir.join("all.xml")).unwrap();
    let mut names = cases(&merged);
    names.sort();
    assert_eq!(names, ["seed 1", "seed 2", "seed 3", "seed 4", "seed 5"]);
    assert!(merged.contains("classname=\"smoke\""), "{merged}");
    assert!(!merged.contains("<failure"), "{merged}");
    let _ = std::fs::remove_dir_all(&dir);
}
