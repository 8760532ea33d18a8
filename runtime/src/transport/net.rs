//! The QUIC connection between two `heq-run` processes: the server's endpoint and TLS identity,
//! the client's connection with certificate pinning, and per-connection QUIC traffic counters.
//!
//! One s2n-quic connection per session carries everything: cryprot-net wraps it
//! ([`cryprot_net::Connection`]), the OT extension runs on its sub-connections and the protocol
//! frames on one of its byte streams ([`super::quic::frame_channel`]).
//!
//! TLS 1.3 through rustls (`s2n-quic`'s `provider-tls-rustls`). The server presents a
//! certificate from PEM files or a self-signed one it generates at start ([`Identity`]); its
//! [`Fingerprint`] is the SHA-256 of the DER certificate. The client accepts exactly the
//! certificate whose fingerprint it was given (the handshake signature is still verified
//! against that certificate's key, so only the holder of the private key passes); without a
//! fingerprint it accepts any certificate and reports which one it saw, and the caller must
//! warn that the server is not authenticated. [`loopback`] connects both ends in one process
//! (`--mode sim`, calibration). Design notes: `docs/transport.md`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use s2n_quic::client::Connect;
use s2n_quic::provider::event::{ConnectionInfo, ConnectionMeta, Subscriber, events};
use s2n_quic::provider::limits::Limits;
use sha2::{Digest, Sha256};

/// ALPN protocol identifier of `heq-run` connections.
pub const ALPN: &[u8] = b"heq-run/1";

/// Name the client asks for and the generated certificate carries (the pin, not the name,
/// authenticates the server).
pub const SERVER_NAME: &str = "heq-run";

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A certificate or key file is unreadable or not PEM.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TLS configuration could not be built (e.g. a key that does not fit the certificate).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The endpoint could not be started (e.g. the port is in use).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection attempt failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The server's certificate is not the pinned one.
    #[error(
        "server certificate fingerprint sha256:{actual} does not match the pinned sha256:{pinned}"
    )]
    FingerprintMismatch {
        /// What the client was told to expect.
        pinned: Fingerprint,
        /// What the server presented.
        actual: Fingerprint,
    },
    /// The connection was set up but could not be used.
    #[error("connection: {0}")]
    Connection(String),
}

/// SHA-256 of a DER certificate, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// A fingerprint that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error(
    "a SHA-256 fingerprint is 64 hex digits (optionally prefixed with `sha256:`, colons allowed)"
)]
pub struct FingerprintParseError;

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Parses `HEX`, `sha256:HEX` or colon-separated byte pairs, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(FingerprintParseError);
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
            let hex = std::str::from_utf8(pair).map_err(|_| FingerprintParseError)?;
            *o = u8::from_str_radix(hex, 16).map_err(|_| FingerprintParseError)?;
        }
        Ok(Fingerprint(out))
    }
}

/// The server's certificate chain and private key (PEM), with the fingerprint of its
/// end-entity certificate.
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity {{ fingerprint: {:?} }}", self.fingerprint)
    }
}

impl Identity {
    /// A fresh self-signed certificate (ECDSA P-256) for [`SERVER_NAME`].
    ///
    /// # Errors
    /// [`NetError::Tls`] if key generation fails.
    pub fn generate() -> Result<Self, NetError> {
        let tls = |e: rcgen::Error| NetError::Tls(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(tls)?;
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(tls)?;
        let cert = params.self_signed(&key).map_err(tls)?;
        Ok(Identity {
            fingerprint: Fingerprint::of(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The certificate chain (end-entity first) and private key from PEM files.
    ///
    /// # Errors
    /// [`NetError::Pem`] for an unreadable file or one without a certificate / key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, NetError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| NetError::Pem {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let first = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .ok_or_else(|| NetError::Pem {
                path: cert.display().to_string(),
                reason: "no certificate in the file".into(),
            })?
            .map_err(|e| NetError::Pem {
                path: cert.display().to_string(),
                reason: e.to_string(),
            })?;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            NetError::Pem {
                path: key.display().to_string(),
                reason: format!("no private key: {e}"),
            }
        })?;
        Ok(Identity {
            fingerprint: Fingerprint::of(&first),
            cert_pem,
            key_pem,
        })
    }

