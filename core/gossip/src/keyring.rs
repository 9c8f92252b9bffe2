//! Gossip encryption: the keyring (primary key first), AES-GCM sealing of every datagram, and
//! the `serf/local.keyring` file (a JSON list of base64 keys, primary first).
//!
//! Wire envelope (first byte):
//! - [`PLAIN`] then the inner message, when no key is installed;
//! - [`SEALED`] then a random 12-byte nonce, then AES-GCM(primary key, inner message) with the
//!   envelope byte as associated data.
//!
//! A keyring with keys refuses plaintext datagrams; a keyring without keys refuses sealed ones.
//! Any installed key may open a datagram; only the primary seals.

use crate::GossipError;
use std::path::Path;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;

type Aes192Gcm = AesGcm<Aes192, U12>;

/// First byte of an unencrypted datagram.
pub(crate) const PLAIN: u8 = 0xA0;
/// First byte of an encrypted datagram.
pub(crate) const SEALED: u8 = 0xA1;
const NONCE_LEN: usize = 12;
/// Bytes that sealing adds to a datagram: envelope byte, nonce, GCM tag.
pub(crate) const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + 16;

enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(key: &[u8]) -> Result<Cipher, GossipError> {
        let invalid = |e: aes_gcm::aes::cipher::InvalidLength| GossipError::InvalidKey(e.to_string());
        Ok(match key.len() {
            16 => Cipher::A128(Box::new(Aes128Gcm::new_from_slice(key).map_err(invalid)?)),
            24 => Cipher::A192(Box::new(Aes192Gcm::new_from_slice(key).map_err(invalid)?)),
            32 => Cipher::A256(Box::new(Aes256Gcm::new_from_slice(key).map_err(invalid)?)),
            n => return Err(GossipError::InvalidKey(format!("key size must be 16, 24 or 32 bytes (got {n})"))),
        })
    }

    fn encrypt(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let payload = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.encrypt(nonce, payload).ok(),
            Cipher::A192(c) => c.encrypt(nonce, payload).ok(),
            Cipher::A256(c) => c.encrypt(nonce, payload).ok(),
        }
    }

    fn decrypt(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let payload = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.decrypt(nonce, payload).ok(),
            Cipher::A192(c) => c.decrypt(nonce, payload).ok(),
            Cipher::A256(c) => c.decrypt(nonce, payload).ok(),
        }
    }
}

struct Key {
    raw: Vec<u8>,
    cipher: Cipher,
}

/// Why a datagram was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OpenError {
    /// Encryption is on and the datagram is plaintext.
    Plaintext,
    /// Encryption is on and no installed key opens the datagram.
    WrongKey,
    /// Encryption is off and the datagram is sealed.
    Sealed,
    /// Not a Legate gossip datagram.
    Malformed,
}

impl OpenError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            OpenError::Plaintext => "unencrypted gossip packet refused: encryption is enabled on this agent",
            OpenError::WrongKey => "decrypt failed: wrong gossip key?",
            OpenError::Sealed => "encrypted gossip packet refused: encryption is not enabled on this agent",
            OpenError::Malformed => "malformed gossip packet",
        }
    }
}

/// The installed keys, primary first. Empty means encryption is off.
#[derive(Default)]
pub(crate) struct Keyring {
    keys: Vec<Key>,
}

/// Decodes a base64 key and checks its size.
pub(crate) fn decode_key(b64: &str) -> Result<Vec<u8>, GossipError> {
    let raw = B64.decode(b64.trim()).map_err(|e| GossipError::InvalidKey(e.to_string()))?;
    match raw.len() {
        16 | 24 | 32 => Ok(raw),
        n => Err(GossipError::InvalidKey(format!("key size must be 16, 24 or 32 bytes (got {n})"))),
    }
}

pub(crate) fn encode_key(raw: &[u8]) -> String {
    B64.encode(raw)
}

impl Keyring {
    pub(crate) fn new(keys: &[Vec<u8>]) -> Result<Keyring, GossipError> {
        let mut ring = Keyring::default();
        for raw in keys {
            if ring.keys.iter().any(|k| &k.raw == raw) {
                continue;
            }
            let cipher = Cipher::new(raw)?;
            ring.keys.push(Key { raw: raw.clone(), cipher });
        }
        Ok(ring)
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Base64 keys, primary first.
    pub(crate) fn list(&self) -> Vec<String> {
        self.keys.iter().map(|k| encode_key(&k.raw)).collect()
    }

    pub(crate) fn raw_keys(&self) -> Vec<Vec<u8>> {
        self.keys.iter().map(|k| k.raw.clone()).collect()
    }

    /// The key list after installing `raw` as a secondary key (no change if present).
    pub(crate) fn plan_install(&self, raw: &[u8]) -> Result<Vec<Vec<u8>>, GossipError> {
        self.require_enabled()?;
        let mut keys = self.raw_keys();
        if !keys.iter().any(|k| k == raw) {
            keys.push(raw.to_vec());
        }
        Ok(keys)
    }

    /// The key list after making the installed key `raw` the primary one.
    pub(crate) fn plan_use(&self, raw: &[u8]) -> Result<Vec<Vec<u8>>, GossipError> {
        self.require_enabled()?;
        let mut keys = self.raw_keys();
        let pos = keys.iter().position(|k| k == raw).ok_or(GossipError::KeyNotInstalled)?;
        let key = keys.remove(pos);
        keys.insert(0, key);
        Ok(keys)
    }

    /// The key list after removing `raw`; removing the primary key is refused.
    pub(crate) fn plan_remove(&self, raw: &[u8]) -> Result<Vec<Vec<u8>>, GossipError> {
        self.require_enabled()?;
        let mut keys = self.raw_keys();
        if keys.first().map(|k| k.as_slice()) == Some(raw) {
            return Err(GossipError::RemovePrimary);
        }
        keys.retain(|k| k != raw);
        Ok(keys)
    }

    fn require_enabled(&self) -> Result<(), GossipError> {
        if self.enabled() {
            Ok(())
        } else {
            Err(GossipError::EncryptionDisabled)
        }
    }

    /// Wraps an inner message into a datagram: sealed with the primary key, or plaintext.
    pub(crate) fn seal(&self, inner: &[u8]) -> Vec<u8> {
        match self.keys.first() {
            None => {
                let mut out = Vec::with_capacity(1 + inner.len());
                out.push(PLAIN);
                out.extend_from_slice(inner);
                out
            }
            Some(key) => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::thread_rng().fill_bytes(&mut nonce);
                let ct = key.cipher.encrypt(&nonce, inner, &[SEALED]).unwrap_or_default();
                let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
                out.push(SEALED);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
                out
            }
        }
    }

