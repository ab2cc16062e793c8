//! rustls configurations built from an [`Env`]: its crypto provider (the
//! only source of TLS randomness), its clock (certificate validity) and its
//! observer's key log (the sessions' secrets, for decrypting captures).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::env::{ClockTimeProvider, Env};
use crate::pki::{certs_from_pem, key_from_pem, PkiError};

/// Errors while building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// Certificates or keys did not load.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rustls rejected the configuration.
    #[error("tls configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem("gateway CA", ca_pem)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// A TLS 1.3 server configuration. With `client_ca_pem`, clients must present
/// a certificate issued by that CA (mutual TLS).
pub fn server_config(
    env: &Env,
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsConfigError> {
    let builder = ServerConfig::builder_with_details(
        env.crypto.clone(),
        Arc::new(ClockTimeProvider(env.clock.clone())),
    )
    .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_ca_pem {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), env.crypto.clone())
                .build()?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(
        certs_from_pem("server certificate", cert_pem)?,
        key_from_pem("server key", key_pem)?,
    )?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    if let Some(log) = env.observer.key_log() {
        cfg.key_log = log;
    }
    Ok(cfg)
}

/// A TLS 1.3 client configuration trusting `ca_pem`, presenting
/// `client_cert` (cert PEM, key PEM) when given.
pub fn client_config(
    env: &Env,
    ca_pem: &str,
    client_cert: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsConfigError> {
    let builder = ClientConfig::builder_with_details(
        env.crypto.clone(),
        Arc::new(ClockTimeProvider(env.clock.clone())),
    )
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots(ca_pem)?);
    let mut cfg = match client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(
            certs_from_pem("client certificate", cert)?,
            key_from_pem("client key", key)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    // Session resumption would make a reconnect's handshake depend on earlier
    // connections' tickets; keep every handshake a full one.
    cfg.resumption = rustls::client::Resumption::disabled();
    // The session secrets, for decrypting a capture (see `Observer::key_log`);
    // QUIC connections built on this configuration log theirs the same way.
    if let Some(log) = env.observer.key_log() {
        cfg.key_log = log;
    }
    Ok(cfg)
}
