//! The real side: a network namespace per case, the release `fleet-server`
//! and `fleet-agent` inside it on 127.0.0.1, faults as nftables rules in the
//! input hook (drops in input lose the packet on the path; in output they
//! make `sendmsg` fail with EPERM instead, see NOTES-real.md).
//!
//! Everything is bounded and everything is undone: [`Netns`] deletes its
//! namespace and [`Proc`] kills its process when dropped, also on an error
//! or a panic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why the real side cannot run at all on this machine.
pub fn unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("network namespaces need Linux".into());
    }
    if !is_root() {
        return Some("network namespaces and nftables need root (run as root, e.g. in CI)".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    None
}

fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs `cmd` to its end within `timeout`; its stderr on failure.
fn run_cmd(cmd: &mut Command, timeout: Duration) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut s, &mut err);
            }
            return Err(format!("{shown} failed ({status}): {}", err.trim()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{shown} did not finish in {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A network namespace with its loopback up, deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a leftover of the same name first).
    pub fn create(name: &str) -> Result<Self, String> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run_cmd(
            Command::new("ip").args(["netns", "add", name]),
            Duration::from_secs(10),
        )?;
        let ns = Netns { name: name.into() };
        run_cmd(
            &mut ns.command("ip", &["link", "set", "lo", "up"]),
            Duration::from_secs(10),
        )?;
        Ok(ns)
    }

    /// A command running `program args` inside the namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// Loads nftables `rules` (one `add rule` body each) into a table of
    /// this namespace, in a chain on the input hook.
    pub fn firewall(&self, rules: &[&str]) -> Result<(), String> {
        let mut script = String::from(
            "add table inet conform\nadd chain inet conform in { type filter hook input priority 0; policy accept; }\n",
        );
        for r in rules {
            script.push_str(&format!("add rule inet conform in {r}\n"));
        }
        let mut cmd = self.command("nft", &["-f", "-"]);
        let shown = format!("nft -f - <<< {script:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{shown}: {e}"))?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("{shown}: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{shown} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Removes every rule this suite added (the fault lifts).
    pub fn lift(&self) -> Result<(), String> {
        run_cmd(
            &mut self.command("nft", &["delete", "table", "inet", "conform"]),
            Duration::from_secs(10),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes namespaces an earlier `simbench conform` left behind (killed
/// before its guards ran, e.g. by SIGKILL): those named `conform-<pid>-...`
/// whose process is gone. Returns their names.
pub fn sweep_stale() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("conform-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            drop(Netns { name: name.into() });
            removed.push(name.to_string());
        }
    }
    removed
}

/// One line a process wrote to stderr, with when it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    /// Since the process was spawned.
    pub at: Duration,
    /// The text.
    pub text: String,
}

/// A process started by the suite, killed when dropped.
pub struct Proc {
    child: Child,
    started: Instant,
    lines: Arc<Mutex<Vec<Line>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Spawns `cmd`, stdout discarded, stderr read line by line and timed.
    pub fn spawn(cmd: Command) -> Result<Self, String> {
        Self::spawn_with(cmd, Stdio::null())
    }

    /// [`Proc::spawn`], stdout written to the file `path`.
    pub fn spawn_stdout_to(cmd: Command, path: &Path) -> Result<Self, String> {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::spawn_with(cmd, Stdio::from(f))
    }

    fn spawn_with(mut cmd: Command, stdout: Stdio) -> Result<Self, String> {
        let shown = format!("{cmd:?}");
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {shown}: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(text) = line else { break };
                let at = started.elapsed();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Line { at, text });
            }
        });
        Ok(Proc {
            child,
            started,
            lines,
            reader: Some(reader),
        })
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The stderr lines so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until a stderr line satisfies `pred`, at most `timeout`.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(&l.text)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, at most `timeout`: its exit code and
    /// how long it ran, or `None` (then it is killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(i32, Duration)> {
        let deadline = self.started + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let ran = self.started.elapsed();
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some((status.code().unwrap_or(-1), ran));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process now (SIGKILL) and reaps it.
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

/// The admin token of every server the suite starts (its operator API
/// listens on 127.0.0.1:7443 of the case's own namespace).
pub const ADMIN_TOKEN: &str = "conform-admin-token";
/// How long one `fleetctl` call may take (its own request bound is 10 s).
const FLEETCTL_TIMEOUT: Duration = Duration::from_secs(20);

