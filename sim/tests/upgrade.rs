//! Self-upgrade under operator restarts, as a property over many seeds and
//! restart times (issue 7): whatever happens, at the end the agent runs
//! exactly one version, that version heartbeats, and the server's device
//! record agrees with it (`currentVersion`, and a settled phase that says
//! which way the upgrade went).
//!
//! Every run: one agent on 1.0.0, `upgrade` to 1.1.0 at 60 s (the seed picks
//! the build: sound or one of the four defects), and the server restarted
//! at one of [`RESTART_POINTS`] (or not at all) — points chosen to land in
//! every phase: with the request in flight, while staging, while verifying,
//! around the cutover, while the old agent waits for the stop, around the
//! new version's first heartbeat and the stop, around the heartbeat-timeout
//! revert, and after it all. Some points restart twice (a second restart
//! 20 s later) or crash the server and restart it 5 s later (a crash loses
//! no committed write: the store commits durably). The last points restart
//! the agent's service instead, or crash it and start it 5 s later: what
//! comes back is the version its disk names active, with no memory of the
//! upgrade, so before the cutover the operator's repeated request starts
//! it again, and after it the new version runs alone and the operator
//! settles the upgrade once the old agent's revert window has passed.
//!
//! The runs are spread over two threads; loops are bounded by the lists.
//! Cost and numbers: see the report printed with `--nocapture`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use format::scenario::Target;
use proto::build::BuildDefect;
use sim::run::{ActionKind, ActionSpec, AgentSpec, RunSpec};

