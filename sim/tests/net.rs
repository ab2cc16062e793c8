//! The network seam in the simulated world, told as stories.
//!
//! An agent (`pst-1`) and the server run on two simulated hosts and talk through
//! [`TurmoilNetwork`]: TLS over simulated TCP, then QUIC with mutual TLS over
//! simulated UDP. Every random input is seeded, so the same run seed puts the
//! same datagrams on the wire; a partitioned server makes the QUIC handshake
//! give up after quinn's 30 s idle timeout of simulated time.
//!
//! Certificates are Ed25519 (deterministic signatures) and valid only for a
//! few days around the simulated epoch in 2030, so a TLS stack that judged
//! them by the wall clock would refuse them.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use proto::env::{Clock, ClockTimeProvider, Network};
use proto::frame::Dir;
use quinn::ConnectionError;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ED25519};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{NamedGroup, RootCertStore};
use sha2::{Digest, Sha256};
use sim::clock::SimClock;
use sim::crypto::{derive_seed, seeded_provider};
use sim::net::{DatagramTap, TurmoilNetwork};
use sim::world::{HostResult, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2030-06-01T00:00:00Z: the simulated calendar's start.
const EPOCH_UNIX_S: u64 = 1_906_502_400;
const TLS_PORT: u16 = 8443;
const QUIC_PORT: u16 = 4433;
const ALPN: &[u8] = b"simbench";
const REQUEST: &[u8] = b"hello from pst-1";
const REPLY: &[u8] = b"hello pst-1, this is the server";

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_S)
}

/// A simulated world with everything that could vary pinned (its seed) and
/// how long it may run.
fn new_sim(run_seed: u64, duration: Duration) -> Sim {
    Sim {
        world: World::new(run_seed),
        limit: duration,
    }
}

/// A world and the simulated time its clients have to finish in.
struct Sim {
    world: World,
    limit: Duration,
}

