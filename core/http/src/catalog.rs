//! `/v1/catalog/*`: register, deregister, datacenters, nodes, services, service/<s>, node/<n>,
//! node-services/<n>; and the JSON shapes of catalog records that health and agent share.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::blocking::{self, with_headers};
use super::{decode, ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Resource};
use legate_config::TaggedAddress;
use legate_raft::command::{Command, CommandResponse};
use legate_state::catalog::{self, Check, Node, Service, ServiceAddress, Weights};
use legate_state::schema::{IDX_NODES, IDX_SERVICES};
use legate_state::watch::Table;

pub fn node_json(n: &Node) -> Json {
    json!({
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "Meta": n.meta,
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    })
}

fn tagged_json(t: &BTreeMap<String, ServiceAddress>) -> Json {
    t.iter()
        .map(|(k, v)| (k.clone(), json!({"Address": v.address, "Port": v.port})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// NodeService (health entries, catalog node; `datacenter` None) or AgentService (the agent's
/// endpoints, with its datacenter), with Consul's keys: empty `Kind`, `TaggedAddresses` and
/// `SocketPath` are left out of both; the catalog form always has `Proxy`, `Connect` and
/// `PeerName` and leaves out a zero `Port`; the agent form has none of the three (a plain
/// service has no proxy or Connect settings).
pub fn service_json(s: &Service, datacenter: Option<&str>) -> Json {
    let mut v = json!({
        "ID": s.id,
        "Service": s.service,
        "Tags": s.tags,
        "Address": s.address,
        "Meta": s.meta,
        "Port": s.port,
        "Weights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "EnableTagOverride": s.enable_tag_override,
    });
    if !s.tagged_addresses.is_empty() {
        v["TaggedAddresses"] = tagged_json(&s.tagged_addresses);
    }
    if !s.kind.is_empty() {
        v["Kind"] = json!(s.kind);
    }
    if !s.socket_path.is_empty() {
        v["SocketPath"] = json!(s.socket_path);
    }
    match datacenter {
        Some(dc) => v["Datacenter"] = json!(dc),
        None => {
            if s.port == 0 {
                if let Some(m) = v.as_object_mut() {
                    m.remove("Port");
                }
            }
            v["Proxy"] = json!({"Mode": "", "MeshGateway": {}, "Expose": {}});
            v["Connect"] = json!({});
            v["PeerName"] = json!("");
            v["CreateIndex"] = json!(s.create_index);
            v["ModifyIndex"] = json!(s.modify_index);
        }
    }
    v
}

/// ServiceNode (`/catalog/service/<s>`).
pub fn service_node_json(n: &Node, s: &Service) -> Json {
    let mut v = json!({
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "NodeMeta": n.meta,
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.service,
        "ServiceTags": s.tags,
        "ServiceAddress": s.address,
        "ServiceWeights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "ServiceMeta": s.meta,
        "ServicePort": s.port,
        "ServiceSocketPath": s.socket_path,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "ServiceLocality": null,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    });
    if !s.tagged_addresses.is_empty() {
        v["ServiceTaggedAddresses"] = tagged_json(&s.tagged_addresses);
    }
    v
}

pub fn check_json(c: &Check) -> Json {
    let definition: Json = serde_json::from_str(&c.definition).unwrap_or_else(|_| json!({}));
    json!({
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": c.service_tags,
        "Type": if c.kind == "maintenance" { "" } else { c.kind.as_str() },
        "Interval": c.interval,
        "Timeout": c.timeout,
        "ExposedPort": 0,
        "Definition": definition,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// `?node-meta=k:v` (repeatable): every pair must match.
pub fn node_meta_filter(req: &Request) -> Vec<(String, String)> {
    req.query
        .iter()
        .filter(|(k, _)| k == "node-meta")
        .map(|(_, v)| match v.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (v.clone(), String::new()),
        })
        .collect()
}

pub fn node_matches(n: &Node, meta: &[(String, String)]) -> bool {
    meta.iter().all(|(k, v)| n.meta.get(k) == Some(v))
}

/// `?filter=` over a list of JSON objects; a bad expression is a 400.
pub fn filter(req: &Request, items: Vec<Json>) -> Result<Vec<Json>, ApiError> {
    legate_filter::apply(req.param("filter"), items).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Parses `?filter=` up front so a bad expression fails before blocking.
pub fn check_filter(req: &Request) -> Result<(), ApiError> {
    match req.param("filter") {
        Some(f) if !f.is_empty() => {
            legate_filter::Filter::parse(f).map(|_| ()).map_err(|e| ApiError::BadRequest(e.to_string()))
        }
        _ => Ok(()),
    }
}

/// `GET /v1/catalog/datacenters`: every datacenter the WAN pool knows, nearest first (by the
/// servers' WAN coordinates; ours, at distance 0, leads), those without coordinates by name.
pub async fn datacenters(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(&legate_agent::wan::datacenters_by_distance(&ctx.agent)))
}

/// `GET /v1/catalog/node/<node>`: the node and its services as a map by ID.
pub async fn node(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    node_view(ctx, req, name, false).await
}

/// `GET /v1/catalog/node-services/<node>`: the node and its services as a list.
pub async fn node_services(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    node_view(ctx, req, name, true).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterBody {
    id: Option<String>,
    node: String,
    address: String,
    datacenter: Option<String>,
    tagged_addresses: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    service: Option<ServiceBody>,
    check: Option<CheckBody>,
    checks: Vec<CheckBody>,
    skip_node_update: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceBody {
    id: Option<String>,
    service: String,
    kind: Option<String>,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, TaggedAddress>,
    meta: BTreeMap<String, String>,
    port: u16,
    socket_path: String,
    weights: Option<legate_config::Weights>,
    enable_tag_override: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckBody {
    node: Option<String>,
    id: Option<String>,
    name: String,
    status: String,
    notes: String,
    output: String,
    service_id: String,
    definition: Option<Json>,
}

/// A write naming another datacenter in its body goes there (Consul routes it by the body's
/// `Datacenter`), never applied here.
fn other_datacenter(ctx: &Ctx, dc: Option<&str>) -> Option<String> {
    dc.filter(|dc| !dc.is_empty() && *dc != ctx.agent.config().datacenter).map(str::to_string)
}

/// `?peer=<name>`: instances imported from a cluster peer. No peerings exist, so none.
pub fn peer_param(req: &Request) -> bool {
    req.param("peer").is_some_and(|p| !p.is_empty())
}

pub async fn register(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let b: RegisterBody = decode::body(&req.body)?;
    if let Some(dc) = other_datacenter(ctx, b.datacenter.as_deref()) {
        return super::forward::to_datacenter(ctx, req, &dc).await;
    }
    if b.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".into()));
    }
    if b.address.is_empty() && !b.skip_node_update {
        return Err(ApiError::BadRequest("Must provide address".into()));
    }
    let node = Node {
        id: b.id.unwrap_or_default(),
        node: b.node.clone(),
        address: b.address,
        datacenter: b.datacenter.unwrap_or_else(|| ctx.agent.config().datacenter.clone()),
        tagged_addresses: b.tagged_addresses,
        meta: b.node_meta,
        create_index: 0,
        modify_index: 0,
    };
    let service = b.service.map(|s| Service {
        id: s.id.filter(|i| !i.is_empty()).unwrap_or_else(|| s.service.clone()),
        service: s.service,
        kind: s.kind.unwrap_or_default(),
        tags: s.tags,
        address: s.address,
        tagged_addresses: s
            .tagged_addresses
            .into_iter()
            .map(|(k, v)| (k, ServiceAddress { address: v.address, port: v.port }))
            .collect(),
        meta: s.meta,
        port: s.port,
        socket_path: s.socket_path,
        weights: s
            .weights
            .map(|w| Weights { passing: w.passing as i32, warning: w.warning as i32 })
            .unwrap_or_default(),
        enable_tag_override: s.enable_tag_override,
        create_index: 0,
        modify_index: 0,
    });
    if service.as_ref().is_some_and(|s| s.service.is_empty()) {
        return Err(ApiError::BadRequest("Must provide service name".into()));
    }
    let checks: Vec<Check> = b
        .check
        .into_iter()
        .chain(b.checks)
        .map(|c| Check {
            node: c.node.unwrap_or_else(|| b.node.clone()),
            check_id: c.id.filter(|i| !i.is_empty()).unwrap_or_else(|| c.name.clone()),
            name: c.name,
            status: if c.status.is_empty() { "critical".into() } else { c.status },
            notes: c.notes,
            output: c.output,
            service_id: c.service_id,
            definition: c.definition.map(|d| d.to_string()).unwrap_or_else(|| "{}".into()),
            ..Check::default()
        })
        .collect();
    if let Some(s) = &service {
        req.require(Resource::Service, &s.service, Access::Write)?;
    }
    let node_checks = checks.iter().any(|c: &Check| c.service_id.is_empty());
    if !b.skip_node_update || node_checks {
        req.require(Resource::Node, &node.node, Access::Write)?;
    }
    let reg = catalog::Register { node, service, checks, skip_node_update: b.skip_node_update };
    write(ctx, Command::Register(Box::new(reg))).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeregisterBody {
    node: String,
    datacenter: Option<String>,
    service_id: Option<String>,
    check_id: Option<String>,
    id: Option<String>,
}

pub async fn deregister(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let b: DeregisterBody = decode::body(&req.body)?;
    if let Some(dc) = other_datacenter(ctx, b.datacenter.as_deref()) {
        return super::forward::to_datacenter(ctx, req, &dc).await;
    }
    if b.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".into()));
    }
    let d = catalog::Deregister { node: b.node, service_id: b.service_id, check_id: b.check_id.or(b.id) };
    deregister_allowed(ctx, req, &d)?;
    write(ctx, Command::Deregister(d)).await
}

/// Deregistering a service needs service:write on it, a check the write of its service (or
/// node), the whole node node:write.
fn deregister_allowed(ctx: &Ctx, req: &Request, d: &catalog::Deregister) -> Result<(), ApiError> {
    if req.authz.is_disabled() {
        return Ok(());
    }
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    let service_name = |id: &str| -> Result<Option<String>, ApiError> {
        let services = catalog::node_services(&txn, &d.node).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(services.into_iter().find(|s| s.id == id).map(|s| s.service))
    };
    if let Some(sid) = &d.service_id {
        return match service_name(sid)? {
            Some(name) => req.require(Resource::Service, &name, Access::Write),
            None => req.require(Resource::Node, &d.node, Access::Write),
        };
    }
    if let Some(cid) = &d.check_id {
        let checks = catalog::node_checks(&txn, &d.node).map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Some(c) = checks.iter().find(|c| &c.check_id == cid).filter(|c| !c.service_id.is_empty()) {
            if let Some(name) = service_name(&c.service_id)? {
                return req.require(Resource::Service, &name, Access::Write);
            }
        }
    }
    req.require(Resource::Node, &d.node, Access::Write)
}

async fn write(ctx: &Ctx, cmd: Command) -> Result<ApiResponse, ApiError> {
    match ctx.agent.catalog_apply(cmd).await? {
        CommandResponse::Catalog(Err(e)) => Err(ApiError::Internal(e.0)),
        _ => Ok(ApiResponse::json(&true)),
    }
}

pub async fn nodes(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let meta = node_meta_filter(req);
    let near = super::near::node(ctx, req);
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_NODES])?;
            let mut list: Vec<Json> = catalog::nodes(txn)?
                .iter()
                .filter(|n| node_matches(n, &meta) && req.can_read(Resource::Node, &n.node))
                .map(node_json)
                .collect();
            super::near::sort(txn, near.as_deref(), &mut list, |j| j["Node"].as_str())?;
            Ok((index, list))
        },
        |list| Ok(ApiResponse::json(&filter(req, list)?)),
    )
    .await
}

pub async fn services(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let meta = node_meta_filter(req);
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_SERVICES, IDX_NODES])?;
            let mut pairs = Vec::new();
            for (node_name, s) in catalog::all_services(txn)? {
                if let Some(n) = catalog::node(txn, &node_name)? {
                    if node_matches(&n, &meta) && req.can_read(Resource::Service, &s.service) {
                        pairs.push(service_node_json(&n, &s));
                    }
                }
            }
            Ok((index, pairs))
        },
        |pairs| {
            let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for sn in filter(req, pairs)? {
                let tags = out.entry(sn["ServiceName"].as_str().unwrap_or_default().to_string()).or_default();
                for t in sn["ServiceTags"].as_array().into_iter().flatten().filter_map(Json::as_str) {
                    if !tags.iter().any(|x| x == t) {
                        tags.push(t.to_string());
                    }
                }
            }
            Ok(ApiResponse::json(&out))
        },
    )
    .await
}

