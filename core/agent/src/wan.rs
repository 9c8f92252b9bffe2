//! The WAN gossip pool: the servers of every datacenter, named `<node>.<dc>`, on the serf WAN
//! port (8302), with the LAN pool's tags and keys (its keyring file is `serf/remote.keyring`).
//! It tells a server where the other datacenters' servers are (`?dc=` forwarding,
//! `/v1/catalog/datacenters`, `members -wan`) and finds their failures as the LAN pool does.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::cluster::{pool_options, retry_join, start_pool};
use super::{AgentError, AgentShared};
use legate_gossip::{Gossip, MemberInfo, STATUS_ALIVE};

/// Starts the WAN pool on servers (none on client agents or with `ports.serf_wan = -1`).
pub async fn start(
    agent: &AgentShared,
    data_dir: Option<&std::path::Path>,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Option<Arc<Gossip>>, AgentError> {
    let c = agent.config();
    if !c.server || c.ports.serf_wan < 0 {
        return Ok(None);
    }
    let name = format!("{}.{}", agent.node_name(), c.datacenter);
    let bind = c.serf_wan.as_deref().unwrap_or(&c.bind_addr);
    let mut opts = pool_options(agent, &name, bind, c.ports.serf_wan, "serf WAN")?;
    opts.advertise = match c.advertise_addr_wan.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => a.parse().map_err(|_| AgentError::Address(format!("invalid advertise_addr_wan {a:?}")))?,
        None => agent.advertise(),
    };
    opts.config = c.gossip_wan.clone();
    opts.reconnect_timeout = c.reconnect_timeout_wan.0;
    let keyring = data_dir.filter(|_| !c.disable_keyring_file).map(|d| d.join("serf").join("remote.keyring"));
    start_pool(opts, keyring, shutdown, tracker).await.map(Some)
}

/// `-join-wan` / `-retry-join-wan`, with `retry_interval_wan` and `retry_max_wan`.
pub async fn join_loop(agent: Arc<AgentShared>, gossip: Arc<Gossip>, shutdown: CancellationToken) {
    let c = agent.config();
    let mut addrs: Vec<String> = c.start_join_wan.clone();
    addrs.extend(c.retry_join_wan.iter().cloned());
    let addrs = addrs.into_iter().map(|a| with_default_port(&a, legate_gossip::DEFAULT_WAN_PORT)).collect();
    retry_join(agent.clone(), gossip, addrs, c.retry_interval_wan.0, c.retry_max_wan, "WAN", shutdown).await
}

