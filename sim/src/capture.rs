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
//! ([`crate::crypto::SecretLog`]) are in Decryption Secrets Blocks, each
//! written just before the first packet that follows the secrets' logging,
//! so every secret precedes the packets it decrypts (the placement the
//! pcapng format asks for, and what lets tshark decrypt in one pass):
//! Wireshark and tshark show the HTTP requests, the WebSocket frames and
//! the QUIC streams inside without a key log file.
//! The capture repeats byte for byte with the seed: TLS randoms and key
//! shares come from the seeded provider ([`crate::crypto`]), QUIC's from
//! seeded configurations, and the agent's WebSocket masks from its
//! handshake key ([`proto::ws::KeyedMasks`]).
//!
//! A capture goes to memory ([`Capture::new`]) or to a file as the run
//! makes it ([`Capture::to_file`]): a 10,000-agent run sends about a GB of
//! packets, which a file-backed capture never holds, and a run that fails
//! half way leaves on disk what it captured so far.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::frame::Dir;
use sha2::Digest;

use crate::crypto::SecretLog;
use crate::net::DatagramTap;

/// The packets of one run, in the order they were sent.
#[derive(Debug)]
pub struct Capture {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    epoch_unix_s: u64,
    // Where the blocks go: the section header and interface first, then
    // secrets and packets as they come.
    sink: Sink,
    count: usize,
    last_us: u64,
    // The world runs hosts one after another; a host that ran late would
    // stamp a packet earlier than one already written. Then the file is
    // put in time order when it is finished ([`in_time_order`]).
    out_of_order: bool,
    // The address of each network owner's host, for UDP sockets bound to
    // 0.0.0.0 (the world fills the host's address in only on the wire).
    owners: BTreeMap<String, Ipv4Addr>,
    ip_id: u16,
    // The run's secrets, and how much of their text is in the file.
    secrets: Option<Arc<SecretLog>>,
    secrets_written: usize,
    // One block being built (reused: no allocation per packet).
    scratch: Vec<u8>,
}

/// Where a capture's bytes go.
#[derive(Debug)]
enum Sink {
    Memory(Vec<u8>),
    File {
        path: PathBuf,
        out: std::io::BufWriter<std::fs::File>,
        hash: sha2::Sha256,
        bytes: u64,
        // The first write that failed; nothing more is written after it.
        error: Option<String>,
    },
}

impl Sink {
    fn put(&mut self, block: &[u8]) {
        match self {
            Sink::Memory(v) => v.extend_from_slice(block),
            Sink::File {
                out,
                hash,
                bytes,
                error,
                ..
            } => {
                if error.is_some() {
                    return;
                }
                match out.write_all(block) {
                    Ok(()) => {
                        hash.update(block);
                        *bytes += block.len() as u64;
                    }
                    Err(e) => *error = Some(e.to_string()),
                }
            }
        }
    }
}

/// A capture written to a file: where, its size and SHA-256, or why it
/// could not be written whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureFile {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// The first write that failed (the file then holds what came before).
    pub error: Option<String>,
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

// The file's head: Section Header Block (byte-order magic, version 1.0,
// length unknown) and one Interface Description Block (raw IPv4,
// microsecond timestamps, the default).
fn head() -> Vec<u8> {
    let mut head = Vec::with_capacity(128);
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut shb, 4, b"simbench"); // shb_userappl
    end_of_options(&mut shb);
    block(&mut head, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&101u16.to_le_bytes()); // LINKTYPE_RAW
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    option(&mut idb, 2, b"sim"); // if_name
    end_of_options(&mut idb);
    block(&mut head, 1, &idb);
    head
}

// A Decryption Secrets Block of TLS key log lines (0x544c534b "TLSK").
fn secrets_block(out: &mut Vec<u8>, key_log: &[u8]) {
    let mut dsb = Vec::with_capacity(8 + key_log.len() + 3);
    dsb.extend_from_slice(&0x544c_534bu32.to_le_bytes());
    dsb.extend_from_slice(&(key_log.len() as u32).to_le_bytes());
    dsb.extend_from_slice(key_log);
    pad(&mut dsb);
    block(out, 0x0000_000a, &dsb);
}

