//! Where DNS answers come from: the local state store on a server (stale reads, as Consul's
//! `allow_stale`), or a server's HTTP handlers over the RPC forwarding path (client agents;
//! servers when `allow_stale` is off or the local copy is older than `max_stale`). Both give
//! the same [`Instance`] / [`NodeInfo`] view, with each instance's health already aggregated.

use crate::error::DnsError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use legate_agent::AgentShared;
use legate_raft::rpc::HttpCall;
use legate_state::catalog;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Passing,
    Warning,
    Critical,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub node: Arc<NodeInfo>,
    pub service: String,
    pub service_id: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub tagged_addresses: BTreeMap<String, String>,
    pub weights: catalog::Weights,
    /// Worst status of the node's own checks and the instance's checks.
    pub health: Health,
}

/// Service addresses known to the catalog, for PTR answers.
#[derive(Clone, Debug)]
pub struct ServiceAddr {
    pub service: String,
    pub address: String,
}

fn health_of<'a>(statuses: impl Iterator<Item = &'a str>) -> Health {
    let mut h = Health::Passing;
    for s in statuses {
        let this = match s {
            "critical" => Health::Critical,
            "warning" => Health::Warning,
            _ => Health::Passing,
        };
        h = h.max(this);
    }
    h
}

fn node_info(n: &catalog::Node) -> NodeInfo {
    NodeInfo {
        name: n.node.clone(),
        address: n.address.clone(),
        datacenter: n.datacenter.clone(),
        tagged_addresses: n.tagged_addresses.clone(),
        meta: n.meta.clone(),
    }
}

pub enum Source<'a> {
    Local(&'a legate_state::Store, &'a CatalogCache),
    /// A server's HTTP handlers: of this datacenter (None), or of another one (`?dc=`).
    Remote(&'a AgentShared, Option<String>),
}

/// The catalog as DNS reads it, rebuilt only after the catalog changed: a query costs a
/// hash lookup instead of a scan of every service (the store notifies catalog writes after
/// they commit; the cache marks the notification seen before it reads, so a write racing a
/// rebuild triggers another).
#[derive(Default)]
pub struct CatalogCache {
    inner: std::sync::Mutex<Option<(tokio::sync::watch::Receiver<u64>, Arc<CatalogView>)>>,
}

#[derive(Default)]
pub struct CatalogView {
    /// Instances by lowercased service name.
    services: HashMap<String, Arc<Vec<Instance>>>,
    nodes: Vec<NodeInfo>,
    /// Node position by name, and by lowercased name.
    node_index: HashMap<String, usize>,
    service_addrs: Vec<ServiceAddr>,
}

impl CatalogCache {
    pub fn view(&self, store: &legate_state::Store) -> Result<Arc<CatalogView>, DnsError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rx, view)) = guard.as_ref() {
            if !rx.has_changed().unwrap_or(true) {
                return Ok(view.clone());
            }
        }
        let mut rx = match guard.take() {
            Some((rx, _)) => rx,
            None => store.watch.subscribe(legate_state::watch::Table::Catalog),
        };
        rx.borrow_and_update();
        let view = Arc::new(CatalogView::build(store)?);
        *guard = Some((rx, view.clone()));
        Ok(view)
    }
}

impl CatalogView {
    fn build(store: &legate_state::Store) -> Result<CatalogView, legate_state::StoreError> {
        let txn = store.read()?;
        let mut view = CatalogView::default();
        let mut infos: HashMap<String, Arc<NodeInfo>> = HashMap::new();
        for n in catalog::nodes(&txn)? {
            let info = node_info(&n);
            view.node_index.entry(info.name.to_ascii_lowercase()).or_insert(view.nodes.len());
            view.node_index.insert(info.name.clone(), view.nodes.len());
            infos.insert(info.name.clone(), Arc::new(info.clone()));
            view.nodes.push(info);
        }
        let mut checks: HashMap<String, Vec<catalog::Check>> = HashMap::new();
        for c in catalog::all_checks(&txn)? {
            checks.entry(c.node.clone()).or_default().push(c);
        }
        let mut services: HashMap<String, Vec<Instance>> = HashMap::new();
        for (node, svc) in catalog::all_services(&txn)? {
            let Some(info) = infos.get(&node) else { continue };
            if !svc.address.is_empty() {
                view.service_addrs.push(ServiceAddr { service: svc.service.clone(), address: svc.address.clone() });
            }
            let node_checks = checks.get(&node).map(Vec::as_slice).unwrap_or_default();
            services.entry(svc.service.to_ascii_lowercase()).or_default().push(instance(
                info.clone(),
                svc,
                node_checks,
            ));
        }
        view.services = services.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Ok(view)
    }
}

