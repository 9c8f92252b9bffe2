//! Network coordinates of the datacenter's nodes (`/v1/coordinate/*`, `?near=`): each agent's
//! Vivaldi coordinate as it last sent it, keyed by node and network segment. A node's
//! coordinates go with the node when it is deregistered; updates for nodes the catalog does
//! not hold are dropped (the node may have just been deregistered), as Consul does.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use legate_api::coordinate::{Coord, CoordinateEntry, CoordinateUpdate};

use super::schema::{COORDINATES, IDX_COORDINATES, NODES};
use super::{bump_index_txn, StoreError};

/// A stored coordinate and the index that wrote it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    pub coord: Coord,
    pub modify_index: u64,
}

fn key(node: &str, segment: &str) -> String {
    format!("{node}\0{segment}")
}

/// Applies a batch of updates at `index`; returns how many were stored.
pub fn update_batch_txn(txn: &WriteTransaction, updates: &[CoordinateUpdate], index: u64) -> Result<usize, StoreError> {
    let nodes = txn.open_table(NODES)?;
    let mut t = txn.open_table(COORDINATES)?;
    let mut stored = 0;
    for u in updates {
        if nodes.get(u.node.as_str())?.is_none() {
            continue;
        }
        let rec = Stored { coord: u.coord.clone(), modify_index: index };
        t.insert(key(&u.node, &u.segment).as_str(), bincode::serialize(&rec)?.as_slice())?;
        stored += 1;
    }
    if stored > 0 {
        bump_index_txn(txn, IDX_COORDINATES, index)?;
    }
    Ok(stored)
}

/// Drops every coordinate of `node` (it was deregistered).
pub fn delete_node_txn(txn: &WriteTransaction, node: &str, index: u64) -> Result<(), StoreError> {
    let mut t = txn.open_table(COORDINATES)?;
    let start = key(node, "");
    let end = format!("{node}\u{1}");
    let keys: Vec<String> = t
        .range(start.as_str()..end.as_str())?
        .map(|item| item.map(|(k, _)| k.value().to_string()))
        .collect::<Result<_, _>>()?;
    for k in &keys {
        t.remove(k.as_str())?;
    }
    if !keys.is_empty() {
        bump_index_txn(txn, IDX_COORDINATES, index)?;
    }
    Ok(())
}

fn entry(k: &str, v: &[u8]) -> Result<CoordinateEntry, StoreError> {
    let (node, segment) = k.split_once('\0').unwrap_or((k, ""));
    let rec: Stored = bincode::deserialize(v)?;
    Ok(CoordinateEntry { node: node.to_string(), segment: segment.to_string(), coord: rec.coord })
}

/// Every node's coordinates, by node name then segment.
pub fn list(txn: &ReadTransaction) -> Result<Vec<CoordinateEntry>, StoreError> {
    let t = txn.open_table(COORDINATES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(entry(k.value(), v.value())?);
    }
    Ok(out)
}

/// One node's coordinates (one per segment it is in).
pub fn node(txn: &ReadTransaction, node: &str) -> Result<Vec<CoordinateEntry>, StoreError> {
    let t = txn.open_table(COORDINATES)?;
    let start = key(node, "");
    let end = format!("{node}\u{1}");
    let mut out = Vec::new();
    for item in t.range(start.as_str()..end.as_str())? {
        let (k, v) = item?;
        out.push(entry(k.value(), v.value())?);
    }
    Ok(out)
}

/// The coordinate of `node` in the default segment, for `?near=` sorting.
pub fn get(txn: &ReadTransaction, node: &str) -> Result<Option<Coord>, StoreError> {
    let t = txn.open_table(COORDINATES)?;
    let Some(v) = t.get(key(node, "").as_str())? else { return Ok(None) };
    Ok(Some(bincode::deserialize::<Stored>(v.value())?.coord))
}
