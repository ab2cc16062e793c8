//! Limits of the scenario format (issue 17): what a run cannot finish is
//! refused with the limit in the message; big fleets parse in linear time;
//! messages do not echo huge input.

use std::time::Instant;

use format::scenario::MAX_RUN_AGENTS;

fn header(duration: &str) -> String {
    format!(
        "name = \"big\"\nsummary = \"s\"\nincident = \"foundation\"\nseed = 1\nduration = \"{duration}\"\n\n[server]\nbehavior = \"fixed\"\n\n"
    )
}

fn fleet(n: usize, duration: &str) -> String {
    let mut s = header(duration);
    for i in 0..n {
        s.push_str(&format!(
            "[[agent]]\nname = \"a{i}\"\nsite = \"s{i}\"\nbehavior = \"fixed\"\n\n"
        ));
    }
    s
}

#[test]
fn parsing_grows_linearly_with_the_fleet() {
    let time = |n: usize| {
        let text = fleet(n, "1m");
        let t = Instant::now();
        let r = format::parse_scenario("big.toml", &text);
        (t.elapsed(), r.map(|s| s.agents.len()))
    };
    // Past MAX_RUN_AGENTS the answer is the limit, after the whole file
    // was parsed and checked.
    let limit = format!("at most {MAX_RUN_AGENTS}");
    let n = MAX_RUN_AGENTS + 1;
    let (small, r) = time(n);
    assert!(r.unwrap_err().to_string().contains(&limit));
    let (big, r) = time(4 * n);
    assert!(r.unwrap_err().to_string().contains(&limit));
    eprintln!("{n} agents: {small:?}, {} agents: {big:?}", 4 * n);
    // Linear: 4x the agents in well under 16x (quadratic) the time.
    assert!(big < small * 10, "{n}: {small:?}, {}: {big:?}", 4 * n);
}

#[test]
fn what_a_run_cannot_finish_is_refused_with_the_limit() {
    let err = format::parse_scenario("big.toml", &fleet(MAX_RUN_AGENTS + 1, "1m")).unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains(&format!("{} agents", MAX_RUN_AGENTS + 1))
            && m.contains(&format!("at most {MAX_RUN_AGENTS}")),
        "{m}"
    );
    assert_eq!(
        format::parse_scenario("ok.toml", &fleet(MAX_RUN_AGENTS, "1m"))
            .unwrap()
            .agents
            .len(),
        MAX_RUN_AGENTS
    );
    let err = format::parse_scenario("long.toml", &fleet(1, "100000h")).unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains("agent-hours") && m.contains("at most 2000"),
        "{m}"
    );
    let err = format::parse_scenario("wide.toml", &fleet(1_000, "3h")).unwrap_err();
    assert!(err.to_string().contains("3000 agent-hours"), "{err}");
    assert!(format::parse_scenario("day.toml", &fleet(40, "24h")).is_ok());
}

#[test]
fn error_messages_do_not_echo_a_huge_input() {
    let key = "k".repeat(1 << 20);
    let text = format!("{}{key} = 1\n", header("1m"));
    let m = format::parse_scenario("huge.toml", &text)
        .unwrap_err()
        .to_string();
    assert!(m.len() < 4096, "a {} byte message", m.len());
    let name = "n".repeat(1 << 20);
    let text = format!("{}[[agent]]\nname = \"{name}\"\n", header("1m"));
    let m = format::parse_scenario("huge.toml", &text)
        .unwrap_err()
        .to_string();
    assert!(m.len() < 4096, "a {} byte message", m.len());
}
