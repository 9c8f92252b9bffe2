//! Ed25519 signatures of registry plugins (ring). A signature signs a blob's digest, not a
//! name or a version: the message is `legate-plugin-v1\0` followed by the 32 raw bytes of the
//! component's sha256, so re-tagging the same bytes keeps its signatures.
//!
//! Texts: a secret key is `ed25519-seed:<base64 of the 32-byte seed>` (written 0600), a public
//! key `ed25519:<base64 of 32 bytes>` (the bare base64 is accepted too), a signature as pushed
//! `<base64 public key>.<base64 signature>`.

use base64::Engine;
use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::Digest;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const DOMAIN: &[u8] = b"legate-plugin-v1\0";
const SECRET_PREFIX: &str = "ed25519-seed:";
const PUBLIC_PREFIX: &str = "ed25519:";

/// A new key pair: (secret key text, public key text).
pub fn keygen() -> Result<(String, String), String> {
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).map_err(|_| "no system randomness".to_string())?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| format!("ed25519 key: {e}"))?;
    let public = format!("{PUBLIC_PREFIX}{}", B64.encode(pair.public_key().as_ref()));
    Ok((format!("{SECRET_PREFIX}{}", B64.encode(seed)), public))
}

/// A public key's 32 bytes from its text (`ed25519:<base64>` or the bare base64).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    let b64 = t.strip_prefix(PUBLIC_PREFIX).unwrap_or(t);
    let bytes = B64.decode(b64).map_err(|e| format!("public key {t:?}: not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("public key {t:?}: an ed25519 public key has 32 bytes, not {}", bytes.len()))
}

/// The key pair of a secret key text.
fn key_pair(secret: &str) -> Result<Ed25519KeyPair, String> {
    let b64 = secret.trim().strip_prefix(SECRET_PREFIX).ok_or("not a legate plugin signing key (ed25519-seed:...)")?;
    let seed = B64.decode(b64).map_err(|e| format!("signing key: not base64: {e}"))?;
    if seed.len() != 32 {
        return Err(format!("signing key: an ed25519 seed has 32 bytes, not {}", seed.len()));
    }
    Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| format!("signing key: {e}"))
}

/// What is signed for a component of digest `sha256_hex`.
fn message(sha256_hex: &str) -> Result<Vec<u8>, String> {
    let digest = hex::decode(sha256_hex).map_err(|e| format!("digest {sha256_hex:?}: {e}"))?;
    if digest.len() != 32 {
        return Err(format!("digest {sha256_hex:?} is not a sha256"));
    }
    Ok([DOMAIN, digest.as_slice()].concat())
}

/// Signs a component's digest: (public key, signature) as raw bytes.
pub fn sign(secret: &str, sha256_hex: &str) -> Result<([u8; 32], Vec<u8>), String> {
    let pair = key_pair(secret)?;
    let sig = pair.sign(&message(sha256_hex)?);
    let mut pk = [0u8; 32];
    pk.copy_from_slice(pair.public_key().as_ref());
    Ok((pk, sig.as_ref().to_vec()))
}

/// Signs a component's digest, as the `?signature=` text `<b64 public key>.<b64 signature>`.
pub fn sign_text(secret: &str, sha256_hex: &str) -> Result<String, String> {
    let (pk, sig) = sign(secret, sha256_hex)?;
    Ok(format!("{}.{}", B64.encode(pk), B64.encode(sig)))
}

/// Whether `signature` by `public_key` signs the digest `sha256_hex`.
pub fn verify(public_key: &[u8], signature: &[u8], sha256_hex: &str) -> bool {
    match message(sha256_hex) {
        Ok(msg) => UnparsedPublicKey::new(&ED25519, public_key).verify(&msg, signature).is_ok(),
        Err(_) => false,
    }
}

/// Splits a `<b64 public key>.<b64 signature>` text into raw bytes.
pub fn parse_signature(text: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (pk, sig) = text.trim().split_once('.').ok_or("a signature is <base64 public key>.<base64 signature>")?;
    let pk = B64.decode(pk).map_err(|e| format!("signature's public key: not base64: {e}"))?;
    let sig = B64.decode(sig).map_err(|e| format!("signature: not base64: {e}"))?;
    if pk.len() != 32 || sig.len() != 64 {
        return Err(format!(
            "an ed25519 public key has 32 bytes and a signature 64 (got {} and {})",
            pk.len(),
            sig.len()
        ));
    }
    Ok((pk, sig))
}

/// Base64 text of raw bytes (how the store keeps keys and signatures).
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Raw bytes of base64 text.
pub fn from_b64(text: &str) -> Result<Vec<u8>, String> {
    B64.decode(text).map_err(|e| e.to_string())
}

/// A short id of a public key (the first 16 hex digits of its sha256), for lists and logs.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(public_key))[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn signatures_round_trip_and_bind_the_digest() {
        let (secret, public) = keygen().unwrap();
        assert!(secret.starts_with("ed25519-seed:") && public.starts_with("ed25519:"));
        let pk = parse_public_key(&public).unwrap();
        let (signer, sig) = sign(&secret, SHA).unwrap();
        assert_eq!(signer, pk);
        assert!(verify(&pk, &sig, SHA));
        let other = SHA.replace('9', "8");
        assert!(!verify(&pk, &sig, &other), "a signature is of one digest");
        let (_, stranger) = keygen().unwrap();
        assert!(!verify(&parse_public_key(&stranger).unwrap(), &sig, SHA));
        let text = sign_text(&secret, SHA).unwrap();
        let (p2, s2) = parse_signature(&text).unwrap();
        assert_eq!((p2.as_slice(), s2.as_slice()), (pk.as_slice(), sig.as_slice()));
        assert_eq!(key_id(&pk).len(), 16);
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(parse_public_key("ed25519:AAAA").unwrap_err().contains("32 bytes"));
        assert!(parse_public_key("not base64!").unwrap_err().contains("not base64"));
        assert!(sign("ed25519:AAAA", SHA).is_err());
        assert!(parse_signature("nodot").is_err());
    }
}
