//! A host's TCP: its connections, listeners with a backlog, ephemeral
//! ports and timers, sans-IO. Segments come in with [`Stack::handle_segment`]
//! and timeouts with [`Stack::handle_timeout`]; what to send comes out of
//! [`Stack::poll_transmit`] and the next deadline out of [`Stack::poll_timeout`].
//!
//! A stack may also model the CPU of the host's software ([`Cpu`]): the
//! kernel answers SYNs and acknowledges data at once, as Linux does, but
//! the application gets to the bytes of a segment, and its accept loop to
//! the backlog, only when its one CPU has done the work queued before them
//! (a run queue in arrival order, as a busy tokio runtime's). A server that
//! falls behind leaves connections waiting in the backlog, which fills, and
//! the SYNs after that are dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::task::Waker;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::conn::{Config, Stats, Tcb};
use super::segment::{Segment, ACK, RST, SYN};

/// A connection's handle in its stack.
pub type ConnId = u64;

/// Linux's ephemeral port range (`ip_local_port_range`).
pub const EPHEMERAL: (u16, u16) = (32768, 60999);

/// The backlog `proto::real` listens with (tokio's `TcpListener::bind`: 1024).
pub const BACKLOG: usize = 1024;

/// What a host's software spends of its one CPU on what the network brings
/// it, in the order it arrives: the first data segment of a connection it
/// accepted (the TLS handshake's first flight and what it starts), and every
/// other data segment (its decryption and handling). Its accept loop costs
/// nothing itself but takes its turn in the same queue, and takes at most
/// [`ACCEPT_BATCH`] connections a turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// Per connection accepted: its first data segment.
    pub connection: Duration,
    /// Per other data segment received.
    pub segment: Duration,
}

/// The connections an accept loop takes in one turn: tokio's cooperative
/// budget (128 operations a task runs before it must yield).
pub const ACCEPT_BATCH: usize = 128;

/// A piece of the application's work, done when the CPU gets to it.
#[derive(Debug)]
struct Work {
    done: Duration,
    what: WorkKind,
}

#[derive(Debug)]
enum WorkKind {
    // The accept loop of listener `port` takes what its backlog holds.
    AcceptTurn(u16),
    // `n` more received bytes of a connection become readable.
    Data(ConnId, usize),
}

/// A segment for the wire.
#[derive(Debug)]
pub struct Transmit {
    /// Where it goes.
    pub dst: SocketAddr,
    /// What.
    pub segment: Segment,
}

/// Counters of a whole host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// SYNs dropped because a listener's backlog was full (`ListenOverflows`).
    pub listen_overflows: u64,
    /// RSTs sent for segments no socket wanted.
    pub resets_sent: u64,
    /// Retransmitted segments, summed over connections that ended.
    pub retransmits: u64,
    /// Of those, SYNs and SYN-ACKs (`TCPSynRetrans`).
    pub syn_retransmits: u64,
    /// CPU time the software was charged ([`Cpu`]; zero without a model).
    pub cpu_busy: Duration,
    /// The longest any piece of work waited for the CPU.
    pub cpu_lag_max: Duration,
}

#[derive(Debug)]
struct Conn {
    tcb: Tcb,
    remote: SocketAddr,
    // The listener it came through, until accepted.
    listener: Option<u16>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    // Armed timer entry in `Stack::timers`.
    timer: Option<Duration>,
    // With a CPU model: received bytes the application cannot see yet, the
    // receive queue's length when last counted, whether it waits for an
    // accept turn, whether its first data segment has been charged.
    hidden: usize,
    counted: usize,
    accept_queued: bool,
    charged: bool,
    inbound: bool,
}

#[derive(Debug, Default)]
struct Listen {
    backlog: usize,
    // Handshakes under way plus connections waiting for accept.
    pending: usize,
    ready: VecDeque<ConnId>,
    waker: Option<Waker>,
    // With a CPU model: established connections the accept loop has not
    // taken, and whether its turn is queued.
    waiting: VecDeque<ConnId>,
    turn_queued: bool,
}

