//! The simulated world: hosts, their clocks and the datagrams between them,
//! in time that follows events.
//!
//! Every host is a tokio current-thread runtime with a paused clock, all on
//! the caller's thread. The world keeps one time line and runs a host only
//! when it has something to do: a datagram arrives, a timer it announced
//! (through [`proto::time`]) is due, or something outside woke one of its
//! tasks. Between those instants nothing runs and nothing costs: a fleet
//! that sits idle for a day costs what its heartbeats cost, not days times
//! hosts times ticks.
//!
//! How one instant `t` is run for a host: its runtime is driven to `t`
//! (`sleep_until(t)` on the paused clock, which jumps over empty time), the
//! datagrams due at `t` are put in their sockets, and the runtime runs until
//! every task is waiting again (the [`Idle`] future, woken by the runtime's
//! park hook, so it never auto-advances past `t`). Datagrams take at least
//! a millisecond (the clock's resolution), so nothing one host does at `t`
//! can reach another host at `t`: hosts run one after another, in a fixed
//! order, and the run is deterministic.
//!
//! A timer that was not announced still fires at its own time on its host
//! whenever the host next runs past it, but the world may have moved on by
//! then: what it sends is late. [`WorldStats::late_datagrams`] counts those,
//! and the tests require none.

pub mod udp;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// What a host's software returns when it stops.
pub type HostResult = Result<(), Box<dyn std::error::Error>>;

type Software = Box<dyn Fn() -> Pin<Box<dyn Future<Output = HostResult>>>>;

/// The clock's resolution: tokio's timer wheel counts milliseconds, so every
/// instant of the world is a whole millisecond.
const RESOLUTION: Duration = Duration::from_millis(1);

/// Datagrams a socket holds before it drops what arrives (a full receive
/// buffer). Generous: it is there so a runaway sender cannot eat memory.
pub const SOCKET_QUEUE: usize = 65_536;

/// The least and largest one-way delay of a link nobody shaped.
pub const DEFAULT_LINK_DELAY: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_millis(20));

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ceil_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(RESOLUTION.as_nanos());
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A datagram on its way.
#[derive(Debug)]
struct InFlight {
    at: Duration,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A bound socket's receive side.
#[derive(Debug, Default)]
struct Sock {
    id: u64,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    waker: Option<Waker>,
}

/// What every host of a world shares: names, sockets, links, datagrams in
/// flight. Behind one lock; only one host runs at a time.
#[derive(Debug)]
pub(crate) struct Net {
    inner: Mutex<NetInner>,
}

#[derive(Debug)]
struct NetInner {
    names: BTreeMap<String, IpAddr>,
    sockets: HashMap<(IpAddr, u16), Sock>,
    next_socket: u64,
    ephemeral: HashMap<IpAddr, u16>,
    flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    default_delay: (Duration, Duration),
    links: HashMap<(IpAddr, IpAddr), (Duration, Duration)>,
    /// Host pairs between which every datagram is lost.
    cut: BTreeSet<(IpAddr, IpAddr)>,
    rng: ChaCha8Rng,
    stats: WorldStats,
    /// The instant the world is running (datagrams sent before it are late).
    now: Duration,
}

/// What a world did, for benchmarks and for the tests' fidelity checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorldStats {
    /// Distinct instants at which something ran.
    pub instants: u64,
    /// Times a host's runtime was driven (an instant for one host).
    pub host_runs: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagrams lost to a full receive queue or to no socket.
    pub datagrams_lost: u64,
    /// Datagrams sent at a time the world had already passed: a timer that
    /// was not announced fired late. Must stay 0.
    pub late_datagrams: u64,
    /// Wakes of a host's tasks from outside it while the host lagged
    /// behind the world (they ran at the host's older time). Must stay 0.
    pub late_wakes: u64,
}

impl Net {
    fn link_key(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    }

