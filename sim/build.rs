//! Embeds the shipped catalogue (`../scenarios/*.toml`) in the `simbench`
//! binary, so a binary copied to another machine still has it
//! (`sim::cli::source`); a directory given with `SIMBENCH_SCENARIOS` or
//! `--scenarios DIR` replaces it at run time.

use std::io::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("catalogue.rs");
    let mut f = std::fs::File::create(&out).expect("write the embedded catalogue");
    writeln!(
        f,
        "/// The shipped scenarios: (name, file text), sorted by name."
    )
    .unwrap();
    writeln!(f, "pub static EMBEDDED: &[(&str, &str)] = &[").unwrap();
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            f,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    writeln!(f, "];").unwrap();
}