/// `?tag=` (repeatable): an instance must carry every one.
pub fn tags_match(s: &Service, req: &Request) -> bool {
    req.query.iter().filter(|(k, _)| k == "tag").all(|(_, t)| s.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
}

/// Which endpoint a service query came through, for its counters.
#[derive(Clone, Copy)]
pub enum ServiceQuery {
    Catalog,
    Health,
}

/// Consul's service query counters: `<family>.service.query` (label service) or, with `?tag=`,
/// `.query-tag` (labels service, tag), and `.not-found` when nothing matched.
pub fn count_service_query(family: ServiceQuery, req: &Request, name: &str, found: usize) {
    let (query, query_tag, not_found) = match family {
        ServiceQuery::Catalog => ("catalog.service.query", "catalog.service.query-tag", "catalog.service.not-found"),
        ServiceQuery::Health => ("health.service.query", "health.service.query-tag", "health.service.not-found"),
    };
    let service: (&str, std::borrow::Cow<str>) = ("service", name.to_string().into());
    let tags: Vec<&str> = req.query.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.as_str()).collect();
    if tags.is_empty() {
        legate_telemetry::counter(query, vec![service.clone()], 1.0);
    } else {
        legate_telemetry::counter(query_tag, vec![service.clone(), ("tag", tags.join(",").into())], 1.0);
    }
    if found == 0 {
        legate_telemetry::counter(not_found, vec![service], 1.0);
    }
}

