//! Consul's `/v1/internal/ui/*` endpoints, which its web UI (and Legate's) reads: one blocking
//! query per page with what the page shows: `services` (each service's instances, nodes, tags
//! and check counts), `nodes` and `node/<name>` (nodes with their services and checks).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use super::blocking;
use super::catalog::{check_json, filter, node_matches, node_meta_filter};
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::Resource;
use legate_state::catalog::{self, Check, Node, Service};
use legate_state::schema::{IDX_CHECKS, IDX_NODES, IDX_SERVICES};
use legate_state::watch::Table;

#[derive(Default)]
struct Summary {
    tags: BTreeSet<String>,
    nodes: BTreeSet<String>,
    instances: usize,
    passing: usize,
    warning: usize,
    critical: usize,
    kind: String,
}

impl Summary {
    fn count(&mut self, status: &str) {
        match status {
            "passing" => self.passing += 1,
            "warning" => self.warning += 1,
            _ => self.critical += 1,
        }
    }
}

/// `GET /v1/internal/ui/services`: every service with its instance count, nodes, tags and the
/// states of its instances' checks, node checks counted once per instance (as Consul's UI
/// summary).
pub async fn services(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let meta = node_meta_filter(req);
    let dc = ctx.agent.config().datacenter.clone();
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_NODES, IDX_SERVICES, IDX_CHECKS])?;
            let mut by_node: BTreeMap<String, Vec<Check>> = BTreeMap::new();
            for c in catalog::all_checks(txn)? {
                by_node.entry(c.node.clone()).or_default().push(c);
            }
            let mut nodes: BTreeMap<String, Option<Node>> = BTreeMap::new();
            let mut summaries: BTreeMap<String, Summary> = BTreeMap::new();
            for (node_name, s) in catalog::all_services(txn)? {
                let node = match nodes.get(&node_name) {
                    Some(n) => n.clone(),
                    None => {
                        let n = catalog::node(txn, &node_name)?;
                        nodes.insert(node_name.clone(), n.clone());
                        n
                    }
                };
                let Some(node) = node else { continue };
                if !node_matches(&node, &meta)
                    || !req.can_read(Resource::Service, &s.service)
                    || !req.can_read(Resource::Node, &node.node)
                {
                    continue;
                }
                let sum = summaries.entry(s.service.clone()).or_default();
                sum.instances += 1;
                sum.nodes.insert(node_name.clone());
                sum.tags.extend(s.tags.iter().cloned());
                sum.kind.clone_from(&s.kind);
                for c in by_node.get(&node_name).into_iter().flatten() {
                    if c.service_id.is_empty() || c.service_id == s.id {
                        sum.count(&c.status);
                    }
                }
            }
            let out: Vec<Json> = summaries
                .into_iter()
                .map(|(name, s)| {
                    json!({
                        "Kind": s.kind,
                        "Name": name,
                        "Datacenter": dc,
                        "Tags": s.tags,
                        "Nodes": s.nodes,
                        "InstanceCount": s.instances,
                        "ChecksPassing": s.passing,
                        "ChecksWarning": s.warning,
                        "ChecksCritical": s.critical,
                        "ExternalSources": [],
                        "ConnectedWithProxy": false,
                        "ConnectedWithGateway": false,
                        "Namespace": "default",
                        "Partition": "default",
                    })
                })
                .collect();
            Ok((index, out))
        },
        |out| Ok(ApiResponse::json(&filter(req, out)?)),
    )
    .await
}

/// A node with its services and checks (Consul's `NodeDump` entry), the ones the token may read.
fn dump(req: &Request, dc: &str, n: &Node, services: &[Service], checks: &[Check]) -> Json {
    let mut node = super::catalog::node_json(n);
    let services: Vec<Json> = services
        .iter()
        .filter(|s| req.can_read(Resource::Service, &s.service))
        .map(|s| super::catalog::service_json(s, None))
        .collect();
    let checks: Vec<Json> = checks
        .iter()
        .filter(|c| c.service_name.is_empty() || req.can_read(Resource::Service, &c.service_name))
        .map(check_json)
        .collect();
    if let Json::Object(map) = &mut node {
        map.insert("Datacenter".into(), json!(dc));
        map.insert("Services".into(), json!(services));
        map.insert("Checks".into(), json!(checks));
    }
    node
}

/// `GET /v1/internal/ui/nodes`: every node the token may read, with its services and checks.
pub async fn nodes(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let meta = node_meta_filter(req);
    let dc = ctx.agent.config().datacenter.clone();
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_NODES, IDX_SERVICES, IDX_CHECKS])?;
            let mut out = Vec::new();
            for n in catalog::nodes(txn)? {
                if !node_matches(&n, &meta) || !req.can_read(Resource::Node, &n.node) {
                    continue;
                }
                let services = catalog::node_services(txn, &n.node)?;
                let checks = catalog::node_checks(txn, &n.node)?;
                out.push(dump(req, &dc, &n, &services, &checks));
            }
            Ok((index, out))
        },
        |out| Ok(ApiResponse::json(&filter(req, out)?)),
    )
    .await
}

/// `GET /v1/internal/ui/node/<name>`: one node as in `nodes` (the route needs node:read on it);
/// 404 when it does not exist.
pub async fn node(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    let dc = ctx.agent.config().datacenter.clone();
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_NODES, IDX_SERVICES, IDX_CHECKS])?;
            let found = match catalog::node(txn, name)? {
                Some(n) => {
                    let services = catalog::node_services(txn, name)?;
                    let checks = catalog::node_checks(txn, name)?;
                    Some(dump(req, &dc, &n, &services, &checks))
                }
                None => None,
            };
            Ok((index, found))
        },
        |found| match found {
            Some(node) => Ok(ApiResponse::json(&node)),
            None => Ok(ApiResponse::empty(http::StatusCode::NOT_FOUND)),
        },
    )
    .await
}
