//! Path faults on turmoil's links (`latency`, `jitter`), seen in the frame
//! log: how long a Command takes from the reverse proxy to the agent.

use proto::frame::{Dir, Stage};
use sim::scenario::{catalogue_dir, resolve};

#[test]
fn a_slow_site_path_delays_its_agents_frames_and_no_one_elses() {
    let sc = format::load(&catalogue_dir().join("high-latency-site.toml")).unwrap();
    let out = sim::run::run(&resolve(&sc, None).unwrap()).unwrap();
    // Proxy -> agent delay of each Command's first delivery, in ms.
    let delay = |id: &str| {
        let at = |point: fn(&str) -> bool, dir: Dir| {
            out.frames
                .iter()
                .find(|f| f.command_id.as_deref() == Some(id) && point(&f.point) && f.dir == dir)
                .map(|f| f.t_us)
                .unwrap_or_else(|| panic!("no {dir:?} record of {id}"))
        };
        (at(|p| p.starts_with("agent:"), Dir::Rx) - at(|p| p == "path:proxy", Dir::Tx)) / 1000
    };
    // 300 ms one way on the ship's path; the tick (10 ms) rounds it.
    assert!(
        (300..=310).contains(&delay("cmd-0001")),
        "{}",
        delay("cmd-0001")
    );
    // From 2m up to 150 ms of jitter on top.
    assert!(
        (300..=460).contains(&delay("cmd-0002")),
        "{}",
        delay("cmd-0002")
    );
    // hq's path keeps the run's 1 to 20 ms.
    assert!(delay("cmd-0003") <= 30, "{}", delay("cmd-0003"));
}

#[test]
fn a_partitioned_site_reads_nothing_until_the_link_is_back() {
    let sc = format::load(&catalogue_dir().join("site-outage-recovers.toml")).unwrap();
    let out = sim::run::run(&resolve(&sc, None).unwrap()).unwrap();
    // What edge-1 (site branch, partitioned from 2m to 5m) and the proxy on
    // its behalf read, other than events (a QUIC handshake timing out).
    let reads: Vec<u64> = out
        .frames
        .iter()
        .filter(|f| f.dir == Dir::Rx && f.stage != Stage::Event)
        .filter(|f| f.point == "agent:edge-1" || (f.point == "path:proxy" && f.peer == "edge-1"))
        .map(|f| f.t_us / 1_000_000)
        .collect();
    // Messages in flight at 2m still land; then nothing until 5m.
    assert!(reads.iter().any(|t| *t < 120), "{reads:?}");
    assert!(!reads.iter().any(|t| (121..300).contains(t)), "{reads:?}");
    assert!(reads.iter().any(|t| *t >= 300), "{reads:?}");
    // hq's agent is not partitioned: it reads throughout.
    assert!(out.frames.iter().any(|f| f.point == "agent:hq-1"
        && f.dir == Dir::Rx
        && (121..300).contains(&(f.t_us / 1_000_000))));
}