const THREADS: usize = 2;
/// Seeds 1..=SEEDS (default 10; `UPGRADE_PROPERTY_SEEDS=N` for a longer
/// sweep); each runs every restart point.
fn seeds() -> u64 {
    std::env::var("UPGRADE_PROPERTY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// What the server goes through, in milliseconds from the start.
#[derive(Clone, Copy, Debug)]
enum Power {
    /// No restart (the control).
    None,
    /// One restart.
    Restart(u64),
    /// Two restarts 20 s apart.
    Twice(u64),
    /// A crash, then a restart 5 s later.
    Crash(u64),
    /// The agent's service restarted (every process of it; the version
    /// its disk names active comes back).
    AgentRestart(u64),
    /// The agent's processes killed (unsynced writes lost), started again
    /// 5 s later.
    AgentCrash(u64),
}

const RESTART_POINTS: &[Power] = &[
    Power::None,
    Power::Restart(60_000),
    Power::Restart(60_010),
    Power::Restart(60_030),
    Power::Restart(60_060),
    Power::Restart(60_100),
    Power::Restart(60_500),
    Power::Restart(62_000),
    Power::Restart(75_000),
    Power::Restart(89_000),
    Power::Restart(90_100),
    Power::Restart(90_200),
    Power::Restart(90_300),
    Power::Restart(91_000),
    Power::Restart(92_000),
    Power::Restart(95_000),
    Power::Restart(120_000),
    Power::Restart(150_000),
    Power::Restart(179_900),
    Power::Restart(180_200),
    Power::Restart(200_000),
    Power::Twice(61_000),
    Power::Twice(85_000),
    Power::Crash(60_050),
    Power::Crash(80_000),
    Power::Crash(90_200),
    Power::Crash(170_000),
    Power::AgentRestart(60_030),
    Power::AgentRestart(60_070),
    Power::AgentRestart(60_090),
    Power::AgentRestart(75_000),
    Power::AgentRestart(95_000),
    Power::AgentRestart(150_000),
    Power::AgentRestart(185_000),
    Power::AgentCrash(60_050),
    Power::AgentCrash(80_000),
    Power::AgentCrash(120_000),
];

const BUILDS: [Option<BuildDefect>; 5] = [
    None,
    Some(BuildDefect::Corrupt),
    Some(BuildDefect::FailsSelfTest),
    Some(BuildDefect::NeverHeartbeats),
    Some(BuildDefect::CrashesOnStart),
];

fn pst1() -> Target {
    Target::Agent("pst-1".into())
}

fn spec(seed: u64, build: Option<BuildDefect>, power: Power) -> RunSpec {
    let agent = AgentSpec {
        name: "pst-1".into(),
        site: "pst".into(),
        version: "1.0.0".into(),
        switches: agent::AgentSwitches::FIXED,
        defect: None,
        install_at_start: true,
    };
    let at = |ms: u64, kind: ActionKind| ActionSpec {
        at: Duration::from_millis(ms),
        kind,
    };
    let mut actions = vec![at(
        60_000,
        ActionKind::Upgrade {
            agent: "pst-1".into(),
            to: "1.1.0".into(),
            defect: build,
        },
    )];
    match power {
        Power::None => {}
        Power::Restart(t) => actions.push(at(t, ActionKind::Restart(Target::Server))),
        Power::Twice(t) => {
            actions.push(at(t, ActionKind::Restart(Target::Server)));
            actions.push(at(t + 20_000, ActionKind::Restart(Target::Server)));
        }
        Power::Crash(t) => {
            actions.push(at(t, ActionKind::Crash(Target::Server)));
            actions.push(at(t + 5_000, ActionKind::Restart(Target::Server)));
        }
        Power::AgentRestart(t) => actions.push(at(t, ActionKind::Restart(pst1()))),
        Power::AgentCrash(t) => {
            actions.push(at(t, ActionKind::Crash(pst1())));
            actions.push(at(t + 5_000, ActionKind::Restart(pst1())));
        }
    }
    RunSpec::new(
        "upgrade-property",
        seed,
        Duration::from_secs(360),
        vec![agent],
        actions,
    )
}

/// The property; `Err` says what broke.
fn check(o: &serde_json::Value) -> Result<String, String> {
    let a = &o["agents"]["pst-1"];
    let u = &a["upgrade"];
    let running: Vec<&str> = u["running_versions"]
        .as_array()
        .ok_or("no running_versions")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let beating: Vec<&str> = u["heartbeating_versions"]
        .as_array()
        .ok_or("no heartbeating_versions")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let [version] = running[..] else {
        return Err(format!("{} versions run: {running:?}", running.len()));
    };
    if beating != [version] {
        return Err(format!("{version} runs, {beating:?} heartbeat"));
    }
    if a["version"] != version {
        return Err(format!(
            "{version} runs, the server's record says {}",
            a["version"]
        ));
    }
    let phase = u["phase"].as_str();
    let expected_phase = match (phase, version) {
        (Some("done"), "1.1.0") | (Some("reverted"), "1.0.0") => phase,
        // The request never reached the server's control loop (it restarted
        // in the same instant): no marker, nothing happened.
        (None, "1.0.0") => None,
        _ => return Err(format!("{version} runs, the record's phase is {phase:?}")),
    };
    if u["stops_sent"].as_u64() > Some(1) || u["stops_acted"].as_u64() > Some(1) {
        return Err(format!(
            "stops sent {}, acted on {}",
            u["stops_sent"], u["stops_acted"]
        ));
    }
    if !(u["active"].is_null() || u["active"] == version) {
        return Err(format!("{version} runs, `active` says {}", u["active"]));
    }
    if a["online"] != true {
        return Err(format!("{version} runs but the agent is not online"));
    }
    Ok(format!("{}:{version}", expected_phase.unwrap_or("none")))
}

#[test]
fn after_any_upgrade_and_restarts_exactly_one_version_runs_heartbeats_and_matches_the_record() {
    let started = Instant::now();
    let seeds = seeds();
    let jobs: Vec<(u64, Option<BuildDefect>, Power)> = (1..=seeds)
        .flat_map(|seed| {
            RESTART_POINTS
                .iter()
                .enumerate()
                .map(move |(i, p)| (seed, BUILDS[(seed as usize + i) % BUILDS.len()], *p))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<String, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(seed, build, power)) = jobs.get(i) else {
                    break;
                };
                let r = match sim::run::run(&spec(seed, build, power)) {
                    Ok(out) => check(&out.outcome),
                    Err(e) => Err(format!("run failed: {e}")),
                };
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut tally = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for (i, r) in &results {
        let (seed, build, power) = jobs[*i];
        match r {
            Ok(k) => {
                *tally
                    .entry(format!("{} -> {k}", build.map_or("sound", |b| b.name())))
                    .or_insert(0) += 1
            }
            Err(e) => failures.push(format!(
                "seed {seed}, build {:?}, {power:?}: {e}",
                build.map(|b| b.name())
            )),
        }
    }
    println!(
        "upgrade property: {} seeds x {} restart points = {} runs in {:.1} s; outcomes (build -> phase:version) {tally:#?}",
        seeds,
        RESTART_POINTS.len(),
        results.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(results.len(), jobs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The property is not vacuous: both ways out were taken.
    assert!(tally.keys().any(|k| k.ends_with("done:1.1.0")), "{tally:?}");
    assert!(
        tally.keys().any(|k| k.ends_with("reverted:1.0.0")),
        "{tally:?}"
    );
}

/// The check can fail: the legacy operator (stop on the agent's own word)
/// with a build that never heartbeats leaves one silent agent.
#[test]
fn the_property_fails_under_the_legacy_operator() {
    for (seed, power) in [(1, Power::None), (2, Power::Restart(75_000))] {
        let mut s = spec(seed, Some(BuildDefect::NeverHeartbeats), power);
        s.server_switches.operator_waits_for_new_heartbeat = false;
        let out = sim::run::run(&s).unwrap();
        let err = check(&out.outcome).unwrap_err();
        assert!(err.contains("heartbeat"), "seed {seed}: {err}");
    }
}

/// The agent's and the operator's phase changes in a shipped scenario:
/// (seconds, who, phase), who = `agent` or `server`.
fn phases(name: &str) -> Vec<(f64, &'static str, String)> {
    let sc = format::load(&sim::scenario::catalogue_dir().join(format!("{name}.toml"))).unwrap();
    let out = sim::run::run(&sim::scenario::resolve(&sc, None).unwrap()).unwrap();
    out.events
        .iter()
        .filter_map(|e| {
            let (who, key) = match e.event.as_str() {
                "upgrade.phase" => ("agent", "to"),
                "upgrade.operator_phase" => ("server", "phase"),
                _ => return None,
            };
            let at = e.fields["at_us"].as_u64()? as f64 / 1e6;
            Some((at, who, e.fields[key].as_str()?.to_string()))
        })
        .collect()
}

fn at(p: &[(f64, &'static str, String)], who: &str, phase: &str) -> f64 {
    p.iter()
        .find(|(_, w, ph)| *w == who && ph == phase)
        .unwrap_or_else(|| panic!("no {who} phase {phase} in {p:?}"))
        .0
}

#[test]
fn a_silent_new_version_is_reverted_two_minutes_after_the_cutover() {
    let p = phases("upgrade-new-never-heartbeats");
    let cutover = at(&p, "agent", "cutover-ready");
    let reverted = at(&p, "agent", "reverted");
    assert!((reverted - cutover - 120.0).abs() < 0.001, "{p:?}");
    // The operator records the revert as soon as the report arrives.
    assert!(at(&p, "server", "reverted") - reverted < 1.0, "{p:?}");
    assert!(
        p.iter().all(|(_, _, ph)| ph != "stopping"),
        "no stop: {p:?}"
    );
}

#[test]
fn the_stop_follows_the_new_versions_first_heartbeat_even_across_a_restart() {
    // Without a restart: the new version's first heartbeat comes one
    // interval (30 s) after it started; the stop and the old agent's done follow.
    let p = phases("upgrade-ok");
    let cutover = at(&p, "agent", "cutover-ready");
    let stop = at(&p, "server", "stopping");
    assert!((29.0..32.0).contains(&(stop - cutover)), "{p:?}");
    assert!(at(&p, "agent", "done") - stop < 0.5, "{p:?}");
    // With the operator restarted at 75 s: the heartbeat interval starts
    // again with the new session, so the stop comes later, still once.
    let p = phases("upgrade-operator-restart-mid-cutover");
    let stop = at(&p, "server", "stopping");
    assert!(stop > 75.0 + 29.0, "{p:?}");
    assert_eq!(p.iter().filter(|(_, _, ph)| ph == "stopping").count(), 1);
    assert!(at(&p, "agent", "done") > stop, "{p:?}");
}

/// The operator settles by observation only after every old agent that is
/// still alive has reverted on its own: its window must exceed the agent's
/// revert timeout by a heartbeat interval.
#[test]
fn the_operators_settle_window_outlasts_the_agents_revert_window() {
    let revert = agent::upgrade::UpgradePolicy::default().new_heartbeat_timeout_us;
    let heartbeat_us = server::ServerConfig::default().heartbeat_interval_ms * 1000;
    assert!(
        server::upgrade::ALONE_AFTER_US >= revert + heartbeat_us,
        "{} < {revert} + {heartbeat_us}",
        server::upgrade::ALONE_AFTER_US
    );
}

/// Regression (`UPGRADE_PROPERTY_SEEDS=40` found it): seed 40, a sound
/// build, the server restarted at 90.1 s. The operator sent the stop at
/// 90.095 s to both sessions; the restart lost it on the old agent's, only
/// the new agent got it (`upgrade.stop_received`, acted false). The new
/// version's session came back first (90.78 s), and the operator took "no
/// session of the old version" for "the old agent exited": done, while the
/// old agent, still armed, reverted at 180 s and 1.0.0 ran on.
#[test]
fn seed_40_a_sound_build_and_a_restart_at_90_1_s() {
    let out = sim::run::run(&spec(40, None, Power::Restart(90_100))).unwrap();
    let r = check(&out.outcome);
    if r.is_err() {
        for e in out
            .events
            .iter()
            .filter(|e| e.event.starts_with("upgrade."))
        {
            let fields = serde_json::Value::Object(e.fields.clone());
            println!("{:>10} {:<12} {:<28} {fields}", e.t_us, e.host, e.event);
        }
    }
    r.unwrap();
}
