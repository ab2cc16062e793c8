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
//! randomness from the OS). Verifying a certificate's signature is a pure
//! function of the key, the certificate and the signature, and a fleet
//! verifies the same server certificate in every handshake: those results
//! are remembered ([`Remembered`]); a handshake's own signature
//! (CertificateVerify, over its transcript) is new each time and always
//! verified.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup, WebPkiSupportedAlgorithms,
};
use rustls::{NamedGroup, PeerMisbehaved};
use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
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
/// - signature verification is *ring*'s, with certificate signatures
///   remembered ([`Remembered`]);
/// - cipher suites and the key provider are *ring*'s defaults.
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
        signature_verification_algorithms: remembered(ring.signature_verification_algorithms),
        ..ring
    })
}

/// Certificate signatures remembered: at most this many results, then the
/// memo starts again (a run's certificates are one per agent and server).
const REMEMBERED: usize = 1 << 16;

/// A signature verification algorithm that remembers what it decided for a
/// certificate: the same key, certificate and signature give the same
/// answer, so asking again costs a hash, not a verification. Messages that
/// are not DER (a TLS 1.3 CertificateVerify signs 64 spaces, a context and
/// the transcript hash: never the same twice) go straight through.
struct Remembered(&'static dyn SignatureVerificationAlgorithm);

impl fmt::Debug for Remembered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Remembered({:?})", self.0)
    }
}

fn memo() -> &'static Mutex<HashMap<[u8; 32], bool>> {
    static MEMO: OnceLock<Mutex<HashMap<[u8; 32], bool>>> = OnceLock::new();
    MEMO.get_or_init(Mutex::default)
}

impl SignatureVerificationAlgorithm for Remembered {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        const DER_SEQUENCE: u8 = 0x30;
        if message.first() != Some(&DER_SEQUENCE) {
            return self.0.verify_signature(public_key, message, signature);
        }
        let mut h = Sha256::new();
        for part in [
            &self.0.signature_alg_id()[..],
            &self.0.public_key_alg_id()[..],
            public_key,
            signature,
            message,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let key: [u8; 32] = h.finalize().into();
        let known = memo()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let valid = match known {
            Some(v) => v,
            None => {
                let v = self
                    .0
                    .verify_signature(public_key, message, signature)
                    .is_ok();
                let mut m = memo().lock().unwrap_or_else(|e| e.into_inner());
                if m.len() >= REMEMBERED {
                    m.clear();
                }
                m.insert(key, v);
                v
            }
        };
        if valid {
            Ok(())
        } else {
            Err(InvalidSignature)
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.0.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.0.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.0.fips()
    }
}

/// `algs` with every algorithm [`Remembered`]; built once per process (the
/// provider wants `'static` tables).
fn remembered(algs: WebPkiSupportedAlgorithms) -> WebPkiSupportedAlgorithms {
    static TABLE: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *TABLE.get_or_init(|| {
        let wrap = |a: &'static dyn SignatureVerificationAlgorithm| {
            let w: &'static dyn SignatureVerificationAlgorithm = Box::leak(Box::new(Remembered(a)));
            w
        };
        let all: Vec<_> = algs.all.iter().map(|a| wrap(*a)).collect();
        let mapping: Vec<_> = algs
            .mapping
            .iter()
            .map(|(scheme, list)| {
                let list: Vec<_> = list.iter().map(|a| wrap(*a)).collect();
                let list: &'static [&'static dyn SignatureVerificationAlgorithm] =
                    Box::leak(list.into_boxed_slice());
                (*scheme, list)
            })
            .collect();
        WebPkiSupportedAlgorithms {
            all: Box::leak(all.into_boxed_slice()),
            mapping: Box::leak(mapping.into_boxed_slice()),
        }
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
    fn remembered_verification_decides_as_ring_does_the_first_time_and_after() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let key = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let public = key.public_key().as_ref().to_vec();
        let algs = seeded_provider([1; 32]).signature_verification_algorithms;
        let ring_algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let (ours, theirs) = (algs.all, ring_algs.all);
        assert_eq!(ours.len(), theirs.len());
        let ed = |list: &[&'static dyn SignatureVerificationAlgorithm]| {
            *list
                .iter()
                .find(|a| a.signature_alg_id() == rustls_pki_types::alg_id::ED25519)
                .expect("Ed25519 is supported")
        };
        let (ours, theirs) = (ed(ours), ed(theirs));
        // A DER message (a certificate's signed part starts with a SEQUENCE),
        // another one, and a TLS 1.3 CertificateVerify's (64 spaces first).
        let cert = b"\x30\x82\x01\x00 to be signed".to_vec();
        let other = b"\x30\x82\x01\x00 something else".to_vec();
        let mut verify = vec![0x20; 64];
        verify.extend_from_slice(b"TLS 1.3, server CertificateVerify\0transcript");
        for message in [&cert, &other, &verify] {
            let good = key.sign(message).as_ref().to_vec();
            let mut bad = good.clone();
            bad[0] ^= 1;
            for _ in 0..3 {
                for (sig, msg) in [
                    (&good, message),
                    (&bad, message),
                    (&good, &cert),
                    (&good, &other),
                ] {
                    assert_eq!(
                        ours.verify_signature(&public, msg, sig).is_ok(),
                        theirs.verify_signature(&public, msg, sig).is_ok(),
                    );
                }
                assert!(ours.verify_signature(&public, message, &good).is_ok());
                assert!(ours.verify_signature(&public, message, &bad).is_err());
                let mut wrong_key = public.clone();
                wrong_key[3] ^= 1;
                assert!(ours.verify_signature(&wrong_key, message, &good).is_err());
            }
        }
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