impl Capture {
    /// An empty capture in memory whose timestamps count from `epoch_unix_s`.
    pub fn new(epoch_unix_s: u64) -> Capture {
        Capture::with_sink(epoch_unix_s, Sink::Memory(Vec::new()))
    }

    /// A capture written to `path` (created or truncated) as packets come.
    pub fn to_file(epoch_unix_s: u64, path: &Path) -> std::io::Result<Capture> {
        let file = std::fs::File::create(path)?;
        Ok(Capture::with_sink(
            epoch_unix_s,
            Sink::File {
                path: path.to_path_buf(),
                out: std::io::BufWriter::with_capacity(1 << 16, file),
                hash: sha2::Sha256::new(),
                bytes: 0,
                error: None,
            },
        ))
    }

    fn with_sink(epoch_unix_s: u64, mut sink: Sink) -> Capture {
        sink.put(&head());
        Capture {
            state: Mutex::new(State {
                epoch_unix_s,
                sink,
                count: 0,
                last_us: 0,
                out_of_order: false,
                owners: BTreeMap::new(),
                ip_id: 0,
                secrets: None,
                secrets_written: 0,
                scratch: Vec::new(),
            }),
        }
    }

    /// The run's secrets: what they hold is written into the capture ahead
    /// of the next packet.
    pub fn keep_secrets(&self, secrets: Arc<SecretLog>) {
        lock(&self.state).secrets = Some(secrets);
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
        s.ip(t, v4(src.ip()), v4(dst.ip()), 6, segment, 16);
    }

    /// The pcapng file of an in-memory capture, taking the packets out of
    /// it: a section header, one raw-IPv4 interface, then Decryption
    /// Secrets Blocks and Enhanced Packet Blocks, every secret before the
    /// packets after it, in time order. Empty for a capture to a file.
    pub fn take_pcapng(&self) -> Vec<u8> {
        let mut s = lock(&self.state);
        if !matches!(s.sink, Sink::Memory(_)) {
            return Vec::new();
        }
        s.write_secrets();
        let out_of_order = std::mem::take(&mut s.out_of_order);
        s.count = 0;
        s.last_us = 0;
        // The next file starts afresh: it carries every secret again.
        s.secrets_written = 0;
        let Sink::Memory(v) = &mut s.sink else {
            unreachable!("checked above")
        };
        let file = std::mem::replace(v, head());
        if out_of_order {
            in_time_order(&file)
        } else {
            file
        }
    }

    /// Finishes a capture to a file: the last secrets, flushed, put in time
    /// order if a packet came late. `None` for a capture in memory.
    pub fn finish_file(&self) -> Option<CaptureFile> {
        let mut s = lock(&self.state);
        s.write_secrets();
        let out_of_order = s.out_of_order;
        let Sink::File {
            path,
            out,
            hash,
            bytes,
            error,
        } = &mut s.sink
        else {
            return None;
        };
        if error.is_none() {
            if let Err(e) = out.flush() {
                *error = Some(e.to_string());
            }
        }
        let mut done = CaptureFile {
            path: path.clone(),
            bytes: *bytes,
            sha256: hex::encode(hash.clone().finalize()),
            error: error.clone(),
        };
        if out_of_order && done.error.is_none() {
            // Rare (a host ran late): read it back and rewrite it in order.
            let sorted = std::fs::read(&done.path).map(|f| in_time_order(&f));
            match sorted.and_then(|f| std::fs::write(&done.path, &f).map(|()| f)) {
                Ok(f) => {
                    done.bytes = f.len() as u64;
                    done.sha256 = hex::encode(sha2::Sha256::digest(&f));
                }
                Err(e) => done.error = Some(e.to_string()),
            }
        }
        Some(done)
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
        self.ip(t, v4(src.ip()), v4(dst.ip()), 17, &seg, 6);
    }

    // The secrets logged since the last block, in a block of their own.
    fn write_secrets(&mut self) {
        let Some(log) = &self.secrets else {
            return;
        };
        let Some(new) = log.since(self.secrets_written) else {
            return;
        };
        self.secrets_written += new.len();
        self.scratch.clear();
        secrets_block(&mut self.scratch, new.as_bytes());
        self.sink.put(&self.scratch);
    }

