//! `/v1/kv/<key>`: GET (recurse, keys, separator, raw), PUT (flags, cas, acquire, release),
//! DELETE (recurse, cas), with Consul's status codes and texts.

use bytes::Bytes;
use http::StatusCode;

use super::blocking;
use super::response::Body;
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Resource};
use legate_raft::command::{Command, CommandResponse};
use legate_raft::rpc::ApplyError;
use legate_raft::Server;
use legate_state::kv::{self as store_kv, KvFail, KvOp, KvVerb};
use legate_state::watch::Table;

#[derive(Clone)]
enum Read {
    Entries(Vec<store_kv::DirEntry>),
    Keys(Vec<String>),
    Raw(Vec<u8>),
    Missing,
}

pub async fn get(ctx: &Ctx, req: &Request, key: &str) -> Result<ApiResponse, ApiError> {
    let recurse = req.flag("recurse");
    let keys = req.param("keys").is_some();
    let raw = req.flag("raw");
    let separator = req.param("separator").or_else(|| req.param("seperator")).map(str::to_string);
    if key.is_empty() && !recurse && !keys {
        return Err(ApiError::BadRequest("Missing key name".into()));
    }
    if recurse || keys {
        if ctx.agent.config().acl.enable_key_list_policy {
            req.require(Resource::Key, key, Access::List)?;
        }
    } else {
        req.require(Resource::Key, key, Access::Read)?;
    }
    blocking::answer(
        ctx,
        req,
        Table::Kv,
        |txn| {
            let floor = store_kv::index_floor(txn)?;
            let (index, read) = read_kv(txn, key, keys, recurse, raw, separator.as_deref())?;
            Ok((index.max(floor), read))
        },
        |result| {
            let result = match result {
                Read::Keys(mut k) if !req.authz.is_disabled() => {
                    k.retain(|k| req.can_read(Resource::Key, k));
                    Read::Keys(k)
                }
                Read::Entries(mut e) if !req.authz.is_disabled() => {
                    e.retain(|e| req.can_read(Resource::Key, &e.key));
                    if e.is_empty() {
                        Read::Missing
                    } else {
                        Read::Entries(e)
                    }
                }
                other => other,
            };
            let resp = match result {
                Read::Missing => ApiResponse::empty(StatusCode::NOT_FOUND),
                Read::Keys(k) => ApiResponse::json(&k),
                Read::Entries(e) => ApiResponse::json(&e),
                Read::Raw(v) => ApiResponse {
                    status: StatusCode::OK,
                    headers: vec![
                        ("X-Content-Type-Options", "nosniff".into()),
                        ("Content-Security-Policy", "sandbox".into()),
                    ],
                    body: Body::Raw { content_type: "text/plain; charset=utf-8", data: Bytes::from(v) },
                },
            };
            Ok(resp)
        },
    )
    .await
}

fn parse_u64(req: &Request, name: &str, what: &str) -> Result<Option<u64>, ApiError> {
    match req.param(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|e| ApiError::BadRequest(format!("Invalid {what}: {e}"))),
    }
}

fn conflicting(req: &Request) -> ApiError {
    let q: Vec<String> =
        req.query.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect();
    ApiError::BadRequest(format!("Conflicting flags: {}", q.join("&")))
}

pub async fn put(ctx: &Ctx, req: &Request, key: &str) -> Result<ApiResponse, ApiError> {
    if key.is_empty() {
        return Err(ApiError::BadRequest("Missing key name".into()));
    }
    let flags = parse_u64(req, "flags", "flag")?.unwrap_or(0);
    let cas = parse_u64(req, "cas", "cas index")?;
    let acquire = req.param("acquire");
    let release = req.param("release");
    if [cas.is_some(), acquire.is_some(), release.is_some()].iter().filter(|b| **b).count() > 1 {
        return Err(conflicting(req));
    }
    let max = ctx.agent.config().limits.kv_max_value_size;
    if req.body.len() as u64 > max {
        return Err(ApiError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
            req.body.len()
        )));
    }
    let mut op = KvOp::new(KvVerb::Set, key);
    op.value = req.body.to_vec();
    op.flags = flags;
    if let Some(idx) = cas {
        op.verb = KvVerb::Cas;
        op.index = idx;
    } else if let Some(s) = acquire {
        op.verb = KvVerb::Lock;
        op.session = Some(s.to_string());
    } else if let Some(s) = release {
        op.verb = KvVerb::Unlock;
        op.session = Some(s.to_string());
    }
    write_bool(ctx, req, op).await
}