impl std::ops::Deref for Sim {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Sim {
    fn run(&mut self) -> HostResult {
        let limit = self.limit;
        self.world.run(limit)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Certificates: a CA, a server certificate for `server`, a client
// certificate for `pst-1`, all Ed25519 keys made from fixed seeds.

/// PKCS#8 v1 header of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn ed25519_pkcs8(seed: u8) -> PrivatePkcs8KeyDer<'static> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&[seed; 32]);
    PrivatePkcs8KeyDer::from(der)
}

fn ed25519_key(seed: u8) -> KeyPair {
    KeyPair::from_pkcs8_der_and_sign_algo(&ed25519_pkcs8(seed), &PKCS_ED25519)
        .expect("a 32-byte seed is a valid Ed25519 key")
}

/// Valid from the day before the epoch to the day after.
fn params(sans: &[&str], common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("valid names");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.not_before = rcgen::date_time_ymd(2030, 5, 31);
    p.not_after = rcgen::date_time_ymd(2030, 6, 2);
    p
}

#[derive(Clone)]
struct Pki {
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, u8),
    client: (CertificateDer<'static>, u8),
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = params(&[], "simbench test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = ed25519_key(1);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let server = params(&["server"], "server")
            .signed_by(&ed25519_key(2), &issuer)
            .expect("server certificate");
        let client = params(&[], "pst-1")
            .signed_by(&ed25519_key(3), &issuer)
            .expect("client certificate");
        Pki {
            ca: ca.der().clone(),
            server: (server.der().clone(), 2),
            client: (client.der().clone(), 3),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA certificate parses");
        Arc::new(roots)
    }
}

/// The server's TLS: TLS 1.3 only, client certificates required, time from `clock`.
fn server_tls(
    pki: &Pki,
    provider: Arc<CryptoProvider>,
    clock: Arc<dyn Clock>,
) -> rustls::ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(pki.roots(), provider.clone())
        .build()
        .expect("client verifier");
    let mut config =
        rustls::ServerConfig::builder_with_details(provider, Arc::new(ClockTimeProvider(clock)))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![pki.server.0.clone()],
                PrivateKeyDer::Pkcs8(ed25519_pkcs8(pki.server.1)),
            )
            .expect("server key matches its certificate");
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

/// An agent's TLS: trusts the CA, presents its client certificate.
fn client_tls(
    pki: &Pki,
    provider: Arc<CryptoProvider>,
    clock: Arc<dyn Clock>,
) -> rustls::ClientConfig {
    let mut config =
        rustls::ClientConfig::builder_with_details(provider, Arc::new(ClockTimeProvider(clock)))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported")
            .with_root_certificates(pki.roots())
            .with_client_auth_cert(
                vec![pki.client.0.clone()],
                PrivateKeyDer::Pkcs8(ed25519_pkcs8(pki.client.1)),
            )
            .expect("client key matches its certificate");
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

/// One component's crypto, as the harness would put it in its `Env`.
fn component(run_seed: u64, label: &str) -> (Arc<CryptoProvider>, Arc<dyn Clock>) {
    (
        seeded_provider(derive_seed(run_seed, label)),
        Arc::new(SimClock::new(epoch())),
    )
}

/// A 32-byte seed drawn from a component's provider, as `Env::random_seed` does.
fn random_seed(provider: &CryptoProvider) -> [u8; 32] {
    let mut seed = [0u8; 32];
    provider
        .secure_random
        .fill(&mut seed)
        .expect("seeded random source");
    seed
}

fn boxed(e: impl Error + 'static) -> Box<dyn Error> {
    Box::new(e)
}

// ---------------------------------------------------------------------------
// 1. TLS over simulated TCP.

#[test]
fn an_agent_and_the_server_speak_mutual_tls_over_simulated_tcp() -> HostResult {
    let pki = Pki::new();
    let mut sim = new_sim(1, Duration::from_secs(20));

    let server_pki = pki.clone();
    sim.host("server", move || {
        let pki = server_pki.clone();
        async move {
            let net = TurmoilNetwork::new("server");
            let (provider, clock) = component(1, "server");
            let acceptor =
                tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(&pki, provider, clock)));
            let mut listener = net.listen_tcp(TLS_PORT).await?;
            assert_eq!(listener.local_addr()?.port(), TLS_PORT);

            let (stream, _peer) = listener.accept().await?;
            let mut tls = acceptor.accept(stream).await?;
            // Mutual TLS: the agent proved it holds the client certificate.
            let presented = tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
            assert_eq!(presented, Some(vec![pki.client.0.clone()]));

            let mut request = vec![0u8; REQUEST.len()];
            tls.read_exact(&mut request).await?;
            assert_eq!(request, REQUEST);
            tls.write_all(REPLY).await?;
            // close_notify, so the agent sees a clean end of stream.
            tls.shutdown().await?;
            Ok(())
        }
    });

    sim.client("pst-1", async move {
        let net = TurmoilNetwork::new("pst-1");
        assert_eq!(net.owner(), "pst-1");
        let (provider, clock) = component(1, "agent:pst-1");

        // Port 0 binds work for TCP: the stack hands out Linux's ephemeral range.
        let spare = net.listen_tcp(0).await?;
        assert!((32768..=60999).contains(&spare.local_addr()?.port()));
        drop(spare);

        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(client_tls(&pki, provider, clock)));
        let stream = net.connect_tcp("server", TLS_PORT).await?;
        let server_name = ServerName::try_from("server").map_err(boxed)?;
        let mut tls = connector.connect(server_name, stream).await?;
        {
            let conn = tls.get_ref().1;
            assert_eq!(
                conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            // The seeded X25519 group, the only one the provider offers.
            assert_eq!(
                conn.negotiated_key_exchange_group().map(|g| g.name()),
                Some(NamedGroup::X25519)
            );
            assert_eq!(conn.alpn_protocol(), Some(ALPN));
        }
        tls.write_all(REQUEST).await?;
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await?;
        assert_eq!(reply, REPLY);
        tls.shutdown().await?;
        Ok(())
    });

