//! KV entries, tombstones and the KV verbs (Consul's `state/kvs.go` semantics). Read helpers
//! take a read transaction; `apply_txn` runs one verb inside a write transaction at a Raft
//! index and either changes nothing (a failed check) or all of its effect.

use base64::Engine;
use legate_api::kv::DirEntry as WireEntry;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::schema::{IDX_KVS, IDX_TOMBSTONES, KV, TOMBSTONES};
use super::{bump_index_txn, table_index_read, StoreError};

pub use legate_api::kv::DirEntry;

/// An entry as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredEntry {
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    pub session: Option<String>,
    /// As bytes, not a sequence of u8: the same bincode, decoded in one copy instead of a
    /// call per byte.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl StoredEntry {
    pub fn to_wire(&self, key: &str, with_value: bool) -> WireEntry {
        WireEntry {
            lock_index: self.lock_index,
            key: key.to_string(),
            flags: self.flags,
            value: (with_value && !self.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&self.value)),
            session: self.session.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// The KV verbs of `/v1/txn` (and, as `set`/`cas`/`delete`..., of `/v1/kv`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetOrEmpty,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
}

impl KvVerb {
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-or-empty" => KvVerb::GetOrEmpty,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }

    /// Verbs that only read: a transaction of these alone needs no Raft write.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetOrEmpty
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }
}

/// One KV operation, as replicated through Raft (bincode: no optional-field tricks).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KvOp {
    pub verb: KvVerb,
    pub key: String,
    /// As bytes (see `StoredEntry::value`).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub flags: u64,
    /// The CAS / check index.
    pub index: u64,
    pub session: Option<String>,
}

impl KvOp {
    pub fn new(verb: KvVerb, key: impl Into<String>) -> KvOp {
        KvOp { verb, key: key.into(), value: Vec::new(), flags: 0, index: 0, session: None }
    }
}

/// What a successful operation yields. Internal types only: this crosses the RPC in bincode,
/// which cannot carry the wire type's omitted `Session`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum KvResult {
    /// An entry; `with_value` only for reads (writes report the entry without its value).
    Entry {
        key: String,
        entry: StoredEntry,
        with_value: bool,
    },
    Entries(Vec<(String, StoredEntry)>),
    /// A write that yields no entry (deletes, `check-not-exists`).
    Nothing,
}

impl KvResult {
    /// The entries as Consul's JSON shows them.
    pub fn into_wire(self) -> Vec<WireEntry> {
        match self {
            KvResult::Entry { key, entry, with_value } => vec![entry.to_wire(&key, with_value)],
            KvResult::Entries(es) => es.iter().map(|(k, e)| e.to_wire(k, true)).collect(),
            KvResult::Nothing => Vec::new(),
        }
    }
}

/// Why an operation did nothing. `Refused` is a normal outcome of a conditional write (`false`
/// from `/v1/kv`); `Invalid` is an error (500 from `/v1/kv`). Both roll back a transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum KvFail {
    Refused(String),
    Invalid(String),
}

impl KvFail {
    pub fn what(&self) -> &str {
        match self {
            KvFail::Refused(s) | KvFail::Invalid(s) => s,
        }
    }
}

fn decode(bytes: &[u8]) -> Result<StoredEntry, StoreError> {
    Ok(bincode::deserialize(bytes)?)
}

pub fn get(txn: &ReadTransaction, key: &str) -> Result<Option<StoredEntry>, StoreError> {
    let t = txn.open_table(KV)?;
    let v = t.get(key)?;
    v.map(|v| decode(v.value())).transpose()
}

/// Entries whose key starts with `prefix`, in key order.
/// How many keys the store holds.
pub fn count(txn: &ReadTransaction) -> Result<usize, StoreError> {
    Ok(txn.open_table(KV)?.len()? as usize)
}

pub fn list(txn: &ReadTransaction, prefix: &str) -> Result<Vec<(String, StoredEntry)>, StoreError> {
    let t = txn.open_table(KV)?;
    let mut out = Vec::new();
    for item in t.range(prefix..)? {
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_string(), decode(v.value())?));
    }
    Ok(out)
}

/// Keys under `prefix`; with a separator, a key is cut after the first separator past the
/// prefix and duplicates are dropped ("folders").
pub fn keys(entries: &[(String, StoredEntry)], prefix: &str, separator: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, _) in entries {
        let key = match separator.filter(|s| !s.is_empty()) {
            Some(sep) => match k[prefix.len()..].find(sep) {
                Some(pos) => k[..prefix.len() + pos + sep.len()].to_string(),
                None => k.clone(),
            },
            None => k.clone(),
        };
        if out.last() != Some(&key) {
            out.push(key);
        }
    }
    out
}

