//! A rustls crypto provider whose every random draw comes from a seed.
//!
//! rustls takes randomness from two places: `CryptoProvider::secure_random`
//! (client/server randoms, session ids, ticket nonces) and, inside *ring*'s key
//! exchange, the operating system's RNG for ephemeral key shares. Both are
//! replaced here by one ChaCha20 stream, so a simulated TLS or QUIC handshake
//! puts the same bytes on the wire every time it runs with the same seed.
//!
//! [`SecretLog`] keeps the secrets of every session a run's components open,
//! for the capture's Decryption Secrets Block ([`crate::capture`]).
//!
//! Signatures stay *ring*'s: Ed25519 signs deterministically, which is why the
//! project's certificates use Ed25519 keys (ECDSA signing would draw fresh
//! randomness from the OS).

use std::fmt;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::{NamedGroup, PeerMisbehaved};
use sha2::{Digest, Sha256};

/// The 32-byte seed of one component's random stream, from the run's seed and
/// the component's label (`server`, `agent:pst-1`, ...).
///
/// Different labels give unrelated streams, so adding an agent to a scenario
/// does not shift the randomness every other component sees.
pub fn derive_seed(run_seed: u64, label: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    // A fixed-width prefix keeps `(1, "2x")` and `(12, "x")` apart.
    hash.update(run_seed.to_be_bytes());
    hash.update(label.as_bytes());
    hash.finalize().into()
}

/// rustls's *ring* provider with its random source and key exchange seeded.
///
/// - `secure_random` is a ChaCha20 generator seeded with `seed`;
/// - `kx_groups` is a single X25519 group whose ephemeral secrets come from
///   that same generator (*ring*'s own X25519 reads the OS RNG);
/// - cipher suites, signature verification algorithms and the key provider
///   are *ring*'s defaults.
///
/// rustls wants `&'static` references for the random source and the groups,
/// so each call leaks one small allocation (a few hundred bytes). Build one
/// provider per component per run, not one per connection.
pub fn seeded_provider(seed: [u8; 32]) -> Arc<CryptoProvider> {
    let source: &'static SeededSource = Box::leak(Box::new(SeededSource {
        rng: Mutex::new(ChaCha20Rng::from_seed(seed)),
    }));
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(CryptoProvider {
        kx_groups: vec![source],
        secure_random: source,
        ..ring
    })
}

/// One seeded ChaCha20 stream serving as both the provider's random source and
/// its X25519 group, so a provider costs one leaked allocation, not two.
struct SeededSource {
    rng: Mutex<ChaCha20Rng>,
}

impl fmt::Debug for SeededSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print generator state: it would reveal every future draw.
        f.write_str("SeededX25519")
    }
}

impl SecureRandom for SeededSource {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        // A poisoned lock means another thread panicked mid-draw; the stream
        // position is then unknown, and refusing is safer than repeating bytes.
        let mut rng = self.rng.lock().map_err(|_| GetRandomFailed)?;
        rng.fill_bytes(buf);
        Ok(())
    }
}

impl SupportedKxGroup for SeededSource {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut secret = [0u8; 32];
        self.fill(&mut secret)?;
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// An X25519 key share waiting for the peer's.
struct X25519Exchange {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        // A low-order peer point gives an all-zero secret; *ring* rejects it
        // too (RFC 7748 section 6.1), so behave the same.
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// The TLS 1.3 secrets of a run's sessions, in NSS key log format
/// (`LABEL <client random> <secret>`, hex, one per line): rustls's
/// [`rustls::KeyLog`] on every client and server configuration the
/// simulated components build (QUIC's handshakes included).
///
/// Both ends of a session log the same secrets; each line is kept once, in
/// the order first logged (the simulation's order, so a seed repeats it).
#[derive(Debug, Default)]
pub struct SecretLog {
    state: Mutex<SecretLines>,
}

#[derive(Debug, Default)]
struct SecretLines {
    text: String,
    seen: std::collections::HashSet<(String, Vec<u8>)>,
}

impl SecretLog {
    /// The key log file so far.
    pub fn text(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }

    /// What was logged after the first `from` bytes of the text, if
    /// anything was.
    pub fn since(&self, from: usize) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.text
            .get(from..)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    }
}

impl rustls::KeyLog for SecretLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.seen.insert((label.to_string(), client_random.to_vec())) {
            let line = format!(
                "{label} {} {}\n",
                hex::encode(client_random),
                hex::encode(secret)
            );
            s.text.push_str(&line);
        }
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(provider: &CryptoProvider) -> [u8; 16] {
        let mut out = [0u8; 16];
        provider.secure_random.fill(&mut out).expect("seeded fill");
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
        let a = seeded_provider([1; 32]);
        let b = seeded_provider([1; 32]);
        let c = seeded_provider([2; 32]);
        let first = draw(&a);
        assert_eq!(first, draw(&b));
        assert_ne!(first, draw(&c));
        // The stream advances: a second draw is not a repeat of the first.
        assert_ne!(first, draw(&a));
    }

    #[test]
    fn labels_and_run_seeds_separate_streams() {
        assert_eq!(derive_seed(7, "server"), derive_seed(7, "server"));
        assert_ne!(derive_seed(7, "server"), derive_seed(7, "agent:pst-1"));
        assert_ne!(derive_seed(7, "server"), derive_seed(8, "server"));
    }

    #[test]
    fn key_shares_come_from_the_seed_and_agree() {
        let a = seeded_provider([3; 32]);
        let b = seeded_provider([3; 32]);
        let other = seeded_provider([4; 32]);
        assert_eq!(a.kx_groups.len(), 1);
        assert_eq!(a.kx_groups[0].name(), NamedGroup::X25519);

        let ka = a.kx_groups[0].start().expect("start");
        let kb = b.kx_groups[0].start().expect("start");
        let ko = other.kx_groups[0].start().expect("start");
        assert_eq!(ka.pub_key(), kb.pub_key(), "same seed, same key share");
        assert_ne!(ka.pub_key(), ko.pub_key());

        let ko_pub = ko.pub_key().to_vec();
        let ka_pub = ka.pub_key().to_vec();
        let s1 = ka.complete(&ko_pub).expect("agree");
        let s2 = ko.complete(&ka_pub).expect("agree");
        assert_eq!(s1.secret_bytes(), s2.secret_bytes());
    }

    #[test]
    fn secrets_are_logged_once_in_nss_format() {
        use rustls::KeyLog;
        let log = SecretLog::default();
        log.log("CLIENT_TRAFFIC_SECRET_0", &[0xab, 0x01], &[0xff]);
        log.log("CLIENT_TRAFFIC_SECRET_0", &[0xab, 0x01], &[0xff]);
        log.log("SERVER_TRAFFIC_SECRET_0", &[0xab, 0x01], &[0x10]);
        assert_eq!(
            log.text(),
            "CLIENT_TRAFFIC_SECRET_0 ab01 ff\nSERVER_TRAFFIC_SECRET_0 ab01 10\n"
        );
    }

    #[test]
    fn a_low_order_or_malformed_peer_share_is_refused() {
        let p = seeded_provider([5; 32]);
        let k = p.kx_groups[0].start().expect("start");
        assert!(
            k.complete(&[0u8; 32]).is_err(),
            "all-zero point is low order"
        );
        let k = p.kx_groups[0].start().expect("start");
        assert!(k.complete(&[9u8; 31]).is_err(), "wrong length");
    }
}
