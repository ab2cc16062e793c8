//! The path's faults: a firewall between the server and sites or single
//! agents that judges every packet (TCP segments of [`crate::tcp`], QUIC's
//! UDP datagrams), by protocol, port and direction, for a window of
//! simulated time. Block rules come first; then each other packet fault is
//! one value implementing [`PacketFault`] (half-open, drop-payload, loss,
//! partition), installed with [`Firewall::with_faults`].
//!
//! A path's faults cannot act on whole host pairs: a site host holds
//! many agents, so packets are placed by address and by the port each
//! agent's socket registered. Nothing tells either side: a lost packet is
//! just lost and TCP's retransmissions decide what follows; a rejected TCP
//! segment is answered by an RST.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use format::scenario::{BlockAction, Direction, Endpoint, Proto};

/// One side of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Party {
    /// The server host.
    Server,
    /// An agent, with its site.
    Agent {
        /// Agent name.
        name: String,
        /// Its site.
        site: String,
    },
    /// Something the firewall cannot place (no rule matches it).
    Unknown,
}

/// A `block` fault, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRule {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Blocked protocol.
    pub proto: Proto,
    /// Blocked port (source or destination); `None`: every port.
    pub port: Option<u16>,
    /// Which way.
    pub direction: Direction,
    /// Drop silently or reject.
    pub action: BlockAction,
    /// In force from (inclusive).
    pub from: Duration,
    /// In force until (exclusive); `None`: to the end.
    pub until: Option<Duration>,
}

/// What a `latency`, `jitter` or `partition` fault does to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkShape {
    /// Every packet takes exactly this long, one way.
    Latency(Duration),
    /// Packets take up to this much longer than the path's least delay.
    Jitter(Duration),
    /// Nothing gets through while in force: every packet is lost, TCP
    /// retransmits (established streams stall and resume intact when the
    /// partition ends, new connects retry their SYNs) and the applications'
    /// own timeouts decide the rest.
    Partition,
}

/// A `latency`, `jitter` or `partition` fault, resolved: it shapes the
/// links between one site's host and the server's side (the server and the
/// reverse proxy), both ways, for every protocol. The world delays each
/// message by a time drawn between a least and a largest delay; the run's
/// own path is 1 to 20 ms ([`DEFAULT_DELAY`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkRule {
    /// The site whose path it shapes.
    pub site: String,
    /// How.
    pub shape: LinkShape,
    /// In force from.
    pub from: Duration,
    /// In force until (exclusive); `None` = to the end.
    pub until: Option<Duration>,
}

/// The least and largest one-way delay of a path no fault shapes.
pub const DEFAULT_DELAY: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_millis(20));

impl LinkRule {
    fn in_force(&self, now: Duration) -> bool {
        now >= self.from && self.until.is_none_or(|u| now < u)
    }
}

/// The (least, largest) one-way delay of `site`'s path at `now`: the
/// default, then each rule in force in order. A latency fixes both at its
/// value; a jitter lets the delay reach its amount above the least.
pub fn link_delay(rules: &[LinkRule], site: &str, now: Duration) -> (Duration, Duration) {
    let mut d = DEFAULT_DELAY;
    for r in rules.iter().filter(|r| r.site == site && r.in_force(now)) {
        d = match r.shape {
            LinkShape::Latency(v) => (v, v),
            LinkShape::Jitter(j) => (d.0, d.0 + j),
            LinkShape::Partition => d,
        };
    }
    d
}

/// Whether a `partition` of `site`'s path is in force at `now`.
pub fn link_held(rules: &[LinkRule], site: &str, now: Duration) -> bool {
    rules
        .iter()
        .any(|r| r.site == site && r.shape == LinkShape::Partition && r.in_force(now))
}

/// A `half-open` fault, resolved: while in force, bytes of the agents' TCP
/// streams (command channel, enrollment) going one way are silently lost,
/// FIN included; the other way keeps working and neither side is told.
#[derive(Clone, Debug, PartialEq)]
pub struct HalfOpenRule {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// The direction that stops (`a->b` or `b->a`).
    pub direction: Direction,
    /// Only packets to or from this port; `None`: every packet.
    pub port: Option<u16>,
    /// In force from (inclusive).
    pub from: Duration,
    /// In force until (exclusive); `None`: to the end.
    pub until: Option<Duration>,
}

fn matches(e: &Endpoint, p: &Party) -> bool {
    match (e, p) {
        (Endpoint::Server, Party::Server) => true,
        (Endpoint::Site(s), Party::Agent { site, .. }) => s == site,
        (Endpoint::Agent(n), Party::Agent { name, .. }) => n == name,
        _ => false,
    }
}

