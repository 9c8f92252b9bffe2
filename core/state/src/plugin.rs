//! The plugin registry (`/v1/plugin`): WASM components stored content-addressed (by sha256) in
//! chunks of [`CHUNK_SIZE`], one Raft entry each, and named versions pointing at a digest.
//! Records are JSON (new fields break neither stored rows nor Raft entries); chunks are raw
//! bytes.
//!
//! A blob is written chunk by chunk (`Chunk`: idempotent, invisible until committed), then made
//! a version by `Commit`, which is refused unless every chunk is there. Signatures belong to the
//! blob (they sign its digest). A version goes with `Delete`, refused while a WASM check of the
//! catalog references it; the blob and its chunks go with the last version naming them. `Reap`
//! is the leader's GC of uploads that died between chunks.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::catalog::Check;
use super::schema::{CHECKS, IDX_PLUGINS, PLUGIN_BLOBS, PLUGIN_CHUNKS, PLUGIN_VERSIONS};
use super::{bump_index_txn, table_index_read, StoreError};

/// The size of every chunk but a blob's last: a little under 256 KiB, so that a chunk with its
/// key and page header (state store) or its entry's framing (Raft log) still fits the 256 KiB
/// that redb's power-of-two allocator gives it: exactly 256 KiB of data took 512 KiB in both
/// files (`scripts/bench-registry.py`: each file grew 62 MiB for a 20 MiB plugin).
pub const CHUNK_SIZE: usize = 255 * 1024;

