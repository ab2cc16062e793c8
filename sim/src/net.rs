//! The network seam on the simulated world's sockets.
//!
//! A [`TurmoilNetwork`] is what the harness puts in an agent's or the server's
//! [`proto::env::Env`]: TCP streams and listeners are the host's own
//! TCP ([`crate::tcp`]), UDP sockets
//! are wrapped for quinn by [`crate::quic`]. Every network carries the label
//! of the component that owns it (`server`, or the agent's name), because one
//! host is a whole site of agents and faults must act per agent.
//!
//! Everything here must run on a host of a world (a `World::host` or
//! `World::client` future): sockets find their host through a
//! thread-local. Called from anywhere else, the methods return an error
//! instead of panicking.

use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use proto::env::{BoxFuture, BoxStream, Listener, Network};
use proto::frame::Dir;

use crate::quic::{TurmoilRuntime, TurmoilUdpSocket};
use crate::tcp::host::{HostStack, SimListener, Wire};

/// Sees every UDP datagram a [`TurmoilNetwork`]'s sockets send or receive.
///
/// Used for capture (pcap, digests) and, later, per-agent fault decisions.
/// Called on the host's thread in the order the datagrams pass the socket,
/// which the world makes deterministic for a given seed.
pub trait DatagramTap: Send + Sync + Debug + 'static {
    /// One datagram: `owner` is the network's label, `local` the socket's
    /// bound address (`0.0.0.0:port`: the world fills in the host's address
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

/// [`Network`] for one component: TCP on its host's [`HostStack`], UDP
/// (QUIC) on the world's datagram sockets, both through the run's firewall.
#[derive(Clone, Debug)]
pub struct TurmoilNetwork {
    owner: String,
    host: Arc<HostStack>,
    tap: Option<Arc<dyn DatagramTap>>,
}

impl TurmoilNetwork {
    /// The network of the component labelled `owner` (`server`, `pst-1`,
    /// ...) on the host whose kernel is `host`.
    pub fn on(owner: impl Into<String>, host: Arc<HostStack>) -> Self {
        let tap = host
            .wire()
            .capture()
            .map(|c| c.clone() as Arc<dyn DatagramTap>);
        TurmoilNetwork {
            owner: owner.into(),
            host,
            tap,
        }
    }

    /// The network of a host with one component, named like the host (a
    /// test's), on a wire with no faults; its kernel boots at first use.
    pub fn new(owner: impl Into<String>) -> Self {
        let owner = owner.into();
        let firewall = Arc::new(crate::fault::Firewall::default());
        let wire = Arc::new(Wire::new(firewall, None, 0));
        TurmoilNetwork::on(owner.clone(), HostStack::new(owner, wire))
    }

    /// Boots a kernel for the current host on `wire` and returns
    /// the network of its one component `owner` (for hosts with one owner);
    /// `host_name` is the host's name.
    pub async fn boot(host_name: &str, owner: &str, wire: Arc<Wire>) -> io::Result<Self> {
        require_host("TurmoilNetwork::boot")?;
        let host = HostStack::new(host_name, wire);
        host.boot();
        Ok(TurmoilNetwork::on(owner, host))
    }

    /// The same network, reporting every UDP datagram of sockets bound
    /// from now on to `tap` (instead of the capture).
    pub fn with_tap(mut self, tap: Arc<dyn DatagramTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The label of the component that owns this network's sockets.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Its host's kernel.
    pub fn host(&self) -> &Arc<HostStack> {
        &self.host
    }
}

/// Fails unless called on a host of a world, where sockets work.
fn require_host(what: &str) -> io::Result<()> {
    if crate::world::in_host() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} must run on a host of a simulated world (a World::host or World::client future)"
        )))
    }
}

/// All of this host's addresses, as the seam promises for listeners.
fn any_addr(port: u16) -> SocketAddr {
    // A host has one interface: binds take the unspecified address, and
    // simulations stay IPv4.
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

impl Network for TurmoilNetwork {
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxStream>> {
        let name = host.to_string();
        let host = self.host.clone();
        let owner = self.owner.clone();
        Box::pin(async move {
            require_host("connect_tcp")?;
            host.ensure_booted();
            let ip = host.wire().resolve(&name)?;
            let stream = host.connect(&owner, SocketAddr::new(ip, port)).await?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn listen_tcp(&self, port: u16) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let host = self.host.clone();
        let owner = self.owner.clone();
        Box::pin(async move {
            require_host("listen_tcp")?;
            host.ensure_booted();
            let inner = host.listen(&owner, port)?;
            Ok(Box::new(StackListener { inner }) as Box<dyn Listener>)
        })
    }

    fn bind_udp(
        &self,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Arc<dyn quinn::AsyncUdpSocket>>> {
        let owner = self.owner.clone();
        let tap = self.tap.clone();
        let firewall = self.host.wire().firewall().clone();
        Box::pin(async move {
            require_host("bind_udp")?;
            let socket = crate::world::udp::UdpSocket::bind(any_addr(port))?;
            firewall.register_udp(&owner, socket.local_addr()?.port());
            let firewall = (!firewall.is_empty()).then_some(firewall);
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
        self.host.wire().resolve(host)
    }
}

/// A [`SimListener`] behind the [`Listener`] seam.
struct StackListener {
    inner: SimListener,
}

impl Listener for StackListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.local_addr())
    }
}
