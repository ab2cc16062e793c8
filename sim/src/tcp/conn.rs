//! One TCP connection as a sans-IO state machine: segments and timeouts in
//! (with an explicit `now`), segments out. Linux's defaults where they
//! decide what a peer sees ([`Config`]).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::Duration;

use super::segment::{le, lt, Segment, ACK, FIN, PSH, RST, SYN};

/// The knobs of the stack, Linux's defaults unless said otherwise.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest payload per segment (Ethernet: 1460).
    pub mss: u32,
    /// RTO before any RTT sample (RFC 6298, Linux `TCP_TIMEOUT_INIT`): 1 s.
    pub rto_initial: Duration,
    /// Least RTO (Linux `TCP_RTO_MIN`): 200 ms.
    pub rto_min: Duration,
    /// Largest RTO (Linux `TCP_RTO_MAX`): 120 s.
    pub rto_max: Duration,
    /// SYN retransmissions before a connect fails (`tcp_syn_retries`): 6.
    pub syn_retries: u32,
    /// SYN retransmissions that keep the initial RTO instead of doubling
    /// it, and that a connect gets on top of `syn_retries`
    /// (`tcp_syn_linear_timeouts`, Linux 6.5 and later): 4. Measured on the
    /// CI machines' kernel (6.18): SYNs again at 1, 2, 3, 4, 5, 7, 11, 19,
    /// 35 and 67 s, ETIMEDOUT at about 133 s.
    pub syn_linear_timeouts: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped
    /// (`tcp_synack_retries`): 5.
    pub synack_retries: u32,
    /// Data retransmissions before an established connection is aborted
    /// (`tcp_retries2`): 15.
    pub retries2: u32,
    /// Receive buffer (`tcp_rmem` default): 128 KiB.
    pub rcv_buf: usize,
    /// Send buffer: writes block when this much is unacknowledged or unsent.
    pub snd_buf: usize,
    /// Initial congestion window in segments (Linux: 10).
    pub init_cwnd: u32,
    /// TIME-WAIT and orphaned FIN-WAIT-2 lifetime (Linux: 60 s).
    pub time_wait: Duration,
    /// Nagle off (`TCP_NODELAY`), as `proto::real` sets on every stream.
    pub nodelay: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            syn_retries: 6,
            syn_linear_timeouts: 4,
            synack_retries: 5,
            retries2: 15,
            rcv_buf: 128 * 1024,
            snd_buf: 128 * 1024,
            init_cwnd: 10,
            time_wait: Duration::from_secs(60),
            nodelay: true,
        }
    }
}

/// RFC 9293 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Our SYN is out.
    SynSent,
    /// A SYN came in, our SYN-ACK is out.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our FIN is not acknowledged yet.
    FinWait1,
    /// We closed and our FIN is acknowledged; the peer has not closed.
    FinWait2,
    /// Both closed at once; our FIN is not acknowledged.
    Closing,
    /// Both closed; waiting out stray segments.
    TimeWait,
    /// The peer closed; we may still send.
    CloseWait,
    /// The peer closed, then we did; our FIN is not acknowledged.
    LastAck,
    /// Gone (or never was).
    Closed,
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments sent again after a timeout or three duplicate ACKs.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// SYNs and SYN-ACKs sent again (of `retransmits`; Linux's `TCPSynRetrans`).
    pub syn_retransmits: u64,
}

/// One connection.
#[derive(Debug)]
pub struct Tcb {
    cfg: Config,
    /// Where the connection is.
    pub state: State,
    /// Local port.
    pub local_port: u16,
    /// Peer port.
    pub remote_port: u16,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    // The highest sequence number sent (go-back-N rewinds `snd_nxt`, not this).
    snd_max: u32,
    // The FIN's sequence number, once sent.
    fin_seq: Option<u32>,
    // Where each segment in flight ends: the congestion window counts
    // packets, as Linux's does, not bytes.
    in_flight: VecDeque<u32>,
    snd_wnd: u32,
    // Bytes from `snd_una` on: sent and unacknowledged, then unsent.
    snd_q: VecDeque<u8>,
    fin_queued: bool,
    fin_sent: bool,
    rcv_nxt: u32,
    rcv_q: VecDeque<u8>,
    ooo: BTreeMap<u32, Vec<u8>>,
    ooo_fin: Option<u32>,
    fin_received: bool,
    peer_mss: u32,
    rto: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    // (sequence number that acknowledges it, sent at): Karn's rule.
    rtt_probe: Option<(u32, Duration)>,
    tries: u32,
    cwnd: u32,
    cwnd_acc: u32,
    ssthresh: u32,
    dupacks: u32,
    rtx_at: Option<Duration>,
    persist_at: Option<Duration>,
    persist_backoff: u32,
    tw_at: Option<Duration>,
    ack_now: bool,
    advertised: u32,
    error: Option<io::ErrorKind>,
    /// The application closed its socket: nothing will read any more.
    pub orphan: bool,
    out: Vec<Segment>,
    /// Counters.
    pub stats: Stats,
}

