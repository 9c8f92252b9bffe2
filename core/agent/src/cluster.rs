//! The agent's side of cluster membership: starts LAN gossip with Consul's member tags, joins
//! (`start_join`, `retry_join`), keeps the list of known servers (where client agents forward),
//! bootstraps Raft once `bootstrap_expect` servers are seen, adds joining servers as voters and
//! removes departed ones, and wakes the leader's catalog reconciliation on every change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use tokio_util::sync::CancellationToken;

use super::{AgentError, AgentShared};
use legate_gossip::{Gossip, GossipOptions, MemberInfo, STATUS_ALIVE, STATUS_LEFT};

/// Starts gossip on the serf LAN port (none when the port is -1).
pub async fn start_gossip(
    agent: &AgentShared,
    data_dir: Option<&std::path::Path>,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Option<Arc<Gossip>>, AgentError> {
    let c = agent.config();
    if c.ports.serf_lan < 0 {
        return Ok(None);
    }
    let bind = c.serf_lan.as_deref().unwrap_or(&c.bind_addr);
    let mut opts = pool_options(agent, agent.node_name(), bind, c.ports.serf_lan, "serf LAN")?;
    opts.advertise = agent.advertise();
    opts.config = c.gossip_lan.clone();
    opts.reconnect_timeout = c.reconnect_timeout.0;
    let keyring = data_dir.filter(|_| !c.disable_keyring_file).map(|d| d.join("serf").join("local.keyring"));
    start_pool(opts, keyring, shutdown, tracker).await.map(Some)
}

/// A pool's options from the config: name, bind address, Consul's member tags, the gossip key
/// and whether it keeps a network coordinate.
pub(crate) fn pool_options(
    agent: &AgentShared,
    name: &str,
    bind: &str,
    port: i32,
    what: &str,
) -> Result<GossipOptions, AgentError> {
    let c = agent.config();
    let bind_ip: std::net::IpAddr =
        bind.parse().map_err(|_| AgentError::Address(format!("invalid {what} bind address {bind:?}")))?;
    let mut opts = GossipOptions::new(name, SocketAddr::new(bind_ip, port as u16));
    opts.tags = agent.local_member().tags;
    opts.coordinates = !c.disable_coordinates;
    if let Some(key) = &c.encrypt {
        use base64::Engine;
        let k = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|e| AgentError::Address(format!("encrypt: {e}")))?;
        opts.keys = vec![k];
    }
    Ok(opts)
}

