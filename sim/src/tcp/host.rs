//! A host's [`Stack`] in the world: the driver task that carries its segments
//! as the world's datagrams (one per segment, between the hosts' [`NIC_PORT`]s),
//! fires its timers and passes every packet through the run's [`Firewall`]
//! and into the [`Capture`]; and the async sockets the seam hands out.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use format::scenario::Proto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::conn::Config;
use super::segment::{Segment, ACK, RST};
use super::stack::{ConnId, Cpu, HostStats, Stack, BACKLOG};
use crate::capture::Capture;
use crate::fault::{Firewall, Packet, Verdict};
use crate::world::udp::UdpSocket;

/// The UDP port of every host's "network interface": the datagram port that
/// carries its TCP segments (IP protocol 6, hence 6).
pub const NIC_PORT: u16 = 6;

/// What every host of a run shares: the firewall on the path, the capture,
/// the host names, the stack's settings and the seed.
#[derive(Debug)]
pub struct Wire {
    firewall: Arc<Firewall>,
    capture: Option<Arc<Capture>>,
    names: OnceLock<BTreeMap<String, IpAddr>>,
    cfg: Config,
    seed: u64,
}

impl Wire {
    /// The wire of a run.
    pub fn new(firewall: Arc<Firewall>, capture: Option<Arc<Capture>>, seed: u64) -> Wire {
        Wire {
            firewall,
            capture,
            names: OnceLock::new(),
            cfg: Config::default(),
            seed,
        }
    }

    /// Tells the wire every host's address (once the sim has its hosts).
    pub fn set_names(&self, names: BTreeMap<String, IpAddr>) {
        let _ = self.names.set(names);
    }

    /// The address of host `name`: unknown names fail as DNS would.
    pub fn resolve(&self, name: &str) -> io::Result<IpAddr> {
        if let Ok(ip) = name.parse() {
            return Ok(ip);
        }
        let Some(names) = self.names.get() else {
            // A wire nobody told the names (a test's): the world's.
            return crate::world::try_lookup(name).ok_or_else(|| unknown_host(name));
        };
        names.get(name).copied().ok_or_else(|| unknown_host(name))
    }

    /// The run's firewall.
    pub fn firewall(&self) -> &Arc<Firewall> {
        &self.firewall
    }

    /// The run's capture, when one is taken.
    pub fn capture(&self) -> Option<&Arc<Capture>> {
        self.capture.as_ref()
    }
}

fn unknown_host(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("failed to lookup address information: {name}: Name or service not known"),
    )
}

#[derive(Debug)]
struct Booted {
    generation: u64,
    stack: Stack,
    start: tokio::time::Instant,
    ip: IpAddr,
}

/// One host's kernel: its TCP stack, rebuilt empty at every boot.
#[derive(Debug)]
pub struct HostStack {
    name: String,
    wire: Arc<Wire>,
    state: Mutex<Option<Booted>>,
    boots: Mutex<u64>,
    notify: Arc<Notify>,
    cpu: Option<Cpu>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the host's network stack restarted",
    )
}

impl HostStack {
    /// The kernel of host `name` (not running until [`HostStack::boot`]).
    pub fn new(name: impl Into<String>, wire: Arc<Wire>) -> Arc<HostStack> {
        HostStack::with_cpu(name, wire, None)
    }

    /// The kernel of host `name`, its software's CPU modelled when `cpu`
    /// is given ([`Cpu`]).
    pub fn with_cpu(name: impl Into<String>, wire: Arc<Wire>, cpu: Option<Cpu>) -> Arc<HostStack> {
        Arc::new(HostStack {
            name: name.into(),
            wire,
            state: Mutex::new(None),
            boots: Mutex::new(0),
            notify: Arc::new(Notify::new()),
            cpu,
        })
    }

    /// The run's wire.
    pub fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the kernel on the current host: every connection of a
    /// previous boot is forgotten (a peer that still sends gets an RST).
    /// Call in the host's closure, before anything uses the network; the
    /// driver task it spawns binds the host's NIC port.
    pub fn boot(self: &Arc<Self>) {
        let generation = {
            let mut b = lock(&self.boots);
            *b += 1;
            *b
        };
        let seed = crate::crypto::derive_seed(
            self.wire.seed,
            &format!("tcp/{}/boot-{generation}", self.name),
        );
        let seed = u64::from_le_bytes(seed[..8].try_into().expect("8 bytes"));
        let ip = crate::world::lookup(self.name.as_str());
        let mut stack = Stack::new(self.wire.cfg.clone(), seed);
        if let Some(cpu) = self.cpu {
            stack = stack.with_cpu(cpu);
        }
        let mut state = lock(&self.state);
        if let Some(old) = state.as_mut() {
            // A restart, not a power loss: what the kernel sent as the old
            // processes' sockets closed (their FINs and RSTs) still goes out,
            // in an order of their own (the order the runtime dropped the
            // old tasks in is not the run's to decide).
            let mut dying = Vec::new();
            while let Some(t) = old.stack.poll_transmit() {
                dying.push(t);
            }
            dying.sort_by_key(|t| (t.dst, t.segment.src_port, t.segment.seq));
            for t in dying {
                stack.queue_transmit(t);
            }
        }
        *state = Some(Booted {
            generation,
            stack,
            start: tokio::time::Instant::now(),
            ip,
        });
        drop(state);
        tokio::spawn(drive(self.clone(), generation));
    }