impl Tcb {
    fn new(cfg: Config, local_port: u16, remote_port: u16, iss: u32, state: State) -> Tcb {
        Tcb {
            rto: cfg.rto_initial,
            cwnd: cfg.init_cwnd,
            ssthresh: u32::MAX,
            peer_mss: 536,
            cfg,
            state,
            local_port,
            remote_port,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            fin_seq: None,
            in_flight: VecDeque::new(),
            snd_wnd: 0,
            snd_q: VecDeque::new(),
            fin_queued: false,
            fin_sent: false,
            rcv_nxt: 0,
            rcv_q: VecDeque::new(),
            ooo: BTreeMap::new(),
            ooo_fin: None,
            fin_received: false,
            srtt: None,
            rttvar: Duration::ZERO,
            rtt_probe: None,
            tries: 0,
            cwnd_acc: 0,
            dupacks: 0,
            rtx_at: None,
            persist_at: None,
            persist_backoff: 0,
            tw_at: None,
            ack_now: false,
            advertised: 0,
            error: None,
            orphan: false,
            out: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// An active open: the SYN goes out at once.
    pub fn connect(cfg: Config, local_port: u16, remote_port: u16, iss: u32, now: Duration) -> Tcb {
        let mut t = Tcb::new(cfg, local_port, remote_port, iss, State::SynSent);
        t.send_syn(now, false);
        t
    }

    /// A passive open on a SYN that a listener took: the SYN-ACK goes out at once.
    pub fn accept(cfg: Config, local_port: u16, syn: &Segment, iss: u32, now: Duration) -> Tcb {
        let mut t = Tcb::new(cfg, local_port, syn.src_port, iss, State::SynReceived);
        t.rcv_nxt = syn.seq.wrapping_add(1);
        t.snd_wnd = syn.window;
        t.peer_mss = u32::from(syn.mss.unwrap_or(536));
        t.send_syn(now, true);
        t
    }

    fn send_syn(&mut self, now: Duration, ack: bool) {
        let seg = Segment {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq: self.iss,
            ack: if ack { self.rcv_nxt } else { 0 },
            flags: if ack { SYN | ACK } else { SYN },
            window: self.rcv_window().min(65_535),
            mss: Some(self.cfg.mss as u16),
            payload: Vec::new(),
        };
        self.snd_nxt = self.iss.wrapping_add(1);
        self.snd_max = self.snd_nxt;
        if self.tries == 0 {
            self.rtt_probe = Some((self.snd_nxt, now));
        }
        self.out.push(seg);
        self.rtx_at = Some(now + self.rto);
    }

    fn rcv_window(&self) -> u32 {
        let held = self.rcv_q.len() + self.ooo.values().map(Vec::len).sum::<usize>();
        self.cfg.rcv_buf.saturating_sub(held) as u32
    }

    fn segment(&self, seq: u32, flags: u8, payload: Vec<u8>) -> Segment {
        Segment {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq,
            ack: self.rcv_nxt,
            flags: flags | ACK,
            window: self.rcv_window(),
            mss: None,
            payload,
        }
    }

    /// Segments to send, in order.
    pub fn take_output(&mut self) -> Vec<Segment> {
        if let Some(last) = self.out.last() {
            self.advertised = last.window;
        }
        std::mem::take(&mut self.out)
    }

    /// Whether there is something to send.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next moment a timer of this connection fires.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.rtx_at, self.persist_at, self.tw_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The error that ended the connection, if one did.
    pub fn error(&self) -> Option<io::ErrorKind> {
        self.error
    }

    /// Whether the connection no longer needs its slot (the stack frees it).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the handshake is done (a connect may return).
    pub fn is_connected(&self) -> bool {
        !matches!(self.state, State::SynSent | State::SynReceived)
    }

    // ---- the application's side ----

    /// Bytes the application may still queue before a write blocks.
    pub fn send_space(&self) -> usize {
        self.cfg.snd_buf.saturating_sub(self.snd_q.len())
    }

    /// Queues bytes to send; returns how many were taken (0: buffer full).
    pub fn write(&mut self, data: &[u8], now: Duration) -> usize {
        let n = data.len().min(self.send_space());
        self.snd_q.extend(&data[..n]);
        self.output(now);
        n
    }

    /// Whether a write can no longer succeed.
    pub fn write_closed(&self) -> bool {
        self.fin_queued || self.error.is_some() || self.state == State::Closed
    }

    /// Moves received bytes into `buf`; 0 with [`Tcb::read_eof`] means end of stream.
    pub fn read(&mut self, buf: &mut [u8], now: Duration) -> usize {
        let n = buf.len().min(self.rcv_q.len());
        let (a, b) = self.rcv_q.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        self.rcv_q.drain(..n);
        // Reopen a window that had shrunk below one segment.
        if n > 0 && self.advertised < self.cfg.mss && self.rcv_window() >= self.cfg.mss {
            self.ack_now = true;
            self.output(now);
        }
        n
    }

    /// Bytes waiting to be read.
    pub fn readable(&self) -> usize {
        self.rcv_q.len()
    }

    /// Whether the peer's FIN has been read past (no more bytes will come).
    pub fn read_eof(&self) -> bool {
        self.rcv_q.is_empty() && (self.fin_received || self.state == State::Closed)
    }

    /// `shutdown(SHUT_WR)`: the FIN follows what is queued.
    pub fn shutdown(&mut self, now: Duration) {
        if self.fin_queued || self.state == State::Closed {
            return;
        }
        self.fin_queued = true;
        if self.state == State::SynSent {
            self.state = State::Closed;
            return;
        }
        self.output(now);
    }

    /// `close()`: unread data makes it an abort (RST), as on Linux;
    /// otherwise a FIN, and the connection finishes without its owner.
    pub fn close(&mut self, now: Duration) {
        self.orphan = true;
        if self.state == State::Closed {
            return;
        }
        if !self.rcv_q.is_empty() || self.state == State::SynSent {
            self.abort();
            return;
        }
        self.shutdown(now);
    }

    /// Sends an RST and forgets the connection.
    pub fn abort(&mut self) {
        if !matches!(self.state, State::Closed | State::SynSent | State::TimeWait) {
            let seg = self.segment(self.snd_nxt, RST, Vec::new());
            self.out.push(seg);
        }
        self.state = State::Closed;
        self.clear_timers();
    }

    fn clear_timers(&mut self) {
        self.rtx_at = None;
        self.persist_at = None;
        self.tw_at = None;
    }

    fn fail(&mut self, e: io::ErrorKind) {
        self.error.get_or_insert(e);
        self.state = State::Closed;
        self.clear_timers();
    }

    // ---- output ----

    fn flight(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }

    fn sending_state(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// Sends what the windows allow, the FIN when its turn comes, and an
    /// ACK if one is owed and nothing else carried it.
    fn output(&mut self, now: Duration) {
        let before = self.out.len();
        if self.sending_state() {
            let mss = self.peer_mss.min(self.cfg.mss).max(1);
            loop {
                let off = self.flight() as usize;
                // Bytes of the queue not yet sent (the FIN, once sent, is past the queue).
                let unsent = self.snd_q.len().saturating_sub(off);
                let room = self.snd_wnd.saturating_sub(self.flight()) as usize;
                let cwnd_full = self.in_flight.len() as u32 >= self.cwnd;
                if cwnd_full && (unsent > 0 || self.fin_queued && !self.fin_sent) {
                    break; // what is queued (the FIN too) waits for an ACK
                }
                if unsent > 0 && !self.fin_sent {
                    let mut len = unsent.min(mss as usize).min(room);
                    if lt(self.snd_nxt, self.snd_max) {
                        // A retransmission carries what was sent before, never
                        // bytes queued since (Linux resends its queued skbs).
                        len = len.min(self.snd_max.wrapping_sub(self.snd_nxt) as usize);
                    }
                    if len == 0 {
                        if self.snd_wnd == 0 && self.flight() == 0 && self.persist_at.is_none() {
                            self.persist_at = Some(now + self.backed_off(self.persist_backoff));
                        }
                        break;
                    }
                    if !self.cfg.nodelay && len < mss as usize && self.flight() > 0 {
                        break; // Nagle: a small segment waits for the ACK of what is out.
                    }
                    let payload: Vec<u8> = self.snd_q.range(off..off + len).copied().collect();
                    let flags = if len == unsent { PSH } else { 0 };
                    let seq = self.snd_nxt;
                    let seg = self.segment(seq, flags, payload);
                    self.out.push(seg);
                    self.snd_nxt = self.snd_nxt.wrapping_add(len as u32);
                    self.in_flight.push_back(self.snd_nxt);
                    if lt(self.snd_max, self.snd_nxt) {
                        self.snd_max = self.snd_nxt;
                    }
                    if self.rtt_probe.is_none() && self.tries == 0 {
                        self.rtt_probe = Some((self.snd_nxt, now));
                    }
                    if self.rtx_at.is_none() {
                        self.rtx_at = Some(now + self.rto);
                    }
                    continue;
                }
                if unsent == 0 && self.fin_queued && !self.fin_sent {
                    let seg = self.segment(self.snd_nxt, FIN, Vec::new());
                    self.out.push(seg);
                    self.fin_seq = Some(self.snd_nxt);
                    self.snd_nxt = self.snd_nxt.wrapping_add(1);
                    self.in_flight.push_back(self.snd_nxt);
                    if lt(self.snd_max, self.snd_nxt) {
                        self.snd_max = self.snd_nxt;
                    }
                    self.fin_sent = true;
                    self.state = match self.state {
                        State::CloseWait => State::LastAck,
                        State::Established => State::FinWait1,
                        s => s,
                    };
                    if self.rtx_at.is_none() {
                        self.rtx_at = Some(now + self.rto);
                    }
                }
                break;
            }
        }
        if self.ack_now && self.out.len() == before && self.state != State::Closed {
            let seg = self.segment(self.snd_nxt, 0, Vec::new());
            self.out.push(seg);
        }
        self.ack_now = false;
    }

    fn backed_off(&self, times: u32) -> Duration {
        (self.rto * 2u32.saturating_pow(times.min(16))).min(self.cfg.rto_max)
    }

    /// Fires whatever timer is due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.tw_at.is_some_and(|t| t <= now) {
            self.tw_at = None;
            self.state = State::Closed;
            return;
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            if self.snd_wnd == 0 && self.state != State::Closed {
                // A window probe: an old sequence number makes the peer answer with its window.
                let seg = self.segment(self.snd_una.wrapping_sub(1), 0, Vec::new());
                self.out.push(seg);
                self.persist_backoff += 1;
                self.persist_at = Some(now + self.backed_off(self.persist_backoff));
            }
        }
        if self.rtx_at.is_some_and(|t| t <= now) {
            self.rtx_at = None;
            self.on_rto(now);
        }
    }

    fn on_rto(&mut self, now: Duration) {
        self.tries += 1;
        self.stats.timeouts += 1;
        self.rtt_probe = None;
        let limit = match self.state {
            State::SynSent => self.cfg.syn_retries + self.cfg.syn_linear_timeouts,
            State::SynReceived => self.cfg.synack_retries,
            _ => self.cfg.retries2,
        };
        if self.tries > limit {
            self.fail(io::ErrorKind::TimedOut);
            return;
        }
        // A connect's first SYN retransmissions keep the initial RTO
        // (`tcp_syn_linear_timeouts`); every other timeout doubles it.
        if !(self.state == State::SynSent && self.tries <= self.cfg.syn_linear_timeouts) {
            self.rto = (self.rto * 2).min(self.cfg.rto_max);
        }
        self.stats.retransmits += 1;
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.stats.syn_retransmits += 1;
        }
        match self.state {
            State::SynSent => self.send_syn(now, false),
            State::SynReceived => self.send_syn(now, true),
            _ => {
                let mss = self.peer_mss.min(self.cfg.mss).max(1);
                self.ssthresh = (self.flight() / mss / 2).max(2);
                self.cwnd = 1;
                self.cwnd_acc = 0;
                // Go back to the first unacknowledged byte (or the FIN);
                // the state stays: a FIN sent again changes nothing of it.
                self.snd_nxt = self.snd_una;
                self.in_flight.clear();
                self.fin_sent = false;
                self.output(now);
                if self.rtx_at.is_none() {
                    self.rtx_at = Some(now + self.rto);
                }
            }
        }
    }

