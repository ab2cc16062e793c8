//! todo
pub mod clock;
pub mod crypto;
pub mod disk;
pub mod fault;
pub mod net;
pub mod observe;
pub mod quic;
pub mod run;
pub mod scenario;
