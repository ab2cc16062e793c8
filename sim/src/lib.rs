//! The simulator: the simulated world, seam implementations, faults, scenario
//! runner, hypothesis engine and the `simbench` command line.
//!
//! - [`world`]: hosts, clocks and datagrams in event-driven time; [`tcp`]: the hosts' TCP.
//! - [`net`], [`quic`], [`clock`], [`crypto`], [`disk`]: the seam in the world
//!   (sockets, quinn runtime, simulated time, seeded TLS crypto, crash-safe disk).
//! - [`fault`]: the firewall acting in the seam; [`kill`]: a disk that dies with its process.
//! - [`run`]: one run of a resolved scenario: hosts, agents, actions, outcome, digest.
//! - [`observe`]: the run's frame and event logs; [`capture`]: capture.pcapng.
//! - [`proxy`]: the reverse proxy host (the field's nginx), the `path:proxy` point and `drop-frames`.
//! - [`scenario`]: scenario files to runs, expectations to verdicts.
//! - [`diagnose`]: the hypothesis engine (H1..H7, outcome-table rows).
//! - [`score`]: the engine scored against the injected truth (confusion tables).
//! - [`upgrade`]: agent processes and the supervisor an agent's self-upgrade drives.
//! - [`conform`]: `simbench conform`, the simulator held to Linux (network namespaces, nftables).
//! - [`cli`]: `simbench list`, `run`, `check`, `sweep`; [`malloc`]: glibc malloc's parameters for each.
pub mod capture;
pub mod cli;
pub mod clock;
pub mod conform;
pub mod crypto;
pub mod diagnose;
pub mod disk;
pub mod fault;
pub mod kill;
pub mod malloc;
pub mod net;
pub mod observe;
pub mod proxy;
pub mod quic;
pub mod run;
pub mod scenario;
pub mod score;
pub mod tcp;
pub mod upgrade;
pub mod world;
