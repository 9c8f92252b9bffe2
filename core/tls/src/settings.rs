//! One listener's TLS settings (Consul's `tls.defaults` merged with `tls.https` or
//! `tls.internal_rpc`) and the rustls configs they make: the server side of HTTPS and of the
//! RPC port, and the outgoing side of RPC. Versions and cipher suites are Consul's names.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::files::{self, TlsError};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_incoming: bool,
    pub verify_outgoing: bool,
    pub verify_server_hostname: bool,
    /// `TLSv1_2` (the default) or `TLSv1_3`.
    pub min_version: Option<String>,
    /// TLS 1.2 suites by their IANA names; empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
}

/// A certificate and key were both given (or neither).
fn identity(s: &Settings) -> Result<Option<(PathBuf, PathBuf)>, TlsError> {
    match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Invalid("cert_file is set but key_file is not".into())),
        (None, Some(_)) => Err(TlsError::Invalid("key_file is set but cert_file is not".into())),
    }
}

impl Settings {
    /// What these settings would build, as bytes: the settings and the contents of every file
    /// they name. Equal fingerprints build equal configs, so a reload that changes nothing TLS
    /// does not replace them (and does not drop connections made under them).
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut out = format!("{self:?}").into_bytes();
        let mut files: Vec<PathBuf> =
            [&self.ca_file, &self.cert_file, &self.key_file].into_iter().flatten().cloned().collect();
        if let Some(dir) = &self.ca_path {
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                found.sort();
                files.extend(found);
            }
        }
        for f in files {
            out.extend_from_slice(f.as_os_str().as_encoded_bytes());
            out.extend(std::fs::read(&f).unwrap_or_default());
        }
        out
    }

    /// The protocol versions allowed.
    fn versions(&self) -> Result<&'static [&'static SupportedProtocolVersion], TlsError> {
        static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self.min_version.as_deref().unwrap_or("") {
            "" | "TLS_AUTO" | "TLSv1_2" | "tls12" => Ok(BOTH),
            "TLSv1_3" | "tls13" => {
                if !self.cipher_suites.is_empty() {
                    return Err(TlsError::Invalid(
                        "tls_cipher_suites: TLS 1.3 cipher suites are not configurable".into(),
                    ));
                }
                Ok(TLS13)
            }
            v @ ("TLSv1_0" | "TLSv1_1" | "tls10" | "tls11") => Err(TlsError::Invalid(format!(
                "tls_min_version {v} is not supported: Legate speaks TLSv1_2 and TLSv1_3 only"
            ))),
            v => Err(TlsError::Invalid(format!(
                "tls_min_version: invalid TLS version: no matching TLS version found for {v}, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]"
            ))),
        }
    }

    /// The crypto provider: ring with the TLS 1.3 suites and the TLS 1.2 suites chosen.
    fn provider(&self) -> Result<Arc<CryptoProvider>, TlsError> {
        if self.cipher_suites.is_empty() {
            return Ok(crate::provider());
        }
        let mut p = rustls::crypto::ring::default_provider();
        let all = p.cipher_suites.clone();
        let mut chosen: Vec<_> = all.iter().filter(|s| s.tls13().is_some()).cloned().collect();
        for name in &self.cipher_suites {
            let found = all.iter().find(|s| s.tls13().is_none() && s.suite().as_str() == Some(name.as_str()));
            match found {
                Some(s) => chosen.push(*s),
                None => {
                    let known: Vec<&str> =
                        all.iter().filter(|s| s.tls13().is_none()).filter_map(|s| s.suite().as_str()).collect();
                    return Err(TlsError::Invalid(format!(
                        "tls_cipher_suites: invalid TLS cipher suites: no matching cipher suite found for {name} (supported: {})",
                        known.join(", ")
                    )));
                }
            }
        }
        p.cipher_suites = chosen;
        Ok(Arc::new(p))
    }

    fn roots(&self) -> Result<Option<Arc<RootCertStore>>, TlsError> {
        Ok(files::roots(self.ca_file.as_deref(), self.ca_path.as_deref())?.map(Arc::new))
    }

    /// The server side of a TLS listener; None when no certificate is configured. With
    /// `verify_incoming` a client certificate signed by the CA is required; without it one is
    /// verified when offered.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        // Versions and suites are checked even when there is nothing to serve yet.
        self.versions()?;
        self.provider()?;
        let roots = self.roots()?;
        let Some((cert, key)) = identity(self)? else {
            if self.verify_incoming {
                return Err(TlsError::Invalid("verify_incoming is set but no cert_file and key_file are (VerifyIncoming requires a Cert and Key pair)".into()));
            }
            return Ok(None);
        };
        let provider = self.provider()?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions()?)
            .map_err(|e| TlsError::Invalid(format!("tls: {e}")))?;
        let builder = match (&roots, self.verify_incoming) {
            (None, true) => {
                return Err(TlsError::Invalid(
                    "VerifyIncoming set but no CA certificates were provided (ca_file, ca_path)".into(),
                ));
            }
            (None, false) => builder.with_no_client_auth(),
            (Some(roots), required) => {
                let v = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
                let v = if required { v } else { v.allow_unauthenticated() };
                builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Invalid(format!("tls: {e}")))?)
            }
        };
        let chain = files::certificates("cert_file", &cert)?;
        let key = files::private_key("key_file", &key)?;
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Invalid(format!("key_file does not fit cert_file: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Some(Arc::new(config)))
    }

    /// The client side of outgoing RPC; None unless `verify_outgoing`. The server's
    /// certificate must chain to the CA and, with `verify_server_hostname`, name the server
    /// name the caller connects with (`server.<datacenter>.<domain>`).
    pub fn outgoing_config(&self) -> Result<Option<Arc<ClientConfig>>, TlsError> {
        let roots = self.roots()?;
        let id = identity(self)?;
        if !self.verify_outgoing {
            return Ok(None);
        }
        let Some(roots) = roots else {
            return Err(TlsError::Invalid(
                "VerifyOutgoing set but no CA certificates were provided (ca_file, ca_path)".into(),
            ));
        };
        let provider = self.provider()?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions()?)
            .map_err(|e| TlsError::Invalid(format!("tls: {e}")))?;
        let builder = if self.verify_server_hostname {
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::LooseVerifier::chain_only(roots, provider)))
        };
        let config = match id {
            Some((cert, key)) => builder
                .with_client_auth_cert(files::certificates("cert_file", &cert)?, files::private_key("key_file", &key)?)
                .map_err(|e| TlsError::Invalid(format!("key_file does not fit cert_file: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }
}

/// Whether a peer's certificate (the first of its chain, already verified against the CA by the
/// handshake) is valid for `name`, e.g. `server.dc1.consul`.
pub fn certificate_names(certs: Option<&[CertificateDer<'_>]>, name: &str) -> bool {
    let Some(leaf) = certs.and_then(|c| c.first()) else { return false };
    let Ok(name) = ServerName::try_from(name) else { return false };
    ParsedCertificate::try_from(leaf).and_then(|c| rustls::client::verify_server_name(&c, &name)).is_ok()
}