impl BlockRule {
    fn active(&self, now: Duration) -> bool {
        self.from <= now && self.until.is_none_or(|u| now < u)
    }

    fn applies(
        &self,
        proto: Proto,
        src: &Party,
        dst: &Party,
        src_port: u16,
        dst_port: u16,
    ) -> bool {
        if self.proto != proto {
            return false;
        }
        if let Some(p) = self.port {
            if p != src_port && p != dst_port {
                return false;
            }
        }
        let a_to_b = matches(&self.a, src) && matches(&self.b, dst);
        let b_to_a = matches(&self.b, src) && matches(&self.a, dst);
        match self.direction {
            Direction::Both => a_to_b || b_to_a,
            Direction::AToB => a_to_b,
            Direction::BToA => b_to_a,
        }
    }
}

/// The firewall of one run: rules plus what it needs to place addresses.
#[derive(Debug, Default)]
pub struct Firewall {
    rules: Vec<BlockRule>,
    addresses: std::sync::OnceLock<(Vec<IpAddr>, BTreeMap<IpAddr, String>)>,
    agent_sites: BTreeMap<String, String>,
    // (protocol, site, port) -> agent whose socket it is, registered by the
    // seam at bind, listen and connect time.
    port_owners: Mutex<BTreeMap<(Proto, String, u16), String>>,
    // Packet faults beyond the block rules (half-open, drop-payload, loss,
    // partition): each one value that judges packets.
    faults: Vec<Box<dyn PacketFault>>,
}

impl Firewall {
    /// A firewall with these rules; `agent_sites` maps every agent to its site.
    pub fn new(rules: Vec<BlockRule>, agent_sites: BTreeMap<String, String>) -> Self {
        Firewall {
            rules,
            agent_sites,
            ..Firewall::default()
        }
    }

    /// The same firewall with half-open paths.
    pub fn with_half_open(mut self, rules: Vec<HalfOpenRule>) -> Self {
        for r in rules {
            self.faults.push(Box::new(r));
        }
        self
    }

    /// The same firewall with more packet faults (drop-payload, loss, partition).
    pub fn with_faults(mut self, faults: Vec<Box<dyn PacketFault>>) -> Self {
        self.faults.extend(faults);
        self
    }

    /// Tells the firewall the hosts' addresses (known once the sim has its
    /// hosts); the first call wins.
    /// `server_ips` are the gateway's hosts (the server and the reverse
    /// proxy in front of it): rules naming `server` cover them all.
    pub fn set_addresses(&self, server_ips: Vec<IpAddr>, site_ips: BTreeMap<IpAddr, String>) {
        let _ = self.addresses.set((server_ips, site_ips));
    }