    fn delay(inner: &mut NetInner, from: IpAddr, to: IpAddr) -> Duration {
        let (min, max) = inner
            .links
            .get(&Net::link_key(from, to))
            .copied()
            .unwrap_or(inner.default_delay);
        let range = max.saturating_sub(min).as_millis() as f64;
        // Exponential, mean a fifth of the range, capped at the largest.
        let u = (inner.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mult = -(1.0 - u).ln() / 5.0;
        let d = min + Duration::from_millis((range * mult) as u64);
        d.min(max).max(RESOLUTION)
    }

    pub(crate) fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8], sent: Duration) {
        let mut inner = lock(&self.inner);
        inner.stats.datagrams += 1;
        if sent < inner.now {
            inner.stats.late_datagrams += 1;
        }
        if inner.cut.contains(&Net::link_key(from.ip(), to.ip())) {
            inner.stats.datagrams_lost += 1;
            return;
        }
        let d = Net::delay(&mut inner, from.ip(), to.ip());
        let at = ceil_ms(sent.max(inner.now) + d);
        let seq = inner.seq;
        inner.seq += 1;
        inner.flight.push(Reverse(InFlight {
            at,
            seq,
            from,
            to,
            payload: payload.to_vec(),
        }));
    }

    pub(crate) fn bind(&self, ip: IpAddr, port: u16) -> std::io::Result<(u16, u64)> {
        let mut inner = lock(&self.inner);
        let port = if port == 0 {
            let mut tries = 0;
            loop {
                let next = inner.ephemeral.entry(ip).or_insert(49_152);
                let p = *next;
                *next = if p == u16::MAX { 49_152 } else { p + 1 };
                if !inner.sockets.contains_key(&(ip, p)) {
                    break p;
                }
                tries += 1;
                if tries > 16_384 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "no ephemeral UDP port left",
                    ));
                }
            }
        } else {
            if inner.sockets.contains_key(&(ip, port)) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("address {ip}:{port} already in use"),
                ));
            }
            port
        };
        let id = inner.next_socket;
        inner.next_socket += 1;
        inner.sockets.insert(
            (ip, port),
            Sock {
                id,
                ..Sock::default()
            },
        );
        Ok((port, id))
    }

    pub(crate) fn unbind(&self, ip: IpAddr, port: u16, id: u64) {
        let mut inner = lock(&self.inner);
        if inner.sockets.get(&(ip, port)).is_some_and(|s| s.id == id) {
            inner.sockets.remove(&(ip, port));
        }
    }

    /// The next datagram waiting at `(ip, port)`, or registers `waker`.
    pub(crate) fn poll_recv(
        &self,
        ip: IpAddr,
        port: u16,
        id: u64,
        waker: Option<&Waker>,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let mut inner = lock(&self.inner);
        let sock = inner.sockets.get_mut(&(ip, port)).filter(|s| s.id == id)?;
        match sock.queue.pop_front() {
            Some(d) => Some(d),
            None => {
                if let Some(w) = waker {
                    if !sock.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
                        sock.waker = Some(w.clone());
                    }
                }
                None
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<IpAddr> {
        lock(&self.inner).names.get(name).copied()
    }
}

/// The host a thread is running now, for the sockets and clocks inside it.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) net: Arc<Net>,
    pub(crate) ip: IpAddr,
    base: Instant,
    boot_at: Duration,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
    /// The world's time while a world drives this thread and no host runs.
    static WORLD_NOW: Cell<Option<Duration>> = const { Cell::new(None) };
    static IDLE_WAKER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    static PARKED: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn current() -> Option<Current> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether this code runs on a host of a world.
pub fn in_host() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Simulated time since the world started: the running host's clock, or
/// the world's own time between hosts; `None` outside any world.
pub fn elapsed() -> Option<Duration> {
    CURRENT
        .with(|c| {
            c.borrow()
                .as_ref()
                .map(|c| c.boot_at + Instant::now().saturating_duration_since(c.base))
        })
        .or_else(|| WORLD_NOW.with(|n| n.get()))
}

/// The address of host `name` in the current world.
///
/// # Panics
/// Outside a host, or for a name no host has.
pub fn lookup(name: &str) -> IpAddr {
    try_lookup(name).unwrap_or_else(|| panic!("no host named {name:?} in this world"))
}

/// The address of host `name` in the current world, if there is one.
pub fn try_lookup(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    current().and_then(|c| c.net.lookup(name))
}

struct Enter;

impl Enter {
    fn host(c: Current) -> Enter {
        CURRENT.with(|slot| *slot.borrow_mut() = Some(c));
        Enter
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|slot| *slot.borrow_mut() = None);
    }
}

/// Ready once the runtime it runs in has nothing left to do at this
/// instant: the park hook wakes it, and a runtime woken in its park hook
/// does not move its clock on.
struct Idle {
    armed: bool,
}

impl Future for Idle {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed && PARKED.with(|p| p.get()) {
            return Poll::Ready(());
        }
        self.armed = true;
        PARKED.with(|p| p.set(false));
        IDLE_WAKER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        Poll::Pending
    }
}

