//! The network seam on turmoil's simulated sockets.
//!
//! A [`TurmoilNetwork`] is what the harness puts in an agent's or the server's
//! [`proto::env::Env`]: TCP streams and listeners are turmoil's, UDP sockets
//! are wrapped for quinn by [`crate::quic`]. Every network carries the label
//! of the component that owns it (`server`, or the agent's name), because one
//! turmoil host is a whole site of agents and faults must act per agent.
//!
//! Everything here must run inside a turmoil host (a `sim.host` or
//! `sim.client` future): turmoil's sockets find their host through a
//! thread-local. Called from anywhere else, the methods return an error
//! instead of letting turmoil panic.

use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use proto::env::{BoxFuture, BoxStream, Listener, Network};
use proto::frame::Dir;

use format::scenario::{BlockAction, Proto};

use crate::capture::{Capture, CapturedStream};
use crate::fault::{Firewall, HalfOpenRule, Party, TCP_CONNECT_TIMEOUT};
use crate::quic::{TurmoilRuntime, TurmoilUdpSocket};

/// Sees every UDP datagram a [`TurmoilNetwork`]'s sockets send or receive.
///
/// Used for capture (pcap, digests) and, later, per-agent fault decisions.
/// Called on the host's thread in the order the datagrams pass the socket,
/// which turmoil makes deterministic for a given seed.
pub trait DatagramTap: Send + Sync + Debug + 'static {
    /// One datagram: `owner` is the network's label, `local` the socket's
    /// bound address (`0.0.0.0:port`: turmoil fills in the host's address
    /// only on the wire), `remote` the peer.
    fn datagram(
        &self,
        owner: &str,
        dir: Dir,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    );
}

/// [`Network`] on turmoil's simulated TCP, UDP and DNS, for one component.
#[derive(Clone, Debug)]
pub struct TurmoilNetwork {
    owner: String,
    tap: Option<Arc<dyn DatagramTap>>,
    firewall: Option<Arc<Firewall>>,
    capture: Option<Arc<Capture>>,
}

impl TurmoilNetwork {
    /// The network of the component labelled `owner` (`server`, `pst-1`, ...).
    pub fn new(owner: impl Into<String>) -> Self {
        TurmoilNetwork {
            owner: owner.into(),
            tap: None,
            firewall: None,
            capture: None,
        }
    }

    /// The same network, recording what its sockets send into `capture`
    /// (TCP streams connected or accepted, and UDP sockets bound, from now on).
    pub fn with_capture(mut self, capture: Arc<Capture>) -> Self {
        self.tap = Some(capture.clone());
        self.capture = Some(capture);
        self
    }