/// One host's TCP.
#[derive(Debug)]
pub struct Stack {
    cfg: Config,
    rng: ChaCha8Rng,
    // Boxed: a connection is large, and a B-tree moves its values.
    conns: BTreeMap<ConnId, Box<Conn>>,
    by_tuple: BTreeMap<(u16, SocketAddr), ConnId>,
    listeners: BTreeMap<u16, Listen>,
    timers: BTreeSet<(Duration, ConnId)>,
    out: VecDeque<Transmit>,
    next_id: ConnId,
    next_port: u16,
    stats: HostStats,
    cpu: Option<Cpu>,
    // When the CPU has done all the work queued so far.
    cpu_free: Duration,
    work: VecDeque<Work>,
}

impl Stack {
    /// An empty stack whose initial sequence numbers come from `seed`.
    pub fn new(cfg: Config, seed: u64) -> Stack {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let span = u32::from(EPHEMERAL.1 - EPHEMERAL.0);
        let next_port = EPHEMERAL.0 + (rng.next_u32() % span) as u16;
        Stack {
            cfg,
            rng,
            conns: BTreeMap::new(),
            by_tuple: BTreeMap::new(),
            listeners: BTreeMap::new(),
            timers: BTreeSet::new(),
            out: VecDeque::new(),
            next_id: 1,
            next_port,
            stats: HostStats::default(),
            cpu: None,
            cpu_free: Duration::ZERO,
            work: VecDeque::new(),
        }
    }

    /// The same stack with its software's CPU modelled.
    pub fn with_cpu(mut self, cpu: Cpu) -> Stack {
        self.cpu = Some(cpu);
        self
    }

    // Queues work costing `cost` at `now`, behind what the CPU has already.
    fn charge(&mut self, cost: Duration, what: WorkKind, now: Duration) {
        let start = self.cpu_free.max(now);
        self.stats.cpu_lag_max = self.stats.cpu_lag_max.max(start - now);
        self.stats.cpu_busy += cost;
        self.cpu_free = start + cost;
        self.work.push_back(Work {
            done: self.cpu_free,
            what,
        });
    }

    /// The host's counters (retransmissions of live connections included).
    pub fn stats(&self) -> HostStats {
        let mut s = self.stats;
        for c in self.conns.values() {
            s.retransmits += c.tcb.stats.retransmits;
            s.syn_retransmits += c.tcb.stats.syn_retransmits;
        }
        s
    }

    /// How many connections the stack holds (any state but closed).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection's counters.
    pub fn conn_stats(&self, id: ConnId) -> Option<Stats> {
        self.conns.get(&id).map(|c| c.tcb.stats)
    }

    /// A connection's state (`None` once it is gone).
    pub fn conn_state(&self, id: ConnId) -> Option<super::conn::State> {
        self.conns.get(&id).map(|c| c.tcb.state)
    }

    // ---- sockets ----

    /// Starts listening on `port` (0: a free ephemeral port); returns the port.
    pub fn listen(&mut self, port: u16, backlog: usize) -> io::Result<u16> {
        let port = match port {
            0 => self.free_port(None)?,
            p => p,
        };
        if self.listeners.contains_key(&port) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        self.listeners.insert(
            port,
            Listen {
                backlog,
                ..Listen::default()
            },
        );
        Ok(port)
    }

    // The next ephemeral port no listener has and, with `remote`, no
    // connection to that peer uses.
    fn free_port(&mut self, remote: Option<SocketAddr>) -> io::Result<u16> {
        let span = EPHEMERAL.1 - EPHEMERAL.0;
        for _ in 0..=span {
            let p = self.next_port;
            self.next_port = if p >= EPHEMERAL.1 { EPHEMERAL.0 } else { p + 1 };
            let taken = match remote {
                Some(r) => self.by_tuple.contains_key(&(p, r)),
                None => self.by_tuple.keys().any(|(l, _)| *l == p),
            };
            if !taken && !self.listeners.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(io::Error::from(io::ErrorKind::AddrNotAvailable))
    }

    /// Stops listening: connections not yet accepted are reset.
    pub fn unlisten(&mut self, port: u16, now: Duration) {
        let Some(l) = self.listeners.remove(&port) else {
            return;
        };
        let waiting: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.listener == Some(port))
            .map(|(id, _)| *id)
            .collect();
        drop(l);
        for id in waiting {
            if let Some(c) = self.conns.get_mut(&id) {
                c.tcb.abort();
            }
            self.settle(id, now);
        }
    }