    /// Whether any rule exists (the seam skips all work otherwise).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.faults.is_empty()
    }

    /// The party that owns a socket labelled `owner`.
    pub fn party_of_owner(&self, owner: &str) -> Party {
        if owner == "server" {
            return Party::Server;
        }
        match self.agent_sites.get(owner) {
            Some(site) => Party::Agent {
                name: owner.into(),
                site: site.clone(),
            },
            None => Party::Unknown,
        }
    }

    /// Records that `owner`'s socket has `proto` `port` on the host at
    /// `ip` (so packets to and from it can be placed); only agents' count.
    pub fn register_port(&self, proto: Proto, ip: IpAddr, port: u16, owner: &str) {
        let Some(site) = self.agent_sites.get(owner) else {
            return;
        };
        if let Some((_, site_ips)) = self.addresses.get() {
            if site_ips.get(&ip).is_some_and(|s| s != site) {
                return;
            }
        }
        self.port_owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((proto, site.clone(), port), owner.to_string());
    }

    /// Records that agent `owner` bound UDP `port` (so replies to it can be placed).
    pub fn register_udp(&self, owner: &str, port: u16) {
        if let Some(site) = self.agent_sites.get(owner) {
            self.port_owners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((Proto::Udp, site.clone(), port), owner.to_string());
        }
    }

    /// The party at an address, for a packet of `proto`.
    pub fn party_at(&self, proto: Proto, addr: SocketAddr) -> Party {
        let Some((server_ips, site_ips)) = self.addresses.get() else {
            return Party::Unknown;
        };
        if server_ips.contains(&addr.ip()) {
            return Party::Server;
        }
        let Some(site) = site_ips.get(&addr.ip()) else {
            return Party::Unknown;
        };
        let owners = self.port_owners.lock().unwrap_or_else(|e| e.into_inner());
        match owners.get(&(proto, site.clone(), addr.port())) {
            Some(name) => Party::Agent {
                name: name.clone(),
                site: site.clone(),
            },
            // A site address without a known socket: match site-wide rules only.
            None => Party::Agent {
                name: String::new(),
                site: site.clone(),
            },
        }
    }

    /// The action of the first rule in force that covers this packet.
    pub fn verdict(
        &self,
        proto: Proto,
        src: &Party,
        dst: &Party,
        src_port: u16,
        dst_port: u16,
        now: Duration,
    ) -> Option<BlockAction> {
        self.rules
            .iter()
            .find(|r| r.active(now) && r.applies(proto, src, dst, src_port, dst_port))
            .map(|r| r.action)
    }

    /// What the path does to `packet` at `now`: the first block rule in
    /// force that covers it, else the first packet fault that acts on it.
    pub fn judge(&self, packet: &Packet, now: Duration) -> Verdict {
        if let Some(action) = self.verdict(
            packet.proto,
            &packet.src,
            &packet.dst,
            packet.src_port,
            packet.dst_port,
            now,
        ) {
            return match action {
                BlockAction::Drop => Verdict::Drop,
                BlockAction::Reject => Verdict::Reject,
            };
        }
        self.faults
            .iter()
            .map(|f| f.judge(packet, now))
            .find(|v| *v != Verdict::Pass)
            .unwrap_or(Verdict::Pass)
    }
}
/// One packet on the path, as the firewall sees it.
#[derive(Clone, Debug)]
pub struct Packet {
    /// TCP or UDP.
    pub proto: Proto,
    /// Who sent it.
    pub src: Party,
    /// Who it is for.
    pub dst: Party,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Bytes of payload (TCP data, or the UDP datagram).
    pub payload_len: usize,
    /// A TCP segment with nothing but the ACK flag and no data.
    pub pure_ack: bool,
}

/// What the path does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It goes on.
    Pass,
    /// It is lost.
    Drop,
    /// It is lost and the sender told so (a TCP RST; UDP: lost, as quinn ignores ICMP).
    Reject,
}

/// A fault that acts on packets: one value, installed in the [`Firewall`].
pub trait PacketFault: Send + Sync + std::fmt::Debug {
    /// What it does to `packet` at `now` (`Pass` when it does not touch it).
    fn judge(&self, packet: &Packet, now: Duration) -> Verdict;
}

fn in_window(from: Duration, until: Option<Duration>, now: Duration) -> bool {
    from <= now && until.is_none_or(|u| now < u)
}

fn on_port(port: Option<u16>, p: &Packet) -> bool {
    port.is_none_or(|port| port == p.src_port || port == p.dst_port)
}

fn goes(a: &Endpoint, b: &Endpoint, direction: Direction, p: &Packet) -> bool {
    let a_to_b = matches(a, &p.src) && matches(b, &p.dst);
    let b_to_a = matches(b, &p.src) && matches(a, &p.dst);
    match direction {
        Direction::Both => a_to_b || b_to_a,
        Direction::AToB => a_to_b,
        Direction::BToA => b_to_a,
    }
}

