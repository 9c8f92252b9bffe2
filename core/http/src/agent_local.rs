//! The agent's own services and checks: `/v1/agent/services`, `service/*`, `checks`,
//! `check/*`, `health/service/*`, `maintenance`.

use std::collections::BTreeMap;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::catalog::{check_filter, check_json, filter, service_json};
use super::{decode, ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Resource};
use legate_agent::checks::CheckStatus;
use legate_agent::local::{Source, TtlError};
use legate_config::{CheckDefinition, ServiceDefinition};

fn agent_service(ctx: &Ctx, id: &str) -> Option<Json> {
    let s = ctx.agent.local.service(id)?;
    Some(local_service_json(&s, &ctx.agent.config().datacenter))
}

/// A local service as the agent's endpoints show it: the catalog shape, plus `Locality` when
/// the definition gives one.
fn local_service_json(s: &legate_agent::local::LocalService, dc: &str) -> Json {
    let mut v = service_json(&s.service, Some(dc));
    if let Some(l) = &s.definition.locality {
        v["Locality"] = json!({"Region": l.region, "Zone": l.zone});
    }
    v
}

pub async fn list_services(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let dc = ctx.agent.config().datacenter.clone();
    let list: Vec<Json> = ctx
        .agent
        .local
        .services()
        .iter()
        .filter(|s| req.can_read(Resource::Service, &s.service.service))
        .map(|s| local_service_json(s, &dc))
        .collect();
    let map: serde_json::Map<String, Json> =
        filter(req, list)?.into_iter().map(|s| (s["ID"].as_str().unwrap_or_default().to_string(), s)).collect();
    Ok(ApiResponse::json(&map))
}

fn content_hash(v: &Json) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(v.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// `GET /v1/agent/service/<id>[?hash=<ContentHash>&wait=]`: with `hash`, a blocking query on
/// the service's content: it answers once the service differs from that hash (or is gone), or
/// when `wait` is over.
pub async fn get_service(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("Missing service ID".into()));
    }
    let known = req.param("hash").filter(|h| !h.is_empty()).map(str::to_string);
    let wait = super::blocking::query_options(ctx, req)?.wait;
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = ctx.agent.local.checks_changed.subscribe();
    loop {
        changes.borrow_and_update();
        let Some(mut v) = agent_service(ctx, id) else {
            return Err(ApiError::NotFound(format!("unknown service ID: {id}")));
        };
        req.require(Resource::Service, v["Service"].as_str().unwrap_or_default(), Access::Read)?;
        let hash = content_hash(&v);
        if known.as_deref() == Some(hash.as_str()) {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                changed = changes.changed() => if changed.is_ok() { continue },
            }
        }
        v["ContentHash"] = json!(hash);
        return Ok(ApiResponse::json(&v).header("X-Consul-Contenthash", hash));
    }
}

/// Runs the `validate` export of every WASM check plugin of the definitions: a plugin that is
/// missing, is not a check plugin, or rejects its args refuses the registration (400).
async fn validate_plugins<'a>(ctx: &Ctx, defs: impl Iterator<Item = &'a CheckDefinition>) -> Result<(), ApiError> {
    for def in defs {
        if let Some(spec) = def.wasm.as_ref().filter(|w| !w.plugin.is_empty()) {
            ctx.agent
                .plugins()
                .validate(spec, Some(legate_plugin_host::World::Check))
                .await
                .map_err(|e| ApiError::BadRequest(format!("Invalid WASM check: {e}")))?;
        }
    }
    Ok(())
}

pub async fn register_service(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let def: ServiceDefinition = decode::body(&req.body)?;
    req.require(Resource::Service, &def.name, Access::Write)?;
    validate_plugins(ctx, def.check.iter().chain(def.checks.iter())).await?;
    let replace = req.flag("replace-existing-checks");
    let token = super::token(req);
    ctx.agent
        .local
        .add_service(&def, token, Source::Api, ctx.agent.scripts_allowed(false), replace)
        .map_err(|e| ApiError::BadRequest(e.0))?;
    synced(ctx).await
}

pub async fn deregister_service(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("Missing service ID".into()));
    }
    service_write(ctx, req, id)?;
    if !ctx.agent.local.remove_service(id) {
        return Err(ApiError::NotFound(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        )));
    }
    synced(ctx).await
}