    sim.run()
}

#[test]
fn certificate_validity_is_judged_by_simulated_time() -> HostResult {
    // The same certificates, but the agent's calendar says 2030-07-01: a month
    // after they expired. Only a TLS stack reading SimClock can know that.
    let pki = Pki::new();
    let mut sim = new_sim(1, Duration::from_secs(20));

    let server_pki = pki.clone();
    sim.host("server", move || {
        let pki = server_pki.clone();
        async move {
            let net = TurmoilNetwork::new("server");
            let (provider, clock) = component(1, "server");
            let acceptor =
                tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(&pki, provider, clock)));
            let mut listener = net.listen_tcp(TLS_PORT).await?;
            let (stream, _) = listener.accept().await?;
            // The agent aborts the handshake; the server just sees it fail.
            assert!(acceptor.accept(stream).await.is_err());
            Ok(())
        }
    });

    sim.client("pst-1", async move {
        let net = TurmoilNetwork::new("pst-1");
        let provider = seeded_provider(derive_seed(1, "agent:pst-1"));
        let late: Arc<dyn Clock> =
            Arc::new(SimClock::new(epoch() + Duration::from_secs(30 * 86400)));
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(client_tls(&pki, provider, late)));
        let stream = net.connect_tcp("server", TLS_PORT).await?;
        let server_name = ServerName::try_from("server").map_err(boxed)?;
        let Err(err) = connector.connect(server_name, stream).await else {
            panic!("an expired server certificate must be refused");
        };
        let tls_err = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned();
        assert_eq!(
            tls_err,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredContext {
                    time: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                        EPOCH_UNIX_S + 30 * 86400
                    )),
                    not_after: rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
                        EPOCH_UNIX_S + 86400
                    )),
                }
            ))
        );
        Ok(())
    });

    sim.run()
}