/// A named version of a plugin.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PluginVersion {
    pub name: String,
    pub version: String,
    /// Lowercase hex of the component's sha256.
    pub sha256: String,
    pub size: u64,
    /// "check" or "event-handler".
    pub world: String,
    /// The component's imported interfaces.
    pub imports: Vec<String>,
    /// RFC 3339, set by the server that took the push.
    pub pushed_at: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A stored component: its chunks are under `sha256\0{i:08}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Blob {
    pub sha256: String,
    pub size: u64,
    pub chunks: u32,
    /// Committed: every chunk is there, some version names it.
    pub complete: bool,
    pub signatures: Vec<Signature>,
    /// When the last chunk was written (carried in the op, so every replica agrees).
    pub updated_at_unix: u64,
    pub modify_index: u64,
}

/// An ed25519 signature of a blob's digest.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Signature {
    /// Base64 of the 32-byte public key.
    pub public_key: String,
    /// Base64 of the 64-byte signature.
    pub signature: String,
}

/// A check of the catalog that runs a registry plugin.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reference {
    pub node: String,
    pub check_id: String,
    /// The reference as written (`registry:x@1`, `registry:x`, `sha256:...`).
    pub plugin: String,
}

/// A write of the registry, replicated through Raft.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub enum PluginOp {
    /// One chunk of a blob being uploaded.
    Chunk { sha256: String, index: u32, total: u32, size: u64, at_unix: u64, data: Vec<u8> },
    /// Makes a version (JSON of a [`PluginVersion`]) of a blob whose chunks are all there.
    Commit { version_json: String, signatures: Vec<Signature> },
    /// Adds a signature to a blob.
    Sign { sha256: String, signature: Signature },
    /// Removes a version; refused while a check references it.
    Delete { name: String, version: String },
    /// Drops an incomplete blob that no version names (the leader's GC).
    Reap { sha256: String },
}

/// Written by hand: a chunk's bytes are never printed.
impl std::fmt::Debug for PluginOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginOp::Chunk { sha256, index, total, size, at_unix, data } => f
                .debug_struct("Chunk")
                .field("sha256", sha256)
                .field("index", index)
                .field("total", total)
                .field("size", size)
                .field("at_unix", at_unix)
                .field("data_len", &data.len())
                .finish(),
            PluginOp::Commit { version_json, signatures } => {
                f.debug_struct("Commit").field("version_json", version_json).field("signatures", signatures).finish()
            }
            PluginOp::Sign { sha256, signature } => {
                f.debug_struct("Sign").field("sha256", sha256).field("signature", signature).finish()
            }
            PluginOp::Delete { name, version } => {
                f.debug_struct("Delete").field("name", name).field("version", version).finish()
            }
            PluginOp::Reap { sha256 } => f.debug_struct("Reap").field("sha256", sha256).finish(),
        }
    }
}

impl PluginOp {
    /// The bytes of blob data the op carries (what the Raft batcher and network budget count).
    pub fn bulk_bytes(&self) -> usize {
        match self {
            PluginOp::Chunk { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// Whether the op changes what readers see (a chunk does not before its commit).
    pub fn visible(&self) -> bool {
        !matches!(self, PluginOp::Chunk { .. })
    }
}

/// How many chunks a blob of `size` bytes has (at least one: an empty blob has one empty chunk).
pub fn chunk_count(size: u64) -> u32 {
    (size.div_ceil(CHUNK_SIZE as u64)).max(1) as u32
}

/// The length chunk `index` of a blob of `size` bytes must have.
pub fn chunk_len(size: u64, index: u32) -> u64 {
    let start = u64::from(index) * CHUNK_SIZE as u64;
    size.saturating_sub(start).min(CHUNK_SIZE as u64)
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn version_key(name: &str, version: &str) -> String {
    format!("{name}\0{version}")
}

fn chunk_key(sha256: &str, index: u32) -> String {
    format!("{sha256}\0{index:08}")
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode(Box::new(bincode::ErrorKind::Custom(e.to_string()))))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

type Bytes = &'static [u8];

/// Every version in a table, by name then create index.
fn versions_in(t: &impl ReadableTable<&'static str, Bytes>) -> Result<Vec<PluginVersion>, StoreError> {
    let mut out: Vec<PluginVersion> = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.create_index.cmp(&b.create_index)));
    Ok(out)
}

fn blob_in(t: &impl ReadableTable<&'static str, Bytes>, sha256: &str) -> Result<Option<Blob>, StoreError> {
    let v = t.get(sha256)?;
    v.map(|v| decode(v.value())).transpose()
}

/// The newest version (the one pushed last) of each name among `versions`, if `name` has any.
fn latest_of<'a>(versions: &'a [PluginVersion], name: &str) -> Option<&'a PluginVersion> {
    versions.iter().filter(|v| v.name == name).max_by_key(|v| v.create_index)
}

/// A reference as definitions write it (the plugin host parses it fully; this is what the
/// store needs to find which versions a check holds on to).
enum Ref<'a> {
    Named { name: &'a str, version: Option<&'a str> },
    Digest(&'a str),
}

fn parse_ref(plugin: &str) -> Option<Ref<'_>> {
    if let Some(rest) = plugin.strip_prefix("registry:") {
        return Some(match rest.split_once('@') {
            Some((name, version)) => Ref::Named { name, version: Some(version) },
            None => Ref::Named { name: rest, version: None },
        });
    }
    plugin.strip_prefix("sha256:").map(Ref::Digest)
}

/// The registry reference of a catalog check, if it is a WASM check that has one.
fn check_reference(check: &Check) -> Option<Reference> {
    if check.kind != "wasm" {
        return None;
    }
    let def: serde_json::Value = serde_json::from_str(&check.definition).ok()?;
    let plugin = def.get("Wasm")?.get("Plugin")?.as_str()?;
    parse_ref(plugin)?;
    Some(Reference { node: check.node.clone(), check_id: check.check_id.clone(), plugin: plugin.to_string() })
}

fn references_in(t: &impl ReadableTable<&'static str, Bytes>) -> Result<Vec<Reference>, StoreError> {
    let mut out = Vec::new();
    for item in t.iter()? {
        let check: Check = bincode::deserialize(item?.1.value())?;
        out.extend(check_reference(&check));
    }
    Ok(out)
}

/// Whether `reference` holds on to version `v` (among `versions`): by name and version, by
/// name while `v` is the latest, or by digest while `v` is the last version of its blob.
pub fn holds(reference: &str, v: &PluginVersion, versions: &[PluginVersion]) -> bool {
    match parse_ref(reference) {
        Some(Ref::Named { name, version: Some(ver) }) => name == v.name && ver == v.version,
        Some(Ref::Named { name, version: None }) => {
            name == v.name && latest_of(versions, name).is_some_and(|l| l.version == v.version)
        }
        Some(Ref::Digest(sha)) => sha == v.sha256 && versions.iter().filter(|o| o.sha256 == v.sha256).count() <= 1,
        None => false,
    }
}

/// Applies a write at `index`; Err(text) refuses it, having changed nothing.
pub fn apply_txn(txn: &WriteTransaction, op: &PluginOp, index: u64) -> Result<Result<(), String>, StoreError> {
    match op {
        PluginOp::Chunk { sha256, index: i, total, size, at_unix, data } => {
            if !is_sha256_hex(sha256) {
                return Ok(Err(format!("invalid digest {sha256:?}")));
            }
            if *total != chunk_count(*size) || *i >= *total {
                return Ok(Err(format!("chunk {i} of {total} does not fit a blob of {size} bytes")));
            }
            if data.len() as u64 != chunk_len(*size, *i) {
                return Ok(Err(format!("chunk {i} has {} bytes, {} expected", data.len(), chunk_len(*size, *i))));
            }
            let mut blobs = txn.open_table(PLUGIN_BLOBS)?;
            let mut blob = match blob_in(&blobs, sha256)? {
                Some(b) if b.complete => return Ok(Ok(())),
                Some(b) if b.size != *size => {
                    return Ok(Err(format!("blob {sha256} is being uploaded with {} bytes, not {size}", b.size)));
                }
                Some(b) => b,
                None => Blob { sha256: sha256.clone(), size: *size, chunks: *total, ..Blob::default() },
            };
            blob.updated_at_unix = *at_unix;
            blob.modify_index = index;
            blobs.insert(sha256.as_str(), encode(&blob).as_slice())?;
            txn.open_table(PLUGIN_CHUNKS)?.insert(chunk_key(sha256, *i).as_str(), data.as_slice())?;
        }
        PluginOp::Commit { version_json, signatures } => {
            let mut v: PluginVersion = decode(version_json.as_bytes())?;
            if v.name.is_empty() || v.version.is_empty() {
                return Ok(Err("a plugin version needs a name and a version".into()));
            }
            let mut blobs = txn.open_table(PLUGIN_BLOBS)?;
            let Some(mut blob) = blob_in(&blobs, &v.sha256)? else {
                return Ok(Err(format!("no chunks of blob {} were uploaded", v.sha256)));
            };
            if blob.size != v.size {
                return Ok(Err(format!("blob {} has {} bytes, not {}", v.sha256, blob.size, v.size)));
            }
            if !blob.complete {
                let chunks = txn.open_table(PLUGIN_CHUNKS)?;
                let mut total = 0u64;
                for i in 0..blob.chunks {
                    match chunks.get(chunk_key(&v.sha256, i).as_str())? {
                        Some(c) => total += c.value().len() as u64,
                        None => return Ok(Err(format!("chunk {i} of blob {} is missing", v.sha256))),
                    }
                }
                if total != blob.size {
                    return Ok(Err(format!("the chunks of blob {} hold {total} bytes, not {}", v.sha256, blob.size)));
                }
            }
            let mut versions = txn.open_table(PLUGIN_VERSIONS)?;
            let key = version_key(&v.name, &v.version);
            let existing: Option<PluginVersion> = versions.get(key.as_str())?.map(|e| decode(e.value())).transpose()?;
            match existing {
                // A commit sent again after an unknown outcome: a no-op but for signatures.
                Some(e) if e.sha256 == v.sha256 => {}
                Some(e) => {
                    return Ok(Err(format!(
                        "plugin {}@{} already exists with another digest (sha256 {})",
                        v.name, v.version, e.sha256
                    )));
                }
                None => {
                    v.create_index = index;
                    v.modify_index = index;
                    versions.insert(key.as_str(), encode(&v).as_slice())?;
                }
            }
            blob.complete = true;
            merge_signatures(&mut blob, signatures);
            blob.modify_index = index;
            blobs.insert(v.sha256.as_str(), encode(&blob).as_slice())?;
            drop((versions, blobs));
            bump_index_txn(txn, IDX_PLUGINS, index)?;
        }
        PluginOp::Sign { sha256, signature } => {
            let mut blobs = txn.open_table(PLUGIN_BLOBS)?;
            let Some(mut blob) = blob_in(&blobs, sha256)? else {
                return Ok(Err(format!("no blob {sha256}")));
            };
            if blob.signatures.contains(signature) {
                return Ok(Ok(()));
            }
            merge_signatures(&mut blob, std::slice::from_ref(signature));
            blob.modify_index = index;
            blobs.insert(sha256.as_str(), encode(&blob).as_slice())?;
            drop(blobs);
            bump_index_txn(txn, IDX_PLUGINS, index)?;
        }
        PluginOp::Delete { name, version } => {
            let all = versions_in(&txn.open_table(PLUGIN_VERSIONS)?)?;
            let Some(doomed) = all.iter().find(|v| &v.name == name && &v.version == version).cloned() else {
                // Already gone (a delete sent again after an unknown outcome).
                return Ok(Ok(()));
            };
            let users: Vec<Reference> = references_in(&txn.open_table(CHECKS)?)?
                .into_iter()
                .filter(|r| holds(&r.plugin, &doomed, &all))
                .collect();
            if !users.is_empty() {
                let list: Vec<String> = users.iter().map(|r| format!("{}/{}", r.node, r.check_id)).collect();
                return Ok(Err(format!("plugin {name}@{version} is used by checks: {}", list.join(", "))));
            }
            txn.open_table(PLUGIN_VERSIONS)?.remove(version_key(name, version).as_str())?;
            if !all.iter().any(|v| v.sha256 == doomed.sha256 && !(&v.name == name && &v.version == version)) {
                drop_blob(txn, &doomed.sha256)?;
            }
            bump_index_txn(txn, IDX_PLUGINS, index)?;
        }
        PluginOp::Reap { sha256 } => {
            let blob = blob_in(&txn.open_table(PLUGIN_BLOBS)?, sha256)?;
            let named = versions_in(&txn.open_table(PLUGIN_VERSIONS)?)?.iter().any(|v| &v.sha256 == sha256);
            if blob.is_some_and(|b| !b.complete) && !named {
                drop_blob(txn, sha256)?;
            }
        }
    }
    Ok(Ok(()))
}

fn merge_signatures(blob: &mut Blob, signatures: &[Signature]) {
    for s in signatures {
        if !blob.signatures.contains(s) {
            blob.signatures.push(s.clone());
        }
    }
}

/// Removes a blob and its chunks.
fn drop_blob(txn: &WriteTransaction, sha256: &str) -> Result<(), StoreError> {
    let chunks = match blob_in(&txn.open_table(PLUGIN_BLOBS)?, sha256)? {
        Some(b) => b.chunks,
        None => 0,
    };
    txn.open_table(PLUGIN_BLOBS)?.remove(sha256)?;
    let mut t = txn.open_table(PLUGIN_CHUNKS)?;
    for i in 0..chunks {
        t.remove(chunk_key(sha256, i).as_str())?;
    }
    Ok(())
}

// ---- reads ----

/// Every version, by name then create index (the order they were pushed in).
pub fn versions(txn: &ReadTransaction) -> Result<Vec<PluginVersion>, StoreError> {
    versions_in(&txn.open_table(PLUGIN_VERSIONS)?)
}

/// A name's version, or (None) its latest: the one pushed last.
pub fn resolve(txn: &ReadTransaction, name: &str, version: Option<&str>) -> Result<Option<PluginVersion>, StoreError> {
    match version {
        Some(ver) => {
            let t = txn.open_table(PLUGIN_VERSIONS)?;
            let v = t.get(version_key(name, ver).as_str())?;
            v.map(|v| decode(v.value())).transpose()
        }
        None => Ok(latest_of(&versions(txn)?, name).cloned()),
    }
}

/// Whether `v` is the latest of its name among `all`.
pub fn is_latest(v: &PluginVersion, all: &[PluginVersion]) -> bool {
    latest_of(all, &v.name).is_some_and(|l| l.version == v.version)
}

/// The versions of a blob.
pub fn by_digest(txn: &ReadTransaction, sha256: &str) -> Result<Vec<PluginVersion>, StoreError> {
    Ok(versions(txn)?.into_iter().filter(|v| v.sha256 == sha256).collect())
}

pub fn blob(txn: &ReadTransaction, sha256: &str) -> Result<Option<Blob>, StoreError> {
    blob_in(&txn.open_table(PLUGIN_BLOBS)?, sha256)
}

/// Every blob (the leader's GC looks for dead uploads).
pub fn blobs(txn: &ReadTransaction) -> Result<Vec<Blob>, StoreError> {
    let t = txn.open_table(PLUGIN_BLOBS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Chunk `index` of a blob.
pub fn chunk(txn: &ReadTransaction, sha256: &str, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
    let t = txn.open_table(PLUGIN_CHUNKS)?;
    let v = t.get(chunk_key(sha256, index).as_str())?;
    Ok(v.map(|v| v.value().to_vec()))
}

/// A committed blob's bytes, assembled from its chunks (None: no such complete blob).
pub fn assemble(txn: &ReadTransaction, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(b) = blob(txn, sha256)?.filter(|b| b.complete) else {
        return Ok(None);
    };
    let t = txn.open_table(PLUGIN_CHUNKS)?;
    let mut out = Vec::with_capacity(b.size as usize);
    for i in 0..b.chunks {
        match t.get(chunk_key(sha256, i).as_str())? {
            Some(c) => out.extend_from_slice(c.value()),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// The registry's index: the last visible write, never below the last restore.
pub fn table_index(txn: &ReadTransaction) -> Result<u64, StoreError> {
    Ok(table_index_read(txn, IDX_PLUGINS)?.max(super::kv::index_floor(txn)?))
}

/// The catalog checks that run a registry plugin.
pub fn references(txn: &ReadTransaction) -> Result<Vec<Reference>, StoreError> {
    references_in(&txn.open_table(CHECKS)?)
}

/// A short id of a base64 public key: the first 16 hex digits of the sha256 of its bytes (as
/// `legate_plugin_host::signing::key_id`).
pub fn key_id(public_key_b64: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let raw = base64::engine::general_purpose::STANDARD.decode(public_key_b64).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&raw))[..16].to_string()
}

/// Every version as `GET /v1/plugins` lists it, with the checks that hold it.
pub fn infos(txn: &ReadTransaction) -> Result<Vec<legate_api::plugin::PluginInfo>, StoreError> {
    let all = versions(txn)?;
    let refs = references(txn)?;
    let mut out = Vec::with_capacity(all.len());
    for v in &all {
        let signatures = blob(txn, &v.sha256)?.map(|b| b.signatures).unwrap_or_default();
        out.push(legate_api::plugin::PluginInfo {
            name: v.name.clone(),
            version: v.version.clone(),
            latest: is_latest(v, &all),
            sha256: v.sha256.clone(),
            size: v.size,
            world: v.world.clone(),
            imports: v.imports.clone(),
            signed: !signatures.is_empty(),
            signed_by: signatures.iter().map(|s| key_id(&s.public_key)).collect(),
            pushed_at: v.pushed_at.clone(),
            create_index: v.create_index,
            runs_on: refs
                .iter()
                .filter(|r| holds(&r.plugin, v, &all))
                .map(|r| legate_api::plugin::PluginUse { node: r.node.clone(), check_id: r.check_id.clone() })
                .collect(),
        });
    }
    Ok(out)
}

/// Every version as a client agent's view of the registry holds it.
pub fn view(txn: &ReadTransaction) -> Result<Vec<legate_api::plugin::ViewVersion>, StoreError> {
    let all = versions(txn)?;
    let mut out = Vec::with_capacity(all.len());
    for v in &all {
        let b = blob(txn, &v.sha256)?.unwrap_or_default();
        out.push(legate_api::plugin::ViewVersion {
            name: v.name.clone(),
            version: v.version.clone(),
            sha256: v.sha256.clone(),
            size: v.size,
            latest: is_latest(v, &all),
            create_index: v.create_index,
            signatures: b
                .signatures
                .iter()
                .map(|s| legate_api::plugin::SignatureInfo {
                    public_key: s.public_key.clone(),
                    signature: s.signature.clone(),
                })
                .collect(),
            chunks: b.chunks,
        });
    }
    Ok(out)
}