    /// Runs `f` on the stack of boot `generation` (`None`: any), at its
    /// current time, and wakes the driver when it left something to send.
    fn with<R>(
        &self,
        generation: Option<u64>,
        f: impl FnOnce(&mut Stack, Duration, IpAddr) -> R,
    ) -> io::Result<R> {
        let mut s = lock(&self.state);
        let b = s
            .as_mut()
            .filter(|b| generation.is_none_or(|g| g == b.generation));
        let Some(b) = b else {
            return Err(gone());
        };
        let now = b.start.elapsed();
        let r = f(&mut b.stack, now, b.ip);
        if b.stack.has_transmit() {
            self.notify.notify_one();
        }
        Ok(r)
    }

    /// A power loss: the kernel stops at once and sends nothing more (call
    /// before the world crashes the host, so its dying sockets stay silent).
    pub fn power_off(&self) {
        *lock(&self.state) = None;
    }

    /// The host's counters (zero before the first boot).
    pub fn stats(&self) -> HostStats {
        lock(&self.state)
            .as_ref()
            .map(|b| b.stack.stats())
            .unwrap_or_default()
    }

    /// Opens a TCP connection for `owner` (an agent's name, `server`, ...).
    pub async fn connect(self: &Arc<Self>, owner: &str, dst: SocketAddr) -> io::Result<SimStream> {
        let generation = self.generation();
        let (id, ip, port) = self.with(Some(generation), |s, now, ip| {
            s.connect(dst, now).map(|(id, port)| (id, ip, port))
        })??;
        self.wire
            .firewall
            .register_port(Proto::Tcp, ip, port, owner);
        // Dropped before it connects (the caller's timeout): the socket closes.
        let stream = SimStream {
            host: self.clone(),
            generation,
            id,
        };
        poll_fn(|cx| {
            match self.with(Some(generation), |s, _, _| s.poll_connected(id, cx.waker())) {
                Err(e) => Poll::Ready(Err(e)),
                Ok(Some(r)) => Poll::Ready(r),
                Ok(None) => Poll::Pending,
            }
        })
        .await?;
        Ok(stream)
    }

    /// Listens on TCP `port` for `owner`.
    pub fn listen(self: &Arc<Self>, owner: &str, port: u16) -> io::Result<SimListener> {
        let generation = self.generation();
        let (ip, port) = self.with(Some(generation), |s, _, ip| {
            s.listen(port, BACKLOG).map(|p| (ip, p))
        })??;
        self.wire
            .firewall
            .register_port(Proto::Tcp, ip, port, owner);
        Ok(SimListener {
            host: self.clone(),
            generation,
            port,
            local: SocketAddr::new(ip, port),
        })
    }

    /// Boots the kernel unless it ran already (for a host whose closure
    /// did not boot it, as in a test).
    pub fn ensure_booted(self: &Arc<Self>) {
        if *lock(&self.boots) == 0 {
            self.boot();
        }
    }

    fn generation(&self) -> u64 {
        lock(&self.state)
            .as_ref()
            .map(|b| b.generation)
            .unwrap_or(0)
    }

