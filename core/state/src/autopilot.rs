//! The autopilot configuration as operators set it (`PUT /v1/operator/autopilot/configuration`),
//! replicated through Raft (bincode in the `operator` table) so every server applies the same one; until it is first set, the
//! config file's `autopilot` block is the configuration.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::schema::OPERATOR;
use super::StoreError;

const KEY: &str = "autopilot";

/// Consul's `AutopilotConfiguration`; durations in nanoseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AutopilotConfig {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold_ns: u64,
    pub max_trailing_logs: u64,
    pub min_quorum: u32,
    pub server_stabilization_time_ns: u64,
    pub redundancy_zone_tag: String,
    pub disable_upgrade_migration: bool,
    pub upgrade_version_tag: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The stored configuration, if an operator has set one.
pub fn get(txn: &ReadTransaction) -> Result<Option<AutopilotConfig>, StoreError> {
    let t = txn.open_table(OPERATOR)?;
    let Some(v) = t.get(KEY)? else { return Ok(None) };
    Ok(Some(bincode::deserialize(v.value())?))
}

/// Stores `config` at `index`; with `cas`, only if the stored configuration's ModifyIndex is
/// `cas` (0: none stored yet). Returns whether it was stored.
pub fn set_txn(
    txn: &WriteTransaction,
    config: &AutopilotConfig,
    cas: Option<u64>,
    index: u64,
) -> Result<bool, StoreError> {
    let mut t = txn.open_table(OPERATOR)?;
    let existing: Option<AutopilotConfig> = match t.get(KEY)? {
        Some(v) => Some(bincode::deserialize(v.value())?),
        None => None,
    };
    if let Some(cas) = cas {
        if existing.as_ref().map_or(0, |e| e.modify_index) != cas {
            return Ok(false);
        }
    }
    let stored = AutopilotConfig {
        create_index: existing.as_ref().map_or(index, |e| e.create_index),
        modify_index: index,
        ..config.clone()
    };
    let bytes = bincode::serialize(&stored)?;
    t.insert(KEY, bytes.as_slice())?;
    Ok(true)
}