    // ---- input ----

    /// One segment for this connection.
    pub fn handle_segment(&mut self, seg: &Segment, now: Duration) {
        match self.state {
            State::Closed => return,
            State::SynSent => {
                self.handle_syn_sent(seg, now);
                return;
            }
            _ => {}
        }
        if seg.has(RST) {
            // RFC 5961: only an RST at the expected sequence number resets.
            let in_window = le(self.rcv_nxt, seg.seq)
                && lt(seg.seq, self.rcv_nxt.wrapping_add(self.rcv_window().max(1)));
            if in_window {
                let e = if self.state == State::SynReceived {
                    io::ErrorKind::ConnectionRefused
                } else {
                    io::ErrorKind::ConnectionReset
                };
                self.fail(e);
            }
            return;
        }
        if seg.has(SYN) {
            if self.state == State::SynReceived && seg.seq.wrapping_add(1) == self.rcv_nxt {
                // The peer did not get our SYN-ACK and sent its SYN again.
                self.out.push(Segment {
                    src_port: self.local_port,
                    dst_port: self.remote_port,
                    seq: self.iss,
                    ack: self.rcv_nxt,
                    flags: SYN | ACK,
                    window: self.rcv_window().min(65_535),
                    mss: Some(self.cfg.mss as u16),
                    payload: Vec::new(),
                });
                self.stats.retransmits += 1;
                self.stats.syn_retransmits += 1;
            } else {
                // A SYN inside a live connection: answer with an ACK (RFC 5961).
                self.ack_now = true;
                self.output(now);
            }
            return;
        }
        if !seg.has(ACK) {
            return;
        }
        if self.state == State::SynReceived {
            if seg.ack != self.iss.wrapping_add(1) {
                return;
            }
            self.take_rtt(seg.ack, now);
            self.snd_una = seg.ack;
            self.snd_wnd = seg.window;
            self.state = State::Established;
            self.tries = 0;
            self.rtx_at = None;
        }
        self.handle_ack(seg, now);
        if self.state == State::Closed {
            return;
        }
        self.handle_data(seg, now);
        self.output(now);
    }