impl PacketFault for HalfOpenRule {
    // Every packet of the stopped direction is lost, TCP's ACKs and FINs
    // and UDP alike: what one-way loss is on a real path.
    fn judge(&self, p: &Packet, now: Duration) -> Verdict {
        if in_window(self.from, self.until, now)
            && on_port(self.port, p)
            && goes(&self.a, &self.b, self.direction, p)
        {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// A `drop-payload` fault: a middlebox that drops TCP segments carrying data
/// one way and passes pure ACKs, SYNs and FINs (the nft rule `ip length > 52 drop`).
#[derive(Clone, Debug, PartialEq)]
pub struct DropPayloadRule {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// The direction whose payload is lost.
    pub direction: Direction,
    /// Only segments to or from this port; `None`: every segment.
    pub port: Option<u16>,
    /// In force from.
    pub from: Duration,
    /// In force until (exclusive).
    pub until: Option<Duration>,
}

impl PacketFault for DropPayloadRule {
    fn judge(&self, p: &Packet, now: Duration) -> Verdict {
        let hit = p.proto == Proto::Tcp
            && p.payload_len > 0
            && on_port(self.port, p)
            && in_window(self.from, self.until, now)
            && goes(&self.a, &self.b, self.direction, p);
        if hit {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// A `partition` fault: nothing passes between a site and the server's side.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionRule {
    /// The site cut off.
    pub site: String,
    /// In force from.
    pub from: Duration,
    /// In force until (exclusive).
    pub until: Option<Duration>,
}

impl PacketFault for PartitionRule {
    fn judge(&self, p: &Packet, now: Duration) -> Verdict {
        let site = Endpoint::Site(self.site.clone());
        if in_window(self.from, self.until, now)
            && goes(&site, &Endpoint::Server, Direction::Both, p)
        {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// A `loss` fault: packets on the path are lost at random, each with
/// probability `rate`, or in bursts (a Gilbert-Elliott channel whose bad
/// state loses every packet and lasts `burst` packets on average, entered
/// so that the long-run loss is still `rate`).
#[derive(Debug)]
pub struct LossRule {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Long-run fraction of packets lost.
    pub rate: f64,
    /// Mean burst length in packets; 1 or less: independent losses.
    pub burst: f64,
    /// In force from.
    pub from: Duration,
    /// In force until (exclusive).
    pub until: Option<Duration>,
    // The seeded generator and whether the channel is in its bad state.
    state: Mutex<(rand_chacha::ChaCha8Rng, bool)>,
}

impl LossRule {
    /// A loss rule drawing from `seed`.
    pub fn new(
        a: Endpoint,
        b: Endpoint,
        rate: f64,
        burst: f64,
        window: (Duration, Option<Duration>),
        seed: u64,
    ) -> LossRule {
        use rand_chacha::rand_core::SeedableRng;
        LossRule {
            a,
            b,
            rate: rate.clamp(0.0, 1.0),
            burst,
            from: window.0,
            until: window.1,
            state: Mutex::new((rand_chacha::ChaCha8Rng::seed_from_u64(seed), false)),
        }
    }
}

impl PacketFault for LossRule {
    fn judge(&self, p: &Packet, now: Duration) -> Verdict {
        use rand_chacha::rand_core::RngCore;
        if !in_window(self.from, self.until, now) || !goes(&self.a, &self.b, Direction::Both, p) {
            return Verdict::Pass;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (rng, bad) = &mut *st;
        let mut draw = || f64::from(rng.next_u32()) / (f64::from(u32::MAX) + 1.0);
        let lost = if self.burst <= 1.0 {
            draw() < self.rate
        } else {
            // Leave the bad state with 1/burst; enter it so that the
            // stationary share of bad packets is `rate`.
            let leave = 1.0 / self.burst;
            let enter = if self.rate >= 1.0 {
                1.0
            } else {
                (self.rate * leave / (1.0 - self.rate)).min(1.0)
            };
            *bad = if *bad {
                draw() >= leave
            } else {
                draw() < enter
            };
            *bad
        };
        if lost {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, site: &str) -> Party {
        Party::Agent {
            name: name.into(),
            site: site.into(),
        }
    }

    fn rule(direction: Direction, from: u64, until: Option<u64>) -> BlockRule {
        BlockRule {
            a: Endpoint::Site("pst".into()),
            b: Endpoint::Server,
            proto: Proto::Udp,
            port: Some(4433),
            direction,
            action: BlockAction::Drop,
            from: Duration::from_secs(from),
            until: until.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_site_rule_blocks_its_agents_by_port_and_direction_only() {
        let fw = Firewall::new(vec![rule(Direction::AToB, 0, None)], BTreeMap::new());
        let t = Duration::from_secs(1);
        let (pst, nyc) = (agent("pst-1", "pst"), agent("nyc-1", "nyc"));
        let s = Party::Server;
        assert_eq!(
            fw.verdict(Proto::Udp, &pst, &s, 50000, 4433, t),
            Some(BlockAction::Drop)
        );
        assert_eq!(
            fw.verdict(Proto::Udp, &s, &pst, 4433, 50000, t),
            None,
            "a->b only"
        );
        assert_eq!(
            fw.verdict(Proto::Udp, &nyc, &s, 50000, 4433, t),
            None,
            "other site"
        );
        assert_eq!(
            fw.verdict(Proto::Tcp, &pst, &s, 50000, 4433, t),
            None,
            "other protocol"
        );
        assert_eq!(
            fw.verdict(Proto::Udp, &pst, &s, 50000, 7171, t),
            None,
            "other port"
        );
    }

    #[test]
    fn a_half_open_rule_stops_one_direction_of_its_agents_in_its_window() {
        let rule = HalfOpenRule {
            a: Endpoint::Site("pst".into()),
            b: Endpoint::Server,
            direction: Direction::BToA,
            port: None,
            from: Duration::from_secs(60),
            until: None,
        };
        let fw = Firewall::new(
            Vec::new(),
            BTreeMap::from([
                ("pst-1".into(), "pst".into()),
                ("nyc-1".into(), "nyc".into()),
            ]),
        )
        .with_half_open(vec![rule.clone()]);
        assert!(!fw.is_empty());
        let packet = |src: Party, dst: Party| Packet {
            proto: Proto::Tcp,
            src,
            dst,
            src_port: 8443,
            dst_port: 40000,
            payload_len: 0,
            pure_ack: true,
        };
        let (p, n, s) = (agent("pst-1", "pst"), agent("nyc-1", "nyc"), Party::Server);
        let at = Duration::from_secs;
        let judge =
            |src: &Party, dst: &Party, t| fw.judge(&packet(src.clone(), dst.clone()), at(t));
        assert_eq!(
            judge(&s, &p, 60),
            Verdict::Drop,
            "server->site stops, ACKs too"
        );
        assert_eq!(
            judge(&p, &s, 60),
            Verdict::Pass,
            "site->server keeps working"
        );
        assert_eq!(judge(&s, &p, 59), Verdict::Pass, "not before `from`");
        assert_eq!(judge(&s, &n, 60), Verdict::Pass, "another site");
    }

    #[test]
    fn a_half_open_with_a_port_loses_only_that_ports_packets() {
        let rule = HalfOpenRule {
            a: Endpoint::Server,
            b: Endpoint::Site("pst".into()),
            direction: Direction::AToB,
            port: Some(8443),
            from: Duration::ZERO,
            until: None,
        };
        let packet = |src_port, dst_port| Packet {
            proto: Proto::Tcp,
            src: Party::Server,
            dst: agent("pst-1", "pst"),
            src_port,
            dst_port,
            payload_len: 0,
            pure_ack: true,
        };
        let t = Duration::from_secs(1);
        assert_eq!(rule.judge(&packet(8443, 40000), t), Verdict::Drop);
        assert_eq!(
            rule.judge(&packet(7171, 40000), t),
            Verdict::Pass,
            "check-ins pass"
        );
        let mut back = packet(40000, 8443);
        std::mem::swap(&mut back.src, &mut back.dst);
        assert_eq!(rule.judge(&back, t), Verdict::Pass, "the other direction");
    }

    #[test]
    fn windows_and_when_a_block_lifts() {
        let fw = Firewall::new(
            vec![
                rule(Direction::Both, 10, Some(20)),
                rule(Direction::Both, 20, Some(30)),
            ],
            BTreeMap::new(),
        );
        let (p, s) = (agent("pst-1", "pst"), Party::Server);
        let at = Duration::from_secs;
        assert_eq!(fw.verdict(Proto::Udp, &p, &s, 1, 4433, at(9)), None);
        assert!(fw.verdict(Proto::Udp, &s, &p, 4433, 1, at(10)).is_some());
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn latency_fixes_the_delay_and_jitter_widens_it_inside_their_windows() {
        let rules = vec![
            LinkRule {
                site: "pst".into(),
                shape: LinkShape::Latency(ms(300)),
                from: ms(1000),
                until: Some(ms(5000)),
            },
            LinkRule {
                site: "pst".into(),
                shape: LinkShape::Jitter(ms(200)),
                from: ms(2000),
                until: None,
            },
        ];
        assert_eq!(link_delay(&rules, "pst", ms(0)), DEFAULT_DELAY);
        assert_eq!(link_delay(&rules, "pst", ms(1000)), (ms(300), ms(300)));
        assert_eq!(link_delay(&rules, "pst", ms(2000)), (ms(300), ms(500)));
        // The latency's window ends: jitter on the default path.
        assert_eq!(link_delay(&rules, "pst", ms(5000)), (ms(1), ms(201)));
        assert_eq!(link_delay(&rules, "hq", ms(3000)), DEFAULT_DELAY);
        assert!(!link_held(&rules, "pst", ms(3000)));
    }

    #[test]
    fn a_partition_holds_its_site_inside_its_window_only() {
        let rules = vec![LinkRule {
            site: "pst".into(),
            shape: LinkShape::Partition,
            from: ms(1000),
            until: Some(ms(2000)),
        }];
        let held = |site, t| link_held(&rules, site, ms(t));
        assert_eq!(
            [
                held("pst", 999),
                held("pst", 1000),
                held("pst", 1999),
                held("pst", 2000)
            ],
            [false, true, true, false]
        );
        assert!(!held("hq", 1500));
        assert_eq!(link_delay(&rules, "pst", ms(1500)), DEFAULT_DELAY);
    }
}
