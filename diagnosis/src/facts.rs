//! Indexes the two logs per agent and per server connection: the counts and
//! record numbers the rows and verdicts are decided from.

use std::collections::{BTreeMap, BTreeSet};

use records::frame::{Dir, EventRecord, FrameKind, FrameRecord, Stage};
use serde_json::Value;

use super::{ConnSummary, View, GRACE_US};

/// The part of the logs a view may read, with record numbers.
pub(crate) struct Log<'a> {
    /// Which view.
    pub view: View,
    /// `(record number, record)`, file order.
    pub frames: Vec<(usize, &'a FrameRecord)>,
    /// `(event line number, event)`, file order.
    pub events: Vec<(usize, &'a EventRecord)>,
    /// Latest `t_us` in the view: the end of the observation window.
    pub end_t: u64,
}

impl<'a> Log<'a> {
    /// Filters the logs for `view`.
    pub fn new(frames: &'a [FrameRecord], events: &'a [EventRecord], view: View) -> Self {
        let frames: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .filter(|(_, r)| view == View::Full || r.point == "server")
            .collect();
        let events: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (i + 1, e))
            .filter(|(_, e)| view == View::Full || e.host == "server")
            .collect();
        let end_t = frames
            .iter()
            .map(|(_, r)| r.t_us)
            .chain(events.iter().map(|(_, e)| e.t_us))
            .max()
            .unwrap_or(0);
        Log {
            view,
            frames,
            events,
            end_t,
        }
    }

    /// True when the log goes on for at least [`GRACE_US`] after `t`, so an
    /// answer that never came is missing, not merely not yet due.
    pub fn decided(&self, t: u64) -> bool {
        t.saturating_add(GRACE_US) <= self.end_t
    }
}

/// A Ping the server wrote.
#[derive(Clone, Debug)]
pub(crate) struct Ping {
    pub n: usize,
    pub t: u64,
    /// Record number of the first Pong that answered it.
    pub pong: Option<usize>,
}

/// A Pong the server read.
#[derive(Clone, Debug)]
pub(crate) struct Pong {
    pub n: usize,
    /// Record number of the Ping it answers, when one was written earlier on
    /// the same connection with its `ping_seq`.
    pub ping: Option<usize>,
}

/// A server `tx` record of a `Command` Text.
#[derive(Clone, Debug)]
pub(crate) struct Cmd {
    pub n: usize,
    pub t: u64,
    pub stage: Stage,
    pub id: String,
}

/// One server connection of an agent.
#[derive(Clone, Debug, Default)]
pub(crate) struct Conn {
    pub id: String,
    pub first_n: usize,
    pub first_t: u64,
    pub pings: Vec<Ping>,
    pub pongs: Vec<Pong>,
    /// `(record, t)` of Heartbeats read.
    pub heartbeats: Vec<(usize, u64)>,
    pub cmds: Vec<Cmd>,
    /// `(record, t, command_id)` of CommandAcks read.
    pub acks: Vec<(usize, u64, String)>,
    /// Last Ping written per `ping_seq`: index into `pings`.
    seqs: BTreeMap<u64, usize>,
}

impl Conn {
    /// The counts of [`ConnSummary`], with this connection's row.
    pub fn summary(&self, row: Option<u8>) -> ConnSummary {
        let stage = |s: Stage| self.cmds.iter().filter(|c| c.stage == s).count();
        ConnSummary {
            conn: self.id.clone(),
            first_record: self.first_n,
            pings_written: self.pings.len(),
            pongs_matched: self.pongs.iter().filter(|p| p.ping.is_some()).count(),
            pongs_unmatched: self.pongs.iter().filter(|p| p.ping.is_none()).count(),
            heartbeats: self.heartbeats.len(),
            commands_enqueued: stage(Stage::Enqueued),
            commands_written: stage(Stage::Written),
            command_write_errors: stage(Stage::WriteError),
            acks: self.acks.len(),
            row,
        }
    }

    /// `(ping, pong)` record numbers of every answered Ping, in order.
    pub fn answered(&self) -> Vec<(usize, usize)> {
        self.pings
            .iter()
            .filter_map(|p| p.pong.map(|q| (p.n, q)))
            .collect()
    }
}

