//! quinn in the simulated world: a [`quinn::Runtime`] on simulated time
//! and a [`quinn::AsyncUdpSocket`] on the world's UDP socket.
//!
//! Build an endpoint with `quinn::Endpoint::new_with_abstract_socket`, passing
//! `TurmoilNetwork::bind_udp` and `TurmoilNetwork::quic_runtime` (see
//! [`crate::net`]); the endpoint's seeded configuration comes from
//! `proto::quic`.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use proto::frame::Dir;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, UdpPoller};

use format::scenario::Proto;

use crate::fault::Firewall;
use crate::net::DatagramTap;
use crate::world::udp::UdpSocket;

/// quinn's runtime on a simulated host: tasks on the host's tokio runtime,
/// time from its paused tokio clock.
///
/// quinn's trait default for `now()` is the wall clock; with it, timers would
/// fire at simulated instants while quinn measured real ones (a blocked
/// handshake then takes 30 s of real time to give up).
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilRuntime;

impl Runtime for TurmoilRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(SimTimer(Box::pin(proto::time::sleep_until(
            tokio::time::Instant::from_std(deadline),
        ))))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        // The endpoint and connection drivers must run on the runtime of the
        // host that made the endpoint: the world runs a host's tasks only while
        // it steps that host, which is how its sockets know where they are.
        tokio::spawn(future);
    }

    fn wrap_udp_socket(&self, _socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a simulated host has no OS sockets: bind with TurmoilNetwork::bind_udp and \
             build the endpoint with quinn::Endpoint::new_with_abstract_socket",
        ))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A tokio `Sleep` on the host's simulated clock, as a quinn timer.
///
/// A newtype because both `AsyncTimer` and `Sleep` are foreign; boxed so the
/// timer is `Unpin` and needs no pin projection.
#[derive(Debug)]
struct SimTimer(Pin<Box<tokio::time::Sleep>>);

impl AsyncTimer for SimTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        proto::time::announce(deadline);
        self.0.as_mut().reset(deadline);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Future::poll(self.0.as_mut(), cx)
    }
}

/// The world's UDP socket as quinn's [`AsyncUdpSocket`], labelled with its owner.
pub struct TurmoilUdpSocket {
    inner: UdpSocket,
    local: SocketAddr,
    owner: String,
    tap: Option<Arc<dyn DatagramTap>>,
    firewall: Option<Arc<Firewall>>,
}

impl fmt::Debug for TurmoilUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurmoilUdpSocket")
            .field("local", &self.local)
            .field("owner", &self.owner)
            .field("tap", &self.tap)
            .finish_non_exhaustive()
    }
}

impl TurmoilUdpSocket {
    /// Wraps a bound socket for `owner`, reporting datagrams to `tap`.
    pub fn new(
        socket: UdpSocket,
        owner: String,
        tap: Option<Arc<dyn DatagramTap>>,
    ) -> io::Result<Self> {
        Ok(TurmoilUdpSocket {
            local: socket.local_addr()?,
            inner: socket,
            owner,
            tap,
            firewall: None,
        })
    }

    /// The same socket with its outgoing datagrams subject to `firewall`.
    pub fn with_firewall(mut self, firewall: Option<Arc<Firewall>>) -> Self {
        self.firewall = firewall;
        self
    }

    // Whether the firewall drops a datagram from this socket to `to`. Both
    // directions of a path are decided here, at the sender: the server's
    // replies to an agent are placed by the agent's registered port.
    fn firewalled(&self, to: SocketAddr) -> bool {
        let Some(fw) = &self.firewall else {
            return false;
        };
        let now = crate::world::elapsed().unwrap_or_default();
        fw.verdict(
            Proto::Udp,
            &fw.party_of_owner(&self.owner),
            &fw.party_at(Proto::Udp, to),
            self.local.port(),
            to.port(),
            now,
        )
        .is_some()
    }

    /// The label of the component that owns this socket.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn observe(&self, dir: Dir, remote: SocketAddr, payload: &[u8]) {
        if let Some(tap) = &self.tap {
            tap.datagram(&self.owner, dir, self.local, remote, payload);
        }
    }

    /// Reads as many waiting datagrams as fit in `bufs`; 0 when none waits.
    fn drain(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let mut count = 0;
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()) {
            match self.inner.try_recv_from(buf) {
                Ok((len, from)) => {
                    self.observe(Dir::Rx, from, &buf[..len]);
                    *meta = RecvMeta {
                        addr: from,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    count += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}

impl AsyncUdpSocket for TurmoilUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // quinn asks for one datagram per transmit (max_transmit_segments is
        // 1), but honour a segment size anyway rather than glue datagrams.
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for datagram in transmit.contents.chunks(segment) {
            self.observe(Dir::Tx, transmit.destination, datagram);
            if self.firewalled(transmit.destination) {
                tracing::trace!(owner = %self.owner, to = %transmit.destination, "udp datagram dropped by the firewall");
                continue;
            }
            // A datagram to no host is lost on the way, as on a real
            // network: QUIC's own timers decide.
            self.inner.try_send_to(datagram, transmit.destination)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let count = self.drain(bufs, meta)?;
        if count > 0 {
            return Poll::Ready(Ok(count));
        }
        // Nothing waits: register for the next datagram, which may have
        // come in between.
        let Some((buf, meta)) = bufs.iter_mut().zip(meta.iter_mut()).next() else {
            return Poll::Ready(Ok(0));
        };
        match self.inner.poll_recv_from(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok((len, from))) => {
                self.observe(Dir::Rx, from, &buf[..len]);
                *meta = RecvMeta {
                    addr: from,
                    len,
                    stride: len,
                    ecn: None,
                    dst_ip: None,
                };
                Poll::Ready(Ok(1))
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The world applies no send back-pressure on UDP, so the socket is always
/// writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