    /// The SHA-256 fingerprint of the end-entity certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// QUIC datagram and stream bytes of one connection, counted by s2n-quic's event hooks.
///
/// Stream bytes sent are counted from the STREAM frames sent, each stream's bytes once (up to
/// the highest offset sent, so retransmissions do not count): s2n-quic's `TxStreamProgress`
/// event misses flow-control credit taken outside packet assembly and under-counts by up to
/// 0.5 % on long runs. Stream bytes received come from `RxStreamProgress`, which is exact.
#[derive(Debug, Default)]
pub struct QuicTraffic {
    datagram_bytes_sent: AtomicU64,
    datagram_bytes_received: AtomicU64,
    stream_bytes_sent: AtomicU64,
    stream_bytes_received: AtomicU64,
    /// Per stream id, the end of the highest STREAM frame sent.
    sent_ends: Mutex<HashMap<u64, u64>>,
}

/// A reading of [`QuicTraffic`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuicCounts {
    /// UDP payload bytes sent (QUIC packets: headers, encryption, acknowledgements,
    /// retransmissions and the TLS handshake included).
    pub datagram_bytes_sent: u64,
    /// UDP payload bytes received.
    pub datagram_bytes_received: u64,
    /// Application bytes sent on all streams (protocol frames, OT extension, stream headers).
    pub stream_bytes_sent: u64,
    /// Application bytes received on all streams.
    pub stream_bytes_received: u64,
}

