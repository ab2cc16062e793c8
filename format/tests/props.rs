//! Property tests (bounded; PROPTEST_CASES raises the count) for the
//! scenario parser: any text, and catalogue-like scenarios with mutated
//! values, never panic, and error messages stay bounded.

use proptest::prelude::*;

const BASE: &str = "name = \"p\"\nsummary = \"s\"\nincident = \"foundation\"\nseed = 1\nduration = \"3m\"\n\n[server]\nbehavior = \"fixed\"\n\n[[agent]]\nname = \"pst\"\ncount = 2\nsite = \"pst\"\n\n[[action]]\nat = \"70s\"\ndo = \"dispatch\"\nagent = \"pst-1\"\ncommand = \"hostname\"\n\n[[expect]]\nobserve = \"agents.pst-1.online\"\nequals = true\n";

fn check(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = format::parse_scenario("p.toml", text) {
        let m = e.to_string();
        prop_assert!(m.chars().count() < 1_200, "{}", m.len());
    }
    Ok(())
}

/// `n` cases, or PROPTEST_CASES when set (for long runs).
fn cases(n: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn any_text(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn a_scenario_with_one_value_replaced(at in 0usize..BASE.len(), len in 0usize..12, with in any::<String>()) {
        let mut start = at;
        while !BASE.is_char_boundary(start) { start -= 1; }
        let mut end = (start + len).min(BASE.len());
        while !BASE.is_char_boundary(end) { end -= 1; }
        let text = format!("{}{}{}", &BASE[..start], with, &BASE[end..]);
        check(&text)?;
    }

    #[test]
    fn counts_and_durations(count in any::<i64>(), n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h", "d", ""])) {
        let text = BASE
            .replace("count = 2", &format!("count = {count}"))
            .replace("duration = \"3m\"", &format!("duration = \"{n}{unit}\""));
        check(&text)?;
    }
}