/// Where an agent's site came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Site {
    pub name: String,
    /// The event that named it, if any.
    pub events: Vec<usize>,
    /// The path records that tied it, if any.
    pub records: Vec<usize>,
}

/// Everything the engine knows about one agent in one view.
#[derive(Clone, Debug, Default)]
pub(crate) struct Agent {
    pub name: String,
    /// Server connections, in order of first record.
    pub conns: Vec<Conn>,
    /// `(record, t, conn index)` of every Heartbeat read by the server.
    pub heartbeats: Vec<(usize, u64, usize)>,
    /// Commands sent to the agent: first server `tx` record and its time.
    pub commands: BTreeMap<String, (usize, u64)>,
    /// Acked commands: the server's CommandAck reads `(record, t)`.
    pub acked: BTreeMap<String, Vec<(usize, u64)>>,
    /// Commands never acked although the log goes on long enough after them.
    pub unacked: BTreeSet<String>,
    /// `registry.evicted` events: `(event number, t)`.
    pub evictions: Vec<(usize, u64)>,
    pub site: Option<Site>,
    /// The agent's own point logged something (full view).
    pub has_point: bool,
    /// Agent point: Command Texts read, by command id.
    pub reads: BTreeMap<String, Vec<usize>>,
    /// Agent point: CommandAcks written, by command id.
    pub ack_writes: BTreeMap<String, Vec<usize>>,
    /// Agent point: Texts read whose `msg` is missing (did not parse as JSON
    /// with a `type`) or that a `channel.bad_message` event followed.
    pub bad_reads: Vec<usize>,
    /// Agent point: Texts read whose `msg` is missing, `(record, t)`.
    pub untyped_reads: Vec<(usize, u64)>,
    /// Agent `channel.bad_message` events about a Command (or unknown) Text.
    pub bad_events: Vec<usize>,
    /// Path points: Command Texts dropped / passed, by command id.
    pub dropped: BTreeMap<String, Vec<usize>>,
    pub passed: BTreeMap<String, Vec<usize>>,
    /// Path points that carried this agent's frames, with the first record.
    pub paths: BTreeMap<String, usize>,
    /// Connection id -> index into `conns`.
    conn_ix: BTreeMap<String, usize>,
}

impl Agent {
    /// Server records of `Command` Texts written (socket write completed)
    /// for unacked commands, by command id.
    pub fn unacked_written(&self) -> BTreeMap<String, Vec<usize>> {
        let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for c in self.conns.iter().flat_map(|c| &c.cmds) {
            if c.stage == Stage::Written && self.unacked.contains(&c.id) {
                out.entry(c.id.clone()).or_default().push(c.n);
            }
        }
        out
    }

    /// Every server `tx` record of an unacked Command.
    pub fn unacked_tx(&self) -> Vec<usize> {
        self.conns
            .iter()
            .flat_map(|c| &c.cmds)
            .filter(|c| self.unacked.contains(&c.id))
            .map(|c| c.n)
            .collect()
    }

    /// Every server CommandAck read of this agent.
    pub fn ack_records(&self) -> Vec<usize> {
        self.acked.values().flatten().map(|(n, _)| *n).collect()
    }

    fn conn_index(&mut self, id: &str, n: usize, t: u64) -> usize {
        if let Some(&i) = self.conn_ix.get(id) {
            return i;
        }
        self.conns.push(Conn {
            id: id.to_string(),
            first_n: n,
            first_t: t,
            ..Conn::default()
        });
        self.conn_ix.insert(id.to_string(), self.conns.len() - 1);
        self.conns.len() - 1
    }
}

fn is_text(r: &FrameRecord, dir: Dir, stage: Stage, msg: &str) -> bool {
    r.frame == FrameKind::Text && r.dir == dir && r.stage == stage && r.msg.as_deref() == Some(msg)
}

fn agent_name(peer: &str) -> Option<&str> {
    (!peer.is_empty() && peer != "?" && peer != "server").then_some(peer)
}

