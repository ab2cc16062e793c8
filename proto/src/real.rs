//! The seam on the real world: tokio sockets, the system clock, a directory
//! on disk and a JSON Lines frame log. Used by the `fleet-agent` and
//! `fleet-server` binaries and the loopback integration test.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::env::{BoxFuture, BoxStream, Clock, Listener, Network, Observer};
use crate::frame::{EventRecord, FrameRecord};

/// Real tokio sockets; listeners bind `bind` (loopback by default).
#[derive(Debug)]
pub struct TokioNetwork {
    /// The address listeners and UDP sockets bind.
    pub bind: IpAddr,
}

impl Default for TokioNetwork {
    fn default() -> Self {
        TokioNetwork {
            bind: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = self.0.accept().await?;
            s.set_nodelay(true)?;
            Ok((Box::new(s) as BoxStream, a))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for TokioNetwork {
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxStream>> {
        let host = host.to_string();
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn listen_tcp(&self, port: u16) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let bind = self.bind;
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind((bind, port)).await?;
            Ok(Box::new(TokioListener(l)) as Box<dyn Listener>)
        })
    }

    fn bind_udp(
        &self,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Arc<dyn quinn::AsyncUdpSocket>>> {
        let bind = self.bind;
        Box::pin(async move {
            let s = std::net::UdpSocket::bind((bind, port))?;
            quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, s)
        })
    }

    fn quic_runtime(&self) -> Arc<dyn quinn::Runtime> {
        Arc::new(quinn::TokioRuntime)
    }

    fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        (host, 0)
            .to_socket_addrs()?
            .map(|a| a.ip())
            .find(IpAddr::is_ipv4)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no IPv4 address for {host}"),
                )
            })
    }
}

/// The system clock; `now_us` counts from the clock's creation.
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SystemClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemClock")
    }
}

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn system_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Writes frame and event records as JSON Lines to optional writers, flushing
/// each line so nothing is lost if the process dies.
pub struct JsonlObserver {
    frames: Option<Mutex<Box<dyn Write + Send>>>,
    events: Option<Mutex<Box<dyn Write + Send>>>,
    next_conn: AtomicU64,
}

impl fmt::Debug for JsonlObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlObserver").finish_non_exhaustive()
    }
}

impl JsonlObserver {
    /// An observer writing frames and events to the given sinks (None = discard).
    pub fn new(
        frames: Option<Box<dyn Write + Send>>,
        events: Option<Box<dyn Write + Send>>,
    ) -> Self {
        JsonlObserver {
            frames: frames.map(Mutex::new),
            events: events.map(Mutex::new),
            next_conn: AtomicU64::new(1),
        }
    }
}

fn write_line<T: serde::Serialize>(sink: &Option<Mutex<Box<dyn Write + Send>>>, rec: &T) {
    if let Some(sink) = sink {
        let mut w = sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut line) = serde_json::to_vec(rec) {
            line.push(b'\n');
            if let Err(e) = w.write_all(&line).and_then(|_| w.flush()) {
                tracing::warn!(error = %e, "frame log write failed");
            }
        }
    }
}

impl Observer for JsonlObserver {
    fn frame(&self, record: FrameRecord) {
        write_line(&self.frames, &record);
    }

    fn event(&self, record: EventRecord) {
        tracing::info!(target: "fleet::event", host = %record.host, event = %record.event, fields = ?record.fields);
        write_line(&self.events, &record);
    }

    fn next_conn_id(&self) -> String {
        format!("c{}", self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}

/// An [`crate::env::Env`] on the real world: tokio sockets, the system clock,
/// the OS random source (rustls' ring provider) and a data directory.
pub fn env(
    point: &str,
    data_dir: &std::path::Path,
    observer: Arc<dyn Observer>,
) -> io::Result<crate::env::Env> {
    env_on(point, data_dir, observer, TokioNetwork::default().bind)
}

/// [`env`] whose listeners bind `bind` (`0.0.0.0` for every interface).
pub fn env_on(
    point: &str,
    data_dir: &std::path::Path,
    observer: Arc<dyn Observer>,
    bind: IpAddr,
) -> io::Result<crate::env::Env> {
    Ok(crate::env::Env {
        net: Arc::new(TokioNetwork { bind }),
        clock: Arc::new(SystemClock::new()),
        crypto: Arc::new(rustls::crypto::ring::default_provider()),
        disk: Arc::new(crate::fsdisk::FsDisk::new(data_dir)?),
        observer,
        point: point.to_string(),
    })
}

/// Opens `path` for appending JSON Lines (creating parent directories).
pub fn jsonl_file(path: &std::path::Path) -> io::Result<Box<dyn Write + Send>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(Box::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
    ))
}
