//! Whole-state export and import: the body of Raft snapshots and of `/v1/snapshot`.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::kv::StoredEntry;
use super::schema::{INDEXES, KV, TOMBSTONES};
use super::StoreError;

/// Everything replicated, except the state machine's own bookkeeping (applied log id,
/// membership), which travels in the Raft snapshot's metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StateData {
    pub kv: Vec<(String, StoredEntry)>,
    pub tombstones: Vec<(String, u64)>,
    pub indexes: Vec<(String, u64)>,
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
    Ok(data)
}

/// Replaces every replicated table with `data`.
pub fn import_txn(txn: &WriteTransaction, data: &StateData) -> Result<(), StoreError> {
    txn.delete_table(KV)?;
    txn.delete_table(TOMBSTONES)?;
    txn.delete_table(INDEXES)?;
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
    let mut t = txn.open_table(INDEXES)?;
    for (k, i) in &data.indexes {
        t.insert(k.as_str(), *i)?;
    }
    Ok(())
}