/// `addr` with `port` unless it names one.
pub fn with_default_port(addr: &str, port: u16) -> String {
    if addr.parse::<SocketAddr>().is_ok() || (!addr.starts_with('[') && addr.matches(':').count() == 1) {
        return addr.to_string();
    }
    if addr.starts_with('[') && addr.contains("]:") {
        return addr.to_string();
    }
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A WAN member's datacenter (its `dc` tag).
fn dc_of(m: &MemberInfo) -> Option<&str> {
    m.tags.get("dc").map(String::as_str)
}

/// The RPC addresses of `dc`'s alive servers in the WAN pool.
pub fn servers_in(gossip: &Gossip, dc: &str) -> Vec<String> {
    gossip
        .members()
        .iter()
        .filter(|m| m.status == STATUS_ALIVE && dc_of(m) == Some(dc))
        .filter_map(super::cluster::server_rpc_addr)
        .collect()
}

/// Every datacenter the WAN pool knows (any member, alive or not), and ours, sorted.
pub fn datacenters(agent: &AgentShared) -> Vec<String> {
    let mut dcs: BTreeSet<String> = BTreeSet::new();
    dcs.insert(agent.config().datacenter.clone());
    if let Some(g) = agent.gossip_wan.get() {
        dcs.extend(g.members().iter().filter_map(|m| dc_of(m).map(str::to_string)));
    }
    dcs.into_iter().collect()
}

/// Every known datacenter, nearest first: by the estimated round trip from this server's WAN
/// coordinate to the nearest of that datacenter's servers (ours is 0); those without a
/// coordinate last, by name.
pub fn datacenters_by_distance(agent: &AgentShared) -> Vec<String> {
    let ours = agent.config().datacenter.clone();
    let mut dcs = datacenters(agent);
    dcs.sort_by_key(|d| *d != ours);
    let Some(g) = agent.gossip_wan.get() else { return dcs };
    let Some(me) = g.coordinate() else { return dcs };
    let peers = g.peer_coordinates();
    let members = g.members();
    let distance = |dc: &str| -> Option<f64> {
        if dc == ours {
            return Some(0.0);
        }
        members
            .iter()
            .filter(|m| dc_of(m) == Some(dc))
            .filter_map(|m| peers.iter().find(|(n, _)| *n == m.name).map(|(_, c)| c))
            .filter(|c| c.is_compatible_with(&me))
            .map(|c| me.distance_to(c).as_secs_f64())
            .reduce(f64::min)
    };
    dcs.sort_by(|a, b| {
        let (da, db) = (distance(a).unwrap_or(f64::INFINITY), distance(b).unwrap_or(f64::INFINITY));
        da.total_cmp(&db).then_with(|| a.cmp(b))
    });
    dcs
}

/// `translate_wan_addrs`: in an answer from another datacenter, every node's `Address` becomes
/// its `wan` tagged address, and every service's address its `wan` tagged address, where they
/// have one (Consul translates for answers that cross datacenters).
pub fn translate_addresses(v: &mut serde_json::Value) {
    use serde_json::Value as Json;
    match v {
        Json::Array(a) => a.iter_mut().for_each(translate_addresses),
        Json::Object(m) => {
            let node_wan = m.get("TaggedAddresses").and_then(|t| t.get("wan")).cloned();
            match node_wan {
                // A node's tagged addresses are strings...
                Some(Json::String(wan)) if !wan.is_empty() && m.contains_key("Address") => {
                    m.insert("Address".into(), Json::String(wan));
                }
                // ...a service's are {Address, Port}.
                Some(Json::Object(w)) if m.contains_key("Address") => {
                    if let Some(addr) = w.get("Address").and_then(Json::as_str).filter(|a| !a.is_empty()) {
                        m.insert("Address".into(), Json::String(addr.to_string()));
                    }
                }
                _ => {}
            }
            let service_wan = m
                .get("ServiceTaggedAddresses")
                .and_then(|t| t.get("wan"))
                .and_then(|w| w.get("Address"))
                .and_then(Json::as_str)
                .filter(|a| !a.is_empty())
                .map(str::to_string);
            if let (Some(addr), true) = (service_wan, m.contains_key("ServiceAddress")) {
                m.insert("ServiceAddress".into(), Json::String(addr));
            }
            m.values_mut().for_each(translate_addresses);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_addresses_replace_the_lan_ones() {
        let mut v = serde_json::json!([{
            "Node": {"Node": "n", "Address": "10.0.0.1", "TaggedAddresses": {"lan": "10.0.0.1", "wan": "192.0.2.1"}},
            "Service": {"Address": "10.0.0.2", "TaggedAddresses": {"wan": {"Address": "192.0.2.2", "Port": 80}}},
        }, {
            "Node": "m", "Address": "10.0.0.3", "TaggedAddresses": {"lan": "10.0.0.3"},
            "ServiceAddress": "10.0.0.4", "ServiceTaggedAddresses": {"wan": {"Address": "192.0.2.4", "Port": 1}},
        }]);
        translate_addresses(&mut v);
        assert_eq!(v[0]["Node"]["Address"], "192.0.2.1");
        assert_eq!(v[0]["Service"]["Address"], "192.0.2.2");
        assert_eq!(v[1]["Address"], "10.0.0.3", "no wan address: unchanged");
        assert_eq!(v[1]["ServiceAddress"], "192.0.2.4");
    }

    #[test]
    fn join_addresses_get_the_wan_port() {
        assert_eq!(with_default_port("10.0.0.1", 8302), "10.0.0.1:8302");
        assert_eq!(with_default_port("10.0.0.1:9302", 8302), "10.0.0.1:9302");
        assert_eq!(with_default_port("host.example", 8302), "host.example:8302");
        assert_eq!(with_default_port("::1", 8302), "[::1]:8302");
        assert_eq!(with_default_port("[::1]:7", 8302), "[::1]:7");
    }
}
