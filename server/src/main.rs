//! `fleet-server`: the gateway on real sockets.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use proto::real::{jsonl_file, JsonlObserver};
use server::{ServerConfig, ServerSwitches};

/// The fleet gateway/server: HTTPS enrollment, QUIC tunnel, WebSocket command channel.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Example:\n  fleet-server --data ./srv --hostname localhost --token s3cret --frame-log ./srv/frames.jsonl"
)]
struct Args {
    /// Data directory (store, CA). The CA is also written to DIR/ca.pem for installers.
    #[arg(long, default_value = "fleet-server-data")]
    data: PathBuf,
    /// Host name agents connect to (the TLS certificate's name).
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Accepted enrollment token (repeatable).
    #[arg(long = "token", default_value = "enroll-token")]
    tokens: Vec<String>,
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
}

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
    let frames = args.frame_log.as_deref().map(jsonl_file).transpose()?;
    let events = args.event_log.as_deref().map(jsonl_file).transpose()?;
    let observer = Arc::new(JsonlObserver::new(frames, events));
    let env = proto::real::env("server", &args.data, observer)?;
    let cfg = ServerConfig {
        hostname: args.hostname,
        enroll_tokens: args.tokens,
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
    std::fs::write(args.data.join("ca.pem"), handle.ca_pem())?;
    let ports = handle.ports();
    eprintln!(
        "fleet-server: enrollment on TCP {}, tunnel on UDP {}, command channel on TCP {}; CA in {}",
        ports.enroll,
        ports.tunnel,
        ports.ws,
        args.data.join("ca.pem").display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
