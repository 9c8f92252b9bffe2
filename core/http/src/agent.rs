//! `/v1/agent/*`: self, version, members, reload.

use std::collections::BTreeMap;

use legate_api::agent::{AgentVersion, Coord, SelfConfig};
use serde_json::{json, Value as Json};

use super::{ApiError, ApiResponse, Ctx, Request};
use legate_config::Config;
use legate_types::version;

pub async fn self_(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(&agent_self(ctx)))
}

pub async fn version(_: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(&AgentVersion {
        build_date: version::BUILD_DATE.into(),
        human_version: version::CONSUL_VERSION.into(),
        version: version::CONSUL_VERSION.into(),
        revision: version::revision(),
        fips: String::new(),
    }))
}

pub async fn members(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let mut members = ctx.agent.members(req.flag("wan"));
    members.retain(|m| req.can_read(legate_acl::Resource::Node, &m.name));
    Ok(ApiResponse::json(&members))
}

pub async fn leave(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    ctx.agent.leave().await;
    ctx.agent.request_stop();
    Ok(ApiResponse::empty(http::StatusCode::OK))
}

/// The pool a request names: the WAN pool with `?wan` (servers only), else the LAN pool.
fn pool<'a>(ctx: &'a Ctx, req: &Request) -> Result<&'a std::sync::Arc<legate_gossip::Gossip>, ApiError> {
    if req.flag("wan") {
        return ctx.agent.gossip_wan.get().ok_or_else(|| {
            ApiError::Internal(if ctx.agent.config().server {
                "WAN gossip is disabled".into()
            } else {
                "Must be a server to join the WAN pool".into()
            })
        });
    }
    ctx.agent.gossip.get().ok_or_else(|| ApiError::Internal("gossip is disabled".into()))
}

/// `PUT /v1/agent/join/<address>[?wan]`.
pub async fn join(ctx: &Ctx, req: &Request, addr: &str) -> Result<ApiResponse, ApiError> {
    let g = pool(ctx, req)?;
    let addr = if req.flag("wan") {
        legate_agent::wan::with_default_port(addr, legate_gossip::DEFAULT_WAN_PORT)
    } else {
        addr.to_string()
    };
    g.join(&[addr]).await?;
    Ok(ApiResponse::empty(http::StatusCode::OK))
}

/// `PUT /v1/agent/force-leave/<node>[?prune][&wan]`.
pub async fn force_leave(ctx: &Ctx, req: &Request, node: &str) -> Result<ApiResponse, ApiError> {
    let g = pool(ctx, req)?;
    g.force_leave(node, req.flag("prune"))?;
    ctx.agent.reconcile.notify_one();
    Ok(ApiResponse::empty(http::StatusCode::OK))
}

/// `GET /v1/agent/monitor?loglevel=<level>[&logjson]`: the agent's log lines from now on, at
/// that level (default info) whatever the agent's own, until the client goes away or the agent
/// stops. A client that reads too slowly loses lines (counted, and logged when it leaves).
pub async fn monitor(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let name = req.param("loglevel").filter(|l| !l.is_empty()).unwrap_or("info");
    let level = legate_telemetry::monitor::parse_level(name)
        .and_then(|l| l.into_level())
        .ok_or_else(|| ApiError::BadRequest(format!("Unknown log level: {name}")))?;
    // Consul: the parameter's presence asks for JSON.
    let json = req.param("logjson").is_some();
    let mut monitor = legate_telemetry::monitor::hub().subscribe(level, json);
    let (mut sender, body) = hyper::Body::channel();
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        // A client that went away is noticed within a second even when no line comes.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let line = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                line = monitor.lines.recv() => match line {
                    Some(l) => l,
                    None => break,
                },
                _ = tick.tick() => {
                    let gone = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(matches!(sender.poll_ready(cx), std::task::Poll::Ready(Err(_))))
                    })
                    .await;
                    if gone {
                        break;
                    }
                    continue;
                }
            };
            if sender.send_data(bytes::Bytes::from(line)).await.is_err() {
                break;
            }
        }
        let dropped = monitor.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "monitor: the client read too slowly, log lines were dropped");
        }
    });
    Ok(ApiResponse { status: http::StatusCode::OK, headers: Vec::new(), body: super::response::Body::Stream(body) })
}

