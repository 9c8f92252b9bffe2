//! Where registry plugins come from: the agent implements [`Registry`] over the replicated
//! store (servers) or its view of it and the servers' RPC port (client agents). The host only
//! asks it which blob a reference names, for the blob's bytes, and which keys it must trust;
//! it verifies signatures before fetching and the digest after, and caches the compiled code
//! by digest.

use crate::spec::PluginRef;

/// What a reference resolved to: a version of a plugin and its blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryEntry {
    pub name: String,
    pub version: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// The blob's signatures: (public key, signature), raw bytes.
    pub signatures: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The plugin registry as an agent sees it.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// The version a reference names now (`registry:x` follows the latest pushed); Err says
    /// why there is none.
    async fn resolve(&self, r: &PluginRef) -> Result<RegistryEntry, String>;
    /// The blob's bytes (the host verifies their digest).
    async fn fetch(&self, e: &RegistryEntry) -> Result<Vec<u8>, String>;
    /// The keys a registry plugin must be signed by (one of them); empty: none required. Read
    /// at every use, so a reload takes effect at the next run.
    fn trusted_keys(&self) -> Vec<[u8; 32]>;
}

/// Where a loaded registry plugin came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RegistryInfo {
    pub name: String,
    pub version: String,
    /// Key ids ([`crate::signing::key_id`]) of the valid signatures.
    pub signed_by: Vec<String>,
    /// Whether this process fetched the bytes from the servers (false: the compiled code came
    /// from the cache or another reference to the same blob).
    pub fetched: bool,
}

/// The key ids of the entry's signatures that verify.
pub fn valid_signers(e: &RegistryEntry) -> Vec<String> {
    e.signatures
        .iter()
        .filter(|(pk, sig)| crate::signing::verify(pk, sig, &e.sha256))
        .map(|(pk, _)| crate::signing::key_id(pk))
        .collect()
}

/// Whether some signature of the entry verifies under one of `trusted`.
pub fn signed_by_trusted(e: &RegistryEntry, trusted: &[[u8; 32]]) -> bool {
    e.signatures.iter().any(|(pk, sig)| {
        trusted.iter().any(|t| t.as_slice() == pk.as_slice()) && crate::signing::verify(pk, sig, &e.sha256)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::{HostOptions, PluginError, PluginHost};

    /// A registry of one blob whose fetch answers `served` (altered bytes in a test).
    struct Stub {
        entry: RegistryEntry,
        served: Vec<u8>,
        trusted: Vec<[u8; 32]>,
        fetches: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Registry for Stub {
        async fn resolve(&self, r: &PluginRef) -> Result<RegistryEntry, String> {
            match r {
                PluginRef::Registry { name, .. } if *name == self.entry.name => Ok(self.entry.clone()),
                _ => Err(format!("no plugin {r}")),
            }
        }
        async fn fetch(&self, _e: &RegistryEntry) -> Result<Vec<u8>, String> {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            Ok(self.served.clone())
        }
        fn trusted_keys(&self) -> Vec<[u8; 32]> {
            self.trusted.clone()
        }
    }

    fn host(stub: Arc<Stub>) -> PluginHost {
        let host = PluginHost::new(HostOptions::default()).unwrap();
        host.set_registry(stub);
        host
    }

    fn entry(bytes: &[u8]) -> RegistryEntry {
        RegistryEntry {
            name: "probe".into(),
            version: "1".into(),
            sha256: crate::sha256_hex(bytes),
            size: bytes.len() as u64,
            signatures: Vec::new(),
        }
    }

    #[tokio::test]
    async fn altered_bytes_are_a_digest_mismatch() {
        let stub = Arc::new(Stub {
            entry: entry(b"the real component"),
            served: b"the real componenT".to_vec(),
            trusted: Vec::new(),
            fetches: AtomicUsize::new(0),
        });
        let err = host(stub.clone()).open("registry:probe").await.err().expect("refused");
        assert!(matches!(err, PluginError::Digest { .. }), "{err}");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert_eq!(stub.fetches.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn unsigned_blobs_are_refused_before_any_fetch() {
        let (secret, public) = crate::signing::keygen().unwrap();
        let trusted = crate::signing::parse_public_key(&public).unwrap();
        let bytes = b"a component".to_vec();
        let stub = Arc::new(Stub {
            entry: entry(&bytes),
            served: bytes.clone(),
            trusted: vec![trusted],
            fetches: AtomicUsize::new(0),
        });
        let err = host(stub.clone()).open("registry:probe@1").await.err().expect("refused");
        assert!(err.to_string().contains("is not signed by a trusted key"), "{err}");
        assert_eq!(stub.fetches.load(Ordering::Relaxed), 0, "no fetch before the signature check");

        // Signed by an untrusted key: still refused.
        let (other, _) = crate::signing::keygen().unwrap();
        let (pk, sig) = crate::signing::sign(&other, &crate::sha256_hex(&bytes)).unwrap();
        let mut e = entry(&bytes);
        e.signatures = vec![(pk.to_vec(), sig)];
        let stub =
            Arc::new(Stub { entry: e, served: bytes.clone(), trusted: vec![trusted], fetches: AtomicUsize::new(0) });
        let err = host(stub).open("registry:probe").await.err().expect("refused");
        assert!(matches!(err, PluginError::Unsigned { .. }), "{err}");

        // Signed by the trusted key: fetched (and then refused as not a component).
        let (pk, sig) = crate::signing::sign(&secret, &crate::sha256_hex(&bytes)).unwrap();
        let mut e = entry(&bytes);
        e.signatures = vec![(pk.to_vec(), sig)];
        let stub = Arc::new(Stub { entry: e, served: bytes, trusted: vec![trusted], fetches: AtomicUsize::new(0) });
        let err = host(stub.clone()).open("registry:probe").await.err().expect("not a component");
        assert!(!matches!(err, PluginError::Unsigned { .. }), "{err}");
        assert_eq!(stub.fetches.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn malformed_references_are_refused() {
        let stub = Arc::new(Stub {
            entry: entry(b"x"),
            served: Vec::new(),
            trusted: Vec::new(),
            fetches: AtomicUsize::new(0),
        });
        let err = host(stub).open("registry:bad name").await.err().expect("refused");
        assert!(matches!(err, PluginError::BadRef(_)), "{err}");
    }
}
