//! Whole-state export and import: the body of Raft snapshots and of `/v1/snapshot`.

use redb::{ReadTransaction, ReadableTable, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::kv::StoredEntry;
use super::schema::{INDEXES, KV, RECORD_TABLES, TOMBSTONES};
use super::StoreError;

/// One row of a record table: key and encoded record.
pub type Record = (String, Vec<u8>);

/// Everything replicated, except the state machine's own bookkeeping (applied log id,
/// membership), which travels in the Raft snapshot's metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StateData {
    pub kv: Vec<(String, StoredEntry)>,
    pub tombstones: Vec<(String, u64)>,
    pub indexes: Vec<(String, u64)>,
    /// The record tables (catalog, ...) by name: (key, encoded record) pairs.
    pub records: Vec<(String, Vec<Record>)>,
}

pub fn export(txn: &ReadTransaction) -> Result<StateData, StoreError> {
    let mut data = StateData::default();
    for item in txn.open_table(KV)?.iter()? {
        let (k, v) = item?;
        data.kv.push((k.value().to_string(), bincode::deserialize(v.value())?));
    }
    for item in txn.open_table(TOMBSTONES)?.iter()? {
        let (k, v) = item?;
        data.tombstones.push((k.value().to_string(), v.value()));
    }
    for item in txn.open_table(INDEXES)?.iter()? {
        let (k, v) = item?;
        data.indexes.push((k.value().to_string(), v.value()));
    }
    for table in RECORD_TABLES {
        let mut rows = Vec::new();
        for item in txn.open_table(table)?.iter()? {
            let (k, v) = item?;
            rows.push((k.value().to_string(), v.value().to_vec()));
        }
        data.records.push((table.name().to_string(), rows));
    }
    Ok(data)
}

/// Replaces every replicated table with `data`.
pub fn import_txn(txn: &WriteTransaction, data: &StateData) -> Result<(), StoreError> {
    txn.delete_table(KV)?;
    txn.delete_table(TOMBSTONES)?;
    txn.delete_table(INDEXES)?;
    for table in RECORD_TABLES {
        txn.delete_table(table)?;
        let mut t = txn.open_table(table)?;
        if let Some((_, rows)) = data.records.iter().find(|(name, _)| name == table.name()) {
            for (k, v) in rows {
                t.insert(k.as_str(), v.as_slice())?;
            }
        }
    }
    {
        let mut kv = txn.open_table(KV)?;
        for (k, e) in &data.kv {
            kv.insert(k.as_str(), bincode::serialize(e)?.as_slice())?;
        }
    }
    {
        let mut t = txn.open_table(TOMBSTONES)?;
        for (k, i) in &data.tombstones {
            t.insert(k.as_str(), *i)?;
        }
    }
    {
        let mut t = txn.open_table(INDEXES)?;
        for (k, i) in &data.indexes {
            t.insert(k.as_str(), *i)?;
        }
    }
    crate::catalog::rebuild_service_names_txn(txn)
}

/// Metadata of an operator snapshot archive (`meta.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveMeta {
    #[serde(rename = "ID")]
    pub id: String,
    pub size: u64,
    pub index: u64,
    pub term: u64,
    pub version: u32,
    pub legate_version: String,
}

/// Why an operator snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("state encoding: {0}")]
    Encode(#[source] bincode::Error),
    /// Not a gzipped tar (or a broken one).
    #[error("not a snapshot archive: {0}")]
    NotArchive(#[source] std::io::Error),
    #[error("snapshot archive is missing {0}")]
    Missing(String),
    #[error("malformed SHA256SUMS")]
    Sums,
    #[error("snapshot archive is corrupt: checksum mismatch for {0}")]
    Corrupt(String),
    #[error("meta.json: {0}")]
    Meta(#[source] serde_json::Error),
    #[error("state.bin: {0}")]
    State(#[source] bincode::Error),
}

/// An operator snapshot: a gzipped tar of `meta.json`, `state.bin` (the state) and
/// `SHA256SUMS`, as Consul's archives are laid out.
pub fn archive(data: &StateData, index: u64, term: u64) -> Result<Vec<u8>, ArchiveError> {
    use sha2::Digest;
    let state = bincode::serialize(data).map_err(ArchiveError::Encode)?;
    let meta = ArchiveMeta {
        id: format!("{term}-{index}-{}", uuid::Uuid::new_v4().simple()),
        size: state.len() as u64,
        index,
        term,
        version: 1,
        legate_version: legate_types::version::VERSION.to_string(),
    };
    let meta_json = serde_json::to_vec_pretty(&meta).map_err(ArchiveError::Meta)?;
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(sha2::Sha256::digest(&meta_json)),
        hex::encode(sha2::Sha256::digest(&state))
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in [("meta.json", &meta_json[..]), ("state.bin", &state[..]), ("SHA256SUMS", sums.as_bytes())] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).map_err(ArchiveError::NotArchive)?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(ArchiveError::NotArchive)
}

/// Reads and verifies an archive: every file's checksum must match.
pub fn unarchive(bytes: &[u8]) -> Result<(ArchiveMeta, StateData), ArchiveError> {
    use sha2::Digest;
    use std::io::Read;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = std::collections::HashMap::new();
    for entry in tar.entries().map_err(ArchiveError::NotArchive)? {
        let mut entry = entry.map_err(ArchiveError::NotArchive)?;
        let name = entry.path().map_err(ArchiveError::NotArchive)?.to_string_lossy().into_owned();
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(ArchiveError::NotArchive)?;
        files.insert(name, buf);
    }
    let get = |n: &str| files.get(n).ok_or_else(|| ArchiveError::Missing(n.to_string()));
    let sums = String::from_utf8_lossy(get("SHA256SUMS")?).into_owned();
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").ok_or(ArchiveError::Sums)?;
        let actual = hex::encode(sha2::Sha256::digest(get(name)?));
        if actual != sum {
            return Err(ArchiveError::Corrupt(name.to_string()));
        }
    }
    let meta: ArchiveMeta = serde_json::from_slice(get("meta.json")?).map_err(ArchiveError::Meta)?;
    let data: StateData = bincode::deserialize(get("state.bin")?).map_err(ArchiveError::State)?;
    Ok((meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_roundtrip_and_corruption() {
        let data =
            StateData { tombstones: vec![("k".into(), 3)], indexes: vec![("kvs".into(), 9)], ..Default::default() };
        let bytes = archive(&data, 9, 2).unwrap();
        let (meta, back) = unarchive(&bytes).unwrap();
        assert_eq!(back, data);
        assert_eq!((meta.index, meta.term), (9, 2));
        assert!(unarchive(b"garbage").is_err());
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        assert!(unarchive(&bad).is_err());
    }
}