    /// The next established connection of the listener on `port`; else
    /// registers `waker`.
    pub fn accept(&mut self, port: u16, waker: &Waker) -> Option<(ConnId, SocketAddr)> {
        let l = self.listeners.get_mut(&port)?;
        match l.ready.pop_front() {
            Some(id) => {
                l.pending = l.pending.saturating_sub(1);
                let c = self.conns.get_mut(&id)?;
                c.listener = None;
                Some((id, c.remote))
            }
            None => {
                l.waker = Some(waker.clone());
                None
            }
        }
    }

    /// Opens a connection to `remote` from an ephemeral port.
    pub fn connect(&mut self, remote: SocketAddr, now: Duration) -> io::Result<(ConnId, u16)> {
        let port = self.free_port(Some(remote))?;
        let iss = self.rng.next_u32();
        let tcb = Tcb::connect(self.cfg.clone(), port, remote.port(), iss, now);
        let id = self.insert(tcb, remote, None);
        self.settle(id, now);
        Ok((id, port))
    }

    fn insert(&mut self, tcb: Tcb, remote: SocketAddr, listener: Option<u16>) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        self.by_tuple.insert((tcb.local_port, remote), id);
        self.conns.insert(
            id,
            Box::new(Conn {
                tcb,
                remote,
                listener,
                read_waker: None,
                write_waker: None,
                timer: None,
                hidden: 0,
                counted: 0,
                accept_queued: false,
                charged: false,
                inbound: listener.is_some(),
            }),
        );
        id
    }

    /// Whether the connect of `id` is done: `Some(Ok)` connected,
    /// `Some(Err)` failed; `None` registers `waker`.
    pub fn poll_connected(&mut self, id: ConnId, waker: &Waker) -> Option<io::Result<()>> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Some(Err(io::Error::from(io::ErrorKind::NotConnected)));
        };
        if let Some(e) = c.tcb.error() {
            return Some(Err(os_error(e)));
        }
        if c.tcb.is_connected() {
            return Some(Ok(()));
        }
        c.write_waker = Some(waker.clone());
        None
    }

    /// Bytes connection `id` has ready for the application (0 when gone).
    pub fn readable(&self, id: ConnId) -> usize {
        self.conns
            .get(&id)
            .map_or(0, |c| c.tcb.readable().saturating_sub(c.hidden))
    }

    /// Reads into `buf`: `Some(Ok(0))` at end of stream, `None` (with
    /// `waker` registered) when nothing is there yet.
    pub fn read(
        &mut self,
        id: ConnId,
        buf: &mut [u8],
        waker: &Waker,
        now: Duration,
    ) -> Option<io::Result<usize>> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Some(Ok(0));
        };
        let visible = c.tcb.readable().saturating_sub(c.hidden);
        if visible > 0 {
            let take = buf.len().min(visible);
            let n = c.tcb.read(&mut buf[..take], now);
            c.counted = c.counted.saturating_sub(n);
            self.settle(id, now);
            return Some(Ok(n));
        }
        if let Some(e) = c.tcb.error() {
            return Some(Err(os_error(e)));
        }
        if c.tcb.read_eof() {
            return Some(Ok(0));
        }
        c.read_waker = Some(waker.clone());
        None
    }

    /// Writes from `buf`: `None` (with `waker` registered) when the send
    /// buffer is full.
    pub fn write(
        &mut self,
        id: ConnId,
        buf: &[u8],
        waker: &Waker,
        now: Duration,
    ) -> Option<io::Result<usize>> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Some(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        };
        if let Some(e) = c.tcb.error() {
            return Some(Err(os_error(e)));
        }
        if c.tcb.write_closed() {
            return Some(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        if buf.is_empty() {
            return Some(Ok(0));
        }
        if c.tcb.send_space() == 0 {
            c.write_waker = Some(waker.clone());
            return None;
        }
        let n = c.tcb.write(buf, now);
        self.settle(id, now);
        Some(Ok(n))
    }

    /// `shutdown(SHUT_WR)`.
    pub fn shutdown(&mut self, id: ConnId, now: Duration) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.tcb.shutdown(now);
            self.settle(id, now);
        }
    }

    /// `close()`: the socket's owner is gone.
    pub fn close(&mut self, id: ConnId, now: Duration) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.tcb.close(now);
            c.read_waker = None;
            c.write_waker = None;
            self.settle(id, now);
        }
    }

    // ---- the wire ----

    /// Queues a segment to send (one a previous boot left unsent).
    pub fn queue_transmit(&mut self, t: Transmit) {
        self.out.push_back(t);
    }

    /// Whether segments wait to be sent.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next segment to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The earliest timer (a connection's, or the CPU's next piece of work).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let conn = self.timers.first().map(|(t, _)| *t);
        // Work is seen at the clock's resolution (whole milliseconds).
        let cpu = self.work.front().map(|w| {
            let ms = w.done.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
        });
        match (conn, cpu) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        while self.work.front().is_some_and(|w| w.done <= now) {
            let w = self.work.pop_front().expect("checked");
            self.finish(w.what, now);
        }
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(c) = self.conns.get_mut(&id) {
                c.timer = None;
                c.tcb.handle_timeout(now);
            }
            self.settle(id, now);
        }
    }

    /// One segment from `src`.
    pub fn handle_segment(&mut self, src: SocketAddr, seg: Segment, now: Duration) {
        if let Some(&id) = self.by_tuple.get(&(seg.dst_port, src)) {
            let c = self.conns.get_mut(&id).expect("indexed");
            c.tcb.handle_segment(&seg, now);
            self.settle(id, now);
            return;
        }
        if seg.has(RST) {
            return;
        }
        if seg.has(SYN) && !seg.has(ACK) {
            if let Some(l) = self.listeners.get_mut(&seg.dst_port) {
                // Linux's `sk_acceptq_is_full` is `>`: a backlog of N holds
                // N + 1 (measured: backlog 4, 12 connects at once, 5 done and
                // 7 SYNs dropped, `ListenOverflows`).
                if l.pending > l.backlog {
                    // Linux drops the SYN; the client's retransmission tries again.
                    self.stats.listen_overflows += 1;
                    return;
                }
                l.pending += 1;
                let iss = self.rng.next_u32();
                let tcb = Tcb::accept(self.cfg.clone(), seg.dst_port, &seg, iss, now);
                let id = self.insert(tcb, src, Some(seg.dst_port));
                self.settle(id, now);
                return;
            }
        }
        // No socket: refuse with an RST (RFC 9293 3.10.7.1).
        self.stats.resets_sent += 1;
        let (seq, ack, flags) = if seg.has(ACK) {
            (seg.ack, 0, RST)
        } else {
            (0, seg.seq.wrapping_add(seg.seq_len()), RST | ACK)
        };
        self.out.push_back(Transmit {
            dst: src,
            segment: Segment {
                src_port: seg.dst_port,
                dst_port: seg.src_port,
                seq,
                ack,
                flags,
                window: 0,
                mss: None,
                payload: Vec::new(),
            },
        });
    }

    // The CPU got to `what`: the application may see it now.
    fn finish(&mut self, what: WorkKind, now: Duration) {
        match what {
            WorkKind::Data(id, n) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.hidden = c.hidden.saturating_sub(n);
                    if let Some(w) = c.read_waker.take() {
                        w.wake();
                    }
                }
            }
            WorkKind::AcceptTurn(port) => {
                let Some(l) = self.listeners.get_mut(&port) else {
                    return;
                };
                l.turn_queued = false;
                let mut taken = 0;
                while taken < ACCEPT_BATCH {
                    let Some(id) = l.waiting.pop_front() else {
                        break;
                    };
                    // (A connection that closed meanwhile has left `waiting`.)
                    l.ready.push_back(id);
                    taken += 1;
                }
                if taken > 0 {
                    if let Some(w) = l.waker.take() {
                        w.wake();
                    }
                }
                if !l.waiting.is_empty() {
                    // Its budget spent, the loop yields to the back of the queue.
                    l.turn_queued = true;
                    self.charge(Duration::ZERO, WorkKind::AcceptTurn(port), now);
                }
            }
        }
    }

    // After anything touched connection `id`: its output to the queue, its
    // timer re-armed, its waiters woken, and its slot freed once closed.
    fn settle(&mut self, id: ConnId, now: Duration) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        for segment in c.tcb.take_output() {
            self.out.push_back(Transmit {
                dst: c.remote,
                segment,
            });
        }
        let want = c.tcb.poll_timeout();
        if want != c.timer {
            if let Some(t) = c.timer.take() {
                self.timers.remove(&(t, id));
            }
            if let Some(t) = want {
                self.timers.insert((t, id));
            }
            c.timer = want;
        }
        // With a CPU model, what arrived waits for the CPU before the
        // application sees it: the bytes, and the connection itself.
        if let Some(cpu) = self.cpu {
            let len = c.tcb.readable();
            // (A reset empties the receive queue.)
            c.hidden = c.hidden.min(len);
            let mut turn = None;
            if let Some(port) = c.listener {
                if !c.accept_queued && c.tcb.is_connected() && !c.tcb.is_closed() {
                    c.accept_queued = true;
                    if let Some(l) = self.listeners.get_mut(&port) {
                        l.waiting.push_back(id);
                        if !l.turn_queued {
                            l.turn_queued = true;
                            turn = Some(port);
                        }
                    }
                }
            }
            let mut data = None;
            if len > c.counted {
                c.hidden += len - c.counted;
                // An accepted connection's first segment carries its handshake.
                let cost = if c.inbound && !c.charged {
                    cpu.connection
                } else {
                    cpu.segment
                };
                c.charged = true;
                data = Some((cost, len - c.counted));
            }
            c.counted = len;
            if let Some(port) = turn {
                self.charge(Duration::ZERO, WorkKind::AcceptTurn(port), now);
            }
            if let Some((cost, n)) = data {
                self.charge(cost, WorkKind::Data(id, n), now);
            }
        }
        let c = self.conns.get_mut(&id).expect("present");
        // Wake both sides: a state change may matter to either.
        if let Some(w) = c.read_waker.take() {
            w.wake();
        }
        if let Some(w) = c.write_waker.take() {
            w.wake();
        }
        if let (Some(port), None) = (c.listener, self.cpu) {
            // Without a CPU model the application takes it at once.
            if c.tcb.is_connected() && !c.tcb.is_closed() {
                if let Some(l) = self.listeners.get_mut(&port) {
                    if !l.ready.contains(&id) {
                        l.ready.push_back(id);
                        if let Some(w) = l.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
        }
        let c = self.conns.get(&id).expect("present");
        // A closed connection leaves; one still open stays even when its
        // owner has gone (it finishes its FIN exchange on its own).
        if c.tcb.is_closed() && (c.tcb.orphan || c.listener.is_some()) {
            self.remove(id);
        }
        // Otherwise a closed connection whose owner still holds it keeps
        // its slot for the owner's last read; `close` frees it.
    }

    fn remove(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            self.stats.retransmits += c.tcb.stats.retransmits;
            self.stats.syn_retransmits += c.tcb.stats.syn_retransmits;
            self.by_tuple.remove(&(c.tcb.local_port, c.remote));
            if let Some(t) = c.timer {
                self.timers.remove(&(t, id));
            }
            if let Some(port) = c.listener {
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.pending = l.pending.saturating_sub(1);
                    l.ready.retain(|r| *r != id);
                    l.waiting.retain(|r| *r != id);
                }
            }
        }
    }

    /// Frees a socket whose owner is gone and whose connection is closed.
    pub fn release(&mut self, id: ConnId) {
        if self.conns.get(&id).is_some_and(|c| c.tcb.is_closed()) {
            self.remove(id);
        }
    }
}

/// The error a Linux socket call gives, with its OS wording
/// (`Connection refused (os error 111)`), so messages match the kernel's.
pub fn os_error(kind: io::ErrorKind) -> io::Error {
    #[cfg(target_os = "linux")]
    {
        let code = match kind {
            io::ErrorKind::ConnectionRefused => Some(111),
            io::ErrorKind::ConnectionReset => Some(104),
            io::ErrorKind::TimedOut => Some(110),
            _ => None,
        };
        if let Some(code) = code {
            return io::Error::from_raw_os_error(code);
        }
    }
    io::Error::from(kind)
}
