//! The seam between the protocol code and the world it runs in.
//!
//! The agent and the server never open a socket, read a clock, draw a random
//! number or touch a file except through an [`Env`]. The real binaries pass
//! [`crate::real`]'s tokio/std implementation; the simulator passes its own
//! network, simulated time, a seeded crypto provider and a disk with crash
//! semantics. The choice is a value, never a cargo feature.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{EventRecord, FrameRecord};

/// A boxed future, as returned by the object-safe seam traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream (a TCP connection, real or simulated).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// An owned, type-erased byte stream.
pub type BoxStream = Box<dyn Stream>;

/// A listening TCP socket.
pub trait Listener: Send + 'static {
    /// Waits for the next inbound connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The address this listener is bound to (with the real port when 0 was asked).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Sockets: TCP streams and listeners, UDP for QUIC, and name resolution.
pub trait Network: Send + Sync + Debug + 'static {
    /// Opens a TCP connection to `host:port`.
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxStream>>;
    /// Listens on TCP `port` on all of this host's addresses (0 = any free port).
    fn listen_tcp(&self, port: u16) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
    /// Binds a UDP socket for a QUIC endpoint on `port` (0 = any free port).
    fn bind_udp(&self, port: u16)
        -> BoxFuture<'static, io::Result<Arc<dyn quinn::AsyncUdpSocket>>>;
    /// Binds a UDP socket (any free port) for a QUIC client that talks to
    /// `peer`. By default [`Network::bind_udp`]`(0)`; the real network binds
    /// the unspecified address of `peer`'s family instead of the listeners'
    /// address, so an agent reaches a server on another host.
    fn bind_udp_client(
        &self,
        peer: IpAddr,
    ) -> BoxFuture<'static, io::Result<Arc<dyn quinn::AsyncUdpSocket>>> {
        let _ = peer;
        self.bind_udp(0)
    }
    /// The runtime quinn drives its endpoint with (timers, clock, task spawning).
    fn quic_runtime(&self) -> Arc<dyn quinn::Runtime>;
    /// Resolves a host name to an address (QUIC needs an address, not a name).
    fn resolve(&self, host: &str) -> io::Result<IpAddr>;
}

/// Time as the component sees it.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Microseconds of a monotonic clock, for timers and durations. On a
    /// real network it is anchored to the Unix epoch once at process start
    /// (so logs of several processes line up); in the simulator it counts
    /// from the process's start. Either way never store it: keep
    /// [`Clock::unix_us`].
    fn now_us(&self) -> u64;
    /// Calendar time: certificate validity is judged against this, and the
    /// times a store keeps across restarts ([`Clock::unix_us`]).
    fn system_time(&self) -> SystemTime;
    /// Calendar time in microseconds since the Unix epoch (0 before it):
    /// what a store keeps, since it survives the process.
    fn unix_us(&self) -> u64 {
        self.system_time()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
    /// The time the frame and event logs are stamped with: the process's
    /// clock on a real host; the simulator's run clock, which a restart of
    /// the host does not reset, so one run's log stays in order.
    fn log_us(&self) -> u64 {
        self.now_us()
    }
}

/// A random-access file on a [`Disk`].
///
/// Writes are volatile until [`File::sync`]: a simulated crash loses them.
pub trait File: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; an error if the file is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `data` at `offset`, growing the file when needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or zero-extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes everything written so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Takes an exclusive advisory lock on the file, held until this handle
    /// is dropped (or its process dies), as `flock(LOCK_EX | LOCK_NB)`
    /// does: an error of kind [`io::ErrorKind::WouldBlock`] when another
    /// handle, of this process or another, holds it.
    fn try_lock(&self) -> io::Result<()>;
}

/// A component's own disk: flat relative paths such as `certs/<id>.crt`.
pub trait Disk: Send + Sync + Debug + 'static {
    /// Opens `path`; creates it empty when `create` is set and it does not exist.
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn File>>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Deletes `path`.
    fn remove(&self, path: &str) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool;
    /// Every file path on the disk, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Makes creations, renames and removals so far durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
}

/// Receives the frame log and the lifecycle event log, and (when it keeps
/// them) the TLS secrets of the component's sessions.
pub trait Observer: Send + Sync + Debug + 'static {
    /// Records one frame event.
    fn frame(&self, record: FrameRecord);
    /// Records one lifecycle event.
    fn event(&self, record: EventRecord);
    /// A connection id unique for the whole run (`c1`, `c2`, ... in the
    /// simulator; `<process prefix>-c1`, ... on a real network, unique across
    /// the processes and restarts of a deployment).
    fn next_conn_id(&self) -> String;
    /// Where the TLS and QUIC sessions' secrets go, in NSS key log format
    /// (the `SSLKEYLOGFILE` of browsers and curl), so a capture of the
    /// component's traffic can be decrypted: the real observer writes them
    /// to `SSLKEYLOGFILE` when it is set, the simulator's keeps them for the
    /// run's capture. `None` (the default): secrets are not logged.
    fn key_log(&self) -> Option<Arc<dyn rustls::KeyLog>> {
        None
    }
}

/// Everything a component may use of the outside world.
#[derive(Clone, Debug)]
pub struct Env {
    /// Sockets.
    pub net: Arc<dyn Network>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// TLS crypto; its `secure_random` is also the component's only source of randomness.
    pub crypto: Arc<CryptoProvider>,
    /// Persistent storage.
    pub disk: Arc<dyn Disk>,
    /// Frame and event logs.
    pub observer: Arc<dyn Observer>,
    /// Name of the observation point / host this component logs as (`server`, `agent:pst-1`).
    pub point: String,
}

impl Env {
    /// Fills `buf` with random bytes from the component's provider.
    pub fn fill_random(&self, buf: &mut [u8]) {
        self.crypto
            .secure_random
            .fill(buf)
            .expect("the crypto provider's random source failed");
    }

    /// A fresh 32-byte seed from the component's random source.
    pub fn random_seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.fill_random(&mut seed);
        seed
    }

    /// Microseconds since the start of the process (monotonic; never stored).
    pub fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    /// Calendar time, microseconds since the Unix epoch: for stored times.
    pub fn unix_us(&self) -> u64 {
        self.clock.unix_us()
    }

    /// An HTTP `Date` header value (`Wed, 02 Dec 2026 04:47:50 GMT`) from
    /// the component's calendar clock: hyper's own reads the wall clock,
    /// which would make a simulated response differ between two runs.
    pub fn http_date(&self) -> String {
        httpdate::fmt_http_date(self.clock.system_time())
    }

    /// The logs' timeline (see [`Clock::log_us`]).
    pub fn log_us(&self) -> u64 {
        self.clock.log_us()
    }

    /// Records a lifecycle event stamped with the current time and this point's host name.
    pub fn event(&self, event: &str, fields: serde_json::Map<String, serde_json::Value>) {
        self.observer.event(EventRecord {
            t_us: self.log_us(),
            host: self.point.clone(),
            event: event.to_string(),
            fields,
        });
    }
}

/// A rustls time provider reading the component's [`Clock`], so certificate
/// validity follows simulated time.
#[derive(Debug)]
pub struct ClockTimeProvider(pub Arc<dyn Clock>);

impl rustls::time_provider::TimeProvider for ClockTimeProvider {
    fn current_time(&self) -> Option<rustls_pki_types::UnixTime> {
        Some(rustls_pki_types::UnixTime::since_unix_epoch(
            self.0
                .system_time()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?,
        ))
    }
}
