//! `/v1/operator/autopilot/configuration|health|state` and `/v1/operator/usage`.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::blocking;
use super::{decode, ApiError, ApiResponse, Ctx, Request};
use legate_acl::builtin::httpdate_like;
use legate_agent::autopilot::{self, Health};
use legate_raft::command::{Command, CommandResponse};
use legate_state::autopilot::AutopilotConfig;
use legate_types::GoDuration;

fn go(ns: u64) -> String {
    GoDuration(std::time::Duration::from_nanos(ns)).to_string()
}

fn config_json(c: &AutopilotConfig) -> Json {
    json!({
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": go(c.last_contact_threshold_ns),
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": go(c.server_stabilization_time_ns),
        "RedundancyZoneTag": c.redundancy_zone_tag,
        "DisableUpgradeMigration": c.disable_upgrade_migration,
        "UpgradeVersionTag": c.upgrade_version_tag,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

pub async fn get_config(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    blocking::server(ctx)?;
    let c = autopilot::effective_config(&ctx.agent).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ApiResponse::json(&config_json(&c)))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct ConfigBody {
    cleanup_dead_servers: bool,
    last_contact_threshold: Option<GoDuration>,
    max_trailing_logs: u64,
    min_quorum: u32,
    server_stabilization_time: Option<GoDuration>,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
}

/// `PUT /v1/operator/autopilot/configuration[?cas=<ModifyIndex>]`: replaces the whole
/// configuration (fields left out are zero, as in Consul); `true`, or `false` when `cas` does
/// not match.
pub async fn set_config(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?.clone();
    let raw: Json = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::BadRequest(format!("Error parsing autopilot config: {e}")))?
    };
    let mut raw = decode::keys_as(raw, legate_api::operator::AUTOPILOT_FIELDS);
    // Durations given as numbers are nanoseconds (Consul's ReadableDuration).
    for key in ["LastContactThreshold", "ServerStabilizationTime"] {
        if let Some(v) = raw.get_mut(key) {
            *v = decode::nanoseconds(v.take());
        }
    }
    let body: ConfigBody = serde_json::from_value(raw)
        .map_err(|e| ApiError::BadRequest(format!("Error parsing autopilot config: {e}")))?;
    let cas = match req.param("cas") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::BadRequest(format!("Error parsing cas value: {v:?}")))?),
    };
    let ns = |d: Option<GoDuration>| d.map_or(0, |d| d.0.as_nanos() as u64);
    let config = AutopilotConfig {
        cleanup_dead_servers: body.cleanup_dead_servers,
        last_contact_threshold_ns: ns(body.last_contact_threshold),
        max_trailing_logs: body.max_trailing_logs,
        min_quorum: body.min_quorum,
        server_stabilization_time_ns: ns(body.server_stabilization_time),
        redundancy_zone_tag: body.redundancy_zone_tag,
        disable_upgrade_migration: body.disable_upgrade_migration,
        upgrade_version_tag: body.upgrade_version_tag,
        create_index: 0,
        modify_index: 0,
    };
    match server.apply(Command::Autopilot { config, cas }).await {
        Ok(CommandResponse::Autopilot(stored)) => Ok(ApiResponse::json(&stored)),
        Ok(other) => Err(ApiError::Internal(format!("unexpected state machine response {other:?}"))),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// The leader's measurement (a follower asks the leader, as Consul forwards it).
async fn measured(ctx: &Ctx, req: &Request) -> Result<Result<Health, ApiResponse>, ApiError> {
    let server = blocking::server(ctx)?;
    if !server.is_leader() {
        return Ok(Err(super::forward::to_leader(ctx, server, req).await?));
    }
    match autopilot::health(&ctx.agent).map_err(|e| ApiError::Internal(e.to_string()))? {
        Some(h) => Ok(Ok(h)),
        None => Err(ApiError::Internal("No cluster leader".into())),
    }
}

fn contact(c: Option<std::time::Duration>) -> String {
    c.map(|d| GoDuration(d).to_string()).unwrap_or_default()
}

/// `GET /v1/operator/autopilot/health`: 200 when every server is healthy, else 429.
pub async fn health(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let h = match measured(ctx, req).await? {
        Ok(h) => h,
        Err(forwarded) => return Ok(forwarded),
    };
    let servers: Vec<Json> = h
        .servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id,
                "Name": s.name,
                "Address": s.address,
                "SerfStatus": s.serf_status,
                "Version": s.version,
                "Leader": s.leader,
                "LastContact": contact(s.last_contact),
                "LastTerm": s.last_term,
                "LastIndex": s.last_index,
                "Healthy": s.healthy,
                "Voter": s.voter,
                "StableSince": httpdate_like(s.stable_since),
            })
        })
        .collect();
    let mut resp = ApiResponse::json(&json!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "Servers": servers,
    }));
    if !h.healthy {
        resp.status = StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(resp)
}

/// `GET /v1/operator/autopilot/state`: the same measurement in Consul's state shape.
pub async fn state(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let h = match measured(ctx, req).await? {
        Ok(h) => h,
        Err(forwarded) => return Ok(forwarded),
    };
    let mut servers = serde_json::Map::new();
    let mut voters = Vec::new();
    let mut leader = String::new();
    for s in &h.servers {
        let status = if s.leader {
            "leader"
        } else if s.voter {
            "voter"
        } else {
            "non-voter"
        };
        if s.voter {
            voters.push(s.id.clone());
        }
        if s.leader {
            leader = s.id.clone();
        }
        servers.insert(
            s.id.clone(),
            json!({
                "ID": s.id,
                "Name": s.name,
                "Address": s.address,
                "NodeStatus": s.serf_status,
                "Version": s.version,
                "LastContact": contact(s.last_contact),
                "LastTerm": s.last_term,
                "LastIndex": s.last_index,
                "Healthy": s.healthy,
                "StableSince": httpdate_like(s.stable_since),
                "ReadReplica": false,
                "Status": status,
                "Meta": {},
                "NodeType": if s.voter { "voter" } else { "non-voter" },
            }),
        );
    }
    Ok(ApiResponse::json(&json!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "OptimisticFailureTolerance": h.failure_tolerance,
        "Servers": servers,
        "Leader": leader,
        "Voters": voters,
    })))
}

/// `GET /v1/operator/usage`: services, instances and nodes of this datacenter.
pub async fn usage(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let dc = ctx.agent.config().datacenter.clone();
    let (_, counts, headers) = blocking::run(ctx, req, legate_state::watch::Table::Catalog, |txn| {
        let index = legate_state::table_index_read(txn, legate_state::schema::IDX_SERVICES)?
            .max(legate_state::table_index_read(txn, legate_state::schema::IDX_NODES)?);
        Ok((index, legate_state::catalog::usage(txn)?))
    })
    .await?;
    let legate_state::catalog::Usage { services, instances, billable, nodes } = counts;
    let body = json!({
        "Usage": {
            dc: {
                "Services": services,
                "ServiceInstances": instances,
                "ConnectServiceInstances": {
                    "api-gateway": 0, "connect-native": 0, "connect-proxy": 0, "ingress-gateway": 0,
                    "mesh-gateway": 0, "terminating-gateway": 0,
                },
                "BillableServiceInstances": billable,
                "Nodes": nodes,
            }
        },
        "Index": headers.iter().find(|(k, _)| *k == "X-Consul-Index").map(|(_, v)| v.parse::<u64>().unwrap_or(0)).unwrap_or(0),
    });
    Ok(blocking::with_headers(ApiResponse::json(&body), headers))
}