pub async fn service(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let meta = node_meta_filter(req);
    let peer = peer_param(req);
    let near = super::near::node(ctx, req);
    let (_, outcome, headers) = blocking::wait(ctx, req, Table::Catalog, |txn| {
        let index = catalog::service_index(txn, name)?;
        if peer {
            return Ok((index, Vec::new()));
        }
        let mut list: Vec<Json> = catalog::service_nodes(txn, name)?
            .iter()
            .filter(|(n, s)| {
                node_matches(n, &meta)
                    && tags_match(s, req)
                    && req.can_read(Resource::Service, &s.service)
                    && req.can_read(Resource::Node, &n.node)
            })
            .map(|(n, s)| service_node_json(n, s))
            .collect();
        super::near::sort(txn, near.as_deref(), &mut list, |j| j["Node"].as_str())?;
        Ok((index, list))
    })
    .await?;
    count_service_query(ServiceQuery::Catalog, req, name, outcome.result().len());
    let resp = outcome.respond(req, |list| Ok(ApiResponse::json(&filter(req, list)?)))?;
    Ok(with_headers(resp, headers))
}

async fn node_view(ctx: &Ctx, req: &Request, name: &str, as_list: bool) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_NODES, IDX_SERVICES])?;
            let found = match catalog::node(txn, name)? {
                Some(n) => Some((n, catalog::node_services(txn, name)?)),
                None => None,
            };
            Ok((index, found))
        },
        |found| {
            let body = match found {
                None if as_list => json!({"Node": null, "Services": []}),
                None => Json::Null,
                Some((n, services)) => {
                    let readable = services.iter().filter(|s| req.can_read(Resource::Service, &s.service));
                    let list = filter(req, readable.map(|s| service_json(s, None)).collect())?;
                    if as_list {
                        json!({"Node": node_json(&n), "Services": list})
                    } else {
                        let map: serde_json::Map<String, Json> =
                            list.into_iter().map(|s| (s["ID"].as_str().unwrap_or_default().to_string(), s)).collect();
                        json!({"Node": node_json(&n), "Services": map})
                    }
                }
            };
            Ok(ApiResponse::json(&body))
        },
    )
    .await
}