pub async fn delete(ctx: &Ctx, req: &Request, key: &str) -> Result<ApiResponse, ApiError> {
    let recurse = req.flag("recurse");
    let cas = parse_u64(req, "cas", "cas index")?;
    if recurse && cas.is_some() {
        return Err(conflicting(req));
    }
    if key.is_empty() && !recurse {
        return Err(ApiError::BadRequest("Missing key name".into()));
    }
    if recurse {
        if !req.authz.key_prefix_allows(key, Access::Write) {
            return Err(ApiError::Forbidden(req.authz.denied(Resource::Key, key, Access::Write).0));
        }
    } else {
        req.require(Resource::Key, key, Access::Write)?;
    }
    let mut op = KvOp::new(if recurse { KvVerb::DeleteTree } else { KvVerb::Delete }, key);
    if let Some(idx) = cas {
        op.verb = KvVerb::DeleteCas;
        op.index = idx;
    }
    write_bool(ctx, req, op).await
}

/// A KV verb applied through this server's Raft. Acquires inside a lock-delay (the key's
/// previous holder was invalidated; each server keeps its own) are refused without a write.
pub(crate) async fn apply_on_server(server: &Server, op: KvOp) -> Result<CommandResponse, ApplyError> {
    if op.verb == KvVerb::Lock && server.store.lock_delays.active(&op.key) {
        return Ok(CommandResponse::Kv(Err(KvFail::Refused("lock-delay".into()))));
    }
    server.apply(Command::Kv(op)).await
}

/// Replicates one verb through this server, or on a client agent through a server's typed
/// `KvWrite` (checked there against the request's token); answers `true`, `false` (a refused
/// conditional write) or the error.
async fn write_bool(ctx: &Ctx, req: &Request, op: KvOp) -> Result<ApiResponse, ApiError> {
    let answer = match ctx.agent.server() {
        Some(server) => apply_on_server(server, op).await.map_err(|e| ApiError::Internal(e.to_string())),
        None => {
            // No token: the agent's default token, as a forwarded call carries it.
            let token = super::token(req).or_else(|| ctx.agent.acl.agent_token(&ctx.agent, "default"));
            ctx.agent.link.kv_write(token, op, ctx.agent.rpc_deadline(Some("0s"))).await.map_err(ApiError::from)
        }
    };
    match answer {
        Ok(CommandResponse::Kv(Ok(_))) => Ok(ApiResponse::json(&true)),
        Ok(CommandResponse::Kv(Err(KvFail::Refused(_)))) => Ok(ApiResponse::json(&false)),
        Ok(CommandResponse::Kv(Err(KvFail::Invalid(what)))) => Err(ApiError::Internal(what)),
        Ok(other) => Err(ApiError::Internal(format!("unexpected state machine response {other:?}"))),
        Err(e) => Err(e),
    }
}

fn read_kv(
    txn: &redb::ReadTransaction,
    key: &str,
    keys: bool,
    recurse: bool,
    raw: bool,
    separator: Option<&str>,
) -> Result<(u64, Read), legate_state::StoreError> {
    if keys {
        let entries = store_kv::list(txn, key)?;
        let index = store_kv::prefix_index(txn, key, &entries)?;
        let list = store_kv::keys(&entries, key, separator);
        return Ok((index, if list.is_empty() && !key.is_empty() { Read::Missing } else { Read::Keys(list) }));
    }
    if recurse {
        let entries = store_kv::list(txn, key)?;
        let index = store_kv::prefix_index(txn, key, &entries)?;
        if entries.is_empty() {
            return Ok((index, Read::Missing));
        }
        return Ok((index, Read::Entries(entries.iter().map(|(k, e)| e.to_wire(k, true)).collect())));
    }
    match store_kv::get(txn, key)? {
        Some(e) if raw => Ok((e.modify_index, Read::Raw(e.value))),
        Some(e) => Ok((e.modify_index, Read::Entries(vec![e.to_wire(key, true)]))),
        None => Ok((store_kv::table_index(txn)?, Read::Missing)),
    }
}