/// service:write on a local service's name (unknown IDs pass: the handler answers 404).
fn service_write(ctx: &Ctx, req: &Request, id: &str) -> Result<(), ApiError> {
    match ctx.agent.local.service(id) {
        Some(s) => req.require(Resource::Service, &s.service.service, Access::Write),
        None => Ok(()),
    }
}

/// A check's write permission: service:write on its service, else node:write on this node.
fn check_write(ctx: &Ctx, req: &Request, id: &str) -> Result<(), ApiError> {
    let Some(c) = ctx.agent.local.checks().into_iter().find(|c| c.check.check_id == id) else {
        return Ok(());
    };
    if c.check.service_id.is_empty() {
        req.require(Resource::Node, ctx.agent.node_name(), Access::Write)
    } else {
        service_write(ctx, req, &c.check.service_id)
    }
}

fn enable_param(req: &Request) -> Result<bool, ApiError> {
    match req.param("enable") {
        None | Some("") => Err(ApiError::BadRequest("Missing value for enable".into())),
        // Go's strconv.ParseBool: Python clients send "True".
        Some(v) => match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(ApiError::BadRequest(format!("Invalid value for enable: {v:?}"))),
        },
    }
}

pub async fn service_maintenance(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("Missing service ID".into()));
    }
    service_write(ctx, req, id)?;
    let enable = enable_param(req)?;
    let reason = req.param("reason").unwrap_or_default();
    if !ctx.agent.local.set_service_maintenance(id, enable, reason) {
        return Err(ApiError::NotFound(format!("Unknown service ID {id:?}")));
    }
    synced(ctx).await
}

pub async fn node_maintenance(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let enable = enable_param(req)?;
    ctx.agent.local.set_node_maintenance(enable, req.param("reason").unwrap_or_default());
    synced(ctx).await
}

pub async fn list_checks(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let services: BTreeMap<String, (String, Vec<String>)> = ctx
        .agent
        .local
        .services()
        .into_iter()
        .map(|s| (s.service.id.clone(), (s.service.service.clone(), s.service.tags.clone())))
        .collect();
    let list: Vec<Json> = ctx
        .agent
        .local
        .checks()
        .into_iter()
        .filter(|c| match services.get(&c.check.service_id) {
            Some((name, _)) => req.can_read(Resource::Service, name),
            None => req.can_read(Resource::Node, ctx.agent.node_name()),
        })
        .map(|c| {
            let mut c = c.check;
            if let Some((name, tags)) = services.get(&c.service_id) {
                c.service_name = name.clone();
                c.service_tags = tags.clone();
            }
            check_json(&c)
        })
        .collect();
    let map: serde_json::Map<String, Json> =
        filter(req, list)?.into_iter().map(|c| (c["CheckID"].as_str().unwrap_or_default().to_string(), c)).collect();
    Ok(ApiResponse::json(&map))
}

pub async fn register_check(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let def: CheckDefinition = decode::body(&req.body)?;
    match def.service_id.as_deref().filter(|s| !s.is_empty()) {
        Some(sid) if ctx.agent.local.service(sid).is_none() => {
            return Err(ApiError::NotFound(format!("ServiceID {sid:?} does not exist")));
        }
        Some(sid) => service_write(ctx, req, sid)?,
        None => req.require(Resource::Node, ctx.agent.node_name(), Access::Write)?,
    }
    validate_plugins(ctx, std::iter::once(&def)).await?;
    let token = super::token(req);
    ctx.agent
        .local
        .add_check(&def, token, Source::Api, ctx.agent.scripts_allowed(false))
        .map_err(|e| ApiError::BadRequest(e.0))?;
    synced(ctx).await
}

/// The answer to a change of the agent's services or checks, once the catalog has it: the
/// change is pushed to the servers before the 200, as Consul's `syncChanges`. A failed push is
/// only logged: the change is made, and anti-entropy retries it.
async fn synced(ctx: &Ctx) -> Result<ApiResponse, ApiError> {
    legate_agent::ae::sync_changes(&ctx.agent).await;
    Ok(ApiResponse::empty(StatusCode::OK))
}

fn unknown_check(id: &str) -> ApiError {
    ApiError::NotFound(format!("Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."))
}

