//! `fleet-server`: the gateway on real sockets.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use proto::real::{jsonl_file_capped, JsonlObserver};
use server::{ServerConfig, ServerSwitches};

/// The fleet gateway/server: HTTPS enrollment, QUIC tunnel, WebSocket command channel.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:\n  fleet-server --data ./srv --hostname localhost --token s3cret --frame-log ./srv/frames.jsonl\n  fleet-server --data ./srv --token s3cret --admin-listen 127.0.0.1:7443   # operator API; token in ./srv/admin-token\n\nThe operator API (fleetctl) listens on --admin-listen, loopback by default. Its admin token is\n--admin-token, or else the one in DATA/admin-token, created (mode 0600) at the first start."
)]
struct Args {
    /// Data directory (store, CA). The CA is also written to DIR/ca.pem for installers.
    #[arg(long, default_value = "fleet-server-data")]
    data: PathBuf,
    /// Host name agents connect to (the TLS certificate's name).
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Accepted enrollment token (repeatable). Required, here or in
    /// --token-file: the server does not start without one.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// File of enrollment tokens, one a line: `SECRET [uses=N]
    /// [expires=UNIX_SECONDS]` (`#` starts a comment). Keep it mode 0600.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Enrollments each --token may make in all (counted across restarts).
    #[arg(long)]
    token_max_uses: Option<u64>,
    /// When each --token stops being accepted, in seconds since the Unix epoch.
    #[arg(long)]
    token_expires: Option<u64>,
    /// Enrollment requests allowed per source address and minute (a burst
    /// of as many); 0 turns the limit off. Over it: 429 with Retry-After.
    #[arg(long, default_value_t = 60)]
    enroll_rate: u32,
    /// Connections each listener (enrollment, command channel, tunnel) holds
    /// at once, from all sources together; past it a new connection is
    /// closed at once (QUIC: refused) and logged as `conn.refused`. 0 turns
    /// the cap off.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS, value_name = "N")]
    max_conns: u32,
    /// Connections each listener holds at once from one source address
    /// (each agent holds one command channel and one tunnel; raise it for a
    /// site of more agents behind one NAT address). 0 turns the cap off.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS_PER_SOURCE, value_name = "N")]
    max_conns_per_source: u32,
    /// Address the enrollment, tunnel and command-channel listeners bind
    /// (0.0.0.0: every interface, to serve agents on other machines).
    #[arg(long, default_value_t = std::net::IpAddr::from([127, 0, 0, 1]))]
    listen: std::net::IpAddr,
    /// Behaviour preset: `fixed` or `legacy`.
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "legacy"])]
    behavior: String,
    /// Enrollment port (TCP).
    #[arg(long, default_value_t = proto::msg::ENROLL_PORT)]
    enroll_port: u16,
    /// Tunnel port (UDP).
    #[arg(long, default_value_t = proto::msg::TUNNEL_PORT)]
    tunnel_port: u16,
    /// Command-channel port (TCP).
    #[arg(long, default_value_t = proto::msg::WS_PORT)]
    ws_port: u16,
    /// Write the frame log (JSON Lines, simbench's format) here.
    #[arg(long)]
    frame_log: Option<PathBuf>,
    /// Write the event log (JSON Lines) here.
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// Size cap of each log file: past it, FILE becomes FILE.1 (replacing
    /// the last one) and FILE starts afresh.
    #[arg(long, default_value_t = proto::real::DEFAULT_LOG_MAX_BYTES, value_name = "BYTES")]
    log_max_bytes: u64,
    /// Address of the operator API (plain HTTP; keep it on loopback or a
    /// management network).
    #[arg(long, default_value_t = std::net::SocketAddr::from(([127, 0, 0, 1], server::admin::ADMIN_PORT)))]
    admin_listen: std::net::SocketAddr,
    /// Admin token of the operator API (default: DATA/admin-token, created
    /// at first start). Must differ from every enrollment token.
    #[arg(long)]
    admin_token: Option<String>,
}

/// `--max-conns`'s default.
const DEFAULT_MAX_CONNS: u32 = 4096;
/// `--max-conns-per-source`'s default.
const DEFAULT_MAX_CONNS_PER_SOURCE: u32 = 256;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("fleet-server: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let open = |p: &std::path::Path| jsonl_file_capped(p, args.log_max_bytes);
    let frames = args.frame_log.as_deref().map(open).transpose()?;
    let events = args.event_log.as_deref().map(open).transpose()?;
    let observer = Arc::new(JsonlObserver::new(frames, events));
    let mut tokens: Vec<server::EnrollToken> = args
        .tokens
        .iter()
        .map(|t| server::EnrollToken {
            secret: t.clone(),
            max_uses: args.token_max_uses,
            expires_unix_us: args.token_expires.map(|s| s.saturating_mul(1_000_000)),
        })
        .collect();
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        tokens.extend(
            server::parse_token_file(&text)
                .map_err(|e| format!("token file {}: {e}", path.display()))?,
        );
    }
    if tokens.is_empty() {
        return Err(server::ServerError::NoEnrollToken.into());
    }
    let env = proto::real::env_on("server", &args.data, observer, args.listen)?;
    let (admin_token, token_file) =
        server::admin::load_or_create_token(&args.data, args.admin_token.as_deref(), |b| {
            env.fill_random(b)
        })?;
    if tokens.iter().any(|t| t.secret == admin_token) {
        return Err("the admin token must differ from every enrollment token (--token); choose another --admin-token".into());
    }
    let cfg = ServerConfig {
        hostname: args.hostname,
        enroll_tokens: tokens,
        enroll_rate_limit: (args.enroll_rate > 0).then_some(server::RateLimit {
            per_minute: args.enroll_rate,
            burst: args.enroll_rate,
        }),
        conn_limits: server::limits::ConnLimits {
            per_listener: (args.max_conns > 0).then_some(args.max_conns),
            per_source: (args.max_conns_per_source > 0).then_some(args.max_conns_per_source),
        },
        switches: if args.behavior == "legacy" {
            ServerSwitches::LEGACY
        } else {
            ServerSwitches::FIXED
        },
        enroll_port: args.enroll_port,
        tunnel_port: args.tunnel_port,
        ws_port: args.ws_port,
        ..ServerConfig::default()
    };
    let handle = server::start(env, cfg).await?;
    if let Some(m) = handle.store_migration() {
        eprintln!(
            "fleet-server: the store was written by an older server (times as process uptime, schema 1): \
             moved {} times in {} records onto the calendar, as if that server stopped {} s after its start \
             and restarted now; check wake and command deadlines with fleetctl",
            m.values,
            m.records,
            m.last_uptime_us / 1_000_000
        );
    }
    let admin = server::admin::spawn(
        handle.clone(),
        server::admin::AdminToken::new(&admin_token),
        args.admin_listen,
    )
    .await?;
    std::fs::write(args.data.join("ca.pem"), handle.ca_pem())?;
    let ports = handle.ports();
    eprintln!(
        "fleet-server: enrollment on TCP {}, tunnel on UDP {}, command channel on TCP {}; CA in {}",
        ports.enroll,
        ports.tunnel,
        ports.ws,
        args.data.join("ca.pem").display()
    );
    let token_note = match &token_file {
        Some(p) => format!("admin token in {}", p.display()),
        None => "admin token from --admin-token".to_string(),
    };
    if !admin.ip().is_loopback() {
        eprintln!("fleet-server: warning: the operator API on {admin} is plain HTTP and reachable off this machine");
    }
    eprintln!("fleet-server: operator API on http://{admin}; {token_note}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