    fn handle_syn_sent(&mut self, seg: &Segment, now: Duration) {
        let acceptable = seg.has(ACK) && seg.ack == self.iss.wrapping_add(1);
        if seg.has(RST) {
            if acceptable {
                self.fail(io::ErrorKind::ConnectionRefused);
            }
            return;
        }
        if !(seg.has(SYN) && acceptable) {
            return;
        }
        self.take_rtt(seg.ack, now);
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.snd_una = seg.ack;
        self.snd_wnd = seg.window;
        self.peer_mss = u32::from(seg.mss.unwrap_or(536));
        self.state = State::Established;
        self.tries = 0;
        self.rtx_at = None;
        self.ack_now = true;
        if self.fin_queued {
            self.fin_queued = false;
            self.shutdown(now);
        }
        self.output(now);
    }

    fn take_rtt(&mut self, ack: u32, now: Duration) {
        let Some((want, sent)) = self.rtt_probe else {
            return;
        };
        if lt(ack, want) {
            return;
        }
        self.rtt_probe = None;
        let r = now.saturating_sub(sent);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // Linux: the variance term is at least TCP_RTO_MIN.
        self.rto = (srtt + (self.rttvar * 4).max(self.cfg.rto_min)).min(self.cfg.rto_max);
    }

    fn handle_ack(&mut self, seg: &Segment, now: Duration) {
        let ack = seg.ack;
        if lt(self.snd_max, ack) {
            // Acknowledges what we never sent.
            self.ack_now = true;
            return;
        }
        if lt(self.snd_nxt, ack) {
            // What went out before a go-back arrived after all.
            self.snd_nxt = ack;
        }
        let window_opened = self.snd_wnd == 0 && seg.window > 0;
        if lt(self.snd_una, ack) {
            let acked = ack.wrapping_sub(self.snd_una) as usize;
            let data = acked.min(self.snd_q.len());
            self.snd_q.drain(..data);
            let fin_acked = self.fin_seq.is_some_and(|f| f.wrapping_add(1) == ack);
            if fin_acked {
                self.fin_sent = true;
            }
            self.snd_una = ack;
            while self.in_flight.front().is_some_and(|e| le(*e, ack)) {
                self.in_flight.pop_front();
            }
            self.take_rtt(ack, now);
            self.tries = 0;
            self.dupacks = 0;
            self.persist_backoff = 0;
            self.grow_cwnd();
            self.rtx_at = (self.flight() > 0).then(|| now + self.rto);
            if fin_acked {
                self.state = match self.state {
                    State::FinWait1 => State::FinWait2,
                    State::Closing => {
                        self.tw_at = Some(now + self.cfg.time_wait);
                        State::TimeWait
                    }
                    State::LastAck => State::Closed,
                    s => s,
                };
                if self.state == State::FinWait2 && self.orphan {
                    // tcp_fin_timeout: an orphan does not wait forever for the peer's FIN.
                    self.tw_at = Some(now + self.cfg.time_wait);
                }
            }
        } else if ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.has(FIN)
            && self.flight() > 0
            && seg.window == self.snd_wnd
        {
            self.dupacks += 1;
            if self.dupacks == 3 {
                self.fast_retransmit();
            }
        }
        self.snd_wnd = seg.window;
        if window_opened || self.snd_wnd > 0 {
            self.persist_at = None;
        }
    }

