//! `PUT /v1/txn`: atomic KV transactions (≤ 128 operations). Writes go through Raft as one
//! command; a transaction of reads only is answered from the local store.

use base64::Engine;
use http::StatusCode;
use legate_api::kv::{TxnError, TxnResponse, TxnResult};
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};

use super::blocking::{self, Consistency};
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_raft::command::{Command, CommandResponse, TxnOp, TxnOpResult};
use legate_state::catalog::{self, CatalogOp, CatalogResult, CatalogVerb};
use legate_state::kv::{KvOp, KvVerb};

const MAX_OPS: usize = 128;

pub async fn handle(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
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
    for op in &ops {
        op_allowed(ctx, req, op)?;
    }
    let server = blocking::server(ctx)?;
    let read_only = ops.iter().all(TxnOp::is_read);
    let outcome = if read_only {
        let _timer = legate_telemetry::Timer::start("txn.read", Vec::new());
        let opts = blocking::query_options(ctx, req)?;
        match opts.consistency {
            Consistency::Consistent => server.ensure_consistent().await,
            Consistency::Default => server.caught_up().await,
            _ => Ok(()),
        }
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        // Evaluated in a write transaction that is never committed: the same code as the
        // replicated path, and nothing changes.
        let store = server.store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, legate_state::StoreError> {
            let txn = store.write(false)?;
            let (results, errors) = legate_state::txn_ops(&txn, &ops, 0, &mut Vec::new())?;
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
    let contact = blocking::leader_headers(server);
    let resp = match outcome {
        Ok(results) => {
            let mut out: Vec<Json> = Vec::new();
            for r in results {
                match r {
                    TxnOpResult::Kv(r) => out.extend(
                        r.into_wire()
                            .into_iter()
                            .map(|kv| serde_json::to_value(TxnResult { kv }).unwrap_or(Json::Null)),
                    ),
                    TxnOpResult::Catalog(CatalogResult::Node(n)) => {
                        out.push(json!({"Node": super::catalog::node_json(&n)}))
                    }
                    TxnOpResult::Catalog(CatalogResult::Service(sv)) => {
                        out.push(json!({"Service": super::catalog::service_json(&sv, None)}))
                    }
                    TxnOpResult::Catalog(CatalogResult::Check(c)) => {
                        out.push(json!({"Check": super::catalog::check_json(&c)}))
                    }
                    TxnOpResult::Catalog(CatalogResult::Nothing) => {}
                }
            }
            ApiResponse::json(&json!({"Results": out, "Errors": null}))
        }
        Err(errors) => {
            let errors = errors.into_iter().map(|(op_index, what)| TxnError { op_index, what }).collect();
            let mut r = ApiResponse::json(&TxnResponse { results: None, errors: Some(errors) });
            r.status = StatusCode::CONFLICT;
            r
        }
    };
    Ok(blocking::with_headers(resp, contact.into()))
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

fn catalog_part<T: DeserializeOwned>(v: Option<&Json>, what: &str, i: usize) -> Result<T, ApiError> {
    let v = super::decode::normalize(v.cloned().unwrap_or(Json::Null));
    serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("Failed to parse operation {i}: {what}: {e}")))
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct NodeBody {
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: std::collections::BTreeMap<String, String>,
    meta: std::collections::BTreeMap<String, String>,
    node_meta: std::collections::BTreeMap<String, String>,
    modify_index: u64,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ServiceBody {
    id: String,
    service: String,
    tags: Vec<String>,
    address: String,
    meta: std::collections::BTreeMap<String, String>,
    port: u16,
    enable_tag_override: bool,
    modify_index: u64,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct CheckBody {
    node: String,
    check_id: String,
    id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    service_id: String,
    modify_index: u64,
}

fn parse_catalog(i: usize, kind: &str, body: &Json) -> Result<TxnOp, ApiError> {
    let bad = |what: String| ApiError::BadRequest(format!("Failed to parse operation {i}: {what}"));
    let verb_text = body.get("verb").and_then(Json::as_str).unwrap_or("");
    let verb = CatalogVerb::parse(verb_text).ok_or_else(|| bad(format!("unknown {kind} verb {verb_text:?}")))?;
    let op = match kind {
        "node" => {
            let n: NodeBody = catalog_part(body.get("node"), "Node", i)?;
            let mut meta = n.meta;
            meta.extend(n.node_meta);
            CatalogOp::Node {
                verb,
                node: catalog::Node {
                    id: n.id,
                    node: n.node,
                    address: n.address,
                    datacenter: n.datacenter,
                    tagged_addresses: n.tagged_addresses,
                    meta,
                    create_index: 0,
                    modify_index: n.modify_index,
                },
            }
        }
        "service" => {
            let node = body.get("node").and_then(Json::as_str).unwrap_or_default().to_string();
            let s: ServiceBody = catalog_part(body.get("service"), "Service", i)?;
            CatalogOp::Service {
                verb,
                node,
                service: catalog::Service {
                    id: s.id,
                    service: s.service,
                    tags: s.tags,
                    address: s.address,
                    meta: s.meta,
                    port: s.port,
                    enable_tag_override: s.enable_tag_override,
                    modify_index: s.modify_index,
                    ..catalog::Service::default()
                },
            }
        }
        _ => {
            let c: CheckBody = catalog_part(body.get("check"), "Check", i)?;
            CatalogOp::Check {
                verb,
                check: catalog::Check {
                    node: c.node,
                    check_id: if c.check_id.is_empty() { c.id } else { c.check_id },
                    name: c.name,
                    status: c.status,
                    notes: c.notes,
                    output: c.output,
                    service_id: c.service_id,
                    definition: "{}".into(),
                    modify_index: c.modify_index,
                    ..catalog::Check::default()
                },
            }
        }
    };
    Ok(TxnOp::Catalog(op))
}

fn parse_op(i: usize, item: &Json) -> Result<TxnOp, ApiError> {
    let bad = |what: String| ApiError::BadRequest(format!("Failed to parse operation {i}: {what}"));
    let obj = item.as_object().ok_or_else(|| bad("not an object".into()))?;
    if let Some(kind) = ["node", "service", "check"].iter().find(|k| obj.contains_key(**k)) {
        return parse_catalog(i, kind, &obj[*kind]);
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
    Ok(TxnOp::Kv(op))
}

/// The permission of one verb: key read/write (tree verbs on every key under the prefix),
/// node write for node verbs, service write for service verbs, and for checks the write of
/// their service, else of their node (reads need read).
fn op_allowed(ctx: &Ctx, req: &Request, op: &TxnOp) -> Result<(), ApiError> {
    use legate_acl::{Access, Resource};
    if req.authz.is_disabled() {
        return Ok(());
    }
    let need = if op.is_read() { Access::Read } else { Access::Write };
    match op {
        TxnOp::Kv(kv) => {
            if matches!(kv.verb, KvVerb::GetTree | KvVerb::DeleteTree) {
                if req.authz.key_prefix_allows(&kv.key, need) {
                    return Ok(());
                }
                return Err(ApiError::Forbidden(req.authz.denied(Resource::Key, &kv.key, need).0));
            }
            req.require(Resource::Key, &kv.key, need)
        }
        TxnOp::Catalog(CatalogOp::Node { node, .. }) => req.require(Resource::Node, &node.node, need),
        TxnOp::Catalog(CatalogOp::Service { service, .. }) => req.require(Resource::Service, &service.service, need),
        TxnOp::Catalog(CatalogOp::Check { check, .. }) => {
            if !check.service_id.is_empty() {
                let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
                let services =
                    catalog::node_services(&txn, &check.node).map_err(|e| ApiError::Internal(e.to_string()))?;
                if let Some(s) = services.iter().find(|s| s.id == check.service_id) {
                    return req.require(Resource::Service, &s.service, need);
                }
            }
            req.require(Resource::Node, &check.node, need)
        }
    }
}