    /// Unwraps a datagram into its inner message.
    pub(crate) fn open(&self, data: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&kind, rest) = data.split_first().ok_or(OpenError::Malformed)?;
        match (kind, self.enabled()) {
            (PLAIN, false) => Ok(rest.to_vec()),
            (PLAIN, true) => Err(OpenError::Plaintext),
            (SEALED, false) => Err(OpenError::Sealed),
            (SEALED, true) => {
                if rest.len() < NONCE_LEN + 16 {
                    return Err(OpenError::Malformed);
                }
                let (nonce, ct) = rest.split_at(NONCE_LEN);
                self.keys.iter().find_map(|k| k.cipher.decrypt(nonce, ct, &[SEALED])).ok_or(OpenError::WrongKey)
            }
            _ => Err(OpenError::Malformed),
        }
    }
}

/// Reads a keyring file: `Ok(None)` if it does not exist.
pub(crate) fn load_file(path: &Path) -> Result<Option<Vec<Vec<u8>>>, GossipError> {
    let bad = |why: String| GossipError::KeyringFile { path: path.to_path_buf(), why };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(format!("cannot read: {e}"))),
    };
    let list: Vec<String> = serde_json::from_str(&text).map_err(|e| bad(format!("invalid: {e}")))?;
    let mut keys = Vec::with_capacity(list.len());
    for k in &list {
        keys.push(decode_key(k).map_err(|e| bad(format!("invalid: {e}")))?);
    }
    Ok(Some(keys))
}

/// Writes a keyring file atomically (temp file + rename), readable by the owner only.
pub(crate) fn save_file(path: &Path, keys: &[Vec<u8>]) -> Result<(), GossipError> {
    let bad = |why: String| GossipError::KeyringFile { path: path.to_path_buf(), why };
    let list: Vec<String> = keys.iter().map(|k| encode_key(k)).collect();
    let text = serde_json::to_string(&list).map_err(|e| bad(e.to_string()))?;
    if let Some(dir) = path.parent() {
        legate_types::fs::create_private_dir(dir).map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
    }
    legate_types::fs::write_private(path, text.as_bytes()).map_err(|e| bad(format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_refusals() {
        let k1 = vec![1u8; 32];
        let k2 = vec![2u8; 16];
        let ring = Keyring::new(std::slice::from_ref(&k1)).unwrap();
        let sealed = ring.seal(b"hello");
        assert_eq!(sealed[0], SEALED);
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(ring.open(&sealed).unwrap(), b"hello");
        // Random nonce: two seals of the same message differ.
        assert_ne!(ring.seal(b"hello"), sealed);

        let other = Keyring::new(std::slice::from_ref(&k2)).unwrap();
        assert_eq!(other.open(&sealed), Err(OpenError::WrongKey));
        let both = Keyring::new(&[k2, k1]).unwrap();
        assert_eq!(both.open(&sealed).unwrap(), b"hello");

        let plain = Keyring::default();
        let p = plain.seal(b"x");
        assert_eq!(plain.open(&p).unwrap(), b"x");
        assert_eq!(ring.open(&p), Err(OpenError::Plaintext));
        assert_eq!(plain.open(&sealed), Err(OpenError::Sealed));
        assert_eq!(plain.open(&[0x00, 1, 2]), Err(OpenError::Malformed));
        assert_eq!(ring.open(&[SEALED, 1, 2]), Err(OpenError::Malformed));
    }

    #[test]
    fn all_key_sizes_work() {
        for n in [16usize, 24, 32] {
            let ring = Keyring::new(&[vec![7u8; n]]).unwrap();
            assert_eq!(ring.open(&ring.seal(b"abc")).unwrap(), b"abc");
        }
        assert!(Keyring::new(&[vec![7u8; 20]]).is_err());
        assert!(decode_key("AAAA").is_err());
        assert!(decode_key("not base64!").is_err());
    }

    #[test]
    fn keyring_file_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serf").join("local.keyring");
        assert_eq!(load_file(&path).unwrap(), None);
        let keys = vec![vec![1u8; 32], vec![2u8; 16]];
        save_file(&path, &keys).unwrap();
        assert_eq!(load_file(&path).unwrap(), Some(keys));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("[\""), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
