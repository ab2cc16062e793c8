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

    fn bind_udp_client(
        &self,
        peer: IpAddr,
    ) -> BoxFuture<'static, io::Result<Arc<dyn quinn::AsyncUdpSocket>>> {
        Box::pin(async move {
            let s = std::net::UdpSocket::bind((unspecified_like(peer), 0))?;
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

/// The unspecified address of `ip`'s family (`0.0.0.0` or `::`): what a
/// client socket binds to reach `ip` from whichever interface routes to it.
pub fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The system clock; `now_us` is microseconds since the Unix epoch, so
/// every process of a deployment logs on one clock and a restarted process
/// continues where the last one stopped (DESIGN.md, "Observation").
///
/// The calendar is read once, at creation; after that the clock advances
/// with the monotonic clock, so a step of the wall clock (NTP) never makes
/// one process's log go back in time.
pub struct SystemClock {
    start: Instant,
    start_epoch_us: u64,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
            start_epoch_us: epoch_us(SystemTime::now()),
        }
    }
}

/// Microseconds since the Unix epoch (0 for a time before it).
pub fn epoch_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
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
        self.start_epoch_us + self.start.elapsed().as_micros() as u64
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
    conn_prefix: String,
    key_log: Arc<rustls::KeyLogFile>,
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
            conn_prefix: conn_prefix(),
            // Appends the sessions' secrets to the file `SSLKEYLOGFILE` names
            // (NSS key log format); does nothing when it is unset.
            key_log: Arc::new(rustls::KeyLogFile::new()),
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
        write_line(&self.frames, &record.capped());
    }

    fn event(&self, record: EventRecord) {
        // Peers choose names and paths: capped before any log sees them.
        let record = record.capped();
        tracing::info!(target: "fleet::event", host = %record.host, event = %record.event, fields = ?record.fields);
        write_line(&self.events, &record);
    }

    fn next_conn_id(&self) -> String {
        format!(
            "{}-c{}",
            self.conn_prefix,
            self.next_conn.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn key_log(&self) -> Option<Arc<dyn rustls::KeyLog>> {
        Some(self.key_log.clone())
    }
}

/// A prefix that makes this process's connection ids unique across the
/// processes and restarts of a deployment: 40 random bits from the OS, in
/// lowercase base32 (8 characters), e.g. `k3xq9zpa`.
fn conn_prefix() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 5];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // No OS randomness: the start time still separates restarts.
        let t = epoch_us(SystemTime::now()).to_be_bytes();
        b.copy_from_slice(&t[3..]);
    }
    data_encoding::BASE32_NOPAD.encode(&b).to_lowercase()
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

/// Default size cap of one real log file: 64 MiB (then it rotates).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 64 << 20;

/// Opens `path` for appending JSON Lines (creating parent directories),
/// rotating at [`DEFAULT_LOG_MAX_BYTES`] (see [`RotatingFile`]).
pub fn jsonl_file(path: &std::path::Path) -> io::Result<Box<dyn Write + Send>> {
    jsonl_file_capped(path, DEFAULT_LOG_MAX_BYTES)
}

/// Opens `path` for appending JSON Lines, rotating at `max_bytes`.
pub fn jsonl_file_capped(
    path: &std::path::Path,
    max_bytes: u64,
) -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(RotatingFile::open(path, max_bytes)?))
}

/// An append-only log file that never grows past `max_bytes`: a write that
/// would take it past renames it to `<path>.1` (replacing the previous
/// `.1`) and starts `path` afresh, so a log and its predecessor hold at
/// most twice the cap. Each `write` is one whole line from the observer,
/// so lines are never split across the two files; `simbench diagnose
/// <path>.1 <path>` reads both in order.
pub struct RotatingFile {
    path: std::path::PathBuf,
    file: std::fs::File,
    len: u64,
    max_bytes: u64,
    // Whether the last byte written ended a line: rotation only happens
    // there, even if a line's write_all takes several writes.
    at_line_start: bool,
}

