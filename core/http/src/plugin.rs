//! The plugin registry (Legate's own): `PUT /v1/plugin/<name>` stores a component (the body)
//! content-addressed, chunk by chunk through Raft, then as a version; `GET` returns it;
//! `DELETE ?version=` removes a version no check references (409 with the checks otherwise);
//! `GET /v1/plugins` lists every version with where it runs. Versions and signatures travel
//! in query parameters, not headers: a client agent forwards a call without its headers.
//!
//! The typed `PluginList` / `PluginChunk` calls of client agents are answered here too (from
//! `endpoints.rs`): the registry as they may read it, and chunks of the blobs they run.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::blocking;
use super::response::Body;
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Authz, Resource};
use legate_api::plugin::PushResult;
use legate_plugin_host::spec::{valid_plugin_name, valid_plugin_version};
use legate_plugin_host::{signing, World};
use legate_raft::command::{Command, CommandResponse};
use legate_raft::endpoints::EndpointError;
use legate_raft::Server;
use legate_state::plugin::{self as registry, PluginOp, PluginVersion, Signature, CHUNK_SIZE};
use legate_state::watch::Table;
use legate_state::Store;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_plugin_name(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("invalid plugin name {name:?}: 1 to 128 of A-Z a-z 0-9 . _ -")))
    }
}

/// The `?version=` of a request, if given and not empty.
fn version_param(req: &Request) -> Option<&str> {
    req.param("version").filter(|v| !v.is_empty())
}

fn world_name(w: World) -> &'static str {
    match w {
        World::Check => "check",
        World::EventHandler => "event-handler",
    }
}

/// Applies a registry write through Raft: Err(text) is the state store's refusal.
async fn apply(server: &Server, op: PluginOp) -> Result<Result<(), String>, ApiError> {
    match server.apply(Command::Plugin(op)).await.map_err(internal)? {
        CommandResponse::Plugin(r) => Ok(r),
        other => Err(ApiError::Internal(format!("unexpected state machine response {other:?}"))),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `PUT /v1/plugin/<name>[?version=][&signature=<b64 key>.<b64 sig>]...`: the body is the
/// component.
pub async fn put(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    check_name(name)?;
    let max = ctx.agent.config().plugins.max_size;
    if req.body.len() as u64 > max {
        return Err(ApiError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {max} bytes (plugins.max_size)",
            req.body.len()
        )));
    }
    if req.body.is_empty() {
        return Err(ApiError::BadRequest("missing plugin: the body is the component".into()));
    }
    let server = blocking::server(ctx)?.clone();
    let body = req.body.clone();
    let (sha, described) = tokio::task::spawn_blocking(move || {
        (legate_plugin_host::sha256_hex(&body), legate_plugin_host::describe(&body))
    })
    .await
    .map_err(internal)?;
    let meta = described.map_err(|e| ApiError::BadRequest(format!("not a Legate plugin: {e}")))?;
    let version = match version_param(req) {
        Some(v) => v.to_string(),
        None => meta.version.clone().ok_or_else(|| {
            ApiError::BadRequest("no version: give ?version= or build with the SDK (a \"version\" section)".into())
        })?,
    };
    if !valid_plugin_version(&version) {
        return Err(ApiError::BadRequest(format!(
            "invalid plugin version {version:?}: 1 to 128 of A-Z a-z 0-9 . + _ -"
        )));
    }
    let mut signatures = Vec::new();
    for (_, text) in req.query.iter().filter(|(k, _)| k == "signature") {
        // A `+` of base64 that was not percent-encoded arrives as a space.
        let (pk, sig) = signing::parse_signature(&text.replace(' ', "+")).map_err(ApiError::BadRequest)?;
        if !signing::verify(&pk, &sig, &sha) {
            return Err(ApiError::BadRequest(format!(
                "the signature by key {} does not sign this component (sha256 {sha})",
                signing::key_id(&pk)
            )));
        }
        signatures.push(Signature { public_key: signing::b64(&pk), signature: signing::b64(&sig) });
    }
    let (existing, blob) = {
        let txn = server.store.read().map_err(internal)?;
        (
            registry::resolve(&txn, name, Some(version.as_str())).map_err(internal)?,
            registry::blob(&txn, &sha).map_err(internal)?,
        )
    };
    if let Some(e) = existing.as_ref().filter(|e| e.sha256 != sha) {
        return Err(ApiError::Conflict(format!(
            "plugin {name}@{version} already exists with another component (sha256 {}); push another version",
            e.sha256
        )));
    }
    let size = req.body.len() as u64;
    if !blob.is_some_and(|b| b.complete) {
        // One chunk per Raft entry. A chunk sent again (after an unknown outcome) is a no-op.
        let total = registry::chunk_count(size);
        let at_unix = unix_now();
        for (i, data) in req.body.chunks(CHUNK_SIZE).enumerate() {
            let op =
                PluginOp::Chunk { sha256: sha.clone(), index: i as u32, total, size, at_unix, data: data.to_vec() };
            apply(&server, op).await?.map_err(ApiError::Internal)?;
        }
    }
    let record = PluginVersion {
        name: name.to_string(),
        version: version.clone(),
        sha256: sha.clone(),
        size,
        world: world_name(meta.world).to_string(),
        imports: meta.imports.clone(),
        pushed_at: legate_agent::now_rfc3339(),
        ..PluginVersion::default()
    };
    let version_json = serde_json::to_string(&record).map_err(internal)?;
    apply(&server, PluginOp::Commit { version_json, signatures }).await?.map_err(ApiError::Conflict)?;
    let signers = {
        let txn = server.store.read().map_err(internal)?;
        registry::blob(&txn, &sha).map_err(internal)?.map(|b| b.signatures).unwrap_or_default()
    };
    tracing::info!(plugin = %name, %version, sha256 = %sha, size, "plugin pushed to the registry");
    Ok(ApiResponse::json(&PushResult {
        name: name.to_string(),
        version,
        sha256: sha,
        size,
        world: record.world,
        imports: record.imports,
        signatures: signers.iter().map(|s| registry::key_id(&s.public_key)).collect(),
    }))
}