fn instance(node: Arc<NodeInfo>, svc: catalog::Service, checks: &[catalog::Check]) -> Instance {
    let health = health_of(
        checks.iter().filter(|c| c.service_id.is_empty() || c.service_id == svc.id).map(|c| c.status.as_str()),
    );
    Instance {
        node,
        service: svc.service,
        service_id: svc.id,
        address: svc.address,
        port: svc.port,
        tags: svc.tags,
        tagged_addresses: svc.tagged_addresses.into_iter().map(|(k, v)| (k, v.address)).collect(),
        weights: svc.weights,
        health,
    }
}

impl<'a> Source<'a> {
    /// The source for one query under the running config.
    pub fn for_agent(agent: &'a AgentShared, cfg: &legate_config::Config, cache: &'a CatalogCache) -> Source<'a> {
        match agent.server() {
            Some(server) => {
                // A stale read with no known leader is still served locally (there is no one
                // fresher to ask).
                let fresh_enough = server.is_leader()
                    || (cfg.dns_config.allow_stale && {
                        let (known, last_ms) = server.leader_contact();
                        !known || u128::from(last_ms) <= cfg.dns_config.max_stale.0.as_millis()
                    });
                if fresh_enough {
                    Source::Local(&server.store, cache)
                } else {
                    Source::Remote(agent, None)
                }
            }
            None => Source::Remote(agent, None),
        }
    }

    /// The source of another datacenter's catalog (answered by one of its servers).
    pub fn for_datacenter(agent: &'a AgentShared, dc: &str) -> Source<'a> {
        Source::Remote(agent, Some(dc.to_string()))
    }

    /// Instances of the service `name` (case-insensitive, as Consul's catalog).
    pub async fn service(&self, name: &str, stale: bool) -> Result<Arc<Vec<Instance>>, DnsError> {
        match self {
            Source::Local(store, cache) => {
                Ok(cache.view(store)?.services.get(&name.to_ascii_lowercase()).cloned().unwrap_or_default())
            }
            Source::Remote(agent, dc) => {
                let path = format!("/v1/health/service/{name}");
                let entries: Vec<RemoteEntry> = call(agent, dc.as_deref(), &path, stale).await?.unwrap_or_default();
                Ok(Arc::new(entries.into_iter().map(instance_of).collect()))
            }
        }
    }

    /// What the prepared query `name` answers (run by a server of this datacenter, or of the
    /// one the source is for); None when no query has that name.
    pub async fn query(&self, name: &str, stale: bool) -> Result<Option<QueryAnswer>, DnsError> {
        let (agent, dc) = match self {
            Source::Remote(agent, dc) => (*agent, dc.as_deref()),
            Source::Local(..) => {
                return Err(DnsError::Status {
                    status: 500,
                    path: name.into(),
                    body: "prepared queries run on a server".into(),
                })
            }
        };
        let path = format!("/v1/query/{name}/execute");
        let answer: RemoteQueryAnswer = match call(agent, dc, &path, stale).await {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(None),
            Err(DnsError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(QueryAnswer {
            service: answer.service,
            datacenter: answer.datacenter,
            ttl: answer.dns.ttl,
            instances: answer.nodes.into_iter().map(instance_of).collect(),
        }))
    }

    /// A node by name (case-insensitive).
    pub async fn node(&self, name: &str, stale: bool) -> Result<Option<NodeInfo>, DnsError> {
        match self {
            Source::Local(store, cache) => {
                let view = cache.view(store)?;
                let i = view.node_index.get(name).or_else(|| view.node_index.get(&name.to_ascii_lowercase()));
                Ok(i.map(|&i| view.nodes[i].clone()))
            }
            Source::Remote(..) => {
                let nodes = self.nodes(stale).await?;
                Ok(nodes.into_iter().find(|n| n.name.eq_ignore_ascii_case(name)))
            }
        }
    }

    pub async fn nodes(&self, stale: bool) -> Result<Vec<NodeInfo>, DnsError> {
        match self {
            Source::Local(store, cache) => Ok(cache.view(store)?.nodes.clone()),
            Source::Remote(agent, dc) => {
                let nodes: Vec<RemoteNode> =
                    call(agent, dc.as_deref(), "/v1/catalog/nodes", stale).await?.unwrap_or_default();
                Ok(nodes.into_iter().map(Into::into).collect())
            }
        }
    }

    /// Every service instance's explicit address (PTR for service addresses).
    pub async fn service_addrs(&self, stale: bool) -> Result<Vec<ServiceAddr>, DnsError> {
        match self {
            Source::Local(store, cache) => Ok(cache.view(store)?.service_addrs.clone()),
            Source::Remote(agent, dc) => {
                let names: BTreeMap<String, serde_json::Value> =
                    call(agent, dc.as_deref(), "/v1/catalog/services", stale).await?.unwrap_or_default();
                let mut out = Vec::new();
                for name in names.keys() {
                    let path = format!("/v1/catalog/service/{name}");
                    let rows: Vec<RemoteCatalogService> =
                        call(agent, dc.as_deref(), &path, stale).await?.unwrap_or_default();
                    out.extend(
                        rows.into_iter()
                            .filter(|r| !r.service_address.is_empty())
                            .map(|r| ServiceAddr { service: r.service_name, address: r.service_address }),
                    );
                }
                Ok(out)
            }
        }
    }
}

/// A GET through the agent's forwarding path (paths travel decoded, as the HTTP layer forwards
/// them): to a server from a client agent, to the leader
/// from a server whose copy is not fresh enough, to a server of datacenter `dc` (a client
/// agent's server passes it on). `None` for a JSON `null` body.
async fn call<T: for<'de> Deserialize<'de>>(
    agent: &AgentShared,
    dc: Option<&str>,
    path: &str,
    stale: bool,
) -> Result<Option<T>, DnsError> {
    let mut query = Vec::new();
    if stale {
        query.push(("stale".to_string(), String::new()));
    }
    if let Some(dc) = dc {
        query.push(("dc".to_string(), dc.to_string()));
    }
    let call = HttpCall { method: "GET".into(), path: path.to_string(), query, token: None, body: Vec::new() };
    let reply = match (agent.server(), dc) {
        (Some(_), Some(dc)) => {
            agent.forward_http_dc(dc, call).await.ok_or_else(|| DnsError::NoDatacenter(dc.to_string()))?
        }
        (Some(server), None) => server.forward_to_leader(call, std::time::Duration::ZERO).await,
        (None, _) => agent.forward_http(call).await,
    }?;
    if reply.status != 200 {
        let body = String::from_utf8_lossy(&reply.body).trim().to_string();
        return Err(DnsError::Status { status: reply.status, path: path.to_string(), body });
    }
    let decode = |source| DnsError::Decode { path: path.to_string(), source };
    let mut v: serde_json::Value = serde_json::from_slice(&reply.body).map_err(decode)?;
    // Another datacenter's addresses as seen from here (`translate_wan_addrs`).
    if dc.is_some() && agent.config().translate_wan_addrs {
        legate_agent::wan::translate_addresses(&mut v);
    }
    serde_json::from_value(v).map_err(decode)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteNode {
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

impl From<RemoteNode> for NodeInfo {
    fn from(n: RemoteNode) -> NodeInfo {
        NodeInfo {
            name: n.node,
            address: n.address,
            datacenter: n.datacenter,
            tagged_addresses: n.tagged_addresses.unwrap_or_default(),
            meta: n.meta.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteAddress {
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteWeights {
    passing: i32,
    warning: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteService {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, RemoteAddress>>,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    weights: Option<RemoteWeights>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteCheck {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteEntry {
    node: RemoteNode,
    service: RemoteService,
    #[serde(default)]
    checks: Vec<RemoteCheck>,
}

/// A prepared query's answer, as DNS uses it.
#[derive(Clone, Debug)]
pub struct QueryAnswer {
    pub service: String,
    pub datacenter: String,
    /// The query's `DNS.TTL` ("" for none).
    pub ttl: String,
    pub instances: Vec<Instance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteQueryAnswer {
    #[serde(default)]
    service: String,
    #[serde(default)]
    nodes: Vec<RemoteEntry>,
    #[serde(default)]
    datacenter: String,
    #[serde(default, rename = "DNS")]
    dns: RemoteDns,
}

#[derive(Deserialize, Default)]
struct RemoteDns {
    #[serde(default, rename = "TTL")]
    ttl: String,
}

fn instance_of(e: RemoteEntry) -> Instance {
    let health = health_of(e.checks.iter().map(|c| c.status.as_str()));
    Instance {
        node: Arc::new(e.node.into()),
        service: e.service.service,
        service_id: e.service.id,
        address: e.service.address,
        port: e.service.port,
        tags: e.service.tags.unwrap_or_default(),
        tagged_addresses: e
            .service
            .tagged_addresses
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.address))
            .collect(),
        weights: catalog::Weights {
            passing: e.service.weights.as_ref().map_or(1, |w| w.passing),
            warning: e.service.weights.as_ref().map_or(1, |w| w.warning),
        },
        health,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoteCatalogService {
    service_name: String,
    #[serde(default)]
    service_address: String,
}