    // The driver's half: send what is queued, through the firewall.
    fn flush(&self, generation: u64, nic: &UdpSocket) {
        loop {
            let next = self.with(Some(generation), |s, _, ip| {
                s.poll_transmit().map(|t| (t, ip))
            });
            let Ok(Some((t, ip))) = next else {
                return;
            };
            let src = SocketAddr::new(ip, t.segment.src_port);
            let bytes = t.segment.encode();
            if let Some(c) = &self.wire.capture {
                c.tcp(src, t.dst, &bytes);
            }
            let now = crate::world::elapsed().unwrap_or_default();
            let fw = &self.wire.firewall;
            // No rule and no fault: nothing to place the packet for.
            let verdict = if fw.is_empty() {
                Verdict::Pass
            } else {
                let packet = Packet {
                    proto: Proto::Tcp,
                    src: fw.party_at(Proto::Tcp, src),
                    dst: fw.party_at(Proto::Tcp, t.dst),
                    src_port: src.port(),
                    dst_port: t.dst.port(),
                    payload_len: t.segment.payload.len(),
                    pure_ack: t.segment.payload.is_empty() && t.segment.flags == ACK,
                };
                fw.judge(&packet, now)
            };
            match verdict {
                Verdict::Pass => {
                    // A host that is not there (crashed) loses it, as a wire would.
                    let _ = nic.try_send_to(&bytes, SocketAddr::new(t.dst.ip(), NIC_PORT));
                }
                Verdict::Drop => {}
                Verdict::Reject => {
                    if t.segment.has(RST) {
                        continue;
                    }
                    // The firewall answers for the peer with an RST.
                    let seg = &t.segment;
                    let rst = Segment {
                        src_port: seg.dst_port,
                        dst_port: seg.src_port,
                        seq: if seg.has(ACK) { seg.ack } else { 0 },
                        ack: seg.seq.wrapping_add(seg.seq_len()),
                        flags: RST | ACK,
                        window: 0,
                        mss: None,
                        payload: Vec::new(),
                    };
                    if let Some(c) = &self.wire.capture {
                        c.tcp(t.dst, src, &rst.encode());
                    }
                    let _ = self.with(Some(generation), |s, now, _| {
                        s.handle_segment(t.dst, rst, now)
                    });
                }
            }
        }
    }
}

async fn drive(host: Arc<HostStack>, generation: u64) {
    let nic = match UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], NIC_PORT))) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(host = %host.name, error = %e, "the host's network could not start");
            return;
        }
    };
    let mut buf = vec![0u8; 65_536];
    let notify = host.notify.clone();
    loop {
        host.flush(generation, &nic);
        let deadline = match host.with(Some(generation), |s, _, _| s.poll_timeout()) {
            Ok(d) => d,
            Err(_) => return, // rebooted: a newer driver runs
        };
        let start = match lock(&host.state).as_ref() {
            Some(b) => b.start,
            None => return,
        };
        let sleep = async {
            match deadline {
                Some(d) => proto::time::sleep_until(start + d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = nic.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { return };
                let Some(seg) = Segment::decode(&buf[..n]) else { continue };
                let src = SocketAddr::new(from.ip(), seg.src_port);
                if host.with(Some(generation), |s, now, _| s.handle_segment(src, seg, now)).is_err() {
                    return;
                }
            }
            _ = sleep => {
                if host.with(Some(generation), |s, now, _| s.handle_timeout(now)).is_err() {
                    return;
                }
            }
            _ = notify.notified() => {}
        }
    }
}

/// A TCP connection of a [`HostStack`]; closing happens on drop.
#[derive(Debug)]
pub struct SimStream {
    host: Arc<HostStack>,
    generation: u64,
    id: ConnId,
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let id = self.id;
        let r = self.host.with(Some(self.generation), |s, now, _| {
            // Only as much of the caller's buffer as there is to read is
            // initialised: zeroing a whole read buffer on every read was a
            // tenth of a busy fleet's time.
            let ready = s.readable(id).min(buf.remaining());
            s.read(id, buf.initialize_unfilled_to(ready), cx.waker(), now)
        });
        match r {
            Err(e) => Poll::Ready(Err(e)),
            Ok(None) => Poll::Pending,
            Ok(Some(Ok(n))) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Ok(Some(Err(e))) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        match self.host.with(Some(self.generation), |s, now, _| {
            s.write(id, data, cx.waker(), now)
        }) {
            Err(e) => Poll::Ready(Err(e)),
            Ok(None) => Poll::Pending,
            Ok(Some(r)) => Poll::Ready(r),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The kernel has the bytes; a flush waits for nothing more.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let _ = self
            .host
            .with(Some(self.generation), |s, now, _| s.shutdown(id, now));
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let id = self.id;
        let _ = self.host.with(Some(self.generation), |s, now, _| {
            s.close(id, now);
            s.release(id);
        });
    }
}

/// A listening socket of a [`HostStack`]; stops listening on drop.
#[derive(Debug)]
pub struct SimListener {
    host: Arc<HostStack>,
    generation: u64,
    port: u16,
    local: SocketAddr,
}

impl SimListener {
    /// The next connection.
    pub async fn accept(&mut self) -> io::Result<(SimStream, SocketAddr)> {
        let port = self.port;
        let generation = self.generation;
        let (id, peer) = poll_fn(|cx| {
            match self
                .host
                .with(Some(generation), |s, _, _| s.accept(port, cx.waker()))
            {
                Err(e) => Poll::Ready(Err(e)),
                Ok(Some(x)) => Poll::Ready(Ok(x)),
                Ok(None) => Poll::Pending,
            }
        })
        .await?;
        Ok((
            SimStream {
                host: self.host.clone(),
                generation,
                id,
            },
            peer,
        ))
    }

    /// Its address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let port = self.port;
        let _ = self
            .host
            .with(Some(self.generation), |s, now, _| s.unlisten(port, now));
    }
}
