//! Sessions (Consul's `state/session.go`): created against a node and its checks; invalidated
//! by destroy, TTL expiry (the leader's timers), a linked check going critical or away, or the
//! node going away. Invalidation releases the session's locks (or deletes the keys, behaviour
//! `delete`) in the same write, and arms the lock-delay of each released key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::catalog::{self, Check};
use super::kv::StoredEntry;
use super::schema::{CHECKS, IDX_KVS, IDX_SESSIONS, KV, NODES, SESSIONS};
use super::{bump_index_txn, StoreError};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<String>,
    /// Nanoseconds.
    pub lock_delay: u64,
    /// "release" or "delete".
    pub behavior: String,
    /// As given ("30s"), empty for none.
    pub ttl: String,
    pub create_index: u64,
    pub modify_index: u64,
}

fn decode(b: &[u8]) -> Result<Session, StoreError> {
    Ok(bincode::deserialize(b)?)
}

pub fn get(txn: &ReadTransaction, id: &str) -> Result<Option<Session>, StoreError> {
    let t = txn.open_table(SESSIONS)?;
    let v = t.get(id)?;
    v.map(|v| decode(v.value())).transpose()
}

pub fn list(txn: &ReadTransaction) -> Result<Vec<Session>, StoreError> {
    let t = txn.open_table(SESSIONS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

pub fn exists_w(txn: &WriteTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(SESSIONS)?.get(id)?.is_some())
}

fn list_w(txn: &WriteTransaction) -> Result<Vec<Session>, StoreError> {
    let t = txn.open_table(SESSIONS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Creates a session: its node must be registered and none of its checks critical.
pub fn create_txn(txn: &WriteTransaction, s: &Session, index: u64) -> Result<Result<(), String>, StoreError> {
    if txn.open_table(NODES)?.get(s.node.as_str())?.is_none() {
        return Ok(Err(format!("Missing node registration for {:?}", s.node)));
    }
    let checks = txn.open_table(CHECKS)?;
    for c in s.node_checks.iter().chain(s.service_checks.iter()) {
        let k = format!("{}\0{}", s.node, c);
        let Some(v) = checks.get(k.as_str())? else {
            return Ok(Err(format!("Missing check '{c}' registration")));
        };
        let check: Check = bincode::deserialize(v.value())?;
        if check.status == "critical" {
            return Ok(Err(format!("Check '{c}' is in critical state")));
        }
    }
    drop(checks);
    let mut stored = s.clone();
    stored.create_index = index;
    stored.modify_index = index;
    txn.open_table(SESSIONS)?.insert(s.id.as_str(), bincode::serialize(&stored)?.as_slice())?;
    bump_index_txn(txn, IDX_SESSIONS, index)?;
    Ok(Ok(()))
}

/// Keys whose lock was released by an invalidation, with the lock-delay to apply. Every write
/// that can destroy a session takes the apply's `&mut Released` and adds to it; the state
/// machine arms the lock-delays once the transaction holding the releases has committed (a
/// rolled-back `/v1/txn` drops its own releases and only those).
pub type Released = Vec<(String, u64)>;

/// Destroys a session: its locks are released (or their keys deleted), and added to
/// `released`. Unknown: nothing.
pub fn destroy_txn(txn: &WriteTransaction, id: &str, index: u64, released: &mut Released) -> Result<(), StoreError> {
    let session = {
        let t = txn.open_table(SESSIONS)?;
        let v = t.get(id)?;
        match v {
            Some(v) => decode(v.value())?,
            None => return Ok(()),
        }
    };
    txn.open_table(SESSIONS)?.remove(id)?;
    bump_index_txn(txn, IDX_SESSIONS, index)?;
    // Prepared queries bound to the session go with it.
    super::query::delete_for_session_txn(txn, id, index)?;
    let held: Vec<(String, StoredEntry)> = {
        let t = txn.open_table(KV)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let e: StoredEntry = bincode::deserialize(v.value())?;
            if e.session.as_deref() == Some(id) {
                out.push((k.value().to_string(), e));
            }
        }
        out
    };
    for (key, mut e) in held {
        if session.behavior == "delete" {
            super::kv::delete_key_txn(txn, &key, index)?;
        } else {
            e.session = None;
            e.modify_index = index;
            txn.open_table(KV)?.insert(key.as_str(), bincode::serialize(&e)?.as_slice())?;
            bump_index_txn(txn, IDX_KVS, index)?;
        }
        released.push((key, session.lock_delay));
    }
    Ok(())
}

/// Destroys the sessions that depend on `check` of `node` (or on anything of the node when
/// `check` is None); their releases go to `released`.
pub fn invalidate_txn(
    txn: &WriteTransaction,
    node: &str,
    check: Option<&str>,
    index: u64,
    released: &mut Released,
) -> Result<(), StoreError> {
    let doomed: Vec<String> = list_w(txn)?
        .into_iter()
        .filter(|s| s.node == node)
        .filter(|s| match check {
            None => true,
            Some(c) => s.node_checks.iter().chain(s.service_checks.iter()).any(|x| x == c),
        })
        .map(|s| s.id)
        .collect();
    for id in doomed {
        destroy_txn(txn, &id, index, released)?;
    }
    Ok(())
}

/// Lock-delays armed by invalidations (each replica keeps its own, by its own clock, as Consul;
/// the server answering an acquire checks it before writing).
#[derive(Default)]
pub struct LockDelays {
    until: Mutex<HashMap<String, Instant>>,
}

impl LockDelays {
    pub fn arm(&self, released: &Released) {
        let now = Instant::now();
        let mut m = self.until.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, t| *t > now);
        for (key, ns) in released {
            if *ns > 0 {
                m.insert(key.clone(), now + Duration::from_nanos(*ns));
            }
        }
    }

    /// Whether `key` is still inside a lock-delay.
    pub fn active(&self, key: &str) -> bool {
        self.until.lock().unwrap_or_else(|p| p.into_inner()).get(key).is_some_and(|t| *t > Instant::now())
    }
}

/// Consul's check for a node's health when creating: the catalog form of `node`.
pub fn node_known(txn: &ReadTransaction, node: &str) -> Result<bool, StoreError> {
    Ok(catalog::node(txn, node)?.is_some())
}
