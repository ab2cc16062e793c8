//! `invalid-token` names one agent, one site, or (neither key) every agent,
//! as `checkin-errors` does; naming both is refused.

use format::scenario::FaultKind;

fn scenario(fault: &str) -> Result<format::scenario::Scenario, String> {
    let text = format!(
        "name = \"t\"\nsummary = \"s\"\nincident = \"managed-resilience\"\nseed = 1\nduration = \"1m\"\n\n[server]\nbehavior = \"fixed\"\n\n[[agent]]\nname = \"a\"\nsite = \"hq\"\ncount = 2\n\n[[agent]]\nname = \"b\"\nsite = \"lab\"\n\n[[fault]]\nkind = \"invalid-token\"\n{fault}"
    );
    format::parse_scenario("t.toml", &text).map_err(|e| e.to_string())
}

fn kind(fault: &str) -> FaultKind {
    scenario(fault).expect("parses").faults[0].kind.clone()
}

#[test]
fn an_agent_a_site_or_every_agent() {
    assert_eq!(
        kind("agent = \"a-2\"\n"),
        FaultKind::InvalidToken {
            agent: Some("a-2".into()),
            site: None
        }
    );
    assert_eq!(
        kind("site = \"lab\"\n"),
        FaultKind::InvalidToken {
            agent: None,
            site: Some("lab".into())
        }
    );
    assert_eq!(
        kind(""),
        FaultKind::InvalidToken {
            agent: None,
            site: None
        }
    );
}

#[test]
fn both_or_an_unknown_site_is_refused_with_what_to_do() {
    let e = scenario("agent = \"a-1\"\nsite = \"hq\"\n").unwrap_err();
    assert!(e.contains("exclude each other"), "{e}");
    let e = scenario("site = \"hqq\"\n").unwrap_err();
    assert!(
        e.contains("unknown site \"hqq\"") && e.contains("hq"),
        "{e}"
    );
}
