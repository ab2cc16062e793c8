//! Limits of the scenario format (issue 17): what a run cannot finish is
//! refused with the limit in the message; big fleets parse in linear time;
//! messages do not echo huge input.

use std::time::Instant;

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
    let (small, r) = time(10_000);
    assert_eq!(r.unwrap(), 10_000);
    let (big, r) = time(40_000);
    assert_eq!(r.unwrap(), 40_000);
    eprintln!("10k agents: {small:?}, 40k agents: {big:?}");
    // Linear: 4x the agents in well under 16x (quadratic) the time.
    assert!(big < small * 10, "10k: {small:?}, 40k: {big:?}");
}