#[test]
fn tcp_connect_across_a_partition_waits_for_its_syn_retransmissions() -> HostResult {
    // A SYN a path loses is retransmitted at 1, 2, 3, 4, 5, 7, 11, 19 s
    // (Linux 6.5 and later, measured: sim/tests/kernel.rs);
    // the connect neither fails at once nor completes, and only the caller's
    // own bound ends it (turmoil's TCP, before the simulator had its own, refused such a connect at once).
    let mut sim = new_sim(1, Duration::from_secs(30));
    sim.host("server", || async {
        let _listener = TurmoilNetwork::new("server").listen_tcp(TLS_PORT).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let took = Arc::new(Mutex::new(None));
    let took_in = took.clone();
    sim.client("pst-1", async move {
        let started = tokio::time::Instant::now();
        let connect = TurmoilNetwork::new("pst-1").connect_tcp("server", TLS_PORT);
        let result = proto::time::timeout(Duration::from_secs(20), connect).await;
        assert!(
            result.is_err(),
            "still connecting when the 20 s bound ends it"
        );
        *took_in.lock().unwrap() = Some(started.elapsed());
        Ok(())
    });
    sim.partition("server", "pst-1");
    sim.run()?;
    assert_eq!(*took.lock().unwrap(), Some(Duration::from_secs(20)));
    Ok(())
}

#[test]
fn outside_a_simulation_the_seam_errs_instead_of_panicking() {
    let net = TurmoilNetwork::new("pst-1");
    assert!(net.resolve("server").is_err());
    // Literal addresses need no simulation.
    assert_eq!(
        net.resolve("192.168.0.1").expect("literal"),
        "192.168.0.1".parse::<std::net::IpAddr>().expect("ip")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(rt.block_on(net.bind_udp(0)).is_err());
    assert!(rt.block_on(net.connect_tcp("server", 1)).is_err());
}

// ---------------------------------------------------------------------------
// 2-4. QUIC with mutual TLS over simulated UDP.

/// Hashes every datagram as it leaves a socket, in send order, and counts
/// what each owner sent and received.
#[derive(Debug, Default)]
struct WireRecorder {
    state: Mutex<Wire>,
}

#[derive(Debug, Default)]
struct Wire {
    hash: Sha256,
    sent: Vec<(String, usize)>,
    received: Vec<(String, usize)>,
}

impl Wire {
    fn count(list: &[(String, usize)], owner: &str) -> usize {
        list.iter().filter(|(o, _)| o == owner).count()
    }
}

impl DatagramTap for WireRecorder {
    fn datagram(
        &self,
        owner: &str,
        dir: Dir,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        let mut wire = self.state.lock().unwrap();
        match dir {
            Dir::Tx => {
                wire.hash.update(owner.as_bytes());
                wire.hash.update(local.to_string().as_bytes());
                wire.hash.update(remote.to_string().as_bytes());
                wire.hash.update((payload.len() as u64).to_be_bytes());
                wire.hash.update(payload);
                wire.sent.push((owner.to_string(), payload.len()));
            }
            Dir::Rx => wire.received.push((owner.to_string(), payload.len())),
        }
    }
}

/// What one QUIC run left behind.
#[derive(Debug)]
struct QuicRun {
    /// SHA-256 over every datagram sent, in order.
    wire_digest: [u8; 32],
    sent_by_agent: usize,
    sent_by_server: usize,
    received_by_server: usize,
    received_by_agent: usize,
    /// The client's outcome: the server's reply, or how connecting failed.
    outcome: Result<Vec<u8>, ConnectionError>,
    /// Simulated time from `connect` to that outcome.
    connect_to_outcome: Duration,
}

/// The server and `pst-1` on two hosts; the agent opens a QUIC connection with
/// mutual TLS, sends a request on a bidirectional stream and reads `reply`.
/// With `partitioned`, the two hosts cannot reach each other.
fn quic_round_trip(run_seed: u64, partitioned: bool, reply: Arc<[u8]>) -> QuicRun {
    let pki = Pki::new();
    let tap = Arc::new(WireRecorder::default());
    let mut sim = new_sim(run_seed, Duration::from_secs(60));

    let (server_pki, server_tap, server_reply) = (pki.clone(), tap.clone(), reply.clone());
    sim.host("server", move || {
        let (pki, tap, reply) = (server_pki.clone(), server_tap.clone(), server_reply.clone());
        async move {
            let net = TurmoilNetwork::new("server").with_tap(tap);
            let (provider, clock) = component(run_seed, "server");
            let quic_seed = random_seed(&provider);
            let tls = server_tls(&pki, provider, clock.clone());
            let server_config = proto::quic::server_config(Arc::new(tls), quic_seed, clock)?;
            let socket = net.bind_udp(QUIC_PORT).await?;
            let endpoint = quinn::Endpoint::new_with_abstract_socket(
                proto::quic::endpoint_config(quic_seed),
                Some(server_config),
                socket,
                net.quic_runtime(),
            )?;

            let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
            let conn = incoming.await?;
            let presented = conn
                .peer_identity()
                .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
                .map(|certs| *certs);
            assert_eq!(presented, Some(vec![pki.client.0.clone()]), "mutual TLS");

            let (mut send, mut recv) = conn.accept_bi().await?;
            let request = recv.read_to_end(1024).await?;
            assert_eq!(request, REQUEST);
            send.write_all(&reply).await?;
            send.finish()?;
            // The agent closes once it has the reply.
            conn.closed().await;
            endpoint.wait_idle().await;
            Ok(())
        }
    });

    let result = Arc::new(Mutex::new(None));
    let (client_result, client_tap) = (result.clone(), tap.clone());
    sim.client("pst-1", async move {
        let net = TurmoilNetwork::new("pst-1").with_tap(client_tap);
        let (provider, clock) = component(run_seed, "agent:pst-1");
        let quic_seed = random_seed(&provider);
        let tls = client_tls(&pki, provider, clock);
        let socket = net.bind_udp(0).await?;
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            proto::quic::endpoint_config(quic_seed),
            None,
            socket,
            net.quic_runtime(),
        )?;
        endpoint.set_default_client_config(proto::quic::client_config(Arc::new(tls), quic_seed)?);

        let server = SocketAddr::new(net.resolve("server")?, QUIC_PORT);
        let started = tokio::time::Instant::now();
        let outcome = match endpoint.connect(server, "server")?.await {
            Ok(conn) => {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(REQUEST).await?;
                send.finish()?;
                let reply = recv.read_to_end(reply.len() + 1).await?;
                conn.close(0u32.into(), b"done");
                Ok(reply)
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        endpoint.wait_idle().await;
        *client_result.lock().unwrap() = Some((outcome, took));
        Ok(())
    });

    if partitioned {
        sim.partition("server", "pst-1");
    }
    sim.run().expect("the simulation runs to the end");

    let (outcome, connect_to_outcome) = result.lock().unwrap().take().expect("client finished");
    let wire = tap.state.lock().unwrap();
    QuicRun {
        wire_digest: wire.hash.clone().finalize().into(),
        sent_by_agent: Wire::count(&wire.sent, "pst-1"),
        sent_by_server: Wire::count(&wire.sent, "server"),
        received_by_server: Wire::count(&wire.received, "server"),
        received_by_agent: Wire::count(&wire.received, "pst-1"),
        outcome,
        connect_to_outcome,
    }
}

#[test]
fn an_agent_and_the_server_complete_a_quic_mutual_tls_round_trip() {
    let run = quic_round_trip(1, false, REPLY.into());
    assert_eq!(run.outcome.as_deref().ok(), Some(REPLY), "{run:?}");
    // Both sides really used the simulated UDP path.
    assert!(run.sent_by_agent > 0 && run.sent_by_server > 0, "{run:?}");
    assert!(run.received_by_server > 0, "{run:?}");
    // A handshake and one round trip over links of at most ~100 ms latency:
    // well under a second of simulated time.
    assert!(run.connect_to_outcome < Duration::from_secs(1), "{run:?}");
}

#[test]
fn a_megabyte_crosses_simulated_udp_intact() {
    // Hundreds of datagrams in flight: exercises batched receives, turmoil's
    // 64-datagram socket queue (it drops the excess) and quinn's recovery.
    let payload: Arc<[u8]> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let run = quic_round_trip(3, false, payload.clone());
    let received = run.outcome.as_ref().expect("transfer completes");
    assert!(
        received[..] == payload[..],
        "payload corrupted or truncated"
    );
    assert!(run.sent_by_server > 700, "{} datagrams", run.sent_by_server);
    assert!(
        run.connect_to_outcome < Duration::from_secs(20),
        "{:?}",
        run.connect_to_outcome
    );
}

#[test]
fn the_same_seed_puts_the_same_datagrams_on_the_wire() {
    let first = quic_round_trip(7, false, REPLY.into());
    let again = quic_round_trip(7, false, REPLY.into());
    let other = quic_round_trip(8, false, REPLY.into());
    assert!(first.outcome.is_ok() && other.outcome.is_ok());
    assert_eq!(
        hex::encode(first.wire_digest),
        hex::encode(again.wire_digest),
        "same seed, same bytes"
    );
    assert_eq!(
        (
            first.sent_by_agent,
            first.sent_by_server,
            first.connect_to_outcome
        ),
        (
            again.sent_by_agent,
            again.sent_by_server,
            again.connect_to_outcome
        )
    );
    assert_ne!(
        first.wire_digest, other.wire_digest,
        "another seed, other bytes"
    );
}

#[test]
fn a_partitioned_server_makes_the_quic_handshake_time_out_in_simulated_time() {
    let wall = std::time::Instant::now();
    let run = quic_round_trip(1, true, REPLY.into());
    assert!(
        matches!(run.outcome, Err(ConnectionError::TimedOut)),
        "{:?}",
        run.outcome
    );
    // quinn's default idle timeout is 30 s: give up then, not before.
    assert!(
        run.connect_to_outcome >= Duration::from_secs(30)
            && run.connect_to_outcome < Duration::from_secs(31),
        "{:?}",
        run.connect_to_outcome
    );
    // The agent kept retransmitting its Initial; none of it arrived.
    assert!(run.sent_by_agent >= 3, "{run:?}");
    assert_eq!(
        (
            run.received_by_server,
            run.sent_by_server,
            run.received_by_agent
        ),
        (0, 0, 0)
    );
    // Simulated, not slept: far less than 30 s of real time even in debug.
    assert!(
        wall.elapsed() < Duration::from_secs(20),
        "{:?}",
        wall.elapsed()
    );
}