// The agent named `name`, added when new (no key allocated for one known).
fn entry<'m>(agents: &'m mut BTreeMap<String, Agent>, name: &str) -> &'m mut Agent {
    if !agents.contains_key(name) {
        agents.insert(
            name.to_string(),
            Agent {
                name: name.to_string(),
                ..Agent::default()
            },
        );
    }
    agents.get_mut(name).expect("just added")
}

/// Builds the per-agent facts of a view, keyed (and so sorted) by name.
pub(crate) fn agents(log: &Log<'_>) -> BTreeMap<String, Agent> {
    let mut agents: BTreeMap<String, Agent> = BTreeMap::new();
    // Which agent each command was sent to (server records, then agent reads).
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    // Agent point: every Text read, for tying `channel.bad_message` events.
    let mut text_reads: BTreeMap<String, Vec<(usize, u64, Option<String>)>> = BTreeMap::new();

    for &(n, r) in &log.frames {
        if r.point == "server" {
            let Some(name) = agent_name(&r.peer) else {
                continue;
            };
            let a = entry(&mut agents, name);
            if r.frame == FrameKind::Quic {
                continue; // the tunnel, not the command channel
            }
            let ci = a.conn_index(&r.conn, n, r.t_us);
            let c = &mut a.conns[ci];
            match (r.frame, r.dir, r.stage) {
                (FrameKind::Ping, Dir::Tx, Stage::Written) => {
                    if let Some(seq) = r.ping_seq {
                        c.seqs.insert(seq, c.pings.len());
                    }
                    c.pings.push(Ping {
                        n,
                        t: r.t_us,
                        pong: None,
                    });
                }
                (FrameKind::Pong, Dir::Rx, Stage::Read) => {
                    let i = r.ping_seq.and_then(|s| c.seqs.get(&s).copied());
                    let ping = i.map(|i| {
                        let p = &mut c.pings[i];
                        p.pong.get_or_insert(n);
                        p.n
                    });
                    c.pongs.push(Pong { n, ping });
                }
                (FrameKind::Text, Dir::Rx, Stage::Read) => match r.msg.as_deref() {
                    Some("Heartbeat") => {
                        c.heartbeats.push((n, r.t_us));
                        a.heartbeats.push((n, r.t_us, ci));
                    }
                    Some("CommandAck") => {
                        if let Some(id) = &r.command_id {
                            c.acks.push((n, r.t_us, id.to_string()));
                            a.acked.entry(id.to_string()).or_default().push((n, r.t_us));
                        }
                    }
                    _ => {}
                },
                (
                    FrameKind::Text,
                    Dir::Tx,
                    stage @ (Stage::Enqueued | Stage::Written | Stage::WriteError),
                ) if r.msg.as_deref() == Some("Command") => {
                    if let Some(id) = &r.command_id {
                        c.cmds.push(Cmd {
                            n,
                            t: r.t_us,
                            stage,
                            id: id.to_string(),
                        });
                        a.commands.entry(id.to_string()).or_insert((n, r.t_us));
                        owner
                            .entry(id.to_string())
                            .or_insert_with(|| name.to_string());
                    }
                }
                _ => {}
            }
        } else if let Some(name) = r.point.strip_prefix("agent:") {
            let a = entry(&mut agents, name);
            a.has_point = true;
            if r.frame == FrameKind::Text && r.dir == Dir::Rx && r.stage == Stage::Read {
                match text_reads.get_mut(name) {
                    Some(v) => v.push((n, r.t_us, r.msg.as_deref().map(String::from))),
                    None => {
                        text_reads.insert(
                            name.to_string(),
                            vec![(n, r.t_us, r.msg.as_deref().map(String::from))],
                        );
                    }
                }
                match (&r.msg, &r.command_id) {
                    (None, _) => {
                        a.bad_reads.push(n);
                        a.untyped_reads.push((n, r.t_us));
                    }
                    (Some(m), Some(id)) if m == "Command" => {
                        a.reads.entry(id.to_string()).or_default().push(n);
                        owner
                            .entry(id.to_string())
                            .or_insert_with(|| name.to_string());
                    }
                    _ => {}
                }
            } else if is_text(r, Dir::Tx, Stage::Written, "CommandAck") {
                if let Some(id) = &r.command_id {
                    a.ack_writes.entry(id.to_string()).or_default().push(n);
                }
            }
        }
    }

    // Path points: a record belongs to the agent named by `peer`, else to the
    // agent its `command_id` was sent to.
    for &(n, r) in &log.frames {
        if !r.point.starts_with("path:") {
            continue;
        }
        let by_peer = agent_name(&r.peer).filter(|p| agents.contains_key(*p));
        let by_cmd = r.command_id.as_ref().and_then(|id| owner.get(id.as_str()));
        let Some(name) = by_peer.or(by_cmd.map(String::as_str)) else {
            continue;
        };
        let a = agents.get_mut(name).expect("owner is a known agent");
        a.paths.entry(r.point.to_string()).or_insert(n);
        if r.frame == FrameKind::Text && r.msg.as_deref() == Some("Command") {
            if let Some(id) = &r.command_id {
                match r.stage {
                    Stage::Dropped => a.dropped.entry(id.to_string()).or_default().push(n),
                    Stage::Passed => a.passed.entry(id.to_string()).or_default().push(n),
                    _ => {}
                }
            }
        }
    }

    for &(en, e) in &log.events {
        let field = |k: &str| e.fields.get(k).and_then(Value::as_str);
        let subject = field("agent").or_else(|| e.host.strip_prefix("agent:"));
        let Some(name) = subject else { continue };
        let Some(a) = agents.get_mut(name) else {
            continue;
        };
        if e.event == "registry.evicted" {
            a.evictions.push((en, e.t_us));
        }
        if let Some(site) = field("site") {
            if a.site.is_none() {
                a.site = Some(Site {
                    name: site.to_string(),
                    events: vec![en],
                    records: Vec::new(),
                });
            }
        }
        if e.event == "channel.bad_message" && e.host.strip_prefix("agent:") == Some(name) {
            // Tie it to the agent's latest Text read at or before it.
            let read = text_reads
                .get(name)
                .and_then(|v| v.iter().rev().find(|(_, t, _)| *t <= e.t_us));
            match read {
                Some((rn, _, msg)) if msg.is_none() || msg.as_deref() == Some("Command") => {
                    a.bad_events.push(en);
                    if !a.bad_reads.contains(rn) {
                        a.bad_reads.push(*rn);
                    }
                }
                Some(_) => {} // about another message (e.g. ConfigUpdate)
                None => a.bad_events.push(en),
            }
        }
    }

    path_sites(&mut agents);

    for a in agents.values_mut() {
        a.bad_reads.sort_unstable();
        let unacked: BTreeSet<String> = a
            .commands
            .iter()
            .filter(|(id, (_, t))| !a.acked.contains_key(*id) && log.decided(*t))
            .map(|(id, _)| id.clone())
            .collect();
        a.unacked = unacked;
    }
    agents
}