pub async fn deregister_check(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    check_write(ctx, req, id)?;
    if !ctx.agent.local.remove_check(id) {
        return Err(unknown_check(id));
    }
    synced(ctx).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateBody {
    status: String,
    output: String,
}

/// `PUT /v1/agent/check/pass/<id>` (and warn, fail below; `update` takes the status from the body).
pub async fn check_pass(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    ttl(ctx, req, id, Some(CheckStatus::Passing)).await
}

pub async fn check_warn(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    ttl(ctx, req, id, Some(CheckStatus::Warning)).await
}

pub async fn check_fail(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    ttl(ctx, req, id, Some(CheckStatus::Critical)).await
}

pub async fn check_update(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    ttl(ctx, req, id, None).await
}

async fn ttl(ctx: &Ctx, req: &Request, id: &str, status: Option<CheckStatus>) -> Result<ApiResponse, ApiError> {
    check_write(ctx, req, id)?;
    let (status, output) = match status {
        Some(s) => (s, req.param("note").unwrap_or_default().to_string()),
        None => {
            let b: UpdateBody = decode::body(&req.body)?;
            let s = b
                .status
                .parse::<CheckStatus>()
                .map_err(|_| ApiError::BadRequest(format!("Invalid check status: {:?}", b.status)))?;
            (s, b.output)
        }
    };
    let max = ctx.agent.config().check_output_max_size as usize;
    let output = truncate(&output, max);
    match ctx.agent.local.ttl_update(id, status, &output) {
        Ok(()) => synced(ctx).await,
        Err(TtlError::Unknown) => Err(unknown_check(id)),
        Err(TtlError::NotTtl) => Err(ApiError::Internal(format!("CheckID {id:?} does not have associated TTL"))),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...\n(Output truncated)", &s[..end])
}

/// `/v1/agent/health/service/name/<name>`.
pub async fn health_by_name(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    aggregated(ctx, req, "name", name)
}

/// `/v1/agent/health/service/id/<id>`.
pub async fn health_by_id(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    aggregated(ctx, req, "id", id)
}

/// The worst status of the instances' checks; 200 passing, 429 warning, 503 critical, 404
/// unknown; `?format=text`.
fn aggregated(ctx: &Ctx, req: &Request, by: &str, what: &str) -> Result<ApiResponse, ApiError> {
    let dc = ctx.agent.config().datacenter.clone();
    let services: Vec<_> = ctx
        .agent
        .local
        .services()
        .into_iter()
        .filter(|s| if by == "id" { s.service.id == what } else { s.service.service == what })
        .collect();
    if by == "id" {
        if let Some(s) = services.first() {
            req.require(Resource::Service, &s.service.service, Access::Read)?;
        }
    }
    let text = req.param("format") == Some("text");
    if services.is_empty() {
        let msg =
            if by == "id" { format!("ServiceId {what} not found") } else { format!("ServiceName {what} Not Found") };
        return Ok(if text || by == "id" {
            ApiResponse::text(StatusCode::NOT_FOUND, msg)
        } else {
            let mut r = ApiResponse::json(&Vec::<Json>::new());
            r.status = StatusCode::NOT_FOUND;
            r
        });
    }
    let checks = ctx.agent.local.checks();
    let mut worst_all = "passing";
    let mut entries = Vec::new();
    for s in &services {
        let mine: Vec<_> = checks
            .iter()
            .filter(|c| c.check.service_id == s.service.id || c.check.service_id.is_empty())
            .map(|c| c.check.clone())
            .collect();
        let worst = worst_of(mine.iter().map(|c| c.status.as_str()));
        if rank(worst) > rank(worst_all) {
            worst_all = worst;
        }
        let worst = worst.to_string();
        entries.push(json!({
            "AggregatedStatus": worst,
            "Service": service_json(&s.service, Some(&dc)),
            "Checks": mine.iter().map(check_json).collect::<Vec<_>>(),
        }));
    }
    let status = match worst_all {
        "passing" => StatusCode::OK,
        "warning" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    if text {
        return Ok(ApiResponse::text(status, worst_all));
    }
    let mut r = if by == "id" { ApiResponse::json(&entries[0]) } else { ApiResponse::json(&entries) };
    r.status = status;
    Ok(r)
}

fn rank(s: &str) -> u8 {
    match s {
        "passing" => 0,
        "warning" => 1,
        "critical" => 2,
        _ => 3,
    }
}

fn worst_of<'a>(statuses: impl Iterator<Item = &'a str>) -> &'static str {
    let mut worst = "passing";
    for s in statuses {
        if rank(s) > rank(worst) {
            worst = match s {
                "warning" => "warning",
                "critical" => "critical",
                _ => "maintenance",
            };
        }
    }
    worst
}
