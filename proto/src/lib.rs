//! Shared ground of the fleet agent and server.
//!
//! - [`msg`]: wire messages and well-known ports.
//! - [`frame`]: frame-log and event-log records (the observation contract).
//! - [`env`]: the seam — network, clock, crypto, disk and observer as values.
//! - [`real`]: the seam on real tokio sockets, the system clock and a directory.
//! - [`pki`]: deterministic Ed25519 keys and the certificates the server's CA issues.
//! - [`tls`]: rustls client/server configurations built from an [`env::Env`].
//! - [`quic`]: quinn endpoint configuration with every random input from the env.
//! - [`ws`]: WebSocket frame helpers shared by the agent, server and relays.
//! - [`files`]: whole-file helpers over [`env::Disk`] (atomic replace).
//! - [`build`]: agent builds as upgrades serve, verify and run them.

pub mod build;
pub mod env;
pub mod files;
pub mod frame;
pub mod fsdisk;
pub mod line;
pub mod msg;
pub mod pki;
pub mod quic;
pub mod real;
pub mod time;
pub mod tls;
pub mod ws;
