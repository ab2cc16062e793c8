//! The server's redb store on the simulated disk: what a power loss keeps.
//!
//! Every write the store acknowledged survives a crash; a crash in the middle
//! of a sequence of writes leaves exactly a prefix of it (the write in flight
//! may or may not be in it), also when unsynced pages reach the medium in any
//! order, and also when the recovery itself is interrupted by another crash.

use std::collections::BTreeMap;

use server::store::{AgentRecord, CaRecord, CommandRecord, CommandStatus, Store};
use sim::disk::{CrashMode, SimDisk};

const PATH: &str = "server.redb";

fn agent(n: u64) -> AgentRecord {
    AgentRecord {
        agent_id: format!("agent-{n}"),
        name: format!("pst-server-{n}"),
        version: "0.6.63".into(),
        cert_fingerprint: format!("{n:064x}"),
        enrolled_at_us: n * 1_000,
        last_seen_us: Some(n * 2_000),
        revoked: false,
        agent_token_sha256: None,
    }
}

fn command(n: u64) -> CommandRecord {
    CommandRecord {
        command_id: format!("cmd-{n:04}"),
        agent_id: format!("agent-{}", n % 3),
        agent_name: format!("pst-server-{}", n % 3),
        command: format!("echo {}", "x".repeat(n as usize * 50)),
        status: if n.is_multiple_of(2) {
            CommandStatus::Acked
        } else {
            CommandStatus::Pending
        },
        attempts: n as u32,
        created_us: n,
        last_offer_us: Some(n + 1),
        acked_us: None,
        completed_us: None,
        exit_code: None,
        output: None,
    }
}

/// One store write of the workload.
#[derive(Clone, Copy, Debug)]
enum Op {
    Seq,
    Command(u64),
    Agent(u64),
}

/// A workload mixing every kind of write, with records overwritten.
fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for n in 1..=7 {
        ops.push(Op::Seq);
        ops.push(Op::Command(n));
        if n.is_multiple_of(3) {
            ops.push(Op::Agent(n % 4));
        }
    }
    ops
}

/// What the store holds: the last sequence number, commands and agents.
#[derive(Debug, Default, PartialEq)]
struct Model {
    seq: u64,
    commands: BTreeMap<String, CommandRecord>,
    agents: BTreeMap<String, AgentRecord>,
}

impl Model {
    fn after(ops: &[Op]) -> Model {
        let mut m = Model::default();
        for op in ops {
            match *op {
                Op::Seq => m.seq += 1,
                Op::Command(n) => {
                    let c = command(n);
                    m.commands.insert(c.command_id.clone(), c);
                }
                Op::Agent(n) => {
                    let a = agent(n);
                    m.agents.insert(a.agent_id.clone(), a);
                }
            }
        }
        m
    }

    /// Reads the store (consuming one sequence number to learn the last one).
    fn read(store: &Store) -> Model {
        Model {
            seq: store.next_command_seq().unwrap() - 1,
            commands: store
                .commands()
                .unwrap()
                .into_iter()
                .map(|c| (c.command_id.clone(), c))
                .collect(),
            agents: store
                .agents()
                .unwrap()
                .into_iter()
                .map(|a| (a.agent_id.clone(), a))
                .collect(),
        }
    }
}

fn apply(store: &Store, op: Op) -> Result<(), server::store::StoreError> {
    match op {
        Op::Seq => store.next_command_seq().map(drop),
        Op::Command(n) => store.put_command(&command(n)),
        Op::Agent(n) => store.put_agent(&agent(n)),
    }
}

#[test]
fn committed_records_survive_a_crash() {
    let disk = SimDisk::new();
    let store = Store::open(&disk, PATH).unwrap();
    let ca = CaRecord {
        cert_pem: "cert".into(),
        key_pem: "key".into(),
    };
    store.put_ca(&ca).unwrap();
    for n in 1..=3 {
        store.put_agent(&agent(n)).unwrap();
    }
    for n in 1..=5 {
        assert_eq!(store.next_command_seq().unwrap(), n);
        store.put_command(&command(n)).unwrap();
    }
    disk.crash();
    // The dead process's handles fail; dropping its store must not panic or write.
    let ops = disk.ops();
    drop(store);
    assert_eq!(disk.ops(), ops, "nothing written after the power loss");

    let store = Store::open(&disk, PATH).unwrap();
    assert_eq!(store.ca().unwrap(), Some(ca));
    assert_eq!(
        store.agents().unwrap(),
        (1..=3).map(agent).collect::<Vec<_>>()
    );
    assert_eq!(
        store.agent_by_cert(&agent(2).cert_fingerprint).unwrap(),
        Some(agent(2))
    );
    assert_eq!(
        store.commands().unwrap(),
        (1..=5).map(command).collect::<Vec<_>>()
    );
    // Sequence numbers are never handed out twice.
    assert_eq!(store.next_command_seq().unwrap(), 6);

    // A second crash after more writes, with torn unsynced pages this time.
    store.put_command(&command(6)).unwrap();
    disk.crash_with(CrashMode::Torn(7));
    drop(store);
    let store = Store::open(&disk, PATH).unwrap();
    assert_eq!(store.commands().unwrap().len(), 6);
    assert_eq!(store.next_command_seq().unwrap(), 7);
}