/// `GET /v1/agent/host`: the host's memory, CPUs, OS and the disk of the data dir.
pub async fn host(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let data_dir = ctx.agent.config().data_dir.clone();
    let report = tokio::task::spawn_blocking(move || legate_agent::host::report(data_dir.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ApiResponse::json(&report))
}

/// `GET /v1/agent/plugins` (Legate's own): the plugin host's state (loaded plugins and what
/// they import, the compile cache) and which checks run which plugin with which grants. Args
/// are not shown: they may hold secrets.
pub async fn plugins(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let host = ctx.agent.plugins().clone();
    let state =
        tokio::task::spawn_blocking(move || host.state()).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let checks: Vec<Json> = ctx
        .agent
        .local
        .checks()
        .iter()
        .filter_map(|c| {
            let w = c.definition.wasm.as_ref()?;
            let run = ctx.agent.plugin_runs.get(&c.check.check_id);
            let running = run.as_ref().and_then(|r| r.running.as_ref());
            let registry = running.and_then(|r| r.registry.as_ref());
            let source = match legate_plugin_host::PluginRef::parse(&w.plugin) {
                Ok(r) if r.is_registry() => "registry",
                _ => "file",
            };
            Some(json!({
                "CheckID": c.check.check_id,
                "Plugin": w.plugin,
                "Source": source,
                // What the last run used: a registry reference resolves to a version at each run.
                "Resolved": running.map(|r| json!({
                    "Plugin": r.plugin,
                    "Name": registry.map(|i| &i.name),
                    "Version": registry.map(|i| &i.version),
                    "SHA256": r.sha256,
                    "Fetched": registry.is_some_and(|i| i.fetched),
                })),
                "Signed": registry.is_some_and(|i| !i.signed_by.is_empty()),
                "SignedBy": registry.map(|i| i.signed_by.clone()).unwrap_or_default(),
                "AllowHosts": w.allow_hosts,
                "KVReadPrefixes": w.kv_read_prefixes,
                "MemoryMB": w.memory_mb,
                "Files": w.files.iter().map(|f| serde_json::to_value(f).unwrap_or(Json::Null)).collect::<Vec<_>>(),
                "SHA256": w.sha256,
                "Status": c.check.status,
                "Output": c.check.output,
                "LastRun": run.as_ref().map(|r| &r.last_run),
                "LastDurationMs": run.as_ref().map(|r| r.last_duration_ms),
                "Runs": run.as_ref().map_or(0, |r| r.runs),
            }))
        })
        .collect();
    let watches: Vec<Json> = ctx
        .agent
        .config()
        .watches
        .iter()
        .filter_map(|w| {
            let plugin = &w.wasm.as_ref()?.plugin;
            let run = ctx.agent.plugin_runs.get(&legate_agent::plugins::watch_run_key(w));
            Some(json!({
                "Type": w.kind,
                "Key": w.key.as_ref().or(w.prefix.as_ref()),
                "Service": w.service,
                "Name": w.name,
                "Plugin": plugin,
                "LastRun": run.as_ref().map(|r| &r.last_run),
                "LastDurationMs": run.as_ref().map(|r| r.last_duration_ms),
                "Runs": run.as_ref().map_or(0, |r| r.runs),
                "LastError": run.and_then(|r| r.last_error),
            }))
        })
        .collect();
    Ok(ApiResponse::json(&json!({"Host": state, "Checks": checks, "Watches": watches})))
}

pub async fn reload(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let agent = ctx.agent.clone();
    // Loading reads files: keep it off the async workers.
    let outcome =
        tokio::task::spawn_blocking(move || agent.reload()).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    outcome?;
    Ok(ApiResponse::empty(http::StatusCode::OK))
}

/// `PUT /v1/agent/token/<kind>` `{"Token": "..."}`: replaces one of the agent's tokens.
pub async fn set_token(ctx: &Ctx, req: &Request, kind: &str) -> Result<ApiResponse, ApiError> {
    if !ctx.agent.config().acl.enabled {
        return Err(ApiError::Unauthorized("ACL support disabled".into()));
    }
    let kind = legate_agent::acl::canonical_kind(kind)
        .ok_or_else(|| ApiError::NotFound(format!("Token {kind:?} is unknown")))?;
    let body: Json = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?
    };
    let token = body
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("token")))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or_default()
        .to_string();
    ctx.agent.acl.set_agent_token(&ctx.agent, kind, token)?;
    Ok(ApiResponse::empty(http::StatusCode::OK))
}

