//! `/v1/session/*`: create, destroy, info, node, list, renew.

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::blocking;
use super::{decode, ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Resource};
use legate_raft::command::{Command, CommandResponse};
use legate_state::schema::IDX_SESSIONS;
use legate_state::session::{self, Session};
use legate_state::watch::Table;

pub fn session_json(s: &Session) -> Json {
    json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay,
        "Behavior": s.behavior,
        "TTL": s.ttl,
        "NodeChecks": s.node_checks,
        "ServiceChecks": if s.service_checks.is_empty() { Json::Null } else { json!(s.service_checks.iter().map(|id| json!({"ID": id, "Namespace": ""})).collect::<Vec<_>>()) },
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// `PUT /v1/session/destroy/<id>`.
pub async fn destroy(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    session_write(ctx, req, id)?;
    apply(ctx, Command::SessionDestroy { id: id.to_string() }).await?;
    Ok(ApiResponse::json(&true))
}

/// `GET /v1/session/info/<id>`.
pub async fn info(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    read(ctx, req, |s| s.id == id).await
}

/// `GET /v1/session/node/<node>`.
pub async fn node(ctx: &Ctx, req: &Request, node: &str) -> Result<ApiResponse, ApiError> {
    read(ctx, req, |s| s.node == node).await
}

/// `GET /v1/session/list`.
pub async fn list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    read(ctx, req, |_| true).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateBody {
    name: String,
    node: Option<String>,
    checks: Option<Vec<String>>,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<Json>>,
    lock_delay: Option<Json>,
    behavior: Option<String>,
    ttl: Option<String>,
}

/// LockDelay: a Go duration string, or a number — seconds when < 1000, else nanoseconds.
fn lock_delay(v: Option<&Json>) -> Result<u64, ApiError> {
    const MAX: u64 = 60_000_000_000;
    let ns = match v {
        None | Some(Json::Null) => 15_000_000_000,
        Some(Json::Number(n)) => {
            let n = n.as_f64().unwrap_or(0.0);
            if n < 1000.0 {
                (n * 1e9) as u64
            } else {
                n as u64
            }
        }
        Some(Json::String(s)) => legate_config::duration::parse_go_duration(s)
            .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?
            .as_nanos() as u64,
        Some(other) => return Err(ApiError::BadRequest(format!("Request decode failed: invalid LockDelay {other}"))),
    };
    Ok(ns.min(MAX))
}

pub async fn create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let b: CreateBody = decode::body(&req.body)?;
    let behavior = b.behavior.filter(|x| !x.is_empty()).unwrap_or_else(|| "release".into());
    if behavior != "release" && behavior != "delete" {
        return Err(ApiError::BadRequest(format!("Invalid Behavior setting '{behavior}'")));
    }
    let ttl = b.ttl.unwrap_or_default();
    if !ttl.is_empty() {
        let d = legate_config::duration::parse_go_duration(&ttl)
            .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
        let (min, max) = (std::time::Duration::from_secs(10), std::time::Duration::from_secs(86400));
        if !d.is_zero() && (d < min || d > max) {
            return Err(ApiError::Internal(format!(
                "Invalid Session TTL '{}', must be between [10s=24h0m0s]",
                d.as_nanos()
            )));
        }
    }
    // `Checks` (old) and `NodeChecks` are the same list; absent means serfHealth, an explicit
    // empty list means none.
    let node_checks = match (b.node_checks, b.checks) {
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => vec!["serfHealth".to_string()],
    };
    let service_checks = b
        .service_checks
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.get("ID").or_else(|| c.get("id")).and_then(Json::as_str).map(str::to_string))
        .collect();
    let s = Session {
        id: uuid::Uuid::new_v4().to_string(),
        name: b.name,
        node: b.node.filter(|n| !n.is_empty()).unwrap_or_else(|| ctx.agent.node_name().to_string()),
        node_checks,
        service_checks,
        lock_delay: lock_delay(b.lock_delay.as_ref())?,
        behavior,
        ttl,
        create_index: 0,
        modify_index: 0,
    };
    req.require(Resource::Session, &s.node, Access::Write)?;
    let id = s.id.clone();
    let ttl = legate_config::duration::parse_go_duration(&s.ttl).unwrap_or_default();
    apply(ctx, Command::SessionCreate(s)).await?;
    if !ttl.is_zero() {
        if let Some(server) = ctx.agent.server() {
            server.renew_session(&id, ttl);
        }
    }
    Ok(ApiResponse::json(&json!({"ID": id})))
}

/// session:write on the node of an existing session (unknown sessions pass: destroying one
/// is a no-op).
fn session_write(ctx: &Ctx, req: &Request, id: &str) -> Result<(), ApiError> {
    if req.authz.is_disabled() {
        return Ok(());
    }
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    match session::get(&txn, id).map_err(|e| ApiError::Internal(e.to_string()))? {
        Some(s) => req.require(Resource::Session, &s.node, Access::Write),
        None => Ok(()),
    }
}

async fn apply(ctx: &Ctx, cmd: Command) -> Result<(), ApiError> {
    match ctx.agent.catalog_apply(cmd).await? {
        CommandResponse::Session(Err(e)) => Err(ApiError::Internal(e)),
        _ => Ok(()),
    }
}

pub async fn renew(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("Missing session".into()));
    }
    let server = blocking::server(ctx)?;
    if !server.is_leader() {
        // The TTL timers live on the leader.
        return super::forward::to_leader(ctx, server, req).await;
    }
    let found =
        server.store.read().and_then(|t| session::get(&t, id)).map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(s) = found else {
        return Err(ApiError::NotFound(format!("Session id '{id}' not found")));
    };
    req.require(Resource::Session, &s.node, Access::Write)?;
    if let Ok(ttl) = legate_config::duration::parse_go_duration(&s.ttl) {
        if !ttl.is_zero() {
            server.renew_session(id, ttl);
        }
    }
    Ok(ApiResponse::json(&[session_json(&s)]))
}

/// The sessions `which` selects, those the token may read.
async fn read(ctx: &Ctx, req: &Request, which: impl Fn(&Session) -> bool) -> Result<ApiResponse, ApiError> {
    blocking::answer(
        ctx,
        req,
        Table::Sessions,
        |txn| {
            let index = legate_state::table_index_read(txn, IDX_SESSIONS)?;
            let all = session::list(txn)?;
            let list: Vec<Json> = all
                .iter()
                .filter(|s| which(s))
                .filter(|s| req.can_read(Resource::Session, &s.node))
                .map(session_json)
                .collect();
            Ok((index, list))
        },
        |list| Ok(ApiResponse::json(&list)),
    )
    .await
}
