//! legate-tls: rustls (with the ring provider) for everything Legate speaks TLS on.
//!
//! - Outbound probes (this file): server certificates are verified against the system's roots
//!   (Mozilla's bundled roots when the system has none), unless the check sets
//!   `tls_skip_verify`, which selects [`LooseVerifier::accept_any`] explicitly. `tls_server_name` overrides
//!   the name sent as SNI and checked against the certificate.
//! - The agent's listeners and outgoing RPC (`settings.rs`: Consul's `tls` block for one
//!   listener; `live.rs`: the configs a reload replaces), reading PEM files (`files.rs`).
//! - Certificates as `consul tls` makes them (`pki.rs`).

pub mod files;
pub mod live;
pub mod pki;
pub mod settings;

pub use files::TlsError;
pub use live::{Live, RpcTls};
pub use settings::Settings;

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// The trust roots: the system's, or the bundled Mozilla set when none could be loaded.
pub(crate) fn roots() -> Arc<RootCertStore> {
    static R: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = store.add_parsable_certificates(native.certs);
        if added == 0 {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        Arc::new(store)
    })
    .clone()
}

/// A client config for a check: verifying unless `skip_verify`, offering `alpn` protocols.
/// `agent`: the agent's CA (instead of the system's roots) and certificate, when
/// `enable_agent_tls_for_checks` is on.
pub fn client_config(skip_verify: bool, alpn: &[&[u8]], agent: Option<&CheckTls>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(LooseVerifier::accept_any(provider())))
    } else {
        builder.with_root_certificates(agent.and_then(|a| a.roots.clone()).unwrap_or_else(roots))
    };
    let mut config = match agent.and_then(|a| a.identity.as_ref()) {
        Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What checks take from the agent's TLS (`enable_agent_tls_for_checks`): the CA to verify
/// targets with and the certificate to present, both from `tls.internal_rpc` as Consul does.
#[derive(Debug, Default)]
pub struct CheckTls {
    roots: Option<Arc<RootCertStore>>,
    identity: Option<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>)>,
}

impl CheckTls {
    pub fn from_settings(s: &Settings) -> Result<CheckTls, TlsError> {
        let roots = files::roots(s.ca_file.as_deref(), s.ca_path.as_deref())?.map(Arc::new);
        let identity = match (&s.cert_file, &s.key_file) {
            (Some(c), Some(k)) => Some((files::certificates("cert_file", c)?, files::private_key("key_file", k)?)),
            _ => None,
        };
        Ok(CheckTls { roots, identity })
    }
}

/// The name to verify and send as SNI: `tls_server_name` if set, else the dialed host.
pub fn server_name(tls_server_name: Option<&str>, host: &str) -> Result<ServerName<'static>, TlsError> {
    let name = tls_server_name.filter(|s| !s.is_empty()).unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName(name.to_string()))
}

/// Runs a TLS handshake over `tcp`.
pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    tls_server_name: Option<&str>,
    skip_verify: bool,
    alpn: &[&[u8]],
    agent: Option<&CheckTls>,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let config = client_config(skip_verify, alpn, agent)?;
    let name = server_name(tls_server_name, host)?;
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| TlsError::Handshake(tls_error(&e)))
}

/// A TLS handshake that accepts any certificate (for plugins that inspect certificates).
pub async fn handshake_insecure(
    tcp: TcpStream,
    host: &str,
    server_name: Option<&str>,
) -> Result<TlsStream<TcpStream>, TlsError> {
    handshake(tcp, host, server_name, true, &[], None).await
}

/// The text of a TLS failure: the rustls error when there is one, else the I/O error.
pub fn tls_error(e: &std::io::Error) -> String {
    match find_rustls_error(e) {
        Some(r) => r.to_string(),
        None => io_error(e),
    }
}

/// The rustls error in `e`, looking through I/O errors that wrap it (possibly several deep).
pub fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls_error(inner)
}

/// Verifies a server's certificate chain against `roots` whatever names it holds (Consul's
/// `verify_outgoing` without `verify_server_hostname`), or accepts any certificate when `roots`
/// is None (a check's `tls_skip_verify`, the CLI's `CONSUL_HTTP_SSL_VERIFY=false`). Handshake
/// signatures are still checked, so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
pub struct LooseVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl LooseVerifier {
    pub fn accept_any(provider: Arc<CryptoProvider>) -> LooseVerifier {
        LooseVerifier { roots: None, provider }
    }

