//! capture.pcapng: what every simulated host put on the wire, for
//! Wireshark, with the keys to read it.
//!
//! The capture is taken at each host's sockets, in the network seam
//! ([`crate::net::TurmoilNetwork::with_capture`]): every TCP byte a host
//! writes and every UDP datagram it sends is recorded once, by its sender,
//! at the simulated time it was sent. Bytes a fault loses on the path (a
//! blocked datagram, a half-open direction) are in the capture, as a
//! capture on the sending host would show them.
//!
//! The file is pcapng with one interface of raw IPv4 packets (link type
//! 101). The TCP segments are the ones the simulated stacks ([`crate::tcp`])
//! sent, retransmissions, ACKs, RSTs and all, with their real headers; an
//! RST a rejecting firewall sends for the peer is recorded as the peer's.
//! Checksums are computed here.
//!
//! Payloads are the real TLS records and QUIC packets, so they are
//! encrypted; the secrets of every session of the run
//! ([`crate::crypto::SecretLog`]) are in a Decryption Secrets Block ahead of
//! the packets, so Wireshark and tshark show the HTTP requests, the
//! WebSocket frames and the QUIC streams inside without a key log file.
//! The capture repeats byte for byte with the seed: TLS randoms and key
//! shares come from the seeded provider ([`crate::crypto`]), QUIC's from
//! seeded configurations, and the agent's WebSocket masks from its
//! handshake key ([`proto::ws::KeyedMasks`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use proto::frame::Dir;

use crate::net::DatagramTap;

/// The packets of one run, in the order they were sent.
#[derive(Debug)]
pub struct Capture {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    epoch_unix_s: u64,
    // The packets as pcapng Enhanced Packet Blocks back to back, in the
    // order they were sent. The world runs hosts one after another
    // and lets a lagging host catch up, so that order is not always
    // simulated-time order.
    records: Vec<u8>,
    count: usize,
    last_us: u64,
    out_of_order: bool,
    // The address of each network owner's host, for UDP sockets bound to
    // 0.0.0.0 (the world fills the host's address in only on the wire).
    owners: BTreeMap<String, Ipv4Addr>,
    ip_id: u16,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_us() -> u64 {
    crate::world::elapsed()
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v) => v,
        // Simulations are IPv4 (see `net::any_addr`); keep the file valid.
        IpAddr::V6(v) => v.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

impl Capture {
    /// An empty capture whose timestamps count from `epoch_unix_s`.
    pub fn new(epoch_unix_s: u64) -> Capture {
        Capture {
            state: Mutex::new(State {
                epoch_unix_s,
                ..State::default()
            }),
        }
    }

    /// Tells which host address each network owner (`server`, an agent's
    /// name, ...) sends from.
    pub fn set_owners(&self, owners: impl IntoIterator<Item = (String, IpAddr)>) {
        let mut s = lock(&self.state);
        for (owner, ip) in owners {
            s.owners.insert(owner, v4(ip));
        }
    }

    /// How many packets it holds.
    pub fn len(&self) -> usize {
        lock(&self.state).count
    }

    /// Whether it holds no packet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One TCP segment a stack sent: `segment` is its header (checksum
    /// zero) and payload.
    pub fn tcp(&self, src: SocketAddr, dst: SocketAddr, segment: &[u8]) {
        let t = now_us();
        let mut s = lock(&self.state);
        s.ip(t, v4(src.ip()), v4(dst.ip()), 6, segment.to_vec(), 16);
    }

    /// The pcapng file, taking the packets out of the capture: a section
    /// header, one raw-IPv4 interface, the run's TLS secrets `key_log` (NSS
    /// key log text) in a Decryption Secrets Block when there are any, then
    /// one Enhanced Packet Block per packet, in time order.
    pub fn take_pcapng(&self, key_log: &str) -> Vec<u8> {
        let mut s = lock(&self.state);
        let mut records = std::mem::take(&mut s.records);
        if std::mem::take(&mut s.out_of_order) {
            records = in_time_order(&records);
        }
        s.count = 0;
        s.last_us = 0;
        let mut head = Vec::with_capacity(128 + key_log.len());
        // Section Header Block: byte-order magic, version 1.0, length unknown.
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        option(&mut shb, 4, b"simbench"); // shb_userappl
        end_of_options(&mut shb);
        block(&mut head, 0x0a0d_0d0a, &shb);
        // Interface Description Block: raw IPv4, microsecond timestamps (the default).
        let mut idb = Vec::new();
        idb.extend_from_slice(&101u16.to_le_bytes()); // LINKTYPE_RAW
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
        option(&mut idb, 2, b"sim"); // if_name
        end_of_options(&mut idb);
        block(&mut head, 1, &idb);
        if !key_log.is_empty() {
            // Decryption Secrets Block, TLS key log (0x544c534b "TLSK").
            let mut dsb = Vec::new();
            dsb.extend_from_slice(&0x544c_534bu32.to_le_bytes());
            dsb.extend_from_slice(&(key_log.len() as u32).to_le_bytes());
            dsb.extend_from_slice(key_log.as_bytes());
            pad(&mut dsb);
            block(&mut head, 0x0000_000a, &dsb);
        }
        // The packets are Enhanced Packet Blocks already: the head goes in
        // front of them in place (a long run's capture is hundreds of MB,
        // and a second copy of it would double the run's peak memory).
        records.splice(0..0, head);
        records
    }
}

/// Appends a pcapng block: type, total length, `body`, total length.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// Pads a block body to 32 bits.
fn pad(body: &mut Vec<u8>) {
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
}

/// Appends a pcapng option (code, length, value padded to 32 bits).
fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    pad(body);
}

