//! The agent's leader duties, run by the server's leader module (`legate_raft::leader`) for as
//! long as this server leads: the built-in ACL objects, gossip members reconciled into the
//! catalog, the leader's usage gauges, and a secondary datacenter's ACL replication.

use std::sync::Arc;
use std::time::Duration;

use legate_api::agent::member_status;
use legate_raft::leader::Duty;
use legate_raft::Server;
use legate_types::version;
use tokio_util::sync::CancellationToken;

use crate::{ae, AgentShared};

/// The duties this agent adds to its server's.
pub fn duties(agent: &Arc<AgentShared>) -> Vec<Duty> {
    let (a, b, c, d) = (agent.clone(), agent.clone(), agent.clone(), agent.clone());
    vec![
        Duty::new("acl-init", move |server, stop| acl_init(a.clone(), server, stop)),
        Duty::new("leader-reconcile", move |server, stop| leader_reconcile(b.clone(), server, stop)),
        Duty::new("usage-metrics", move |server, stop| usage_metrics(c.clone(), server, stop)),
        Duty::new("acl-replication", move |server, stop| crate::acl_replication::run(d.clone(), server, stop)),
    ]
}

/// Leader duty: the ACL objects a cluster must have (global-management policy, anonymous
/// token, the configured `initial_management` token), written when missing, at the start of
/// every term and every minute (a reload may set a new initial token).
async fn acl_init(agent: Arc<AgentShared>, server: Arc<Server>, stop: CancellationToken) {
    loop {
        let config = agent.config();
        if config.acl.enabled {
            // A secondary datacenter's tokens come from the primary (initial_management is the
            // primary's).
            let initial = if crate::acl_replication::is_secondary(&agent) {
                None
            } else {
                config.acl.tokens.initial_management.clone()
            };
            let missing = server
                .store
                .read()
                .and_then(|txn| legate_acl::builtin::missing(&txn, initial.as_deref()))
                .map_err(|e| e.to_string());
            let written = match missing {
                Ok(ops) if ops.is_empty() => Ok(()),
                Ok(ops) => {
                    server.apply(legate_raft::command::Command::Acl(ops)).await.map(|_| ()).map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "writing the built-in ACL policy and tokens failed");
            }
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

/// Leader duty: gossip members into the catalog (serfHealth "Agent alive and reachable", the
/// `consul` service of servers; left members deregistered), at the start of every term, on
/// membership changes and every minute. Until gossip, the members are this agent alone.
/// Leader duty: the gauges Consul's leader reports each interval: what the state store holds
/// (`state.*`), the gossip pool's live servers and clients (`members.*`) and autopilot's view
/// (`autopilot.healthy`, `autopilot.failure_tolerance`).
async fn usage_metrics(agent: Arc<AgentShared>, server: Arc<Server>, stop: CancellationToken) {
    use legate_telemetry::gauge;
    loop {
        let counts =
            server.store.read().and_then(|t| Ok((legate_state::catalog::usage(&t)?, legate_state::kv::count(&t)?)));
        if let Ok((usage, keys)) = counts {
            gauge("state.nodes", Vec::new(), usage.nodes as f64);
            gauge("state.services", Vec::new(), usage.services as f64);
            gauge("state.service_instances", Vec::new(), usage.instances as f64);
            gauge("state.kv_entries", Vec::new(), keys as f64);
        }
        let alive: Vec<_> = agent.members(false).into_iter().filter(|m| m.status == member_status::ALIVE).collect();
        let servers = alive.iter().filter(|m| m.tags.get("role").map(String::as_str) == Some("consul")).count();
        gauge("members.servers", Vec::new(), servers as f64);
        gauge("members.clients", Vec::new(), (alive.len() - servers) as f64);
        if let Ok(Some(h)) = crate::autopilot::health(&agent) {
            gauge("autopilot.healthy", Vec::new(), if h.healthy { 1.0 } else { 0.0 });
            gauge("autopilot.failure_tolerance", Vec::new(), h.failure_tolerance as f64);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(legate_telemetry::INTERVAL) => {}
        }
    }
}

async fn leader_reconcile(agent: Arc<AgentShared>, server: Arc<Server>, stop: CancellationToken) {
    use legate_raft::command::Command;
    use legate_state::catalog::{Check, Register, Service};
    loop {
        {
            let _timer = legate_telemetry::Timer::start("leader.reconcile", Vec::new());
            for m in agent.members(false) {
                if m.status == member_status::LEFT {
                    // Left: deregistered with everything on it.
                    let exists = node_in_catalog(&server, &m.name);
                    if exists && m.name != agent.node_name {
                        let d = legate_state::catalog::Deregister { node: m.name.clone(), ..Default::default() };
                        if let Err(e) = server.apply(Command::Deregister(d)).await {
                            tracing::debug!(member = %m.name, error = %e, "deregistering left member failed");
                        }
                    }
                    continue;
                }
                let mut node = ae::node_record(&agent);
                if m.name != agent.node_name {
                    node.node = m.name.clone();
                    node.address = m.addr.clone();
                    node.id = m.tags.get("id").cloned().unwrap_or_default();
                    // The member's own addresses, not this server's (its agent syncs the rest).
                    for a in node.tagged_addresses.values_mut() {
                        *a = m.addr.clone();
                    }
                    node.meta.retain(|k, _| k.starts_with("consul-"));
                }
                let consul = (m.tags.get("role").map(String::as_str) == Some("consul")).then(|| {
                    let mut meta = std::collections::BTreeMap::new();
                    meta.insert("raft_version".to_string(), m.tags.get("raft_vsn").cloned().unwrap_or("3".into()));
                    meta.insert("serf_protocol_current".into(), m.protocol_cur.to_string());
                    meta.insert("serf_protocol_min".into(), m.protocol_min.to_string());
                    meta.insert("serf_protocol_max".into(), m.protocol_max.to_string());
                    meta.insert("version".into(), version::CONSUL_VERSION.to_string());
                    meta.insert("non_voter".into(), "false".into());
                    meta.insert("read_replica".into(), "false".into());
                    Service {
                        id: "consul".into(),
                        service: "consul".into(),
                        port: m.tags.get("port").and_then(|p| p.parse().ok()).unwrap_or(8300),
                        meta,
                        ..Service::default()
                    }
                });
                let serf = Check {
                    node: m.name.clone(),
                    check_id: "serfHealth".into(),
                    name: "Serf Health Status".into(),
                    status: if m.status == member_status::ALIVE { "passing" } else { "critical" }.into(),
                    output: if m.status == member_status::ALIVE {
                        "Agent alive and reachable"
                    } else {
                        "Agent not live or unreachable"
                    }
                    .into(),
                    definition: "{}".into(),
                    ..Check::default()
                };
                let reg =
                    Register { node, service: consul, checks: vec![serf], skip_node_update: m.name == agent.node_name };
                let skip = reg.skip_node_update;
                let mut reg = reg;
                let current = server.store.read().ok().and_then(|t| {
                    let checks = legate_state::catalog::node_checks(&t, &m.name).ok()?;
                    let services = legate_state::catalog::node_services(&t, &m.name).ok()?;
                    Some((checks, services))
                });
                if let Some((checks, services)) = &current {
                    let serf_ok = checks.iter().any(|c| {
                        c.check_id == "serfHealth"
                            && c.status == reg.checks[0].status
                            && c.output == reg.checks[0].output
                    });
                    let svc_ok = reg.service.as_ref().is_none_or(|want| {
                        services.iter().any(|s| s.id == "consul" && s.port == want.port && s.meta == want.meta)
                    });
                    if serf_ok && svc_ok {
                        continue;
                    }
                }
                if skip {
                    // Our own node entry is anti-entropy's; only create it if missing.
                    let exists = node_in_catalog(&server, &m.name);
                    reg.skip_node_update = exists;
                }
                if let Err(e) = server.apply(Command::Register(Box::new(reg))).await {
                    tracing::debug!(member = %m.name, error = %e, "reconcile failed");
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = agent.reconcile.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

fn node_in_catalog(server: &Server, name: &str) -> bool {
    server.store.read().ok().and_then(|t| legate_state::catalog::node(&t, name).ok().flatten()).is_some()
}