/// Agents without a site from an event, whose `path:<name>` points are
/// shared (transitively), form one site named after the smallest such point.
fn path_sites(agents: &mut BTreeMap<String, Agent>) {
    let names: Vec<String> = agents
        .iter()
        .filter(|(_, a)| a.site.is_none() && !a.paths.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    let mut group: BTreeMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    // Union by repeated relabelling: tiny sets, deterministic.
    loop {
        let mut changed = false;
        for x in &names {
            for y in &names {
                let (gx, gy) = (group[x], group[y]);
                if gx != gy
                    && agents[x]
                        .paths
                        .keys()
                        .any(|p| agents[y].paths.contains_key(p))
                {
                    let (lo, hi) = (gx.min(gy), gx.max(gy));
                    for g in group.values_mut() {
                        if *g == hi {
                            *g = lo;
                        }
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut members: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (n, g) in &group {
        members.entry(*g).or_default().push(n.clone());
    }
    for names in members.values() {
        let point = names
            .iter()
            .flat_map(|n| agents[n].paths.keys())
            .min()
            .cloned()
            .unwrap_or_default();
        for n in names {
            let a = agents.get_mut(n).expect("known agent");
            let records = a.paths.values().copied().min().into_iter().collect();
            a.site = Some(Site {
                name: point.clone(),
                events: Vec::new(),
                records,
            });
        }
    }
}
