//! Types of `/v1/kv` and `/v1/txn`.

use serde::{Deserialize, Serialize};

/// A KV entry as Consul returns it. `Value` is base64, `null` when empty; `Session` only while
/// a session holds the lock.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DirEntry {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One error of a rolled-back transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// One result of a transaction (only KV for now).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxnResult {
    #[serde(rename = "KV")]
    pub kv: DirEntry,
}

/// `/v1/txn` response: `Results` on success, `Errors` on rollback; the other is `null`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResponse {
    pub results: Option<Vec<TxnResult>>,
    pub errors: Option<Vec<TxnError>>,
}

/// An entry of `kv export` / `kv import` (Consul's format).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub flags: u64,
    pub value: String,
}