    fn grow_cwnd(&mut self) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
        } else {
            self.cwnd_acc += 1;
            if self.cwnd_acc >= self.cwnd {
                self.cwnd_acc = 0;
                self.cwnd += 1;
            }
        }
    }

    fn fast_retransmit(&mut self) {
        let mss = self.peer_mss.min(self.cfg.mss).max(1);
        self.ssthresh = (self.flight() / mss / 2).max(2);
        self.cwnd = self.ssthresh;
        let len = (mss as usize).min(self.snd_q.len());
        if len == 0 {
            return;
        }
        let payload: Vec<u8> = self.snd_q.range(..len).copied().collect();
        let seg = self.segment(self.snd_una, 0, payload);
        self.out.push(seg);
        self.stats.retransmits += 1;
        self.rtt_probe = None;
    }

    fn handle_data(&mut self, seg: &Segment, now: Duration) {
        let _ = now;
        let fin = seg.has(FIN);
        if seg.payload.is_empty() && !fin {
            if lt(seg.seq, self.rcv_nxt) {
                // A window probe or a stale segment: say where we are.
                self.ack_now = true;
            }
            return;
        }
        self.ack_now = true;
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) && !seg.payload.is_empty()
        {
            return; // the peer already closed its side: nothing more may come
        }
        if self.orphan && !seg.payload.is_empty() {
            // Data for a socket nobody reads any more: Linux resets.
            self.abort();
            return;
        }
        let mut seq = seg.seq;
        let mut data: &[u8] = &seg.payload;
        if lt(seq, self.rcv_nxt) {
            let skip = self.rcv_nxt.wrapping_sub(seq) as usize;
            if skip >= data.len() {
                if fin && seq.wrapping_add(data.len() as u32) == self.rcv_nxt {
                    self.receive_fin(now);
                }
                return;
            }
            data = &data[skip..];
            seq = self.rcv_nxt;
        }
        let room = self.rcv_window() as usize;
        let fits = data.len() <= room;
        let data = &data[..data.len().min(room)];
        if seq == self.rcv_nxt {
            self.rcv_q.extend(data);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(data.len() as u32);
            while let Some((&s, _)) = self.ooo.first_key_value() {
                if lt(self.rcv_nxt, s) {
                    break;
                }
                let (s, bytes) = self.ooo.pop_first().expect("checked");
                let skip = self.rcv_nxt.wrapping_sub(s) as usize;
                if skip < bytes.len() {
                    self.rcv_q.extend(&bytes[skip..]);
                    self.rcv_nxt = self.rcv_nxt.wrapping_add((bytes.len() - skip) as u32);
                }
            }
            if fin && fits {
                self.ooo_fin = Some(seq.wrapping_add(data.len() as u32));
            }
            if self.ooo_fin == Some(self.rcv_nxt) {
                self.receive_fin(now);
            }
        } else if !data.is_empty() {
            self.ooo.entry(seq).or_insert_with(|| data.to_vec());
            if fin && fits {
                self.ooo_fin = Some(seq.wrapping_add(data.len() as u32));
            }
        } else if fin {
            self.ooo_fin = Some(seq);
        }
    }

    fn receive_fin(&mut self, now: Duration) {
        if self.fin_received {
            return;
        }
        self.fin_received = true;
        self.ooo_fin = None;
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.state = match self.state {
            State::Established | State::SynReceived => State::CloseWait,
            State::FinWait1 => State::Closing,
            State::FinWait2 => {
                self.tw_at = Some(now + self.cfg.time_wait);
                State::TimeWait
            }
            s => s,
        };
        if self.state == State::Closing && self.fin_sent && self.snd_una == self.snd_nxt {
            self.state = State::TimeWait;
            self.tw_at = Some(now + self.cfg.time_wait);
        }
    }
}