    /// The same network, reporting every UDP datagram of sockets bound
    /// from now on to `tap`.
    pub fn with_tap(mut self, tap: Arc<dyn DatagramTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The same network, with its TCP connects and UDP datagrams subject to
    /// `firewall`'s rules.
    pub fn with_firewall(mut self, firewall: Arc<Firewall>) -> Self {
        if !firewall.is_empty() {
            self.firewall = Some(firewall);
        }
        self
    }

    /// The label of the component that owns this network's sockets.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// Fails unless called on a turmoil host, where turmoil's sockets work.
fn require_host(what: &str) -> io::Result<()> {
    // `sim_elapsed` is the one turmoil query that answers `None` instead of
    // panicking when there is no current host.
    match turmoil::sim_elapsed() {
        Some(_) => Ok(()),
        None => Err(io::Error::other(format!(
            "{what} must run inside a turmoil host (a sim.host or sim.client future)"
        ))),
    }
}

/// All of this host's addresses, as the seam promises for listeners.
fn any_addr(port: u16) -> SocketAddr {
    // turmoil accepts only the unspecified address (or loopback) in binds;
    // it panics on a family mismatch, so simulations must stay IPv4.
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

impl Network for TurmoilNetwork {
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxStream>> {
        let host = host.to_string();
        let firewall = self.firewall.clone();
        let owner = self.owner.clone();
        let capture = self.capture.clone();
        Box::pin(async move {
            require_host("connect_tcp")?;
            let fw = firewall;
            if let Some(fw) = &fw {
                firewall_connect(fw, &owner, &host, port, capture.as_deref()).await?;
            }
            // A `(name, port)` pair resolves without side effects (unknown
            // names fail with NotFound), unlike `turmoil::lookup`.
            let stream = match turmoil::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(s) => s,
                Err(e) => {
                    if let (Some(c), io::ErrorKind::ConnectionRefused) = (&capture, e.kind()) {
                        // The name resolved, so this lookup registers nothing.
                        let dst = SocketAddr::new(turmoil::lookup(host.as_str()), port);
                        c.tcp_syn_only(&owner, dst, true);
                    }
                    return Err(e);
                }
            };
            let ends = (stream.local_addr()?, stream.peer_addr()?);
            let half_open = fw
                .as_ref()
                .map(|f| f.half_open_for(&owner))
                .unwrap_or_default();
            let stream: BoxStream = if half_open.is_empty() {
                Box::new(stream)
            } else {
                let me = fw
                    .as_ref()
                    .map(|f| f.party_of_owner(&owner))
                    .unwrap_or(Party::Unknown);
                Box::new(HalfOpenStream {
                    inner: stream,
                    rules: half_open,
                    me,
                })
            };
            // Outermost: what the agent wrote is on its wire, even when a
            // half-open path loses it further on.
            Ok(match capture {
                Some(c) => {
                    c.tcp_open(ends.0, ends.1);
                    Box::new(CapturedStream::new(stream, c, ends.0, ends.1)) as BoxStream
                }
                None => stream,
            })
        })
    }

    fn listen_tcp(&self, port: u16) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let capture = self.capture.clone();
        Box::pin(async move {
            require_host("listen_tcp")?;
            // turmoil assigns port 0 from the host's ephemeral range in
            // order, so the chosen port is deterministic.
            let inner = turmoil::net::TcpListener::bind(any_addr(port)).await?;
            Ok(Box::new(TurmoilListener { inner, capture }) as Box<dyn Listener>)
        })
    }

    fn bind_udp(
        &self,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Arc<dyn quinn::AsyncUdpSocket>>> {
        let owner = self.owner.clone();
        let tap = self.tap.clone();
        let firewall = self.firewall.clone();
        Box::pin(async move {
            require_host("bind_udp")?;
            let socket = turmoil::net::UdpSocket::bind(any_addr(port)).await?;
            if let Some(fw) = &firewall {
                fw.register_udp(&owner, socket.local_addr()?.port());
            }
            Ok(
                Arc::new(TurmoilUdpSocket::new(socket, owner, tap)?.with_firewall(firewall))
                    as Arc<dyn quinn::AsyncUdpSocket>,
            )
        })
    }

    fn quic_runtime(&self) -> Arc<dyn quinn::Runtime> {
        Arc::new(TurmoilRuntime)
    }

    fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        require_host("resolve")?;
        // Beware: turmoil's lookup never fails. A name no host carries gets a
        // fresh address registered for it, and datagrams sent there are lost
        // (see `TurmoilUdpSocket::try_send`): a black hole, not NXDOMAIN.
        Ok(turmoil::lookup(host))
    }
}

/// A TCP connect through the firewall: a rejected SYN fails at once, a
/// dropped one waits for the block to lift or for the connect timeout.
async fn firewall_connect(
    fw: &Firewall,
    owner: &str,
    host: &str,
    port: u16,
    capture: Option<&Capture>,
) -> io::Result<()> {
    let dst_addr = SocketAddr::new(turmoil::lookup(host), port);
    let src = fw.party_of_owner(owner);
    let dst = fw.party_at(dst_addr);
    let now = turmoil::sim_elapsed().unwrap_or_default();
    // The client's source port is ephemeral; rules name the service port.
    let verdict = fw.verdict(Proto::Tcp, &src, &dst, 0, port, now);
    if let (Some(c), Some(action)) = (capture, verdict) {
        c.tcp_syn_only(owner, dst_addr, action == BlockAction::Reject);
    }
    match verdict {
        None => Ok(()),
        Some(BlockAction::Reject) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("connection to {host}:{port} refused"),
        )),
        Some(BlockAction::Drop) => {
            let deadline = now + TCP_CONNECT_TIMEOUT;
            match fw.lifted_at(Proto::Tcp, &src, &dst, 0, port, now) {
                Some(t) if t < deadline => {
                    tokio::time::sleep(t - now).await;
                    Ok(())
                }
                _ => {
                    tokio::time::sleep(TCP_CONNECT_TIMEOUT).await;
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection to {host}:{port} timed out"),
                    ))
                }
            }
        }
    }
}

/// A turmoil TCP listener behind the [`Listener`] seam.
struct TurmoilListener {
    inner: turmoil::net::TcpListener,
    capture: Option<Arc<Capture>>,
}

impl Listener for TurmoilListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            let local = stream.local_addr()?;
            let stream: BoxStream = match &self.capture {
                // The connecting side recorded the handshake.
                Some(c) => Box::new(CapturedStream::new(
                    Box::new(stream),
                    c.clone(),
                    local,
                    peer,
                )),
                None => Box::new(stream),
            };
            Ok((stream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An agent's TCP stream to the gateway on a half-open path: while a rule is
/// in force, what the stopped direction carries is lost without a trace
/// (writes "succeed", reads never see the bytes or the FIN).
struct HalfOpenStream {
    inner: turmoil::net::TcpStream,
    rules: Vec<HalfOpenRule>,
    me: Party,
}

impl HalfOpenStream {
    fn stopped(&self, src: &Party, dst: &Party) -> bool {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        self.rules.iter().any(|r| r.stops(src, dst, now))
    }
}

impl tokio::io::AsyncRead for HalfOpenStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        if !this.stopped(&Party::Server, &this.me) {
            return std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Drain and lose whatever arrives; Pending registers the waker.
        let mut sink = [0u8; 4096];
        loop {
            let mut scratch = tokio::io::ReadBuf::new(&mut sink);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(())) if !scratch.filled().is_empty() => continue,
                // The FIN is lost too; nothing will wake this read again.
                Poll::Ready(Ok(())) => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl tokio::io::AsyncWrite for HalfOpenStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.stopped(&this.me, &Party::Server) {
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = &mut *self;
        if this.stopped(&this.me, &Party::Server) {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
