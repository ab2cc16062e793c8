//! quinn configuration with every random input taken from a seed.
//!
//! Left to its defaults, quinn draws from the operating system's RNG in five
//! places, each of which changes the bytes on the wire:
//! - the endpoint RNG (packet-number skips, GREASE bits, per-connection RNGs):
//!   [`quinn::EndpointConfig::rng_seed`];
//! - the stateless-reset key (`EndpointConfig::default()` draws one);
//! - the local connection-id generator;
//! - the client's first destination connection id
//!   ([`quinn::ClientConfig::initial_dst_cid_provider`]);
//! - the server's handshake-token key (`ServerConfig::with_crypto` draws one).
//!
//! (The BBR congestion controller also seeds itself from the OS; keep the
//! default, Cubic, in simulations.)
//!
//! The builders here derive each from one 32-byte seed, which the component
//! draws from its own crypto provider (`Env::random_seed`): the simulator's
//! provider is seeded, so a run replays byte for byte; the real binaries'
//! provider is the OS RNG, so they stay unpredictable. TLS randomness itself
//! is the rustls configuration's business (its crypto provider).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionId, ConnectionIdGenerator};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::env::Clock;

/// Length of the connection ids this endpoint issues (quinn's default).
pub const LOCAL_CID_LEN: usize = 8;

/// Length of a client's first destination connection id (quinn's default;
/// RFC 9000 asks for at least 8 unpredictable bytes).
pub const INITIAL_DST_CID_LEN: usize = 20;

/// RFC 9000's upper bound on a connection id's length.
const MAX_CID_LEN: usize = 20;

/// Errors while turning a rustls configuration into a QUIC one.
#[derive(Debug, thiserror::Error)]
pub enum QuicConfigError {
    /// QUIC encrypts its Initial packets with TLS 1.3's AES-128-GCM-SHA256.
    #[error(
        "the TLS configuration cannot protect QUIC packets ({0}); build it for TLS 1.3 \
         with the TLS13_AES_128_GCM_SHA256 cipher suite"
    )]
    NoInitialCipherSuite(#[from] NoInitialCipherSuite),
}

/// A sub-seed for one use, so the uses never share a stream.
fn sub_seed(seed: &[u8; 32], label: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(label.as_bytes());
    hash.finalize().into()
}

/// Endpoint configuration whose RNG, reset key and connection ids come from `seed`.
///
/// Use one per endpoint (both client and server endpoints need it).
pub fn endpoint_config(seed: [u8; 32]) -> quinn::EndpointConfig {
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &sub_seed(&seed, "reset-key"));
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    config.rng_seed(Some(sub_seed(&seed, "endpoint-rng")));
    let cid_seed = sub_seed(&seed, "local-cid");
    // quinn calls the factory once per endpoint made from this config; number
    // the generators so two endpoints sharing a config issue different ids.
    let made = AtomicU64::new(0);
    config.cid_generator(move || {
        let n = made.fetch_add(1, Ordering::Relaxed);
        Box::new(SeededCidGenerator::new(
            sub_seed(&cid_seed, &n.to_string()),
            LOCAL_CID_LEN,
        ))
    });
    config
}

/// Client configuration over `tls` whose first destination connection ids
/// come from `seed`.
///
/// `tls` must allow TLS 1.3 (QUIC requires it); ALPN and client
/// certificates are whatever `tls` says.
pub fn client_config(
    tls: Arc<rustls::ClientConfig>,
    seed: [u8; 32],
) -> Result<quinn::ClientConfig, QuicConfigError> {
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let rng = Mutex::new(ChaCha20Rng::from_seed(sub_seed(&seed, "initial-dst-cid")));
    config.initial_dst_cid_provider(Arc::new(move || {
        let mut bytes = [0u8; INITIAL_DST_CID_LEN];
        // Filling bytes cannot leave the generator half-updated, so a lock
        // poisoned by an unrelated panic is still safe to use.
        rng.lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill_bytes(&mut bytes);
        ConnectionId::new(&bytes)
    }));
    Ok(config)
}

/// Server configuration over `tls` whose handshake-token key comes from
/// `seed` and whose token timestamps come from `clock`.
///
/// `tls` must allow TLS 1.3; require client certificates there for mTLS.
pub fn server_config(
    tls: Arc<rustls::ServerConfig>,
    seed: [u8; 32],
    clock: Arc<dyn Clock>,
) -> Result<quinn::ServerConfig, QuicConfigError> {
    let token_key =
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&sub_seed(&seed, "token-key"));
    let mut config = quinn::ServerConfig::new(
        Arc::new(QuicServerConfig::try_from(tls)?),
        Arc::new(token_key),
    );
    // Retry and address-validation tokens carry an issue time; without this
    // quinn stamps them with the wall clock.
    config.time_source(Arc::new(ClockTimeSource(clock)));
    Ok(config)
}

/// quinn's token clock reading a component's [`Clock`].
struct ClockTimeSource(Arc<dyn Clock>);

impl quinn::TimeSource for ClockTimeSource {
    fn now(&self) -> SystemTime {
        self.0.system_time()
    }
}

/// Connection ids from a seeded ChaCha20 stream.
///
/// quinn's own generators read the OS RNG (or a hash keyed from it).
#[derive(Debug)]
pub struct SeededCidGenerator {
    rng: ChaCha20Rng,
    len: usize,
}

impl SeededCidGenerator {
    /// Ids of `len` bytes (at most 20, QUIC's limit) drawn from `seed`.
    pub fn new(seed: [u8; 32], len: usize) -> Self {
        SeededCidGenerator {
            rng: ChaCha20Rng::from_seed(seed),
            len: len.min(MAX_CID_LEN),
        }
    }
}

impl ConnectionIdGenerator for SeededCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; MAX_CID_LEN];
        self.rng.fill_bytes(&mut bytes[..self.len]);
        ConnectionId::new(&bytes[..self.len])
    }

    fn cid_len(&self) -> usize {
        self.len
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_follow_the_seed() {
        let mut a = SeededCidGenerator::new([1; 32], LOCAL_CID_LEN);
        let mut b = SeededCidGenerator::new([1; 32], LOCAL_CID_LEN);
        let mut c = SeededCidGenerator::new([2; 32], LOCAL_CID_LEN);
        let first = a.generate_cid();
        assert_eq!(first.len(), LOCAL_CID_LEN);
        assert_eq!(first, b.generate_cid());
        assert_ne!(first, c.generate_cid());
        assert_ne!(first, a.generate_cid(), "the stream advances");
    }

    #[test]
    fn uses_of_one_seed_are_independent() {
        let seed = [9; 32];
        assert_ne!(
            sub_seed(&seed, "reset-key"),
            sub_seed(&seed, "endpoint-rng")
        );
        assert_eq!(sub_seed(&seed, "token-key"), sub_seed(&seed, "token-key"));
    }
}
