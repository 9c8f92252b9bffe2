//! `/v1/txn`: its operations, their results, and the function that runs them in order inside
//! one write transaction.

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogOp, CatalogResult, CatalogVerb};
use crate::kv::{KvOp, KvResult};
use crate::session::Released;
use crate::StoreError;

/// One operation of `/v1/txn`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, at most 128 per transaction
pub enum TxnOp {
    Kv(KvOp),
    Catalog(CatalogOp),
}

impl TxnOp {
    pub fn is_read(&self) -> bool {
        match self {
            TxnOp::Kv(op) => op.verb.is_read(),
            TxnOp::Catalog(
                CatalogOp::Node { verb, .. } | CatalogOp::Service { verb, .. } | CatalogOp::Check { verb, .. },
            ) => *verb == CatalogVerb::Get,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, at most 128 per transaction
pub enum TxnOpResult {
    Kv(KvResult),
    Catalog(CatalogResult),
}

/// Runs the operations of a transaction in order inside `txn`: results, and the (op index,
/// reason) of every operation that failed (then the caller aborts `txn` and drops `released`,
/// the locks its catalog operations released).
#[allow(clippy::type_complexity)]
pub fn txn_ops(
    txn: &WriteTransaction,
    ops: &[TxnOp],
    index: u64,
    released: &mut Released,
) -> Result<(Vec<TxnOpResult>, Vec<(usize, String)>), StoreError> {
    let mut results = Vec::with_capacity(ops.len());
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            TxnOp::Kv(op) => match crate::kv::apply_txn(txn, op, index)? {
                Ok(r) => results.push(TxnOpResult::Kv(r)),
                Err(f) => errors.push((i, f.what().to_string())),
            },
            TxnOp::Catalog(op) => match crate::catalog::apply_op_txn(txn, op, index, released)? {
                Ok(r) => results.push(TxnOpResult::Catalog(r)),
                Err(f) => errors.push((i, f.0)),
            },
        }
    }
    Ok((results, errors))
}
