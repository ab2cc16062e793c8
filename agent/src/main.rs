//! `fleet-agent`: the agent on real sockets.

use std::path::PathBuf;
use std::sync::Arc;

use agent::{AgentConfig, AgentSwitches, StatusCell};
use clap::{Parser, Subcommand};
use proto::real::{jsonl_file_capped, JsonlObserver};

/// The fleet agent.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:\n  fleet-agent --data ./agent --ca ./srv/ca.pem install --token s3cret\n  fleet-agent --data ./agent --ca ./srv/ca.pem up --token s3cret\n  fleet-agent --data ./agent --ca ./srv/ca.pem --site pst --frame-log ./agent.frames.jsonl --event-log ./agent.events.jsonl run"
)]
struct Args {
    /// Agent data directory (agent.json, certificates).
    #[arg(long, default_value = "fleet-agent-data", global = true)]
    data: PathBuf,
    /// Gateway CA shipped with the installer (PEM).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Server host name.
    #[arg(long, default_value = "localhost", global = true)]
    server: String,
    /// Enrollment port.
    #[arg(long, default_value_t = proto::msg::ENROLL_PORT, global = true)]
    enroll_port: u16,
    /// Agent name (defaults to the host name).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Behaviour preset: `fixed` or `legacy`.
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "legacy"], global = true)]
    behavior: String,
    /// TCP port of the `/liveness?failon=...` endpoint the service serves.
    #[arg(long, default_value_t = agent::LIVENESS_PORT, global = true)]
    liveness_port: u16,
    /// The site (office, NAT) this agent is placed in; told to the server at
    /// Auth, so logs group agents by site (the H4 rule of `simbench diagnose`).
    #[arg(long, global = true, value_name = "SITE")]
    site: Option<String>,
    /// Write the agent's frame log (JSON Lines) here.
    #[arg(long, global = true)]
    frame_log: Option<PathBuf>,
    /// Write the agent's event log (JSON Lines) here.
    #[arg(long, global = true)]
    event_log: Option<PathBuf>,
    /// Size cap of each log file: past it, FILE becomes FILE.1 (replacing
    /// the last one) and FILE starts afresh.
    #[arg(long, global = true, default_value_t = proto::real::DEFAULT_LOG_MAX_BYTES, value_name = "BYTES")]
    log_max_bytes: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Enroll (and, fixed behaviour, probe the tunnel). Exit 0 only when it works.
    Up {
        /// Enrollment token.
        #[arg(long)]
        token: String,
    },
    /// The installer: snapshot the data directory, run `up` under the
    /// installer's timeout, and on failure roll back what this `up` wrote
    /// (never a prior install's files; nothing without a snapshot). Prints
    /// the install report as JSON and exits with the code the MSI custom
    /// action sees: `up`'s own (0 ok, 2 enrollment, 3 disk, 4 tunnel probe)
    /// or 124 when the timeout killed it. Keep --frame-log outside --data:
    /// a rollback puts the data directory back as the snapshot had it.
    Install {
        /// Enrollment token.
        #[arg(long)]
        token: String,
        /// The installer's timeout on `up`, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Run the agent service (tunnel + command channel).
    Run,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::process::exit(match run(args).await {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("fleet-agent: {msg}");
            code
        }
    });
}

async fn run(args: Args) -> Result<(), (i32, String)> {
    let ca_pem = match &args.ca {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            (
                2,
                format!("cannot read the gateway CA {}: {e}", p.display()),
            )
        })?,
        None => String::new(),
    };
    let frames = args
        .frame_log
        .as_deref()
        .map(|p| jsonl_file_capped(p, args.log_max_bytes))
        .transpose()
        .map_err(|e| (2, e.to_string()))?;
    let events = args
        .event_log
        .as_deref()
        .map(|p| jsonl_file_capped(p, args.log_max_bytes))
        .transpose()
        .map_err(|e| (2, e.to_string()))?;
    let observer = Arc::new(JsonlObserver::new(frames, events));
    let name = args.name.clone().unwrap_or_else(|| "agent".into());
    let env = proto::real::env(&format!("agent:{name}"), &args.data, observer)
        .map_err(|e| (2, e.to_string()))?;
    let token = match &args.command {
        Cmd::Up { token } | Cmd::Install { token, .. } => token.clone(),
        Cmd::Run => String::new(),
    };
    let mut cfg = AgentConfig::new(&name, &args.server, &token, &ca_pem);
    cfg.enroll_port = args.enroll_port;
    cfg.liveness_port = args.liveness_port;
    cfg.site = args.site.clone();
    cfg.switches = if args.behavior == "legacy" {
        AgentSwitches::LEGACY
    } else {
        AgentSwitches::FIXED
    };
    let status = StatusCell::default();
    if ca_pem.is_empty() && !matches!(args.command, Cmd::Run) {
        return Err((
            2,
            "`up` and `install` need --ca <gateway CA PEM> from the installer".into(),
        ));
    }
    match args.command {
        Cmd::Install { timeout, .. } => {
            let report = agent::installer::install(
                &env,
                &cfg,
                &status,
                std::time::Duration::from_secs(timeout),
            )
            .await;
            println!(
                "{}",
                serde_json::to_string(&report).expect("the install report serializes")
            );
            match report.result {
                agent::installer::InstallResult::Success => Ok(()),
                result => Err((
                    report.exit_code,
                    format!(
                        "install {}: {}{}",
                        serde_json::to_value(result)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        report.error.as_deref().unwrap_or("`up` failed"),
                        if report.rolled_back.is_empty() {
                            String::new()
                        } else {
                            format!("; rolled back {}", report.rolled_back.join(", "))
                        }
                    ),
                )),
            }
        }
        Cmd::Up { .. } => {
            let id = agent::service::up(&env, &cfg, &status)
                .await
                .map_err(|e| (e.exit_code(), e.to_string()))?;
            println!("enrolled as {id}");
            Ok(())
        }
        Cmd::Run => {
            agent::service::run(env, cfg, status).await;
            Ok(())
        }
    }
}
