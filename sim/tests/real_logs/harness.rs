//! The real `fleet-server` and `fleet-agent` binaries on loopback: build
//! them once, start them on free ports, wait on their logs, kill them on
//! drop. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the test build's binaries are (next to simbench), built once per
/// test process: `cargo test -p sim` alone does not build other packages'
/// binaries.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_simbench"))
            .parent()
            .unwrap()
            .to_path_buf();
        let st = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "server",
                "--bin",
                "fleet-server",
                "-p",
                "agent",
                "--bin",
                "fleet-agent",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("cargo runs");
        assert!(st.success(), "cargo build of fleet-server and fleet-agent");
        dir
    })
}

/// A free TCP and UDP port on 127.0.0.1 (bound and released: another
/// process may take it in between, which a test on loopback accepts).
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A child process whose stderr is collected; killed when dropped.
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `bin args`.
    pub fn spawn(bin: &str, args: &[String]) -> Proc {
        let mut child = Command::new(bin_dir().join(bin))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for s in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, lines }
    }

    /// Waits (at most `within`) for an output line with `needle`.
    pub fn wait_line(&self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "no line with {needle:?} within {within:?}: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `within`) for the process to exit; its code.
    pub fn wait(mut self, within: Duration) -> (i32, Vec<String>) {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                let lines = self.lines.lock().unwrap().clone();
                return (st.code().unwrap_or(-1), lines);
            }
            assert!(Instant::now() < end, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL, as a crash) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ports of one server, fixed so a restarted server listens where its
/// agents' `agent.json` points.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub enroll: u16,
    pub tunnel: u16,
    pub ws: u16,
    pub admin: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            enroll: free_port(),
            tunnel: free_port(),
            ws: free_port(),
            admin: free_port(),
        }
    }
}

pub const ADMIN_TOKEN: &str = "admin-secret-for-tests";
pub const ENROLL_TOKEN: &str = "enroll-token";

/// One deployment's scratch directory.
pub struct Deployment {
    pub dir: PathBuf,
    pub ports: Ports,
}

impl Deployment {
    pub fn new(tag: &str) -> Deployment {
        let dir =
            std::env::temp_dir().join(format!("simbench-real-logs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Deployment {
            dir,
            ports: Ports::free(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn s(p: PathBuf) -> String {
        p.display().to_string()
    }

    /// Starts `fleet-server` (logs srv.frames.jsonl, srv.events.jsonl,
    /// appended across restarts) and waits until it listens.
    pub fn server(&self, behavior: &str) -> Proc {
        let p = self.ports;
        let args: Vec<String> = vec![
            "--data".into(),
            Self::s(self.path("srv")),
            "--hostname".into(),
            "localhost".into(),
            "--token".into(),
            ENROLL_TOKEN.into(),
            "--behavior".into(),
            behavior.into(),
            "--enroll-port".into(),
            p.enroll.to_string(),
            "--tunnel-port".into(),
            p.tunnel.to_string(),
            "--ws-port".into(),
            p.ws.to_string(),
            "--admin-listen".into(),
            format!("127.0.0.1:{}", p.admin),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
            "--frame-log".into(),
            Self::s(self.path("srv.frames.jsonl")),
            "--event-log".into(),
            Self::s(self.path("srv.events.jsonl")),
        ];
        let s = Proc::spawn("fleet-server", &args);
        s.wait_line("operator API on", Duration::from_secs(20));
        s
    }

    /// `fleet-agent <common flags> <sub>` for agent `name` of `site`
    /// (logs <name>.frames.jsonl, <name>.events.jsonl).
    pub fn agent(&self, name: &str, site: &str, behavior: &str, sub: &[&str]) -> Proc {
        let mut args: Vec<String> = vec![
            "--data".into(),
            Self::s(self.path(&format!("agent-{name}"))),
            "--ca".into(),
            Self::s(self.path("srv").join("ca.pem")),
            "--server".into(),
            "localhost".into(),
            "--enroll-port".into(),
            self.ports.enroll.to_string(),
            "--liveness-port".into(),
            "0".into(),
            "--name".into(),
            name.into(),
            "--site".into(),
            site.into(),
            "--behavior".into(),
            behavior.into(),
            "--frame-log".into(),
            Self::s(self.path(&format!("{name}.frames.jsonl"))),
            "--event-log".into(),
            Self::s(self.path(&format!("{name}.events.jsonl"))),
        ];
        args.extend(sub.iter().map(|s| s.to_string()));
        Proc::spawn("fleet-agent", &args)
    }

    /// The records of a JSON Lines log (an absent file: none).
    pub fn log(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (at most `within`) until `pred` holds for log `name`.
    pub fn wait_log(
        &self,
        name: &str,
        what: &str,
        within: Duration,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let end = Instant::now() + within;
        while !pred(&self.log(name)) {
            assert!(Instant::now() < end, "{name}: {what} not within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An operator API request; (HTTP status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.ports.admin)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// `simbench <args>` in the deployment's directory; (exit code, stdout, stderr).
    pub fn simbench(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