impl RotatingFile {
    /// Opens (appends to) `path`, creating it and its parent directories.
    pub fn open(path: &std::path::Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::open_append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            len,
            max_bytes: max_bytes.max(1),
            at_line_start: true,
        })
    }

    fn open_append(path: &std::path::Path) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    }

    /// The rotated predecessor of `path`: `<path>.1`.
    pub fn rotated_path(path: &std::path::Path) -> std::path::PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        p.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
        self.file = Self::open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.at_line_start && self.len > 0 && self.len + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.len += n as u64;
        if n > 0 {
            self.at_line_start = buf[n - 1] == b'\n';
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Observer;
    use crate::frame::{Dir, FrameKind, Stage};

    // Moves TLS records between two in-memory rustls connections until
    // neither has anything left to send.
    fn handshake(c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection) {
        for _ in 0..20 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            let mut sent = !buf.is_empty();
            if sent {
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets().unwrap();
            }
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                sent = true;
                c.read_tls(&mut buf.as_slice()).unwrap();
                c.process_new_packets().unwrap();
            }
            if !sent && !c.is_handshaking() && !s.is_handshaking() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn the_real_observer_appends_session_secrets_to_sslkeylogfile() {
        let dir = std::env::temp_dir().join(format!("proto-keylog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keylog = dir.join("keys.txt");
        // rustls's KeyLogFile reads the variable when the observer is made.
        std::env::set_var("SSLKEYLOGFILE", &keylog);
        let observer: Arc<dyn Observer> = Arc::new(JsonlObserver::new(None, None));
        std::env::remove_var("SSLKEYLOGFILE");
        let env = env("server", &dir.join("data"), observer).unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["gw.test".to_string()]).unwrap();
        let (cert, key) = (cert.pem(), signing_key.serialize_pem());
        let server = crate::tls::server_config(&env, &cert, &key, None, &[]).unwrap();
        let client = crate::tls::client_config(&env, &cert, None, &[]).unwrap();
        let mut c =
            rustls::ClientConnection::new(Arc::new(client), "gw.test".try_into().unwrap()).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        handshake(&mut c, &mut s);
        let text = std::fs::read_to_string(&keylog).expect("the key log was written");
        for label in [
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET ",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET ",
            "CLIENT_TRAFFIC_SECRET_0 ",
            "SERVER_TRAFFIC_SECRET_0 ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(label)),
                "{label}in\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_log_rotates_at_its_cap_and_never_splits_a_line() {
        let dir = std::env::temp_dir().join(format!("proto-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("frames.jsonl");
        let obs = JsonlObserver::new(Some(jsonl_file_capped(&path, 4096).unwrap()), None);
        let huge = "x".repeat(100_000);
        for i in 0..1000 {
            let mut r = FrameRecord::new(
                i,
                "server",
                "c1",
                &huge,
                Dir::Rx,
                Stage::Read,
                FrameKind::Text,
            );
            r.msg = Some(huge.clone().into());
            obs.frame(r);
        }
        let cur = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(RotatingFile::rotated_path(&path)).unwrap();
        assert!(
            cur.len() <= 4096 && old.len() <= 4096,
            "{} {}",
            cur.len(),
            old.len()
        );
        let mut last = None;
        for l in old.lines().chain(cur.lines()) {
            let r: FrameRecord = serde_json::from_str(l).expect("whole lines only");
            assert!(r.peer.len() < 300, "capped");
            assert!(last.is_none_or(|t| t < r.t_us));
            last = Some(r.t_us);
        }
        assert_eq!(last, Some(999), "the newest record is in the current file");
        // Reopening appends and keeps counting the file's length.
        drop(obs);
        let before = std::fs::metadata(&path).unwrap().len();
        let mut f = RotatingFile::open(&path, 4096).unwrap();
        f.write_all(b"{}\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before + 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