/// Starts a pool with its keyring file (none with `disable_keyring_file`); an address still
/// held by an exiting process is retried for a second, as for TCP.
pub(crate) async fn start_pool(
    mut opts: GossipOptions,
    keyring: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Arc<Gossip>, AgentError> {
    opts.keyring_path = keyring;
    if let Some(p) = opts.keyring_path.as_ref().and_then(|p| p.parent()) {
        legate_types::fs::create_private_dir(p).map_err(|source| AgentError::Io { path: p.to_path_buf(), source })?;
    }
    let mut tries = 0;
    loop {
        match Gossip::start(opts.clone(), shutdown.clone(), tracker).await {
            Err(legate_gossip::GossipError::Bind { ref source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && tries < 20 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Consul's `-join` / `-retry-join`: every address in order, again every `retry_interval`
/// until one join succeeds or `retry_max` attempts (0: no limit) are used up.
pub async fn join_loop(agent: Arc<AgentShared>, gossip: Arc<Gossip>, shutdown: CancellationToken) {
    let c = agent.config();
    let mut addrs: Vec<String> = c.start_join.clone();
    addrs.extend(c.retry_join.iter().cloned());
    retry_join(agent, gossip, addrs, c.retry_interval.0, c.retry_max, "LAN", shutdown).await
}

/// The join loop of a pool (`pool`: "LAN" or "WAN", for the logs).
pub(crate) async fn retry_join(
    agent: Arc<AgentShared>,
    gossip: Arc<Gossip>,
    addrs: Vec<String>,
    interval: Duration,
    retry_max: u32,
    pool: &str,
    shutdown: CancellationToken,
) {
    if addrs.is_empty() {
        return;
    }
    let interval = interval.max(Duration::from_millis(100));
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match gossip.join(&addrs).await {
            Ok(n) => {
                tracing::info!(joined = n, pool, "Join cluster completed");
                return;
            }
            Err(e) => tracing::warn!(attempt, pool, error = %e, "Join cluster failed, will retry"),
        }
        if retry_max > 0 && attempt >= retry_max {
            tracing::error!(attempts = attempt, pool, "agent: max join retry exhausted, exiting");
            agent.fatal(format!("max join retry exhausted after {attempt} attempts: could not join {addrs:?}"));
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The server's RPC address of a member, if it is a server (`role=consul`, `port` tag).
pub fn server_rpc_addr(m: &MemberInfo) -> Option<String> {
    if m.tags.get("role").map(String::as_str) != Some("consul") {
        return None;
    }
    let port: u16 = m.tags.get("port")?.parse().ok()?;
    Some(SocketAddr::new(m.addr, port).to_string())
}

/// Reacts to membership: known servers, Raft bootstrap and voters, leader reconcile.
pub async fn membership_loop(agent: Arc<AgentShared>, gossip: Arc<Gossip>, shutdown: CancellationToken) {
    let mut events = gossip.subscribe();
    let mut failed_since: std::collections::HashMap<String, std::time::Instant> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let members = gossip.members();
        let servers: Vec<String> =
            members.iter().filter(|m| m.status == STATUS_ALIVE).filter_map(server_rpc_addr).collect();
        agent.set_known_servers(servers);
        if let Some(server) = agent.server() {
            maybe_bootstrap(&agent, server, &members).await;
            if server.is_leader() {
                sync_voters(server, &members).await;
                cleanup_dead_servers(&agent, server, &members, &mut failed_since).await;
            }
        }
        agent.reconcile.notify_one();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            e = events.recv() => {
                if matches!(e, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// `-bootstrap-expect N`: once N alive servers with the same `expect` are seen and none of them
/// already has a Raft configuration (a server that lost its data dir joins the cluster it
/// finds), each initializes Raft with that same set (openraft refuses a second
/// initialization). A server seeing a different `expect`, or two servers with the same Raft ID,
/// refuses to bootstrap and says why.
async fn maybe_bootstrap(agent: &AgentShared, server: &Arc<legate_raft::Server>, members: &[MemberInfo]) {
    let c = agent.config();
    if c.bootstrap_expect < 2 {
        return;
    }
    if server.raft.is_initialized().await.unwrap_or(true) {
        return;
    }
    let want = c.bootstrap_expect.to_string();
    let servers: Vec<&MemberInfo> = members
        .iter()
        .filter(|m| m.status == STATUS_ALIVE && m.tags.get("role").map(String::as_str) == Some("consul"))
        .collect();
    if let Some(bad) = servers.iter().find(|m| m.tags.get("expect").is_some_and(|e| *e != want)) {
        tracing::error!(member = %bad.name, expect = ?bad.tags.get("expect"), ours = %want,
            "Member has a conflicting expect value. All nodes should expect the same number.");
        return;
    }
    if servers.len() < c.bootstrap_expect as usize {
        return;
    }
    let voters = match bootstrap_voters(&servers) {
        Ok(v) => v,
        Err(why) => {
            tracing::error!("{why}; not bootstrapping");
            return;
        }
    };
    // A server that lost its data dir and came back finds the others already in a cluster:
    // it joins theirs instead of starting one (Consul asks every server for its peers first).
    for m in &servers {
        let Some(addr) = server_rpc_addr(m).filter(|a| *a != server.rpc_addr) else { continue };
        match server.peers_of(&addr).await {
            Ok(peers) if peers.is_empty() => {}
            Ok(_) => {
                tracing::info!(server = %m.name, "Existing Raft peers reported by server, disabling bootstrap mode");
                return;
            }
            Err(e) => {
                tracing::warn!(server = %m.name, error = %e, "Failed to confirm peer status for server (will retry)");
                return;
            }
        }
    }
    match server.raft.initialize(voters.clone()).await {
        Ok(()) => tracing::info!(servers = voters.len(), "Found expected number of peers, bootstrapping Raft"),
        Err(e) => tracing::debug!(error = %e, "raft bootstrap skipped"),
    }
}

/// The voters a bootstrap starts with, by Raft ID (the first 8 bytes of the node ID): an error
/// naming both servers when two IDs collide, which would otherwise leave each leading alone.
fn bootstrap_voters(servers: &[&MemberInfo]) -> Result<BTreeMap<u64, BasicNode>, String> {
    let mut voters: BTreeMap<u64, (String, BasicNode)> = BTreeMap::new();
    for m in servers {
        let (Some(id), Some(addr)) = (m.tags.get("id"), server_rpc_addr(m)) else { continue };
        if let Some((other, _)) = voters.insert(legate_raft::raft::raft_id(id), (m.name.clone(), BasicNode { addr })) {
            return Err(format!(
                "servers {other} and {} have node IDs that begin with the same 8 bytes (their Raft ID, {id}): give one a new node-id",
                m.name
            ));
        }
    }
    Ok(voters.into_iter().map(|(id, (_, node))| (id, node)).collect())
}

/// Autopilot's dead-server cleanup (`autopilot.cleanup_dead_servers`): a server failed for
/// longer than `server_stabilization_time` is removed from Raft, if the voters left still
/// number at least `min_quorum` and a majority of them is alive.
async fn cleanup_dead_servers(
    agent: &AgentShared,
    server: &Arc<legate_raft::Server>,
    members: &[MemberInfo],
    failed_since: &mut std::collections::HashMap<String, std::time::Instant>,
) {
    let now = std::time::Instant::now();
    failed_since.retain(|name, _| members.iter().any(|m| &m.name == name && m.status == legate_gossip::STATUS_FAILED));
    for m in members.iter().filter(|m| m.status == legate_gossip::STATUS_FAILED && server_rpc_addr(m).is_some()) {
        failed_since.entry(m.name.clone()).or_insert(now);
    }
    let autopilot = match crate::autopilot::effective_config(agent) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "autopilot: reading its configuration failed");
            return;
        }
    };
    if !autopilot.cleanup_dead_servers {
        return;
    }
    let stabilization = std::time::Duration::from_nanos(autopilot.server_stabilization_time_ns);
    let metrics = server.raft.metrics().borrow().clone();
    let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
    let alive: BTreeSet<u64> = members
        .iter()
        .filter(|m| m.status == STATUS_ALIVE)
        .filter_map(|m| server_rpc_addr(m).and(m.tags.get("id")).map(|id| legate_raft::raft::raft_id(id)))
        .collect();
    let dead: BTreeSet<u64> = members
        .iter()
        .filter(|m| failed_since.get(&m.name).is_some_and(|t| now.duration_since(*t) >= stabilization))
        .filter_map(|m| m.tags.get("id").map(|id| legate_raft::raft::raft_id(id)))
        .filter(|rid| voters.contains(rid) && *rid != server.id)
        .collect();
    if dead.is_empty() {
        return;
    }
    let keep: BTreeSet<u64> = voters.difference(&dead).copied().collect();
    let healthy = keep.iter().filter(|v| alive.contains(v) || **v == server.id).count();
    if keep.len() < autopilot.min_quorum as usize || healthy * 2 <= keep.len() {
        return;
    }
    tracing::info!(removed = ?dead, "autopilot: removing dead servers from Raft");
    if let Err(e) = server.raft.change_membership(keep, false).await {
        tracing::warn!(error = %e, "autopilot: removing dead servers failed");
    }
}

/// How long a new server may take to catch up before it becomes a voter.
const ADD_VOTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Leader: every alive server is a voter; servers that left are removed.
async fn sync_voters(server: &Arc<legate_raft::Server>, members: &[MemberInfo]) {
    let metrics = server.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let current: BTreeSet<u64> = membership.voter_ids().collect();
    for m in members.iter().filter(|m| m.status == STATUS_ALIVE) {
        let (Some(id), Some(addr)) = (m.tags.get("id"), server_rpc_addr(m)) else { continue };
        let rid = legate_raft::raft::raft_id(id);
        if !current.contains(&rid) {
            tracing::info!(member = %m.name, %addr, "adding server as a Raft voter");
            // A server that cannot be reached (or refuses us: TLS) never catches up; do not
            // hold the membership loop for it.
            match tokio::time::timeout(ADD_VOTER_TIMEOUT, server.add_voter(rid, addr)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(member = %m.name, error = %e, "adding voter failed"),
                Err(_) => {
                    tracing::warn!(member = %m.name, "adding voter failed: it did not catch up within {ADD_VOTER_TIMEOUT:?}")
                }
            }
        }
    }
    let left: BTreeSet<u64> = members
        .iter()
        .filter(|m| m.status == STATUS_LEFT && server_rpc_addr(m).is_some())
        .filter_map(|m| m.tags.get("id").map(|id| legate_raft::raft::raft_id(id)))
        .filter(|rid| current.contains(rid) && *rid != server.id)
        .collect();
    if !left.is_empty() {
        let keep: BTreeSet<u64> = current.difference(&left).copied().collect();
        tracing::info!(removed = ?left, "removing departed servers from Raft");
        if let Err(e) = server.raft.change_membership(keep, false).await {
            tracing::warn!(error = %e, "removing servers failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, id: &str, ip: [u8; 4]) -> MemberInfo {
        let tags = [("role", "consul"), ("id", id), ("port", "8300")].map(|(k, v)| (k.to_string(), v.to_string()));
        MemberInfo { name: name.into(), addr: ip.into(), port: 8301, tags: tags.into(), status: STATUS_ALIVE }
    }

    #[test]
    fn bootstrap_voters_are_keyed_by_raft_id_and_a_collision_is_refused() {
        let a = server("s1", "11111111-2222-4000-8000-000000000001", [10, 0, 0, 1]);
        let b = server("s2", "33333333-4444-4000-8000-000000000001", [10, 0, 0, 2]);
        let voters = bootstrap_voters(&[&a, &b]).unwrap();
        assert_eq!(voters.len(), 2);
        assert_eq!(voters[&legate_raft::raft::raft_id("33333333-4444-4000-8000-000000000001")].addr, "10.0.0.2:8300");
        // Differs only after the first 8 bytes: the same Raft ID.
        let c = server("s3", "11111111-2222-4000-8000-000000000002", [10, 0, 0, 3]);
        let err = bootstrap_voters(&[&a, &b, &c]).unwrap_err();
        assert!(err.contains("s1") && err.contains("s3") && err.contains("same 8 bytes"), "{err}");
    }
}
