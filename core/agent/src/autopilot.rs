//! Autopilot as operators see it: the effective configuration (the one set through the API
//! and replicated, else the config file's `autopilot` block) and the servers' health as the
//! leader measures it: gossip status, time since each last answered the leader's
//! AppendEntries, and how far its log trails.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use legate_state::autopilot::AutopilotConfig;
use legate_state::StoreError;

use crate::cluster::server_rpc_addr;
use crate::AgentShared;

/// The configuration autopilot runs with now.
pub fn effective_config(agent: &AgentShared) -> Result<AutopilotConfig, StoreError> {
    if let Some(server) = agent.server() {
        if let Some(stored) = legate_state::autopilot::get(&server.store.read()?)? {
            return Ok(stored);
        }
    }
    let a = &agent.config().autopilot;
    Ok(AutopilotConfig {
        cleanup_dead_servers: a.cleanup_dead_servers,
        last_contact_threshold_ns: a.last_contact_threshold.0.as_nanos() as u64,
        max_trailing_logs: a.max_trailing_logs,
        min_quorum: a.min_quorum,
        server_stabilization_time_ns: a.server_stabilization_time.0.as_nanos() as u64,
        redundancy_zone_tag: a.redundancy_zone_tag.clone().unwrap_or_default(),
        disable_upgrade_migration: a.disable_upgrade_migration,
        upgrade_version_tag: a.upgrade_version_tag.clone().unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    })
}

/// One server's health.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerHealth {
    pub id: String,
    pub name: String,
    pub address: String,
    pub serf_status: String,
    pub version: String,
    pub leader: bool,
    /// None: it never answered this leader.
    pub last_contact: Option<Duration>,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub voter: bool,
    pub stable_since: SystemTime,
}

/// The cluster's health: every server, whether all are healthy, and how many voters may fail
/// with a quorum left.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub healthy: bool,
    pub failure_tolerance: usize,
    pub servers: Vec<ServerHealth>,
}

/// Since when each server has had its current health (autopilot's `StableSince`).
#[derive(Default)]
pub struct Stability(Mutex<HashMap<String, (bool, SystemTime)>>);

impl Stability {
    fn since(&self, id: &str, healthy: bool) -> SystemTime {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = m.entry(id.to_string()).or_insert((healthy, SystemTime::now()));
        if entry.0 != healthy {
            *entry = (healthy, SystemTime::now());
        }
        entry.1
    }
}

/// The servers' health, measured on the leader (None on other agents).
pub fn health(agent: &AgentShared) -> Result<Option<Health>, StoreError> {
    let Some(server) = agent.server().filter(|s| s.is_leader()) else { return Ok(None) };
    let config = effective_config(agent)?;
    let threshold = Duration::from_nanos(config.last_contact_threshold_ns);
    let m = server.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let leader_index = m.last_log_index.unwrap_or(0);
    let matched: HashMap<u64, (u64, u64)> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, log)| (*id, log.map_or((0, 0), |l| (l.leader_id.term, l.index)))).collect())
        .unwrap_or_default();
    let members: Vec<_> = agent.gossip.get().map(|g| g.members()).unwrap_or_default();
    let mut servers = Vec::new();
    for (raft_id, node) in membership.nodes() {
        let member = members.iter().find(|mb| server_rpc_addr(mb).as_deref() == Some(node.addr.as_str()));
        let (name, id, status, version) = match member {
            Some(mb) => (
                mb.name.clone(),
                mb.tags.get("id").cloned().unwrap_or_default(),
                legate_gossip::status_name(mb.status).to_string(),
                mb.tags.get("build").and_then(|b| b.split(':').next()).unwrap_or_default().to_string(),
            ),
            None if *raft_id == server.id => (
                agent.node_name().to_string(),
                agent.node_id().to_string(),
                "alive".to_string(),
                legate_types::version::CONSUL_VERSION.to_string(),
            ),
            None => (String::new(), raft_id.to_string(), "none".to_string(), String::new()),
        };
        let is_leader = *raft_id == server.id;
        let (last_contact, last_term, last_index) = if is_leader {
            (Some(Duration::ZERO), m.current_term, leader_index)
        } else {
            let (term, index) = matched.get(raft_id).copied().unwrap_or((0, 0));
            (server.contacts.since(*raft_id), term, index)
        };
        let healthy = status == "alive"
            && last_contact.is_some_and(|c| c <= threshold)
            && last_term == m.current_term
            && last_index.saturating_add(config.max_trailing_logs) >= leader_index;
        servers.push(ServerHealth {
            stable_since: agent.autopilot.since(&id, healthy),
            id,
            name,
            address: node.addr.clone(),
            serf_status: status,
            version,
            leader: is_leader,
            last_contact,
            last_term,
            last_index,
            healthy,
            voter: voters.contains(raft_id),
        });
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
    let quorum = voters.len() / 2 + 1;
    Ok(Some(Health {
        healthy: servers.iter().all(|s| s.healthy),
        failure_tolerance: healthy_voters.saturating_sub(quorum),
        servers,
    }))
}
