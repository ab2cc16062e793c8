//! Datagram sockets between the world's hosts: what carries the hosts' TCP
//! segments and QUIC's packets.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{current, elapsed, Net};

/// A UDP socket bound on the current host.
#[derive(Debug)]
pub struct UdpSocket {
    net: Arc<Net>,
    ip: IpAddr,
    port: u16,
    id: u64,
}

fn not_in_host(what: &str) -> io::Error {
    io::Error::other(format!("{what} must run on a host of a simulated world"))
}

impl UdpSocket {
    /// Binds `addr`'s port (0: an ephemeral one) on the current host; the
    /// address must be the unspecified one, as a host has one interface.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        let c = current().ok_or_else(|| not_in_host("UdpSocket::bind"))?;
        if !addr.ip().is_unspecified() && addr.ip() != c.ip {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("cannot bind {addr}: the host's address is {}", c.ip),
            ));
        }
        let (port, id) = c.net.bind(c.ip, addr.port())?;
        Ok(UdpSocket {
            net: c.net,
            ip: c.ip,
            port,
            id,
        })
    }

    /// The bound address, as the socket API gives it for a wildcard bind
    /// (`0.0.0.0:port`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            self.port,
        ))
    }

    /// The host's address this socket sends from.
    pub fn host_ip(&self) -> IpAddr {
        self.ip
    }

    /// Sends one datagram; it arrives after the link's delay or is lost.
    pub fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        let now = elapsed().ok_or_else(|| not_in_host("UdpSocket::send"))?;
        self.net
            .send(SocketAddr::new(self.ip, self.port), to, payload, now);
        Ok(payload.len())
    }

    /// The next datagram into `buf` (cut to its length, as UDP does).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        match self
            .net
            .poll_recv(self.ip, self.port, self.id, Some(cx.waker()))
        {
            Some((from, data)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Poll::Ready(Ok((n, from)))
            }
            None => Poll::Pending,
        }
    }

    /// The next datagram, now, or `WouldBlock`.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self.net.poll_recv(self.ip, self.port, self.id, None) {
            Some((from, data)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Waits for the next datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.net.unbind(self.ip, self.port, self.id);
    }
}