fn on_park() {
    if let Some(w) = IDLE_WAKER.with(|w| w.borrow_mut().take()) {
        PARKED.with(|p| p.set(true));
        w.wake();
    }
}

struct Host {
    name: String,
    ip: IpAddr,
    /// Started again at a bounce; `None` for a client (runs once).
    software: Option<Software>,
    client: bool,
    rt: Option<Runtime>,
    main: Option<Pin<Box<dyn Future<Output = HostResult>>>>,
    boot_at: Duration,
    base: Instant,
    /// The host's clock: the last instant it ran.
    at: Duration,
    /// Announced deadlines, in world time.
    deadlines: BTreeSet<Duration>,
    finished: bool,
}

impl Host {
    fn ctx(&self, net: &Arc<Net>) -> Current {
        Current {
            net: net.clone(),
            ip: self.ip,
            base: self.base,
            boot_at: self.boot_at,
        }
    }
}

/// A host failed (its software returned an error) or the world could not go on.
#[derive(Debug)]
pub struct WorldError {
    /// The host.
    pub host: String,
    /// What it said.
    pub message: String,
}

impl fmt::Display for WorldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host {}: {}", self.host, self.message)
    }
}

impl std::error::Error for WorldError {}

/// The world: see the module's documentation.
pub struct World {
    net: Arc<Net>,
    hosts: Vec<Host>,
    now: Duration,
    announced: Vec<Instant>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

impl World {
    /// An empty world whose link delays are drawn from `seed`.
    pub fn new(seed: u64) -> World {
        proto::time::collect();
        // Whatever an earlier world on this thread left is not ours: its
        // instants are on other clocks.
        let mut stale = Vec::new();
        proto::time::take_announced(&mut stale);
        WORLD_NOW.with(|n| n.set(Some(Duration::ZERO)));
        World {
            net: Arc::new(Net {
                inner: Mutex::new(NetInner {
                    names: BTreeMap::new(),
                    sockets: HashMap::new(),
                    next_socket: 0,
                    ephemeral: HashMap::new(),
                    flight: BinaryHeap::new(),
                    seq: 0,
                    default_delay: DEFAULT_LINK_DELAY,
                    links: HashMap::new(),
                    cut: BTreeSet::new(),
                    rng: ChaCha8Rng::seed_from_u64(seed),
                    stats: WorldStats::default(),
                    now: Duration::ZERO,
                }),
            }),
            hosts: Vec::new(),
            now: Duration::ZERO,
            announced: Vec::new(),
        }
    }

    /// The delays of every link nobody shaped.
    pub fn set_default_delay(&mut self, least: Duration, largest: Duration) {
        lock(&self.net.inner).default_delay = (least, largest.max(least));
    }

    /// The delays of the link between hosts `a` and `b` (both ways).
    pub fn set_link_delay(&mut self, a: &str, b: &str, least: Duration, largest: Duration) {
        let (a, b) = (self.lookup(a), self.lookup(b));
        lock(&self.net.inner)
            .links
            .insert(Net::link_key(a, b), (least, largest.max(least)));
    }

    /// Cuts the path between hosts `a` and `b`: every datagram between
    /// them is lost, both ways, until [`World::repair`].
    pub fn partition(&mut self, a: &str, b: &str) {
        let (a, b) = (self.lookup(a), self.lookup(b));
        lock(&self.net.inner).cut.insert(Net::link_key(a, b));
    }

    /// Mends what [`World::partition`] cut.
    pub fn repair(&mut self, a: &str, b: &str) {
        let (a, b) = (self.lookup(a), self.lookup(b));
        lock(&self.net.inner).cut.remove(&Net::link_key(a, b));
    }

    /// The world's time.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// What the world did so far.
    pub fn stats(&self) -> WorldStats {
        lock(&self.net.inner).stats
    }

    /// The address of host `name`.
    ///
    /// # Panics
    /// For a name no host has.
    pub fn lookup(&self, name: &str) -> IpAddr {
        self.net
            .lookup(name)
            .unwrap_or_else(|| panic!("no host named {name:?} in this world"))
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host named {name:?} in this world"))
    }

    fn add(
        &mut self,
        name: String,
        software: Option<Software>,
        main: Option<Pin<Box<dyn Future<Output = HostResult>>>>,
    ) -> usize {
        let n = self.hosts.len();
        let ip = IpAddr::V4(Ipv4Addr::new(
            192,
            168,
            (1 + n / 250) as u8,
            (1 + n % 250) as u8,
        ));
        lock(&self.net.inner).names.insert(name.clone(), ip);
        let client = software.is_none();
        self.hosts.push(Host {
            name,
            ip,
            software,
            client,
            rt: None,
            main,
            boot_at: self.now,
            base: Instant::now(),
            at: self.now,
            deadlines: BTreeSet::new(),
            finished: false,
        });
        self.boot(n);
        n
    }

