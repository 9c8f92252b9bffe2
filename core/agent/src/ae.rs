//! Anti-entropy: pushes the local state to the catalog through the servers. A partial sync
//! runs on every local change; a full sync (compare with the catalog, repair drift, delete what
//! this agent does not know) runs at start and every `ae_interval` scaled by cluster size, with
//! jitter. Best effort: failures are logged and retried.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::local::{LocalCheck, LocalService};
use super::{AgentError, AgentShared};
use legate_raft::command::{Command, CommandResponse};
use legate_state::catalog::{self, Deregister, Node, Register};

/// Consul's scale factor: 1 minute up to 128 nodes, +1 minute per doubling beyond.
pub fn full_sync_interval(base: Duration, nodes: usize) -> Duration {
    let mut factor = 1u32;
    let mut limit = 128usize;
    while nodes > limit {
        factor += 1;
        limit *= 2;
    }
    base * factor
}

const RETRY: Duration = Duration::from_secs(15);

pub async fn run(agent: Arc<AgentShared>, shutdown: CancellationToken) {
    let base = Duration::from_secs(60);
    let mut full_due = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        let ok = if now >= full_due {
            let ok = full_sync(&agent).await;
            if ok {
                agent.catalog_synced.send_if_modified(|synced| !std::mem::replace(synced, true));
            }
            let members = agent.members(false).len();
            let interval = full_sync_interval(base, members);
            let jitter = rand::thread_rng().gen_range(Duration::ZERO..interval / 16);
            full_due = now + if ok { interval + jitter } else { RETRY };
            ok
        } else {
            partial_sync(&agent).await
        };
        let retry = if ok { Duration::from_secs(3600) } else { Duration::from_secs(1) };
        // Deferred output-only updates come due on their own.
        let deferred = agent
            .local
            .checks()
            .iter()
            .filter_map(|c| c.defer_until)
            .min()
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = agent.local.changed.notified() => {}
            _ = tokio::time::sleep_until(full_due) => {}
            _ = tokio::time::sleep(retry.min(deferred)) => {}
        }
    }
}

/// This agent's node as the catalog should hold it.
pub fn node_record(agent: &AgentShared) -> Node {
    let c = agent.config();
    let addr = agent.advertise().to_string();
    let mut meta = c.node_meta.clone();
    meta.insert("consul-network-segment".into(), String::new());
    meta.insert("consul-version".into(), legate_types::version::CONSUL_VERSION.into());
    let mut tagged = std::collections::BTreeMap::new();
    let family = if agent.advertise().is_ipv4() { "ipv4" } else { "ipv6" };
    tagged.insert("lan".into(), addr.clone());
    tagged.insert(format!("lan_{family}"), addr.clone());
    tagged.insert("wan".into(), addr.clone());
    tagged.insert(format!("wan_{family}"), addr.clone());
    Node {
        id: agent.node_id().to_string(),
        node: agent.node_name().to_string(),
        address: addr,
        datacenter: c.datacenter.clone(),
        tagged_addresses: tagged,
        meta,
        create_index: 0,
        modify_index: 0,
    }
}

async fn write(agent: &AgentShared, cmd: Command) -> Result<(), AgentError> {
    match agent.catalog_apply(cmd).await? {
        CommandResponse::Catalog(Err(e)) => Err(AgentError::Refused(e.0)),
        _ => Ok(()),
    }
}

/// Pushes the pending changes now, for an API call that answers once the catalog has them
/// (Consul's `syncChanges`); a failure is logged and left to the anti-entropy loop.
pub async fn sync_changes(agent: &AgentShared) {
    if !partial_sync(agent).await {
        tracing::warn!("agent: failed to sync changes; anti-entropy will retry");
    }
}

/// Pushes every out-of-sync record. Returns false at the first failure (retry soon: the
/// servers are likely unreachable, and an API call waiting on this should not wait for each
/// record in turn). One sync at a time: the API's pushes and the anti-entropy loop's would
/// otherwise read the same pending records and could apply them out of order.
pub async fn partial_sync(agent: &AgentShared) -> bool {
    let _one = agent.sync_lock.lock().await;
    partial_sync_locked(agent).await
}

async fn partial_sync_locked(agent: &AgentShared) -> bool {
    let pending = agent.local.pending();
    let node = node_record(agent);
    for (id, _token) in &pending.deleted_services {
        let d = Deregister { node: node.node.clone(), service_id: Some(id.clone()), check_id: None };
        match write(agent, Command::Deregister(d)).await {
            Ok(()) => agent.local.mark_service_deleted(id),
            Err(e) => {
                tracing::warn!(service = %id, error = %e, "anti-entropy: deregistering service failed");
                return false;
            }
        }
    }
    for (id, _token) in &pending.deleted_checks {
        let d = Deregister { node: node.node.clone(), service_id: None, check_id: Some(id.clone()) };
        match write(agent, Command::Deregister(d)).await {
            Ok(()) => agent.local.mark_check_deleted(id),
            Err(e) => {
                tracing::warn!(check = %id, error = %e, "anti-entropy: deregistering check failed");
                return false;
            }
        }
    }
    let mut checks: Vec<LocalCheck> = pending.checks;
    for s in &pending.services {
        let (mine, rest): (Vec<LocalCheck>, Vec<LocalCheck>) =
            checks.into_iter().partition(|c| c.check.service_id == s.service.id);
        checks = rest;
        if !register(agent, &node, Some(s), &mine).await {
            return false;
        }
    }
    // Node-level checks and checks of services already in sync.
    checks.is_empty() || register(agent, &node, None, &checks).await
}