/// `GET /v1/plugin/<name>[?version=]`: the component (the latest version without `?version=`).
pub async fn get(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    check_name(name)?;
    let store = blocking::server(ctx)?.store.clone();
    let (name, version) = (name.to_string(), version_param(req).map(str::to_string));
    let found = tokio::task::spawn_blocking(move || -> Result<_, legate_state::StoreError> {
        let txn = store.read()?;
        let Some(v) = registry::resolve(&txn, &name, version.as_deref())? else { return Ok(None) };
        Ok(registry::assemble(&txn, &v.sha256)?.map(|bytes| (v, bytes)))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let Some((v, bytes)) = found else {
        return Err(ApiError::NotFound(String::new()));
    };
    Ok(ApiResponse {
        status: StatusCode::OK,
        headers: vec![
            ("X-Legate-Plugin-Version", v.version.into()),
            ("X-Legate-Plugin-SHA256", v.sha256.into()),
            ("X-Legate-Plugin-World", v.world.into()),
        ],
        body: Body::Raw { content_type: "application/wasm", data: Bytes::from(bytes) },
    })
}

/// `DELETE /v1/plugin/<name>?version=`: 409 with the checks that still use it.
pub async fn delete(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    check_name(name)?;
    let version = version_param(req)
        .ok_or_else(|| ApiError::BadRequest("missing ?version= (the version to delete)".into()))?
        .to_string();
    let server = blocking::server(ctx)?.clone();
    let users = {
        let txn = server.store.read().map_err(internal)?;
        let all = registry::versions(&txn).map_err(internal)?;
        let Some(doomed) = all.iter().find(|v| v.name == name && v.version == version) else {
            return Err(ApiError::NotFound(String::new()));
        };
        let refs = registry::references(&txn).map_err(internal)?;
        refs.into_iter().filter(|r| registry::holds(&r.plugin, doomed, &all)).collect::<Vec<_>>()
    };
    match apply(&server, PluginOp::Delete { name: name.to_string(), version: version.clone() }).await? {
        Ok(()) => {
            tracing::info!(plugin = %name, %version, "plugin version deleted from the registry");
            Ok(ApiResponse::json(&true))
        }
        Err(why) => {
            let checks: Vec<String> = users.iter().map(|r| format!("{}/{}", r.node, r.check_id)).collect();
            let mut resp = ApiResponse::json(&json!({"Error": why, "Checks": checks}));
            resp.status = StatusCode::CONFLICT;
            Ok(resp)
        }
    }
}

/// `GET /v1/plugins`: every version the token may read (a blocking query on the registry).
pub async fn list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let only = req.param("name").filter(|n| !n.is_empty()).map(str::to_string);
    blocking::answer(
        ctx,
        req,
        Table::Plugins,
        |txn| Ok((registry::table_index(txn)?, registry::infos(txn)?)),
        |infos| {
            let mut infos: Vec<_> = infos
                .into_iter()
                .filter(|i| only.as_deref().is_none_or(|n| n == i.name))
                .filter(|i| req.can_read(Resource::Plugin, &i.name))
                .collect();
            for i in &mut infos {
                i.runs_on.retain(|u| req.authz.allowed(Resource::Node, &u.node, Access::Read));
            }
            Ok(ApiResponse::json(&infos))
        },
    )
    .await
}

/// A client agent's view of the registry (`PluginList`): once the registry's index passes
/// `index` (or after `wait`), its index and the versions `authz` may read, as JSON.
pub(crate) async fn view_for(
    ctx: &Ctx,
    store: &Store,
    authz: &Authz,
    index: u64,
    wait: Duration,
) -> Result<(u64, String), EndpointError> {
    let unavailable = |e: legate_state::StoreError| EndpointError::Unavailable(e.to_string());
    let mut rx = store.watch.subscribe(Table::Plugins);
    let mut restores = store.watch.subscribe_restores();
    let read = || -> Result<(u64, Vec<legate_api::plugin::ViewVersion>), legate_state::StoreError> {
        let txn = store.read()?;
        Ok((registry::table_index(&txn)?, registry::view(&txn)?))
    };
    let (mut current, mut view) = read().map_err(unavailable)?;
    if index > 0 && current <= index {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = restores.changed() => {
                    (current, view) = read().map_err(unavailable)?;
                    break;
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    rx.borrow_and_update();
                    (current, view) = read().map_err(unavailable)?;
                    if current > index {
                        break;
                    }
                }
            }
        }
    }
    view.retain(|v| authz.allowed(Resource::Plugin, &v.name, Access::Read));
    let json = serde_json::to_string(&view).map_err(|e| EndpointError::Unavailable(e.to_string()))?;
    Ok((current.max(1), json))
}

/// A chunk of a blob (`PluginChunk`), for a token that may read some version of it.
pub(crate) fn chunk_for(store: &Store, authz: &Authz, sha256: &str, chunk: u32) -> Result<Vec<u8>, EndpointError> {
    let unavailable = |e: legate_state::StoreError| EndpointError::Unavailable(e.to_string());
    let txn = store.read().map_err(unavailable)?;
    let versions = registry::by_digest(&txn, sha256).map_err(unavailable)?;
    if !versions.iter().any(|v| authz.allowed(Resource::Plugin, &v.name, Access::Read)) {
        return Err(EndpointError::PermissionDenied(format!(
            "Permission denied: token lacks 'plugin:read' on every version of blob {sha256}"
        )));
    }
    registry::chunk(&txn, sha256, chunk)
        .map_err(unavailable)?
        .ok_or_else(|| EndpointError::Unavailable(format!("blob {sha256} has no chunk {chunk}")))
}
