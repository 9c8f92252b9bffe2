//! `PUT /v1/txn`: atomic KV transactions (≤ 128 operations). Writes go through Raft as one
//! command; a transaction of reads only is answered from the local store.

use base64::Engine;
use http::{Method, StatusCode};
use legate_api::kv::{TxnError, TxnResponse, TxnResult};
use serde_json::Value as Json;

use super::blocking::{self, Consistency};
use super::{ApiError, ApiResponse, Ctx, Request};
use crate::server::command::{Command, CommandResponse};
use crate::state::kv::{self as store_kv, KvOp, KvVerb};

const MAX_OPS: usize = 128;

pub async fn handle(ctx: &Ctx, req: &Request) -> Result<ApiResponse, ApiError> {
    req.allow(&[Method::PUT])?;
    super::kv::check_dc(ctx, req)?;
    let max_len = ctx.agent.config().limits.txn_max_req_len;
    if req.body.len() as u64 > max_len {
        return Err(ApiError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {max_len} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len.",
            req.body.len()
        )));
    }
    let body: Json =
        serde_json::from_slice(&req.body).map_err(|e| ApiError::BadRequest(format!("Failed to parse body: {e}")))?;
    let Json::Array(items) = lowercase_keys(body) else {
        return Err(ApiError::BadRequest("Failed to parse body: expected an array of operations".into()));
    };
    if items.len() > MAX_OPS {
        return Err(ApiError::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            items.len()
        )));
    }
    let ops = items.iter().enumerate().map(|(i, item)| parse_op(i, item)).collect::<Result<Vec<_>, _>>()?;
    let server = blocking::server(ctx)?;
    let read_only = ops.iter().all(|op| op.verb.is_read());
    let outcome = if read_only {
        let opts = blocking::query_options(ctx, req)?;
        if opts.consistency == Consistency::Consistent {
            server.ensure_consistent().await.map_err(ApiError::Internal)?;
        }
        // Evaluated in a write transaction that is never committed: the same code as the
        // replicated path, and nothing changes.
        let store = server.store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, crate::state::StoreError> {
            let txn = store.write(false)?;
            let mut results = Vec::new();
            let mut errors = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                match store_kv::apply_txn(&txn, op, 0)? {
                    Ok(r) => results.push(r),
                    Err(f) => errors.push((i, f.what().to_string())),
                }
            }
            txn.abort()?;
            Ok(if errors.is_empty() { Ok(results) } else { Err(errors) })
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        match server.apply(Command::Txn(ops)).await {
            Ok(CommandResponse::Txn(r)) => r,
            Ok(other) => return Err(ApiError::Internal(format!("unexpected state machine response {other:?}"))),
            Err(e) => return Err(ApiError::Internal(e.to_string())),
        }
    };
    let (known, last) = server.leader_contact();
    let resp = match outcome {
        Ok(results) => {
            let mut out = Vec::new();
            for r in results {
                out.extend(r.into_wire().into_iter().map(|kv| TxnResult { kv }));
            }
            ApiResponse::json(&TxnResponse { results: Some(out), errors: None })
        }
        Err(errors) => {
            let errors = errors.into_iter().map(|(op_index, what)| TxnError { op_index, what }).collect();
            let mut r = ApiResponse::json(&TxnResponse { results: None, errors: Some(errors) });
            r.status = StatusCode::CONFLICT;
            r
        }
    };
    Ok(resp.header("X-Consul-Knownleader", known.to_string()).header("X-Consul-Lastcontact", last.to_string()))
}

/// Request bodies are decoded case-insensitively (Go's encoding/json): keys are lower-cased.
fn lowercase_keys(v: Json) -> Json {
    match v {
        Json::Object(m) => {
            Json::Object(m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), lowercase_keys(v))).collect())
        }
        Json::Array(a) => Json::Array(a.into_iter().map(lowercase_keys).collect()),
        other => other,
    }
}

fn parse_op(i: usize, item: &Json) -> Result<KvOp, ApiError> {
    let bad = |what: String| ApiError::BadRequest(format!("Failed to parse operation {i}: {what}"));
    let obj = item.as_object().ok_or_else(|| bad("not an object".into()))?;
    if let Some(kind) = ["node", "service", "check"].iter().find(|k| obj.contains_key(**k)) {
        return Err(bad(format!("{kind} operations are not supported yet (only KV)")));
    }
    let kv = obj.get("kv").and_then(Json::as_object).ok_or_else(|| bad("missing KV operation".into()))?;
    let verb_text = kv.get("verb").and_then(Json::as_str).unwrap_or("");
    let verb = KvVerb::parse(verb_text).ok_or_else(|| bad(format!("unknown KV verb {verb_text:?}")))?;
    let key = kv.get("key").and_then(Json::as_str).unwrap_or("").to_string();
    let mut op = KvOp::new(verb, key);
    if let Some(v) = kv.get("value").and_then(Json::as_str) {
        op.value = base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|e| bad(format!("invalid base64 value: {e}")))?;
    }
    op.flags = kv.get("flags").and_then(Json::as_u64).unwrap_or(0);
    op.index = kv.get("index").and_then(Json::as_u64).unwrap_or(0);
    op.session = kv.get("session").and_then(Json::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    Ok(op)
}
