//! TCP a kernel would recognise, beneath the seam, on the world's datagrams.
//!
//! turmoil 0.7.2, the simulator's first network, carried whole writes as
//! messages (no segments, ACKs or retransmission), so the simulator brings
//! its own TCP on its own [`crate::world`]: hosts, event-driven simulated
//! time, and a datagram path with per-link delays. Every host runs one
//! [`host::HostStack`] whose segments travel as UDP datagrams between the hosts'
//! [`host::NIC_PORT`]s; the segments are real TCP headers, so the capture
//! is the packets the stacks really sent.
//!
//! - [`segment`]: the wire form of a segment.
//! - [`conn`]: one connection, sans-IO (handshake, MSS segments, cumulative
//!   ACKs, receive windows, RTO with back-off, fast retransmit, FIN/RST,
//!   half-close, TIME-WAIT), with Linux's constants ([`conn::Config`]).
//! - [`stack`]: a host's connections, listeners with a backlog that drops
//!   SYNs when full, ephemeral ports and timers, sans-IO.
//! - [`host`]: the driver task on its host, the firewall and capture on the
//!   packet path, and the async sockets the seam hands out.
//!
//! Not modelled (see docs/observation.md): SACK, delayed ACKs (every data
//! segment is acknowledged at once, Linux's quick-ack mode), keepalive
//! (the product does not enable it), congestion control beyond Reno's
//! slow start, congestion avoidance and fast retransmit.
pub mod conn;
pub mod host;
pub mod segment;
pub mod stack;