/// The binaries and scratch space of one case.
pub struct Bench {
    /// Where fleet-server and fleet-agent are.
    pub bin_dir: PathBuf,
    /// This case's scratch directory.
    pub dir: PathBuf,
    /// The namespace.
    pub ns: Netns,
}

impl Bench {
    /// A namespace and a fresh scratch directory for case `case`.
    pub fn new(bin_dir: &Path, case: &str) -> Result<Self, String> {
        let tag = format!("conform-{}-{case}", std::process::id());
        let dir = std::env::temp_dir().join("simbench-conform").join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut ns_name = tag.clone();
        ns_name.truncate(60);
        Ok(Bench {
            bin_dir: bin_dir.to_path_buf(),
            dir,
            ns: Netns::create(&ns_name)?,
        })
    }

    fn bin(&self, name: &str) -> Result<String, String> {
        let p = self.bin_dir.join(name);
        if !p.is_file() {
            return Err(format!(
                "{} not found; build it (cargo build --release -p server -p agent) or pass --bin-dir",
                p.display()
            ));
        }
        Ok(p.display().to_string())
    }

    /// Starts `fleet-server` (preset `behavior`) and waits until it listens.
    pub fn server(&self, behavior: &str) -> Result<Proc, String> {
        let data = self.dir.join("srv");
        let frames = data.join("frames.jsonl");
        let events = data.join("events.jsonl");
        let bin = self.bin("fleet-server")?;
        let mut cmd = self.ns.command(
            &bin,
            &[
                "--data",
                &data.display().to_string(),
                "--hostname",
                "localhost",
                "--token",
                "enroll-token",
                // The simulated side has no enrollment rate limit: compare like with like.
                "--enroll-rate",
                "0",
                "--behavior",
                behavior,
                "--frame-log",
                &frames.display().to_string(),
                "--event-log",
                &events.display().to_string(),
                // The operator API, on the namespace's own loopback.
                "--admin-token",
                ADMIN_TOKEN,
            ],
        );
        cmd.env("RUST_LOG", "warn");
        let p = Proc::spawn(cmd)?;
        p.wait_line(Duration::from_secs(15), |l| l.contains("enrollment on TCP"))
            .ok_or_else(|| {
                format!(
                    "fleet-server did not start within 15 s: {}",
                    p.lines()
                        .iter()
                        .map(|l| l.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" / ")
                )
            })?;
        Ok(p)
    }

    /// Runs `fleetctl --json <args>` in the namespace against the case's
    /// server (bounded): the JSON it printed when it exits 0, else why not
    /// (its exit code and stderr).
    pub fn fleetctl(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let bin = self.bin("fleetctl")?;
        let mut all = vec![
            "--server",
            "http://127.0.0.1:7443",
            "--token",
            ADMIN_TOKEN,
            "--json",
        ];
        all.extend_from_slice(args);
        let mut cmd = self.ns.command(&bin, &all);
        let shown = format!("fleetctl {}", args.join(" "));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {shown}: {e}"))?;
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut s);
                }
                s
            })
        };
        let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
        let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
        let deadline = Instant::now() + FLEETCTL_TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish in {FLEETCTL_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if !status.success() {
            return Err(format!("{shown} failed ({status}): {}", err.trim()));
        }
        serde_json::from_str(&out).map_err(|e| format!("{shown} printed no JSON ({e}): {out}"))
    }

    /// Starts `fleet-agent <args>` for agent `name` (preset `behavior`),
    /// with its events on stderr.
    pub fn agent(&self, name: &str, behavior: &str, args: &[&str]) -> Result<Proc, String> {
        Proc::spawn(self.agent_command(name, behavior, args)?)
    }

    /// The command line [`Bench::agent`] runs.
    pub fn agent_command(
        &self,
        name: &str,
        behavior: &str,
        args: &[&str],
    ) -> Result<Command, String> {
        let data = self.dir.join(format!("agent-{name}"));
        let frames = self.dir.join(format!("agent-{name}.frames.jsonl"));
        let ca = self.dir.join("srv").join("ca.pem");
        let bin = self.bin("fleet-agent")?;
        let mut all = vec![
            "--data".to_string(),
            data.display().to_string(),
            "--ca".into(),
            ca.display().to_string(),
            "--name".into(),
            name.into(),
            "--behavior".into(),
            behavior.into(),
            "--frame-log".into(),
            frames.display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut cmd = self.ns.command(&bin, &refs);
        cmd.env("RUST_LOG", "warn,fleet::event=info");
        Ok(cmd)
    }
}