/// The floor under every KV index (the last restore).
pub fn index_floor(txn: &ReadTransaction) -> Result<u64, StoreError> {
    table_index_read(txn, super::schema::IDX_RESTORE)
}

/// The KV table index: max of entries and tombstones.
pub fn table_index(txn: &ReadTransaction) -> Result<u64, StoreError> {
    Ok(table_index_read(txn, IDX_KVS)?.max(table_index_read(txn, IDX_TOMBSTONES)?))
}

/// Index of a prefix listing (Consul's kvsListTxn): the highest ModifyIndex under the prefix,
/// tombstones included; the table index when that is 0 or the prefix is empty.
pub fn prefix_index(txn: &ReadTransaction, prefix: &str, entries: &[(String, StoredEntry)]) -> Result<u64, StoreError> {
    let table = table_index(txn)?;
    if prefix.is_empty() {
        return Ok(table);
    }
    let mut idx = entries.iter().map(|(_, e)| e.modify_index).max().unwrap_or(0);
    let t = txn.open_table(TOMBSTONES)?;
    for item in t.range(prefix..)? {
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        idx = idx.max(v.value());
    }
    Ok(if idx == 0 { table } else { idx })
}

fn get_w(txn: &WriteTransaction, key: &str) -> Result<Option<StoredEntry>, StoreError> {
    let t = txn.open_table(KV)?;
    let v = t.get(key)?;
    v.map(|v| decode(v.value())).transpose()
}

fn put_w(txn: &WriteTransaction, key: &str, e: &StoredEntry, index: u64) -> Result<(), StoreError> {
    let bytes = bincode::serialize(e)?;
    txn.open_table(KV)?.insert(key, bytes.as_slice())?;
    txn.open_table(TOMBSTONES)?.remove(key)?;
    bump_index_txn(txn, IDX_KVS, index)
}

fn delete_w(txn: &WriteTransaction, key: &str, index: u64) -> Result<bool, StoreError> {
    let existed = txn.open_table(KV)?.remove(key)?.is_some();
    if existed {
        txn.open_table(TOMBSTONES)?.insert(key, index)?;
        bump_index_txn(txn, IDX_TOMBSTONES, index)?;
        bump_index_txn(txn, IDX_KVS, index)?;
    }
    Ok(existed)
}

fn list_w(txn: &WriteTransaction, prefix: &str) -> Result<Vec<(String, StoredEntry)>, StoreError> {
    let t = txn.open_table(KV)?;
    let mut out = Vec::new();
    for item in t.range(prefix..)? {
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_string(), decode(v.value())?));
    }
    Ok(out)
}