fn end_of_options(body: &mut Vec<u8>) {
    body.extend_from_slice(&[0, 0, 0, 0]);
}

impl State {
    fn udp(&mut self, t: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let mut seg = Vec::with_capacity(8 + payload.len());
        seg.extend_from_slice(&src.port().to_be_bytes());
        seg.extend_from_slice(&dst.port().to_be_bytes());
        seg.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        seg.extend_from_slice(&[0, 0]);
        seg.extend_from_slice(payload);
        self.ip(t, v4(src.ip()), v4(dst.ip()), 17, seg, 6);
    }

    // Wraps a transport segment in an IPv4 header and fills in both
    // checksums (`sum_at`: where the transport checksum goes).
    fn ip(
        &mut self,
        t: u64,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        mut seg: Vec<u8>,
        sum_at: usize,
    ) {
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        let mut sum = checksum(&[&pseudo, &seg]);
        if proto == 17 && sum == 0 {
            sum = 0xffff; // UDP: zero means "no checksum"
        }
        seg[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
        let total = 20 + seg.len();
        let mut p = Vec::with_capacity(total);
        p.push(0x45);
        p.push(0);
        p.extend_from_slice(&(total.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        p.extend_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        p.extend_from_slice(&[0x40, 0]); // don't fragment
        p.push(64);
        p.push(proto);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let header_sum = checksum(&[&p]);
        p[10..12].copy_from_slice(&header_sum.to_be_bytes());
        p.extend_from_slice(&seg);
        self.out_of_order |= t < self.last_us;
        self.last_us = self.last_us.max(t);
        // Enhanced Packet Block: interface 0, microseconds since the Unix
        // epoch (high and low words), captured and original length, the
        // packet padded to 4 bytes, the block's length again.
        let ts = self.epoch_unix_s * 1_000_000 + t;
        let padded = p.len().div_ceil(4) * 4;
        let total = (32 + padded) as u32;
        self.records.extend_from_slice(&6u32.to_le_bytes());
        self.records.extend_from_slice(&total.to_le_bytes());
        self.records.extend_from_slice(&0u32.to_le_bytes());
        self.records
            .extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        self.records.extend_from_slice(&(ts as u32).to_le_bytes());
        self.records
            .extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.records
            .extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.records.extend_from_slice(&p);
        self.records
            .resize(self.records.len() + padded - p.len(), 0);
        self.records.extend_from_slice(&total.to_le_bytes());
        self.count += 1;
    }
}

/// Enhanced Packet Blocks sorted by their timestamps; blocks with equal
/// times keep their order.
fn in_time_order(records: &[u8]) -> Vec<u8> {
    let word = |at: usize| u32::from_le_bytes(records[at..at + 4].try_into().expect("4 bytes"));
    let mut index = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let len = word(at + 4) as usize;
        index.push(((word(at + 12), word(at + 16)), at, len));
        at += len;
    }
    index.sort_by_key(|(t, _, _)| *t);
    let mut out = Vec::with_capacity(records.len());
    for (_, at, len) in index {
        out.extend_from_slice(&records[at..at + len]);
    }
    out
}

/// The Internet checksum (RFC 1071) of the concatenated parts.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl DatagramTap for Capture {
    fn datagram(
        &self,
        owner: &str,
        dir: Dir,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        // The sender records each datagram; a receive would count it twice.
        if dir != Dir::Tx {
            return;
        }
        let t = now_us();
        let mut s = lock(&self.state);
        let ip = match local.ip() {
            ip if !ip.is_unspecified() => v4(ip),
            _ => s
                .owners
                .get(owner)
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        s.udp(
            t,
            SocketAddr::new(IpAddr::V4(ip), local.port()),
            remote,
            payload,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // The blocks of a pcapng file: (type, body).
    fn blocks(file: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let word = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let mut out = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let total = word(at + 4) as usize;
            assert_eq!(total % 4, 0, "blocks are 32-bit aligned");
            assert_eq!(word(at + total - 4) as usize, total, "trailing length");
            out.push((word(at), file[at + 8..at + total - 4].to_vec()));
            at += total;
        }
        assert_eq!(at, file.len());
        out
    }

    // The packets of a pcapng file, with their timestamps (seconds, micros).
    fn packets(file: &[u8]) -> Vec<((u32, u32), Vec<u8>)> {
        blocks(file)
            .into_iter()
            .filter(|(kind, _)| *kind == 6)
            .map(|(_, b)| {
                let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                let t = (u64::from(word(4)) << 32) | u64::from(word(8));
                let len = word(12) as usize;
                assert_eq!(word(16) as usize, len, "captured = original length");
                (
                    ((t / 1_000_000) as u32, (t % 1_000_000) as u32),
                    b[20..20 + len].to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn records_come_out_in_time_order_with_ties_in_send_order() {
        let c = Capture::new(0);
        let (a, b) = (addr("10.0.0.1:1000"), addr("10.0.0.2:2000"));
        {
            let mut s = lock(&c.state);
            for (t, byte) in [(5, 1u8), (3, 2), (5, 3), (4, 4)] {
                s.udp(t, a, b, &[byte]);
            }
        }
        let order: Vec<(u32, u8)> = packets(&c.take_pcapng(""))
            .iter()
            .map(|((_, us), p)| (*us, p[28]))
            .collect();
        assert_eq!(order, [(3, 2), (4, 4), (5, 1), (5, 3)]);
    }

    #[test]
    fn the_checksum_of_a_known_ipv4_header_verifies() {
        // RFC 1071's example words, and a header whose checksum is known.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&header]), 0xb861);
        // Odd lengths pad with a zero byte; splitting the input changes nothing.
        assert_eq!(checksum(&[&[1, 2, 3]]), checksum(&[&[1], &[2, 3]]));
    }

    #[test]
    fn a_stack_segment_is_recorded_with_valid_checksums() {
        use crate::tcp::segment::{Segment, ACK, PSH};
        let c = Capture::new(1_767_225_600);
        let (a, b) = (addr("192.168.0.2:49152"), addr("192.168.0.1:8443"));
        let seg = Segment {
            src_port: 49152,
            dst_port: 8443,
            seq: 1,
            ack: 1,
            flags: PSH | ACK,
            window: 65_536,
            mss: None,
            payload: b"hello".to_vec(),
        };
        c.tcp(a, b, &seg.encode());
        let all = packets(&c.take_pcapng(""));
        assert!(c.is_empty(), "taken out");
        let (_, p) = &all[0];
        assert_eq!(p[9], 6);
        assert_eq!(&p[40..], b"hello");
        assert_eq!(checksum(&[&p[..20]]), 0);
        let tcp = &p[20..];
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo, tcp]), 0);
    }

    #[test]
    fn the_file_is_pcapng_with_the_secrets_and_raw_ipv4_sent_datagrams_once() {
        let c = Capture::new(1_767_225_600);
        c.set_owners([("pst-1".to_string(), "192.168.0.3".parse().unwrap())]);
        c.datagram(
            "pst-1",
            Dir::Tx,
            addr("0.0.0.0:50000"),
            addr("192.168.0.1:4433"),
            b"quic",
        );
        c.datagram(
            "pst-1",
            Dir::Rx,
            addr("0.0.0.0:50000"),
            addr("192.168.0.1:4433"),
            b"x",
        );
        let keys = "CLIENT_TRAFFIC_SECRET_0 00 11\n";
        let f = c.take_pcapng(keys);
        let all = blocks(&f);
        assert_eq!(all[0].0, 0x0a0d_0d0a, "section header first");
        assert_eq!(&all[0].1[..4], &0x1a2b_3c4du32.to_le_bytes());
        assert_eq!((all[1].0, &all[1].1[..2]), (1, &101u16.to_le_bytes()[..]));
        // The secrets, in a Decryption Secrets Block before any packet.
        let (kind, dsb) = &all[2];
        assert_eq!(*kind, 0x0a);
        assert_eq!(&dsb[..4], &0x544c_534bu32.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(dsb[4..8].try_into().unwrap()) as usize,
            keys.len()
        );
        assert_eq!(&dsb[8..8 + keys.len()], keys.as_bytes());
        // One record (the receive is the sender's datagram, not recorded twice),
        // stamped with the epoch (no simulation runs here: time 0).
        let all = packets(&f);
        assert_eq!(all.len(), 1);
        let ((secs, micros), p) = &all[0];
        assert_eq!((*secs, *micros), (1_767_225_600, 0));
        assert_eq!(&p[12..16], &[192, 168, 0, 3], "the owner's host address");
        assert_eq!(p[9], 17);
        assert_eq!(&p[28..], b"quic");
    }
}