    pub fn chain_only(roots: Arc<RootCertStore>, provider: Arc<CryptoProvider>) -> LooseVerifier {
        LooseVerifier { roots: Some(roots), provider }
    }
}

impl ServerCertVerifier for LooseVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// An I/O error as Go words it: lowercase, without Rust's `(os error N)` suffix.
pub fn io_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let known = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "software caused connection abort",
        TimedOut => "i/o timeout",
        AddrNotAvailable => "cannot assign requested address",
        PermissionDenied => "permission denied",
        UnexpectedEof => "EOF",
        BrokenPipe => "broken pipe",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A TLS server for tests: a fixed self-signed certificate for `legate.test` and `127.0.0.1`
/// (valid until 2126), recording the SNI each client sent.
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use std::sync::{Arc, Mutex};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::ServerConfig;
    use tokio::net::TcpStream;
    use tokio_rustls::server::TlsStream;

    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBtDCCAVugAwIBAgIUAWj/LwLXwIpOEBXcZA2pMMAuFBQwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLbGVnYXRlLnRlc3QwIBcNMjYxMTI0MTkzNzQ5WhgPMjEyNjEw
MzExOTM3NDlaMBYxFDASBgNVBAMMC2xlZ2F0ZS50ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAE4FPl2QT8rGR0IfOPwIxYnZ0ajx9esqqo24Qb1k77w2/ehpDb
Xgni+lDmtDsF1zzGvL7gACSP5amKk4tSaMpLbqOBhDCBgTAdBgNVHQ4EFgQUJB6H
bMx40K1k6WrruPNu355ntBMwHwYDVR0jBBgwFoAUJB6HbMx40K1k6WrruPNu355n
tBMwHAYDVR0RBBUwE4ILbGVnYXRlLnRlc3SHBH8AAAEwDAYDVR0TAQH/BAIwADAT
BgNVHSUEDDAKBggrBgEFBQcDATAKBggqhkjOPQQDAgNHADBEAiBAVrfEl9hAspFx
WAvRG92v8laviyD0kIlMhGrJgq3jIgIgORqitxkMgfk61FwpDxeV/QEtXCwVLEo2
Y1hwMP7OgHI=
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS7wjghtnKNEZx/Z3
iM+2k1jfEb0Y9fQvMqzhHfjWuVahRANCAATgU+XZBPysZHQh84/AjFidnRqPH16y
qqjbhBvWTvvDb96GkNteCeL6UOa0OwXXPMa8vuAAJI/lqYqTi1Joyktu
-----END PRIVATE KEY-----
";

    /// Server-side TLS that offers `alpn` and remembers every SNI it was sent.
    #[derive(Clone)]
    pub struct TestTls {
        acceptor: tokio_rustls::TlsAcceptor,
        sni: Arc<Mutex<Vec<Option<String>>>>,
    }

    impl TestTls {
        pub fn new(alpn: &[&[u8]]) -> Self {
            let cert = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
            let mut config = ServerConfig::builder_with_provider(super::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            TestTls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), sni: Default::default() }
        }

        /// The SNI of the `n`th (from 1) completed handshake, waiting a little for it: the
        /// client may finish its side before the server task records it.
        pub async fn sni(&self, n: usize) -> Option<String> {
            for _ in 0..200 {
                if let Some(s) = self.sni.lock().unwrap().get(n - 1) {
                    return s.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("no handshake #{n} completed");
        }

        /// Accepts TLS on `tcp`; None when the client gave up (e.g. it rejected the certificate).
        pub async fn accept(&self, tcp: TcpStream) -> Option<TlsStream<TcpStream>> {
            let tls = self.acceptor.accept(tcp).await.ok()?;
            self.sni.lock().unwrap().push(tls.get_ref().1.server_name().map(str::to_string));
            Some(tls)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_prefers_the_override() {
        assert_eq!(
            server_name(Some("svc.internal"), "10.0.0.1").unwrap(),
            ServerName::try_from("svc.internal").unwrap()
        );
        assert_eq!(server_name(None, "10.0.0.1").unwrap(), ServerName::try_from("10.0.0.1").unwrap());
        assert_eq!(server_name(Some(""), "example.com").unwrap(), ServerName::try_from("example.com").unwrap());
        assert!(server_name(None, "bad name!").is_err());
    }

    #[test]
    fn verifying_config_has_roots_and_skip_config_does_not_verify() {
        assert!(!roots().is_empty());
        let c = client_config(false, &[b"h2"], None).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
        let c = client_config(true, &[], None).unwrap();
        assert!(c.alpn_protocols.is_empty());
    }
}