    // Wraps a transport segment in an IPv4 header, fills in both checksums
    // (`sum_at`: where the transport checksum goes) and writes the packet.
    fn ip(&mut self, t: u64, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8], sum_at: usize) {
        self.write_secrets();
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = proto;
        pseudo[10..].copy_from_slice(&(seg.len() as u16).to_be_bytes());
        // The transport checksum over the segment with its checksum field zero.
        let zero = [0u8; 2];
        let mut sum = checksum(&[&pseudo, &seg[..sum_at], &zero, &seg[sum_at + 2..]]);
        if proto == 17 && sum == 0 {
            sum = 0xffff; // UDP: zero means "no checksum"
        }
        let total = 20 + seg.len();
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let header_sum = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&header_sum.to_be_bytes());
        self.out_of_order |= t < self.last_us;
        self.last_us = self.last_us.max(t);
        // Enhanced Packet Block: interface 0, microseconds since the Unix
        // epoch (high and low words), captured and original length, the
        // packet padded to 4 bytes, the block's length again.
        let ts = self.epoch_unix_s * 1_000_000 + t;
        let padded = total.div_ceil(4) * 4;
        let block_len = (32 + padded) as u32;
        let b = &mut self.scratch;
        b.clear();
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&block_len.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&(total as u32).to_le_bytes());
        b.extend_from_slice(&(total as u32).to_le_bytes());
        b.extend_from_slice(&ip);
        b.extend_from_slice(&seg[..sum_at]);
        b.extend_from_slice(&sum.to_be_bytes());
        b.extend_from_slice(&seg[sum_at + 2..]);
        b.resize(b.len() + padded - total, 0);
        b.extend_from_slice(&block_len.to_le_bytes());
        self.sink.put(&self.scratch);
        self.count += 1;
    }
}