fn agent_self(ctx: &Ctx) -> Json {
    let agent = &ctx.agent;
    let config = agent.config();
    let member = agent.local_member();
    let mut meta: BTreeMap<String, String> = config.node_meta.clone();
    meta.insert("consul-network-segment".into(), String::new());
    meta.insert("consul-version".into(), version::CONSUL_VERSION.into());
    let self_config = SelfConfig {
        datacenter: config.datacenter.clone(),
        primary_datacenter: config.primary_datacenter().to_string(),
        node_name: agent.node_name().to_string(),
        node_id: agent.node_id().to_string(),
        revision: version::revision(),
        server: config.server,
        version: version::CONSUL_VERSION.into(),
        build_date: version::BUILD_DATE.into(),
    };
    let coord = if config.disable_coordinates {
        Json::Null
    } else {
        json!(agent.gossip.get().and_then(|g| g.coordinate()).unwrap_or_else(Coord::origin))
    };
    json!({
        // Legate's own: where the config comes from and how the last reload went.
        "Legate": {
            "ConfigSources": agent.config_sources(),
            "LastReload": agent.last_reload(),
        },
        "Config": self_config,
        "DebugConfig": debug_config(&config, agent.node_id()),
        "Coord": coord,
        "Member": member,
        "Stats": agent.stats(),
        "Meta": meta,
        "xDS": {
            "SupportedProxies": {},
            "Port": config.ports.grpc,
            "Ports": {"Plaintext": config.ports.grpc, "TLS": config.ports.grpc_tls},
        },
    })
}

/// The running configuration with Consul-style top-level names (`NodeName`, `Ports`, ...) and
/// secrets redacted. Like Consul's, its shape is for humans and may change.
fn debug_config(config: &Config, node_id: &str) -> Json {
    let mut value = serde_json::to_value(config).expect("config serializes");
    redact(&mut value);
    let mut out = serde_json::Map::new();
    if let Json::Object(map) = value {
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            out.insert(pascal_case(&k), v);
        }
    }
    out.insert("DevMode".into(), Json::Bool(config.dev));
    out.insert("NodeID".into(), Json::String(node_id.to_string()));
    out.insert("ClientAddrs".into(), json!(config.client_addrs()));
    Json::Object(out)
}

fn redact(value: &mut Json) {
    const SECRETS: &[&str] = &["encrypt", "token"];
    match value {
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                if (SECRETS.contains(&k.as_str()) && !v.is_null()) || k == "tokens" {
                    redact_all(v);
                } else {
                    redact(v);
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn redact_all(value: &mut Json) {
    match value {
        Json::Object(map) => map.values_mut().for_each(redact_all),
        Json::Null => {}
        other => *other = Json::String("hidden".into()),
    }
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| match part {
            "id" => "ID".to_string(),
            "dns" => "DNS".to_string(),
            "http" => "HTTP".to_string(),
            "acl" => "ACL".to_string(),
            "ui" => "UI".to_string(),
            "wan" => "WAN".to_string(),
            "lan" => "LAN".to_string(),
            p => {
                let mut c = p.chars();
                match c.next() {
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect()
}

/// `/v1/agent/metrics`: JSON, or Prometheus text with `?format=prometheus` (or an Accept of
/// `text/plain`) when `telemetry.prometheus_retention_time` is set.
pub async fn metrics(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let config = ctx.agent.config();
    let gauges = ctx.agent.gauges();
    let accept_text = req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/plain") && !v.contains("application/json"));
    if req.param("format") == Some("prometheus") || accept_text {
        if config.telemetry.prometheus_retention_time.0.is_zero() {
            // Consul answers 200 with nothing, and says why in a header.
            return Ok(ApiResponse::empty(http::StatusCode::OK)
                .header("X-Consul-Reason", "Prometheus is not enabled since its retention time is not positive"));
        }
        let text = legate_telemetry::global().prometheus(&config.telemetry, &gauges);
        return Ok(ApiResponse::text(http::StatusCode::OK, text)
            .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"));
    }
    Ok(ApiResponse::json(&legate_telemetry::global().display(&config.telemetry, &gauges)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_follows_consul_acronyms() {
        assert_eq!(pascal_case("node_name"), "NodeName");
        assert_eq!(pascal_case("node_id"), "NodeID");
        assert_eq!(pascal_case("dns_config"), "DNSConfig");
        assert_eq!(pascal_case("http_config"), "HTTPConfig");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config { encrypt: Some("c2VjcmV0c2VjcmV0c2VjcmV0".into()), ..Config::default() };
        c.acl.tokens.agent = Some("s3cr3t".into());
        let v = debug_config(&c, "id");
        let text = v.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        assert_eq!(v["Encrypt"], "hidden");
    }
}
