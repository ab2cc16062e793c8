//! No input makes the parser panic: every prefix of every corpus file, and
//! many deterministic mutations of them, give a scenario or an error.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn corpus() -> Vec<String> {
    let mut texts = Vec::new();
    for dir in ["tests/good", "tests/bad"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut paths: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        texts.extend(paths.iter().map(|p| fs::read_to_string(p).unwrap()));
    }
    texts
}

fn must_not_panic(text: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        if let Err(e) = format::parse_scenario("fuzz.toml", text) {
            // Rendering and the accessors must not panic either.
            let _ = (e.to_string(), e.line(), e.column(), e.kind());
        }
    }));
    if result.is_err() {
        panic!("the parser panicked on:\n{text}");
    }
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_prefix() {
    for text in corpus() {
        for (i, _) in text.char_indices() {
            must_not_panic(&text[..i]);
        }
    }
}

#[test]
fn mutations() {
    const PIECES: &[&str] = &[
        "\"",
        "'",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        ",",
        ".",
        "\n",
        "-",
        "0",
        "-1",
        "99999999999999999999",
        "1e999",
        "nan",
        "inf",
        "true",
        "é",
        "\u{0}",
        "#",
        "\\",
        "server",
        "site:",
        "agent:",
        "cmd-0001",
        "count = 0",
        "count = 10000",
        "0s",
        "1h",
        "from = \"5m\"",
        "until = \"1m\"",
        "equals = 1",
        "at_least = \"x\"",
    ];
    let mut rng = Rng(0x5eed_5eed_5eed_5eed);
    for text in corpus() {
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        for _ in 0..150 {
            let a = boundaries[rng.below(boundaries.len())];
            let b = boundaries[rng.below(boundaries.len())];
            let (a, b) = (a.min(b), a.max(b));
            let b = b.min(a + 8).min(text.len());
            let b = (b..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            let piece = PIECES[rng.below(PIECES.len())];
            let mutated = format!("{}{piece}{}", &text[..a], &text[b..]);
            must_not_panic(&mutated);
        }
    }
}

#[test]
fn odd_inputs() {
    for text in [
        "",
        "\u{feff}",
        "=",
        "[[agent]]",
        "agent = [1, 2]",
        "agent = [{}]",
        "fault = [{kind = 5}]",
        "server = []",
        "server = { behavior = [] }",
        "[server]\nbehavior = { preset = 1 }",
        "expect = [{observe = \"digest\", equals = {a = 1}}]",
        "expect = [{observe = \"digest\", equals = nan}]",
        &"[".repeat(10_000),
        &format!("a = {}1{}", "[".repeat(200), "]".repeat(200)),
    ] {
        must_not_panic(text);
    }
}

#[test]
fn large_fleets_parse_quickly_and_are_bounded() {
    let head = "name = \"big\"\nsummary = \"s\"\nincident = \"i\"\nseed = 1\nduration = \"1h\"\n";
    let mut text = head.to_owned();
    for g in 0..10 {
        text.push_str(&format!("[[agent]]\nname = \"g{g}\"\ncount = 10000\n"));
    }
    text.push_str("[[action]]\nat = \"1m\"\ndo = \"wake\"\nagent = \"g9-10000\"\n");
    text.push_str("[[expect]]\nobserve = \"agents.g0-1.online\"\nequals = true\n");
    let started = std::time::Instant::now();
    // Parsed and checked whole, then refused: a run simulates at most
    // MAX_RUN_AGENTS (issue 17), and says so.
    let err = format::parse_scenario("big.toml", &text).unwrap_err();
    assert!(
        err.to_string()
            .contains("100000 agents; a run simulates at most 10000"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    let err = format::parse_scenario(
        "big.toml",
        &format!("{text}[[agent]]\nname = \"one-more\"\n"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("more than 100000 agents"), "{err}");
}