/// A whole capture file put in time order: its head (section header,
/// interface), every secret in one Decryption Secrets Block ahead of every
/// packet, then the Enhanced Packet Blocks sorted by their timestamps
/// (blocks with equal times keep their order).
fn in_time_order(file: &[u8]) -> Vec<u8> {
    let word = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes"));
    let mut head = Vec::new();
    let mut secrets = Vec::new();
    let mut packets = Vec::new();
    let mut at = 0;
    while at + 12 <= file.len() {
        let (kind, len) = (word(at), word(at + 4) as usize);
        if len < 12 || at + len > file.len() {
            break;
        }
        match kind {
            6 => packets.push(((word(at + 12), word(at + 16)), at, len)),
            0x0a => {
                let n = word(at + 12) as usize;
                secrets.extend_from_slice(&file[at + 16..(at + 16 + n).min(at + len - 4)]);
            }
            _ => head.extend_from_slice(&file[at..at + len]),
        }
        at += len;
    }
    packets.sort_by_key(|(t, _, _)| *t);
    let mut out = Vec::with_capacity(file.len());
    out.extend_from_slice(&head);
    if !secrets.is_empty() {
        secrets_block(&mut out, &secrets);
    }
    for (_, at, len) in packets {
        out.extend_from_slice(&file[at..at + len]);
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
        let order: Vec<(u32, u8)> = packets(&c.take_pcapng())
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
        let all = packets(&c.take_pcapng());
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
        use rustls::KeyLog;
        let c = Capture::new(1_767_225_600);
        let secrets = Arc::new(SecretLog::default());
        c.keep_secrets(secrets.clone());
        c.set_owners([("pst-1".to_string(), "192.168.0.3".parse().unwrap())]);
        secrets.log("CLIENT_TRAFFIC_SECRET_0", &[0], &[0x11]);
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
        let f = c.take_pcapng();
        let all = blocks(&f);
        assert_eq!(all[0].0, 0x0a0d_0d0a, "section header first");
        assert_eq!(&all[0].1[..4], &0x1a2b_3c4du32.to_le_bytes());
        assert_eq!((all[1].0, &all[1].1[..2]), (1, &101u16.to_le_bytes()[..]));
        // The secrets, in a Decryption Secrets Block before the packet.
        let keys = "CLIENT_TRAFFIC_SECRET_0 00 11\n";
        let (kind, dsb) = &all[2];
        assert_eq!(*kind, 0x0a);
        assert_eq!(&dsb[..4], &0x544c_534bu32.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(dsb[4..8].try_into().unwrap()) as usize,
            keys.len()
        );
        assert_eq!(&dsb[8..8 + keys.len()], keys.as_bytes());
        assert_eq!(all[3].0, 6);
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

    // Two secrets logged around two packets, and one after the last.
    fn secrets_between_packets(c: &Capture) {
        use rustls::KeyLog;
        let secrets = Arc::new(SecretLog::default());
        c.keep_secrets(secrets.clone());
        let (a, b) = (addr("10.0.0.1:1000"), addr("10.0.0.2:2000"));
        secrets.log("SERVER_HANDSHAKE_TRAFFIC_SECRET", &[1], &[1]);
        c.datagram("x", Dir::Tx, a, b, b"one");
        secrets.log("SERVER_TRAFFIC_SECRET_0", &[1], &[2]);
        secrets.log("SERVER_TRAFFIC_SECRET_0", &[1], &[2]);
        c.datagram("x", Dir::Tx, a, b, b"two");
        secrets.log("EXPORTER_SECRET", &[1], &[3]);
    }

    #[test]
    fn each_secret_comes_before_the_packets_sent_after_it_was_logged() {
        let c = Capture::new(0);
        secrets_between_packets(&c);
        let kinds: Vec<(u32, String)> = blocks(&c.take_pcapng())
            .into_iter()
            .skip(2)
            .map(|(k, b)| match k {
                0x0a => (
                    k,
                    String::from_utf8_lossy(&b[8..])
                        .trim_end_matches('\0')
                        .to_string(),
                ),
                _ => (k, String::from_utf8_lossy(&b[48..]).to_string()),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (0x0a, "SERVER_HANDSHAKE_TRAFFIC_SECRET 01 01\n".to_string()),
                (6, "one\0".to_string()),
                (0x0a, "SERVER_TRAFFIC_SECRET_0 01 02\n".to_string()),
                (6, "two\0".to_string()),
                (0x0a, "EXPORTER_SECRET 01 03\n".to_string()),
            ]
        );
        // A file taken after that one holds the secrets again, ahead of its packet.
        let (a, b) = (addr("10.0.0.1:1000"), addr("10.0.0.2:2000"));
        c.datagram("x", Dir::Tx, a, b, b"three");
        let next = blocks(&c.take_pcapng());
        let kinds: Vec<u32> = next.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [0x0a0d_0d0a, 1, 0x0a, 6]);
        assert_eq!(
            String::from_utf8_lossy(&next[2].1[8..]).trim_end_matches('\0'),
            "SERVER_HANDSHAKE_TRAFFIC_SECRET 01 01\nSERVER_TRAFFIC_SECRET_0 01 02\nEXPORTER_SECRET 01 03\n"
        );
    }

    #[test]
    fn a_capture_to_a_file_is_the_capture_in_memory_with_its_size_and_hash() {
        let dir = std::env::temp_dir().join(format!("simbench-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capture.pcapng");
        let file = Capture::to_file(7, &path).unwrap();
        secrets_between_packets(&file);
        assert!(
            file.take_pcapng().is_empty(),
            "a file capture holds nothing"
        );
        let done = file.finish_file().expect("a file capture");
        let memory = Capture::new(7);
        secrets_between_packets(&memory);
        assert!(memory.finish_file().is_none());
        let bytes = memory.take_pcapng();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(done.path, path);
        assert_eq!(done.bytes, bytes.len() as u64);
        assert_eq!(done.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
        assert_eq!(done.error, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_late_packet_puts_the_file_in_time_order_with_the_secrets_first() {
        use rustls::KeyLog;
        let c = Capture::new(0);
        let secrets = Arc::new(SecretLog::default());
        c.keep_secrets(secrets.clone());
        let (a, b) = (addr("10.0.0.1:1000"), addr("10.0.0.2:2000"));
        {
            let mut s = lock(&c.state);
            s.udp(5, a, b, &[1]);
            secrets.log("K", &[1], &[1]);
            s.udp(3, a, b, &[2]);
        }
        let all = blocks(&c.take_pcapng());
        let kinds: Vec<u32> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [0x0a0d_0d0a, 1, 0x0a, 6, 6]);
        assert_eq!(&all[2].1[8..16], b"K 01 01\n");
        let order: Vec<u8> = all[3..].iter().map(|(_, b)| b[20 + 28]).collect();
        assert_eq!(order, [2, 1], "time 3 before time 5");
    }
}