    /// A host running `software`, started now and again at every bounce.
    pub fn host<F, Fut>(&mut self, name: impl Into<String>, software: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = HostResult> + 'static,
    {
        let software: Software = Box::new(move || Box::pin(software()));
        self.add(name.into(), Some(software), None);
    }

    /// A host that runs `future` once; [`World::run`] runs until every
    /// client has finished.
    pub fn client<Fut>(&mut self, name: impl Into<String>, future: Fut)
    where
        Fut: Future<Output = HostResult> + 'static,
    {
        self.add(name.into(), None, Some(Box::pin(future)));
    }

    // A fresh runtime for host `i`, its software started at the world's time.
    fn boot(&mut self, i: usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .on_thread_park(on_park)
            .build()
            .expect("a current-thread runtime builds");
        let net = self.net.clone();
        let host = &mut self.hosts[i];
        host.boot_at = self.now;
        host.at = self.now;
        {
            let _rt = rt.enter();
            host.base = Instant::now();
            let _host = Enter::host(host.ctx(&net));
            if let Some(software) = &host.software {
                host.main = Some(software());
            }
        }
        host.rt = Some(rt);
        host.finished = false;
        // It runs at once: its software's first poll.
        host.deadlines.insert(self.now);
        self.collect(i, self.now);
    }

    /// Whether host `name` runs (not crashed).
    pub fn is_host_running(&self, name: &str) -> bool {
        self.hosts[self.index(name)].rt.is_some()
    }

    /// Stops host `name` at once: its tasks are dropped, its sockets close,
    /// datagrams to it are lost.
    pub fn crash(&mut self, name: &str) {
        let i = self.index(name);
        self.stop(i);
    }

    fn stop(&mut self, i: usize) {
        let net = self.net.clone();
        let host = &mut self.hosts[i];
        let Some(rt) = host.rt.take() else {
            return;
        };
        {
            let _host = Enter::host(host.ctx(&net));
            {
                let _rt = rt.enter();
                host.main = None;
            }
            drop(rt);
        }
        // What its dying tasks announced is nobody's.
        proto::time::take_announced(&mut self.announced);
        self.announced.clear();
        let host = &mut self.hosts[i];
        host.deadlines.clear();
        let ip = host.ip;
        lock(&net.inner).sockets.retain(|(at, _), _| *at != ip);
    }

    /// Restarts host `name` now: a crash, then its software again.
    pub fn bounce(&mut self, name: &str) {
        let i = self.index(name);
        self.stop(i);
        if self.hosts[i].software.is_some() {
            self.boot(i);
        }
    }

    // The earliest instant something is due, or `None`.
    fn next_event(&self) -> Option<Duration> {
        let flight = lock(&self.net.inner).flight.peek().map(|Reverse(f)| f.at);
        let timers = self
            .hosts
            .iter()
            .filter(|h| h.rt.is_some())
            .filter_map(|h| h.deadlines.first().copied())
            .min();
        let woken = self
            .hosts
            .iter()
            .any(|h| {
                h.rt.as_ref()
                    .is_some_and(|rt| rt.metrics().global_queue_depth() > 0)
            })
            .then_some(self.now);
        [flight, timers, woken].into_iter().flatten().min()
    }

    /// Runs everything due before `limit`; the world's time is then `limit`
    /// and every host whose tasks something outside woke has run at it.
    pub fn step_until(&mut self, limit: Duration) -> Result<(), WorldError> {
        while let Some(t) = self.next_event().filter(|t| *t < limit) {
            self.instant(t.max(self.now))?;
        }
        self.now = self.now.max(limit);
        lock(&self.net.inner).now = self.now;
        WORLD_NOW.with(|n| n.set(Some(self.now)));
        Ok(())
    }

    /// Brings every running host's clock to the world's time, so that what
    /// the harness does next (an action) happens at the same time on every
    /// host.
    pub fn sync(&mut self) -> Result<(), WorldError> {
        let t = self.now;
        for i in 0..self.hosts.len() {
            if self.hosts[i].rt.is_some() && self.hosts[i].at < t {
                self.advance(i, t, Vec::new())?;
            }
        }
        Ok(())
    }

    /// Runs until every client has finished, at most `limit` of simulated time.
    pub fn run(&mut self, limit: Duration) -> Result<(), WorldError> {
        loop {
            if self.hosts.iter().filter(|h| h.client).all(|h| h.finished) {
                return Ok(());
            }
            let Some(t) = self.next_event() else {
                return Err(WorldError {
                    host: "world".into(),
                    message: "nothing left to run and a client has not finished".into(),
                });
            };
            if t > limit {
                return Err(WorldError {
                    host: "world".into(),
                    message: format!("ran for {limit:?} without every client finishing"),
                });
            }
            self.instant(t.max(self.now))?;
        }
    }

    // Runs instant `t` on every host that has something due at it.
    fn instant(&mut self, t: Duration) -> Result<(), WorldError> {
        self.now = t;
        WORLD_NOW.with(|n| n.set(Some(t)));
        let mut due: BTreeMap<usize, Vec<InFlight>> = BTreeMap::new();
        {
            let mut inner = lock(&self.net.inner);
            inner.now = t;
            inner.stats.instants += 1;
            while inner.flight.peek().is_some_and(|Reverse(f)| f.at <= t) {
                let Reverse(f) = inner.flight.pop().expect("peeked");
                match self
                    .hosts
                    .iter()
                    .position(|h| h.ip == f.to.ip() && h.rt.is_some())
                {
                    Some(i) => due.entry(i).or_default().push(f),
                    None => inner.stats.datagrams_lost += 1,
                }
            }
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if h.rt.is_none() {
                continue;
            }
            let timer = h.deadlines.first().is_some_and(|d| *d <= t);
            let woken =
                h.rt.as_ref()
                    .is_some_and(|rt| rt.metrics().global_queue_depth() > 0);
            if woken && h.at < t {
                lock(&self.net.inner).stats.late_wakes += 1;
            }
            if timer || woken {
                due.entry(i).or_default();
            }
        }
        for (i, datagrams) in due {
            self.advance(i, t, datagrams)?;
        }
        Ok(())
    }

    // Files what host `i` announced, as of its time `t`.
    fn collect(&mut self, i: usize, t: Duration) {
        proto::time::take_announced(&mut self.announced);
        let host = &mut self.hosts[i];
        for d in self.announced.drain(..) {
            let at = host.boot_at + ceil_ms(d.saturating_duration_since(host.base));
            if at > t {
                host.deadlines.insert(at);
            }
        }
        while host.deadlines.first().is_some_and(|d| *d < t) {
            host.deadlines.pop_first();
        }
    }

    // Drives host `i` to `t`, hands it `datagrams`, runs it until idle.
    fn advance(
        &mut self,
        i: usize,
        t: Duration,
        datagrams: Vec<InFlight>,
    ) -> Result<(), WorldError> {
        let net = self.net.clone();
        let host = &mut self.hosts[i];
        let Some(rt) = host.rt.as_ref() else {
            return Ok(());
        };
        lock(&net.inner).stats.host_runs += 1;
        let target = host.base + (t - host.boot_at);
        let ctx = host.ctx(&net);
        let main = &mut host.main;
        let mut failed = None;
        {
            let _host = Enter::host(ctx);
            let deliver = || {
                let mut inner = lock(&net.inner);
                for f in datagrams {
                    match inner.sockets.get_mut(&(f.to.ip(), f.to.port())) {
                        Some(s) if s.queue.len() < SOCKET_QUEUE => {
                            s.queue.push_back((f.from, f.payload));
                            if let Some(w) = s.waker.take() {
                                w.wake();
                            }
                        }
                        _ => inner.stats.datagrams_lost += 1,
                    }
                }
            };
            rt.block_on(async {
                tokio::time::sleep_until(target).await;
                deliver();
                let mut idle = std::pin::pin!(Idle { armed: false });
                std::future::poll_fn(|cx| {
                    if let Some(m) = main.as_mut() {
                        if let Poll::Ready(r) = m.as_mut().poll(cx) {
                            *main = None;
                            failed = Some(r);
                        }
                    }
                    idle.as_mut().poll(cx)
                })
                .await;
            });
        }
        host.at = t;
        self.collect(i, t);
        let host = &mut self.hosts[i];
        // It ran at `t`: nothing at `t` is due any more.
        host.deadlines.remove(&t);
        match failed {
            Some(Ok(())) => {
                host.finished = true;
                Ok(())
            }
            Some(Err(e)) => Err(WorldError {
                host: host.name.clone(),
                message: e.to_string(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop(i);
        }
        WORLD_NOW.with(|n| n.set(None));
    }
}
