//! Reading certificates, keys and CA bundles from PEM files, with errors that name the file.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// What went wrong building TLS from an agent's settings; the text names the file or key.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TlsError {
    #[error("{key}: failed to read {path}: {reason}")]
    Read { key: &'static str, path: PathBuf, reason: String },
    #[error("{key}: {path} holds no {what}")]
    Empty { key: &'static str, path: PathBuf, what: &'static str },
    #[error("{0}")]
    Invalid(String),
    /// rustls refused a client configuration.
    #[error("tls: {0}")]
    Config(#[from] rustls::Error),
    #[error("tls: invalid server name {0:?}")]
    ServerName(String),
    /// A handshake that failed: the rustls error when there is one, else the I/O error.
    #[error("tls: {0}")]
    Handshake(String),
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { key, path: path.to_path_buf(), reason: crate::io_error(&e) })
}

/// Every certificate in a PEM file (a chain: the leaf first).
pub fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().map_err(|e| TlsError::Read {
        key,
        path: path.to_path_buf(),
        reason: format!("invalid PEM: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { key, path: path.to_path_buf(), what: "PEM certificate" });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Empty { key, path: path.to_path_buf(), what: "PEM private key" }
        }
        e => TlsError::Read { key, path: path.to_path_buf(), reason: format!("invalid PEM: {e}") },
    })
}

/// The trust roots of `ca_file` and of every file in `ca_path` (each must hold PEM
/// certificates, as Consul requires); None when neither is set.
pub fn roots(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<Option<RootCertStore>, TlsError> {
    if ca_file.is_none() && ca_path.is_none() {
        return Ok(None);
    }
    let mut store = RootCertStore::empty();
    let mut add = |key: &'static str, path: &Path| -> Result<(), TlsError> {
        for cert in certificates(key, path)? {
            store.add(cert).map_err(|e| TlsError::Read {
                key,
                path: path.to_path_buf(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        Ok(())
    };
    if let Some(f) = ca_file {
        add("ca_file", f)?;
    }
    if let Some(dir) = ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| TlsError::Read {
            key: "ca_path",
            path: dir.to_path_buf(),
            reason: crate::io_error(&e),
        })?;
        let mut files: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        files.sort();
        for f in &files {
            add("ca_path", f)?;
        }
    }
    if store.is_empty() {
        let path = ca_file.or(ca_path).unwrap_or(Path::new("")).to_path_buf();
        return Err(TlsError::Empty { key: "ca_path", path, what: "CA certificate" });
    }
    Ok(Some(store))
}
