//! Keys and certificates: the server's CA and what it issues.
//!
//! Every key is Ed25519 made from a 32-byte seed: Ed25519 signatures are
//! deterministic, so with seeds from the component's random source a
//! simulated run produces the same certificates and the same handshake bytes
//! every time (ECDSA signatures would draw fresh randomness).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Errors while making or loading keys and certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM blob did not parse.
    #[error("invalid PEM for {what}: {detail}; re-enroll the agent to get fresh credentials")]
    Pem {
        /// Which blob.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
}

// PKCS#8 v1 header for an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The PKCS#8 DER of the Ed25519 key with this seed.
pub fn ed25519_pkcs8(seed: [u8; 32]) -> Vec<u8> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    der
}

/// The Ed25519 key pair with this seed.
pub fn ed25519_key(seed: [u8; 32]) -> Result<KeyPair, PkiError> {
    let der = ed25519_pkcs8(seed);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der),
        &PKCS_ED25519,
    )?)
}

/// Hex SHA-256 of a certificate's DER: how the server recognises what it issued.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// A uuid-shaped id (8-4-4-4-12 hex) from 16 random bytes.
pub fn uuid_from_bytes(b: [u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

const CA_NAME: &str = "simbench fleet CA";

fn ca_params(now: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = to_offset(now - Duration::from_secs(3600));
    p.not_after = to_offset(now + Duration::from_secs(10 * 365 * 86400));
    p.serial_number = Some(SerialNumber::from_slice(&[1]));
    Ok(p)
}

/// The server's certificate authority.
pub struct Ca {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA private key (PKCS#8), PEM.
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
    /// Hex SHA-256 of the certificate DER.
    pub fingerprint: String,
}

impl Ca {
    /// Makes a new CA from a key seed; `now` sets the validity window.
    pub fn generate(seed: [u8; 32], now: SystemTime) -> Result<Ca, PkiError> {
        let key = ed25519_key(seed)?;
        let params = ca_params(now)?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Reloads a CA saved as PEM (issuing only needs the name and the key).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem_and_sign_algo(key_pem, &PKCS_ED25519)?;
        let params = ca_params(SystemTime::UNIX_EPOCH + Duration::from_secs(86400 * 365))?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues a leaf certificate. `client` sets the client-auth usage (agents),
    /// otherwise server-auth for the DNS names in `sans`.
    pub fn issue(
        &self,
        common_name: &str,
        sans: &[String],
        client: bool,
        key_seed: [u8; 32],
        now: SystemTime,
    ) -> Result<Issued, PkiError> {
        let key = ed25519_key(key_seed)?;
        let mut p = CertificateParams::new(sans.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.not_before = to_offset(now - Duration::from_secs(3600));
        p.not_after = to_offset(now + Duration::from_secs(365 * 86400));
        let serial = Sha256::digest(format!("{common_name}/{}", hex::encode(key_seed)));
        let mut serial = serial[..16].to_vec();
        serial[0] &= 0x7f; // positive INTEGER
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            fingerprint: fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Parses every certificate in a PEM blob.
pub fn certs_from_pem(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what,
            detail: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// Parses a private key from PEM.
pub fn key_from_pem(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem {
        what,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01
    }

    #[test]
    fn same_seeds_give_the_same_certificates() {
        let a = Ca::generate([7; 32], now()).unwrap();
        let b = Ca::generate([7; 32], now()).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        let ia = a.issue("agent-1", &[], true, [9; 32], now()).unwrap();
        let ib = b.issue("agent-1", &[], true, [9; 32], now()).unwrap();
        assert_eq!(ia.cert_pem, ib.cert_pem);
        assert_eq!(ia.fingerprint, ib.fingerprint);
        let other = a.issue("agent-1", &[], true, [10; 32], now()).unwrap();
        assert_ne!(ia.fingerprint, other.fingerprint);
    }

    #[test]
    fn a_reloaded_ca_issues_certificates_that_chain_to_the_original() {
        let ca = Ca::generate([1; 32], now()).unwrap();
        let reloaded = Ca::load(&ca.cert_pem, &ca.key_pem).unwrap();
        let leaf = reloaded
            .issue("server", &["server".into()], false, [2; 32], now())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(certs_from_pem("ca", &ca.cert_pem).unwrap().remove(0))
            .unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(provider),
        )
        .build()
        .unwrap();
        let leaf_der = certs_from_pem("leaf", &leaf.cert_pem).unwrap().remove(0);
        let t = rustls_pki_types::UnixTime::since_unix_epoch(
            now().duration_since(SystemTime::UNIX_EPOCH).unwrap(),
        );
        verifier
            .verify_server_cert(
                &leaf_der,
                &[],
                &rustls_pki_types::ServerName::try_from("server").unwrap(),
                &[],
                t,
            )
            .expect("leaf issued by the reloaded CA must verify against the original CA");
        assert!(key_from_pem("key", &leaf.key_pem).is_ok());
        assert!(certs_from_pem("junk", "not pem").is_err());
    }

    #[test]
    fn uuid_shape() {
        assert_eq!(
            uuid_from_bytes([0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