async fn register(agent: &AgentShared, node: &Node, s: Option<&LocalService>, checks: &[LocalCheck]) -> bool {
    let req = Register {
        node: node.clone(),
        service: s.map(|s| s.service.clone()),
        checks: checks.iter().map(|c| c.check.clone()).collect(),
        skip_node_update: false,
    };
    match write(agent, Command::Register(Box::new(req))).await {
        Ok(()) => {
            if let Some(s) = s {
                agent.local.mark_service_synced(s);
            }
            for c in checks {
                agent.local.mark_check_synced(c);
            }
            true
        }
        Err(e) => {
            tracing::warn!(service = ?s.map(|s| &s.service.id), error = %e, "anti-entropy: registration failed");
            false
        }
    }
}

/// Compares the catalog's view of this node with the local state, marks drift, deletes what
/// this agent does not know (but not `serfHealth` or the `consul` service, owned by servers),
/// then pushes.
pub async fn full_sync(agent: &AgentShared) -> bool {
    let _one = agent.sync_lock.lock().await;
    let node = node_record(agent);
    if let Some(server) = agent.server() {
        let read = (|| -> Result<_, legate_state::StoreError> {
            let txn = server.store.read()?;
            Ok((
                catalog::node(&txn, &node.node)?,
                catalog::node_services(&txn, &node.node)?,
                catalog::node_checks(&txn, &node.node)?,
            ))
        })();
        let (cat_node, cat_services, cat_checks) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy: reading the catalog failed");
                return false;
            }
        };
        let node_ok = cat_node.as_ref().is_some_and(|n| {
            n.id == node.id
                && n.address == node.address
                && n.tagged_addresses == node.tagged_addresses
                && n.meta == node.meta
                && n.datacenter == node.datacenter
        });
        if !node_ok {
            if let Err(e) =
                write(agent, Command::Register(Box::new(Register { node: node.clone(), ..Register::default() }))).await
            {
                tracing::warn!(error = %e, "anti-entropy: registering the node failed");
                return false;
            }
        }
        for cs in &cat_services {
            if cs.id == "consul" {
                continue;
            }
            match agent.local.service(&cs.id) {
                None => {
                    let d = Deregister { node: node.node.clone(), service_id: Some(cs.id.clone()), check_id: None };
                    if let Err(e) = write(agent, Command::Deregister(d)).await {
                        tracing::warn!(service = %cs.id, error = %e, "anti-entropy: removing unknown service failed");
                    }
                }
                Some(local) => {
                    let mut want = local.service.clone();
                    if want.enable_tag_override && want.tags != cs.tags {
                        // Tags changed in the catalog win.
                        agent.local.override_tags(&cs.id, cs.tags.clone());
                        want.tags = cs.tags.clone();
                    }
                    want.create_index = cs.create_index;
                    want.modify_index = cs.modify_index;
                    if &want != cs {
                        agent.local.mark_service_dirty(&cs.id);
                    }
                }
            }
        }
        for local in agent.local.services() {
            if !cat_services.iter().any(|c| c.id == local.service.id) {
                agent.local.mark_service_dirty(&local.service.id);
            }
        }
        for cc in &cat_checks {
            if cc.check_id == "serfHealth" {
                continue;
            }
            match agent.local.check(&cc.check_id) {
                None => {
                    let d =
                        Deregister { node: node.node.clone(), service_id: None, check_id: Some(cc.check_id.clone()) };
                    if let Err(e) = write(agent, Command::Deregister(d)).await {
                        tracing::warn!(check = %cc.check_id, error = %e, "anti-entropy: removing unknown check failed");
                    }
                }
                Some(local) => {
                    let l = &local.check;
                    let same = l.status == cc.status
                        && l.name == cc.name
                        && l.notes == cc.notes
                        && l.service_id == cc.service_id
                        && l.kind == cc.kind
                        && l.definition == cc.definition
                        && (l.output == cc.output || local.defer_until.is_some());
                    if !same {
                        agent.local.mark_check_dirty(&cc.check_id);
                    }
                }
            }
        }
        for local in agent.local.checks() {
            if !cat_checks.iter().any(|c| c.check_id == local.check.check_id) {
                agent.local.mark_check_dirty(&local.check.check_id);
            }
        }
    } else if let Err(e) =
        write(agent, Command::Register(Box::new(Register { node: node.clone(), ..Register::default() }))).await
    {
        tracing::debug!(error = %e, "anti-entropy: node registration failed");
        return false;
    }
    partial_sync_locked(agent).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_scales_with_cluster_size() {
        let m = Duration::from_secs(60);
        assert_eq!(full_sync_interval(m, 1), m);
        assert_eq!(full_sync_interval(m, 128), m);
        assert_eq!(full_sync_interval(m, 129), m * 2);
        assert_eq!(full_sync_interval(m, 513), m * 4);
    }
}