impl QuicTraffic {
    /// The counts so far.
    pub fn read(&self) -> QuicCounts {
        QuicCounts {
            datagram_bytes_sent: self.datagram_bytes_sent.load(Ordering::Relaxed),
            datagram_bytes_received: self.datagram_bytes_received.load(Ordering::Relaxed),
            stream_bytes_sent: self.stream_bytes_sent.load(Ordering::Relaxed),
            stream_bytes_received: self.stream_bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// s2n-quic event subscriber that counts bytes per connection into a [`QuicTraffic`].
struct TrafficCounter;

impl Subscriber for TrafficCounter {
    type ConnectionContext = Arc<QuicTraffic>;

    fn create_connection_context(
        &mut self,
        _meta: &ConnectionMeta,
        _info: &ConnectionInfo,
    ) -> Self::ConnectionContext {
        Arc::default()
    }

    fn on_datagram_sent(
        &mut self,
        context: &mut Self::ConnectionContext,
        _meta: &ConnectionMeta,
        event: &events::DatagramSent,
    ) {
        context
            .datagram_bytes_sent
            .fetch_add(u64::from(event.len), Ordering::Relaxed);
    }

    fn on_datagram_received(
        &mut self,
        context: &mut Self::ConnectionContext,
        _meta: &ConnectionMeta,
        event: &events::DatagramReceived,
    ) {
        context
            .datagram_bytes_received
            .fetch_add(u64::from(event.len), Ordering::Relaxed);
    }

    fn on_frame_sent(
        &mut self,
        context: &mut Self::ConnectionContext,
        _meta: &ConnectionMeta,
        event: &events::FrameSent,
    ) {
        if let events::Frame::Stream {
            id, offset, len, ..
        } = event.frame
        {
            let end = offset + u64::from(len);
            let mut ends = context
                .sent_ends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let sent = ends.entry(id).or_default();
            if end > *sent {
                context
                    .stream_bytes_sent
                    .fetch_add(end - *sent, Ordering::Relaxed);
                *sent = end;
            }
        }
    }

    fn on_rx_stream_progress(
        &mut self,
        context: &mut Self::ConnectionContext,
        _meta: &ConnectionMeta,
        event: &events::RxStreamProgress,
    ) {
        context
            .stream_bytes_received
            .fetch_add(event.bytes as u64, Ordering::Relaxed);
    }
}

/// An established connection: the cryprot-net wrapper (its stream manager already running on
/// the current tokio runtime), the peer's address and the connection's QUIC counters.
pub struct Peer {
    /// The connection the OT extension and the frames run on.
    pub conn: cryprot_net::Connection,
    /// The peer's address.
    pub remote: SocketAddr,
    /// QUIC traffic of this connection.
    pub traffic: Arc<QuicTraffic>,
    /// Closes the connection.
    handle: s2n_quic::connection::Handle,
    /// cryprot-net's stream acceptor, which ends when the connection is closed.
    manager: tokio::task::JoinHandle<()>,
    /// The client's endpoint, kept as long as its connection.
    endpoint: Option<s2n_quic::Client>,
}

impl Peer {
    /// Wraps an s2n-quic connection with keep-alive on, so that the connection survives one
    /// party computing for longer than the idle timeout (call from within the tokio runtime
    /// that drives it).
    fn new(
        mut conn: s2n_quic::Connection,
        endpoint: Option<s2n_quic::Client>,
    ) -> Result<Self, NetError> {
        conn.keep_alive(true)
            .map_err(|e| NetError::Connection(e.to_string()))?;
        let remote = conn
            .remote_addr()
            .map_err(|e| NetError::Connection(e.to_string()))?;
        let traffic = conn
            .query_event_context(|t: &Arc<QuicTraffic>| t.clone())
            .map_err(|e| NetError::Connection(e.to_string()))?;
        let handle = conn.handle();
        let (conn, manager) = cryprot_net::Connection::new(conn);
        let manager = tokio::spawn(manager.start());
        Ok(Peer {
            conn,
            remote,
            traffic,
            handle,
            manager,
            endpoint,
        })
    }

    /// Closes the connection now (application error code 1 if `failed`, else 0): the peer's
    /// pending reads fail instead of waiting. Waits (at most a second each) until the
    /// connection has closed and a client's endpoint is idle, so that a process exiting right
    /// after has still told the peer.
    pub async fn close(&mut self, failed: bool) {
        const BOUND: Duration = Duration::from_secs(1);
        self.handle.close(u32::from(failed).into());
        let _ = tokio::time::timeout(BOUND, &mut self.manager).await;
        if let Some(endpoint) = &mut self.endpoint {
            let _ = tokio::time::timeout(BOUND, endpoint.wait_idle()).await;
        }
    }
}

/// Longest time a connection's endpoint stays silent: it sends a keep-alive ping after this
/// long without sending anything, so the peer can tell a party that computes (inside an OT
/// batch) from one that vanished. About 40 bytes per period each way while idle.
pub const KEEP_ALIVE_PERIOD: Duration = Duration::from_millis(100);

/// Endpoint limits of both sides: cryprot-net opens one unidirectional stream per OT
/// sub-protocol message group, large send buffers keep loopback transfers fast, and keep-alive
/// pings come every [`KEEP_ALIVE_PERIOD`].
fn limits() -> Result<Limits, NetError> {
    fn tls(e: impl fmt::Display) -> NetError {
        NetError::Tls(e.to_string())
    }
    let max_streams = 1 << 59;
    Limits::new()
        .with_max_send_buffer_size(12 << 20)
        .map_err(tls)?
        .with_max_open_local_unidirectional_streams(max_streams)
        .map_err(tls)?
        .with_max_open_remote_unidirectional_streams(max_streams)
        .map_err(tls)?
        .with_max_keep_alive_period(KEEP_ALIVE_PERIOD)
        .map_err(tls)
}

/// UDP socket of an endpoint bound to `addr`.
fn io(addr: SocketAddr) -> std::io::Result<s2n_quic::provider::io::Default> {
    s2n_quic::provider::io::Default::builder()
        .with_receive_address(addr)?
        .with_max_mtu(9000)?
        .build()
}

/// The server's endpoint.
pub struct Listener {
    server: s2n_quic::Server,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port) with `identity`'s certificate. Call from within
    /// a tokio runtime.
    ///
    /// # Errors
    /// [`NetError::Tls`] for an unusable certificate or key, [`NetError::Listen`] if the address
    /// cannot be bound.
    pub fn bind(addr: SocketAddr, identity: &Identity) -> Result<Self, NetError> {
        let tls_err = |e: Box<dyn std::error::Error + Send + Sync>| NetError::Tls(e.to_string());
        let tls = s2n_quic::provider::tls::rustls::Server::builder()
            .with_certificate(identity.cert_pem.as_str(), identity.key_pem.as_str())
            .map_err(tls_err)?
            .with_application_protocols([ALPN].iter())
            .map_err(tls_err)?
            .build()
            .map_err(tls_err)?;
        let listen = |reason: String| NetError::Listen { addr, reason };
        let io = io(addr).map_err(|e| listen(e.to_string()))?;
        let server = s2n_quic::Server::builder()
            .with_tls(tls)
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_limits(limits()?)
            .map_err(|e| listen(e.to_string()))?
            .with_event(TrafficCounter)
            .map_err(|e| listen(e.to_string()))?
            .with_io(io)
            .map_err(|e| listen(e.to_string()))?
            .start()
            .map_err(|e| listen(e.to_string()))?;
        let addr = server.local_addr().map_err(|e| listen(e.to_string()))?;
        Ok(Listener { server, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next client connection (`None` once the endpoint is closed).
    ///
    /// # Errors
    /// [`NetError::Connection`] if the accepted connection cannot be used.
    pub async fn accept(&mut self) -> Option<Result<Peer, NetError>> {
        let conn = self.server.accept().await?;
        Some(Peer::new(conn, None))
    }
}

/// The client's certificate check: the SHA-256 of the end-entity certificate must equal the
/// pin (if any); the handshake signature is verified with that certificate's key.
#[derive(Debug)]
struct PinnedServer {
    pin: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
    /// The fingerprint the server presented.
    seen: Mutex<Option<Fingerprint>>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = Fingerprint::of(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(actual);
        }
        match self.pin {
            Some(pin) if pin != actual => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to the server at `addr`; with `pin`, only a server presenting the certificate
/// with that fingerprint is accepted. Returns the connection and the fingerprint the server
/// presented. Call from within a tokio runtime.
///
/// # Errors
/// [`NetError::FingerprintMismatch`] if the server's certificate is not the pinned one,
/// [`NetError::Connect`] if the server cannot be reached or the handshake fails.
pub async fn connect(
    addr: SocketAddr,
    pin: Option<Fingerprint>,
) -> Result<(Peer, Fingerprint), NetError> {
    use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider};
    let fail = |reason: String| NetError::Connect { addr, reason };
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    });
    let verifier = Arc::new(PinnedServer {
        pin,
        provider: provider.clone(),
        seen: Mutex::new(None),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_fragment_size = None;
    let tls = s2n_quic::provider::tls::rustls::Client::from(config);
    let local: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let client = s2n_quic::Client::builder()
        .with_tls(tls)
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_limits(limits()?)
        .map_err(|e| fail(e.to_string()))?
        .with_event(TrafficCounter)
        .map_err(|e| fail(e.to_string()))?
        .with_io(io(local).map_err(|e| fail(e.to_string()))?)
        .map_err(|e| fail(e.to_string()))?
        .start()
        .map_err(|e| fail(e.to_string()))?;
    let connect = Connect::new(addr).with_server_name(SERVER_NAME);
    let result = client.connect(connect).await;
    let seen = verifier.seen.lock().ok().and_then(|s| *s);
    let conn = match (result, pin, seen) {
        (Ok(conn), _, Some(seen)) => Ok((conn, seen)),
        (Err(_), Some(pinned), Some(actual)) if pinned != actual => {
            Err(NetError::FingerprintMismatch { pinned, actual })
        }
        (Err(e), _, _) => Err(fail(e.to_string())),
        (Ok(_), _, None) => Err(fail("the server presented no certificate".into())),
    }?;
    let (conn, seen) = conn;
    Ok((Peer::new(conn, Some(client))?, seen))
}

/// Both ends of one connection over the loopback interface, for running the two parties in
/// one process (`--mode sim`, calibration) over the same transport as two processes: a
/// [`Listener`] on `127.0.0.1` with a fresh self-signed [`Identity`] and a client pinning it.
pub struct Loopback {
    /// The server's end.
    pub server: Peer,
    /// The client's end.
    pub client: Peer,
    /// The server's endpoint, kept as long as its connection.
    _listener: Listener,
}

/// Connects a fresh server endpoint on `127.0.0.1` and a client to it. Call from within a
/// tokio runtime.
///
/// # Errors
/// [`NetError`] if the certificate, the endpoint or the connection cannot be made.
pub async fn loopback() -> Result<Loopback, NetError> {
    let identity = Identity::generate()?;
    let mut listener = Listener::bind((std::net::Ipv4Addr::LOCALHOST, 0).into(), &identity)?;
    let addr = listener.local_addr();
    let (accepted, connected) = tokio::join!(
        listener.accept(),
        connect(addr, Some(identity.fingerprint()))
    );
    let server =
        accepted.ok_or_else(|| NetError::Connection("the loopback endpoint closed".into()))??;
    let (client, _) = connected?;
    Ok(Loopback {
        server,
        client,
        _listener: listener,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_the_usual_spellings() {
        let f = Fingerprint::of(b"certificate");
        let hex = f.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<Fingerprint>().unwrap(), f);
        assert_eq!(format!("sha256:{hex}").parse::<Fingerprint>().unwrap(), f);
        assert_eq!(hex.to_uppercase().parse::<Fingerprint>().unwrap(), f);
        let colons: Vec<String> = f.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(colons.join(":").parse::<Fingerprint>().unwrap(), f);
        for bad in ["", "abc", &hex[..62], &format!("{hex}00"), &"zz".repeat(32)] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn identities_from_pem_files() {
        let dir = std::env::temp_dir().join(format!("heq-net-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let id = Identity::from_pem_files(&c, &k).unwrap();
        assert_eq!(id.fingerprint(), Fingerprint::of(cert.der()));
        let err = Identity::from_pem_files(&k, &k).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("k.pem: no certificate in the file"),
            "{err}"
        );
        let err = Identity::from_pem_files(&c, &c).unwrap_err();
        assert!(err.to_string().contains("c.pem: no private key"), "{err}");
        let err = Identity::from_pem_files(&dir.join("none.pem"), &k).unwrap_err();
        assert!(err.to_string().contains("none.pem: No such file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