/// Applies one verb at `index`. A failure leaves the transaction untouched by this verb.
pub fn apply_txn(txn: &WriteTransaction, op: &KvOp, index: u64) -> Result<Result<KvResult, KvFail>, StoreError> {
    let key = op.key.as_str();
    let existing = get_w(txn, key)?;
    let set = |txn: &WriteTransaction, existing: Option<StoredEntry>| -> Result<KvResult, StoreError> {
        let entry = match existing {
            Some(e) => StoredEntry { modify_index: index, flags: op.flags, value: op.value.clone(), ..e },
            None => StoredEntry {
                create_index: index,
                modify_index: index,
                lock_index: 0,
                flags: op.flags,
                session: None,
                value: op.value.clone(),
            },
        };
        put_w(txn, key, &entry, index)?;
        Ok(KvResult::Entry { key: key.to_string(), entry, with_value: false })
    };
    Ok(match op.verb {
        KvVerb::Set => Ok(set(txn, existing)?),
        KvVerb::Cas => {
            let current = existing.as_ref().map(|e| e.modify_index).unwrap_or(0);
            // cas=0 means "only if absent"; otherwise the ModifyIndex must match.
            if (op.index == 0 && existing.is_some()) || (op.index != 0 && current != op.index) {
                Err(KvFail::Refused(format!("failed to set key {key:?}, index is stale")))
            } else {
                Ok(set(txn, existing)?)
            }
        }
        KvVerb::Lock | KvVerb::Unlock | KvVerb::CheckSession => {
            let session = match op.session.as_deref() {
                None | Some("") => return Ok(Err(KvFail::Invalid("missing session".into()))),
                Some(s) => s,
            };
            // A release never validates its session (Consul's kvsUnlock): an unknown one simply
            // does not hold the key.
            if op.verb != KvVerb::Unlock && !super::session::exists_w(txn, session)? {
                return Ok(Err(KvFail::Invalid(format!("invalid session {session:?}"))));
            }
            let holder = existing.as_ref().and_then(|e| e.session.as_deref());
            match op.verb {
                KvVerb::CheckSession => {
                    if holder == Some(session) {
                        Ok(KvResult::Entry { key: key.to_string(), entry: existing.expect("held"), with_value: true })
                    } else {
                        Err(KvFail::Refused(format!(
                            "failed session check for key {key:?}, current session {holder:?} != {session:?}"
                        )))
                    }
                }
                KvVerb::Lock => match holder {
                    Some(h) if h != session => {
                        Err(KvFail::Refused(format!("failed to lock key {key:?}, lock is held by {h:?}")))
                    }
                    _ => {
                        let relock = holder == Some(session);
                        let e = StoredEntry {
                            create_index: existing.as_ref().map_or(index, |e| e.create_index),
                            modify_index: index,
                            lock_index: existing.as_ref().map_or(0, |e| e.lock_index) + u64::from(!relock),
                            flags: op.flags,
                            session: Some(session.to_string()),
                            value: op.value.clone(),
                        };
                        put_w(txn, key, &e, index)?;
                        Ok(KvResult::Entry { key: key.to_string(), entry: e, with_value: false })
                    }
                },
                _ => match holder {
                    Some(h) if h == session => {
                        let mut e = existing.expect("held");
                        e.session = None;
                        e.modify_index = index;
                        e.flags = op.flags;
                        e.value = op.value.clone();
                        put_w(txn, key, &e, index)?;
                        Ok(KvResult::Entry { key: key.to_string(), entry: e, with_value: false })
                    }
                    _ => Err(KvFail::Refused(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ))),
                },
            }
        }
        KvVerb::Get => match existing {
            Some(e) => Ok(KvResult::Entry { key: key.to_string(), entry: e, with_value: true }),
            None => Err(KvFail::Refused(format!("key {key:?} doesn't exist"))),
        },
        KvVerb::GetOrEmpty => Ok(match existing {
            Some(e) => KvResult::Entry { key: key.to_string(), entry: e, with_value: true },
            None => KvResult::Nothing,
        }),
        KvVerb::GetTree => Ok(KvResult::Entries(list_w(txn, key)?)),
        KvVerb::CheckIndex => match existing {
            None => Err(KvFail::Refused(format!("key {key:?} doesn't exist"))),
            Some(e) if e.modify_index != op.index => {
                Err(KvFail::Refused(format!("current modify index {} != {}", e.modify_index, op.index)))
            }
            Some(e) => Ok(KvResult::Entry { key: key.to_string(), entry: e, with_value: false }),
        },
        KvVerb::CheckNotExists => match existing {
            Some(_) => Err(KvFail::Refused(format!("key {key:?} exists"))),
            None => Ok(KvResult::Nothing),
        },
        KvVerb::Delete => {
            delete_w(txn, key, index)?;
            Ok(KvResult::Nothing)
        }
        KvVerb::DeleteCas => {
            let current = existing.as_ref().map(|e| e.modify_index).unwrap_or(0);
            if op.index == 0 || existing.is_none() || current != op.index {
                Err(KvFail::Refused(format!("failed to delete key {key:?}, index is stale")))
            } else {
                delete_w(txn, key, index)?;
                Ok(KvResult::Nothing)
            }
        }
        KvVerb::DeleteTree => {
            for (k, _) in list_w(txn, key)? {
                delete_w(txn, &k, index)?;
            }
            Ok(KvResult::Nothing)
        }
    })
}

/// Deletes a key (leaving a tombstone); false if it was not there.
pub fn delete_key_txn(txn: &WriteTransaction, key: &str, index: u64) -> Result<bool, StoreError> {
    delete_w(txn, key, index)
}

/// The lowest index among tombstones, if any (the GC's "is there anything to reap" test).
pub fn oldest_tombstone(txn: &ReadTransaction) -> Result<Option<u64>, StoreError> {
    let t = txn.open_table(TOMBSTONES)?;
    let mut min = None;
    for item in t.iter()? {
        let (_, v) = item?;
        let v = v.value();
        min = Some(min.map_or(v, |m: u64| m.min(v)));
    }
    Ok(min)
}

/// Removes tombstones at or below `index` (the leader decides when they are old enough).
pub fn reap_tombstones_txn(txn: &WriteTransaction, index: u64) -> Result<usize, StoreError> {
    let mut t = txn.open_table(TOMBSTONES)?;
    let dead: Vec<String> = t
        .iter()?
        .filter_map(|item| item.ok())
        .filter(|(_, v)| v.value() <= index)
        .map(|(k, _)| k.value().to_string())
        .collect();
    for k in &dead {
        t.remove(k.as_str())?;
    }
    Ok(dead.len())
}
