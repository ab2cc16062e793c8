//! Property tests (bounded; PROPTEST_CASES raises the count) for the
//! enrollment request parser: whatever the body, it never panics, what it
//! accepts follows the naming rule, and its messages stay short.

use proptest::prelude::*;

fn check(body: &[u8]) -> Result<(), TestCaseError> {
    match server::enroll::parse_request(body) {
        Ok(r) => {
            prop_assert!(format::outcome::is_agent_name(&r.name) && r.name != "server");
            prop_assert!(!r.version.is_empty() && r.version.len() <= 64);
        }
        Err(e) => prop_assert!(e.to_string().len() < 600, "{}", e.to_string().len()),
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
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn any_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&body)?;
    }

    #[test]
    fn json_bodies_with_any_name_and_version(
        name in any::<String>(),
        version in any::<String>(),
        long in 0usize..5000,
        extra in proptest::option::of(any::<String>()),
    ) {
        let name = if long > 4000 { name.repeat(long / name.len().max(1)) } else { name };
        let mut v = serde_json::json!({"name": name, "version": version});
        if let Some(x) = extra {
            v["x"] = serde_json::Value::String(x);
        }
        check(v.to_string().as_bytes())?;
    }
}