#[test]
fn a_restart_without_crash_keeps_everything() {
    let disk = SimDisk::new();
    let store = Store::open(&disk, PATH).unwrap();
    let ops = workload();
    for &op in &ops {
        apply(&store, op).unwrap();
    }
    drop(store); // clean shutdown
    disk.crash(); // then the power goes: a clean shutdown left nothing volatile
    let store = Store::open(&disk, PATH).unwrap();
    assert_eq!(Model::read(&store), Model::after(&ops));
}

/// Opens a store, arms a crash after `k` more disk operations, runs the
/// workload until a write fails, crashes (if the armed crash did not fire),
/// reopens and checks that the store holds a prefix of the workload that
/// contains every acknowledged write. Returns whether the armed crash fired.
fn crash_during_workload(base: &SimDisk, k: u64, mode: CrashMode) -> bool {
    let ops = workload();
    let disk = base.fork();
    let store = Store::open(&disk, PATH).unwrap();
    disk.crash_after(k, mode);
    let mut acked = 0;
    for &op in &ops {
        if apply(&store, op).is_err() {
            break;
        }
        acked += 1;
    }
    let fired = disk.crashes() == 1;
    assert_eq!(
        fired,
        acked < ops.len(),
        "k={k}: a write fails exactly when it crashes"
    );
    if !fired {
        disk.disarm();
        disk.crash_with(mode);
    }
    drop(store);

    let store = Store::open(&disk, PATH)
        .unwrap_or_else(|e| panic!("k={k} {mode:?}: reopen after the crash failed: {e}"));
    let found = Model::read(&store);
    let matches: Vec<usize> = (acked..=(acked + 1).min(ops.len()))
        .filter(|&m| found == Model::after(&ops[..m]))
        .collect();
    assert!(
        !matches.is_empty(),
        "k={k} {mode:?}: {acked} writes acknowledged, store holds {found:?}"
    );
    // The recovered store keeps working.
    store
        .put_ca(&CaRecord {
            cert_pem: "after".into(),
            key_pem: "recovery".into(),
        })
        .unwrap();
    drop(store);
    let store = Store::open(&disk, PATH).unwrap();
    assert_eq!(store.ca().unwrap().unwrap().cert_pem, "after");
    fired
}

#[test]
fn a_crash_at_any_point_of_many_writes_leaves_a_prefix() {
    for mode in [
        CrashMode::LoseUnsynced,
        CrashMode::Torn(1),
        CrashMode::Torn(2),
        CrashMode::Torn(3),
    ] {
        // Start every run from the same freshly created, cleanly closed store.
        let base = SimDisk::new();
        drop(Store::open(&base, PATH).unwrap());
        let mut k = 0;
        while crash_during_workload(&base, k, mode) {
            k += 1;
        }
        // Each of the workload's writes takes at least a page write and a sync.
        assert!(
            k as usize > 2 * workload().len(),
            "{mode:?}: only {k} crash points"
        );
    }
}

#[test]
fn a_crash_while_creating_the_store_leaves_an_empty_usable_one() {
    let mut k = 0;
    loop {
        let disk = SimDisk::new();
        disk.crash_after(k, CrashMode::Torn(k));
        let opened = Store::open(&disk, PATH);
        if disk.crashes() == 0 {
            assert!(opened.is_ok());
            break;
        }
        drop(opened);
        let store = Store::open(&disk, PATH)
            .unwrap_or_else(|e| panic!("k={k}: reopen after a crash during creation: {e}"));
        assert_eq!(store.commands().unwrap(), vec![]);
        assert_eq!(store.next_command_seq().unwrap(), 1);
        k += 1;
    }
    assert!(k > 2, "creating a store takes several disk operations");
}

#[test]
fn a_crash_during_recovery_loses_nothing_committed() {
    let ops = workload();
    let mut k = 0;
    loop {
        let disk = SimDisk::new();
        let store = Store::open(&disk, PATH).unwrap();
        for &op in &ops {
            apply(&store, op).unwrap();
        }
        disk.crash();
        drop(store);
        // Recovery (repair) writes to the disk: crash it part way through.
        disk.crash_after(k, CrashMode::Torn(k));
        let opened = Store::open(&disk, PATH);
        let fired = disk.crashes() == 2;
        drop(opened);
        if !fired {
            disk.disarm();
        }
        let store = Store::open(&disk, PATH)
            .unwrap_or_else(|e| panic!("k={k}: reopen after a crash during recovery: {e}"));
        assert_eq!(Model::read(&store), Model::after(&ops), "k={k}");
        if !fired {
            break;
        }
        k += 1;
    }
    assert!(k > 0, "recovery writes to the disk");
}
