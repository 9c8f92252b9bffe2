//! The catalog: nodes, services and checks (Consul's `state/catalog.go` semantics). Writes
//! (`register_txn`, `deregister_txn`) run inside the state machine's write transaction at a
//! Raft index; an unchanged record keeps its ModifyIndex, so blocking queries wake only on
//! real change. Besides the table indexes ("nodes", "services", "checks"), every change bumps
//! "service.<name>" of each service it can affect, so a `health/service/<name>` query blocks on
//! the index of its own service, as Consul's `maxIndexForService`.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::schema::{CHECKS, IDX_CHECKS, IDX_NODES, IDX_SERVICES, NODES, SERVICES, SERVICE_NAMES};
use super::session::Released;
use super::{bump_index_txn, table_index_read, StoreError};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Node {
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Weights {
    pub passing: i32,
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub id: String,
    pub service: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub socket_path: String,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    /// Consul's `Type` ("http", "ttl", ...).
    pub kind: String,
    pub interval: String,
    pub timeout: String,
    /// The check's `Definition` object as JSON text (bincode cannot hold a JSON value).
    pub definition: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Consul's RegisterRequest: a node, optionally one service and checks.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Register {
    pub node: Node,
    pub service: Option<Service>,
    pub checks: Vec<Check>,
    pub skip_node_update: bool,
}

/// Consul's DeregisterRequest: the node with everything on it, or one service (with its
/// checks), or one check.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Deregister {
    pub node: String,
    pub service_id: Option<String>,
    pub check_id: Option<String>,
}

/// A catalog write refused for its content (HTTP 500 with the text, as Consul's RPC errors).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CatalogFail(pub String);

fn key(node: &str, id: &str) -> String {
    format!("{node}\0{id}")
}

fn node_range(node: &str) -> (String, String) {
    (format!("{node}\0"), format!("{node}\u{1}"))
}

pub fn service_index_key(name: &str) -> String {
    format!("service.{name}")
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, StoreError> {
    Ok(bincode::deserialize(b)?)
}

// ---- reads ----

pub fn node(txn: &ReadTransaction, name: &str) -> Result<Option<Node>, StoreError> {
    let t = txn.open_table(NODES)?;
    let v = t.get(name)?;
    v.map(|v| decode(v.value())).transpose()
}

pub fn nodes(txn: &ReadTransaction) -> Result<Vec<Node>, StoreError> {
    let t = txn.open_table(NODES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// How much the catalog holds (`/v1/operator/usage`, the leader's `state.*` gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub nodes: usize,
    /// Distinct service names.
    pub services: usize,
    pub instances: usize,
    /// Instances other than the servers' own `consul` service.
    pub billable: usize,
}

pub fn usage(txn: &ReadTransaction) -> Result<Usage, StoreError> {
    let nodes = txn.open_table(NODES)?.len()? as usize;
    let mut names = BTreeSet::new();
    let (mut instances, mut billable) = (0, 0);
    for item in txn.open_table(SERVICES)?.iter()? {
        let s: Service = decode(item?.1.value())?;
        instances += 1;
        if s.service != "consul" {
            billable += 1;
        }
        names.insert(s.service);
    }
    Ok(Usage { nodes, services: names.len(), instances, billable })
}

pub fn node_services(txn: &ReadTransaction, node: &str) -> Result<Vec<Service>, StoreError> {
    let t = txn.open_table(SERVICES)?;
    let (lo, hi) = node_range(node);
    let mut out = Vec::new();
    for item in t.range(lo.as_str()..hi.as_str())? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Every (node name, service) pair.
pub fn all_services(txn: &ReadTransaction) -> Result<Vec<(String, Service)>, StoreError> {
    let t = txn.open_table(SERVICES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let node = k.value().split('\0').next().unwrap_or_default().to_string();
        out.push((node, decode(v.value())?));
    }
    Ok(out)
}

/// Instances of a service (by name), with their nodes, ordered by node then service ID: one
/// range of the name index, then a point read per instance.
pub fn service_nodes(txn: &ReadTransaction, name: &str) -> Result<Vec<(Node, Service)>, StoreError> {
    let names = txn.open_table(SERVICE_NAMES)?;
    let services = txn.open_table(SERVICES)?;
    let (lo, hi) = node_range(name);
    let mut out = Vec::new();
    let mut cache: BTreeMap<String, Option<Node>> = BTreeMap::new();
    for item in names.range(lo.as_str()..hi.as_str())? {
        let (k, _) = item?;
        let Some((node_name, id)) = k.value()[name.len() + 1..].split_once('\0') else { continue };
        let Some(v) = services.get(key(node_name, id).as_str())? else { continue };
        let s: Service = decode(v.value())?;
        if !cache.contains_key(node_name) {
            cache.insert(node_name.to_string(), node(txn, node_name)?);
        }
        if let Some(Some(n)) = cache.get(node_name) {
            out.push((n.clone(), s));
        }
    }
    Ok(out)
}

fn name_key(name: &str, node: &str, id: &str) -> String {
    format!("{name}\0{node}\0{id}")
}

/// Rebuilds the service-name index from the services table (snapshot import, and stores
/// written before the index existed).
pub fn rebuild_service_names_txn(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(SERVICE_NAMES)?;
    let mut names = txn.open_table(SERVICE_NAMES)?;
    let services = txn.open_table(SERVICES)?;
    for item in services.iter()? {
        let (k, v) = item?;
        let s: Service = decode(v.value())?;
        let node = k.value().split('\0').next().unwrap_or_default();
        names.insert(name_key(&s.service, node, &s.id).as_str(), ())?;
    }
    Ok(())
}

pub fn node_checks(txn: &ReadTransaction, node: &str) -> Result<Vec<Check>, StoreError> {
    let t = txn.open_table(CHECKS)?;
    let (lo, hi) = node_range(node);
    let mut out = Vec::new();
    for item in t.range(lo.as_str()..hi.as_str())? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

pub fn all_checks(txn: &ReadTransaction) -> Result<Vec<Check>, StoreError> {
    let t = txn.open_table(CHECKS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Index of a list over the catalog: the max of the given tables.
pub fn tables_index(txn: &ReadTransaction, tables: &[&str]) -> Result<u64, StoreError> {
    let mut max = 0;
    for t in tables {
        max = max.max(table_index_read(txn, t)?);
    }
    Ok(max)
}

/// Index of a per-service query: the service's own index, else the services table's.
pub fn service_index(txn: &ReadTransaction, name: &str) -> Result<u64, StoreError> {
    let idx = table_index_read(txn, &service_index_key(name))?;
    if idx > 0 {
        Ok(idx)
    } else {
        tables_index(txn, &[IDX_NODES, IDX_SERVICES, IDX_CHECKS])
    }
}

// ---- writes ----

fn get_w<T: for<'de> Deserialize<'de>>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    k: &str,
) -> Result<Option<T>, StoreError> {
    let t = txn.open_table(table)?;
    let v = t.get(k)?;
    v.map(|v| decode(v.value())).transpose()
}

fn put_w<T: Serialize>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    k: &str,
    v: &T,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(table)?;
    t.insert(k, bincode::serialize(v)?.as_slice())?;
    Ok(())
}

fn range_w<T: for<'de> Deserialize<'de>>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    node: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let t = txn.open_table(table)?;
    let (lo, hi) = node_range(node);
    let mut out = Vec::new();
    for item in t.range(lo.as_str()..hi.as_str())? {
        let (k, v) = item?;
        out.push((k.value().to_string(), decode(v.value())?));
    }
    Ok(out)
}

/// Names of the services on a node (whose indexes a node-level change bumps).
fn service_names_w(txn: &WriteTransaction, node: &str) -> Result<BTreeSet<String>, StoreError> {
    Ok(range_w::<Service>(txn, SERVICES, node)?.into_iter().map(|(_, s)| s.service).collect())
}

fn bump_services(txn: &WriteTransaction, names: &BTreeSet<String>, index: u64) -> Result<(), StoreError> {
    for n in names {
        bump_index_txn(txn, &service_index_key(n), index)?;
    }
    Ok(())
}

/// Registers a node and optionally a service and checks (Consul's `EnsureRegistration`).
/// Sessions invalidated by a check turning critical add their releases to `released`.
pub fn register_txn(
    txn: &WriteTransaction,
    req: &Register,
    index: u64,
    released: &mut Released,
) -> Result<Result<(), CatalogFail>, StoreError> {
    if req.node.node.is_empty() {
        return Ok(Err(CatalogFail("Must provide node".into())));
    }
    let name = req.node.node.as_str();
    let existing: Option<Node> = get_w(txn, NODES, name)?;
    if let Some(e) = &existing {
        if !req.node.id.is_empty() && !e.id.is_empty() && !e.id.eq_ignore_ascii_case(&req.node.id) {
            return Ok(Err(CatalogFail(format!(
                "failed inserting node: Error while renaming Node ID: \"{}\": Node name {} is reserved by node {} with name {} ({})",
                req.node.id, name, e.id, name, e.address
            ))));
        }
    }
    match (&existing, req.skip_node_update) {
        (Some(_), true) => {}
        _ => {
            if req.node.address.is_empty() && existing.is_none() {
                return Ok(Err(CatalogFail("Must provide address".into())));
            }
            let mut n = req.node.clone();
            if n.address.is_empty() {
                n.address = existing.as_ref().map(|e| e.address.clone()).unwrap_or_default();
            }
            n.create_index = existing.as_ref().map_or(index, |e| e.create_index);
            n.modify_index = existing.as_ref().map_or(index, |e| e.modify_index);
            let changed = existing.as_ref().is_none_or(|e| *e != n);
            if changed {
                n.modify_index = index;
                put_w(txn, NODES, name, &n)?;
                bump_index_txn(txn, IDX_NODES, index)?;
                let names = service_names_w(txn, name)?;
                bump_services(txn, &names, index)?;
            }
        }
    }
    if let Some(s) = &req.service {
        if s.service.is_empty() {
            return Ok(Err(CatalogFail("Must provide service name".into())));
        }
        let mut s = s.clone();
        if s.id.is_empty() {
            s.id = s.service.clone();
        }
        let k = key(name, &s.id);
        let old: Option<Service> = get_w(txn, SERVICES, &k)?;
        s.create_index = old.as_ref().map_or(index, |o| o.create_index);
        s.modify_index = old.as_ref().map_or(index, |o| o.modify_index);
        if old.as_ref() != Some(&s) {
            s.modify_index = index;
            put_w(txn, SERVICES, &k, &s)?;
            let mut names = txn.open_table(SERVICE_NAMES)?;
            if let Some(o) = &old {
                names.remove(name_key(&o.service, name, &o.id).as_str())?;
            }
            names.insert(name_key(&s.service, name, &s.id).as_str(), ())?;
            bump_index_txn(txn, IDX_SERVICES, index)?;
            bump_index_txn(txn, &service_index_key(&s.service), index)?;
            if let Some(o) = &old {
                if o.service != s.service {
                    bump_index_txn(txn, &service_index_key(&o.service), index)?;
                }
            }
            // The service's checks carry its name and tags.
            for (ck, mut c) in range_w::<Check>(txn, CHECKS, name)? {
                if c.service_id == s.id && (c.service_name != s.service || c.service_tags != s.tags) {
                    c.service_name = s.service.clone();
                    c.service_tags = s.tags.clone();
                    c.modify_index = index;
                    put_w(txn, CHECKS, &ck, &c)?;
                    bump_index_txn(txn, IDX_CHECKS, index)?;
                }
            }
        }
    }
    for c in &req.checks {
        if let Err(fail) = ensure_check_txn(txn, name, c, index, released)? {
            return Ok(Err(fail));
        }
    }
    Ok(Ok(()))
}

fn ensure_check_txn(
    txn: &WriteTransaction,
    node: &str,
    c: &Check,
    index: u64,
    released: &mut Released,
) -> Result<Result<(), CatalogFail>, StoreError> {
    let mut c = c.clone();
    c.node = node.to_string();
    if c.check_id.is_empty() {
        c.check_id = c.name.clone();
    }
    if c.check_id.is_empty() {
        return Ok(Err(CatalogFail("Missing check ID".into())));
    }
    if c.status.is_empty() {
        c.status = "critical".into();
    }
    if !matches!(c.status.as_str(), "passing" | "warning" | "critical" | "maintenance") {
        return Ok(Err(CatalogFail(format!("Invalid check status: {:?}", c.status))));
    }
    if get_w::<Node>(txn, NODES, node)?.is_none() {
        return Ok(Err(CatalogFail(format!("Missing node registration for {node:?}"))));
    }
    let mut affected = BTreeSet::new();
    if c.service_id.is_empty() {
        c.service_name.clear();
        c.service_tags.clear();
        affected = service_names_w(txn, node)?;
    } else {
        match get_w::<Service>(txn, SERVICES, &key(node, &c.service_id))? {
            Some(s) => {
                c.service_name = s.service.clone();
                c.service_tags = s.tags.clone();
                affected.insert(s.service);
            }
            None => {
                return Ok(Err(CatalogFail(format!(
                    "Missing service registration for service {:?} on node {node:?}",
                    c.service_id
                ))))
            }
        }
    }
    let k = key(node, &c.check_id);
    let old: Option<Check> = get_w(txn, CHECKS, &k)?;
    c.create_index = old.as_ref().map_or(index, |o| o.create_index);
    c.modify_index = old.as_ref().map_or(index, |o| o.modify_index);
    if old.as_ref() != Some(&c) {
        c.modify_index = index;
        put_w(txn, CHECKS, &k, &c)?;
        if c.status == "critical" {
            // Sessions tied to a check that turns critical are invalidated.
            super::session::invalidate_txn(txn, node, Some(&c.check_id), index, released)?;
        }
        bump_index_txn(txn, IDX_CHECKS, index)?;
        if let Some(o) = &old {
            if !o.service_name.is_empty() {
                affected.insert(o.service_name.clone());
            }
        }
        bump_services(txn, &affected, index)?;
    }
    Ok(Ok(()))
}

fn delete_check_w(
    txn: &WriteTransaction,
    node: &str,
    id: &str,
    index: u64,
    released: &mut Released,
) -> Result<bool, StoreError> {
    let k = key(node, id);
    let old: Option<Check> = get_w(txn, CHECKS, &k)?;
    let Some(old) = old else { return Ok(false) };
    txn.open_table(CHECKS)?.remove(k.as_str())?;
    super::session::invalidate_txn(txn, node, Some(id), index, released)?;
    bump_index_txn(txn, IDX_CHECKS, index)?;
    let affected =
        if old.service_name.is_empty() { service_names_w(txn, node)? } else { BTreeSet::from([old.service_name]) };
    bump_services(txn, &affected, index)?;
    Ok(true)
}

fn delete_service_w(
    txn: &WriteTransaction,
    node: &str,
    id: &str,
    index: u64,
    released: &mut Released,
) -> Result<bool, StoreError> {
    let k = key(node, id);
    let old: Option<Service> = get_w(txn, SERVICES, &k)?;
    let Some(old) = old else { return Ok(false) };
    for (_, c) in range_w::<Check>(txn, CHECKS, node)? {
        if c.service_id == id {
            delete_check_w(txn, node, &c.check_id, index, released)?;
        }
    }
    txn.open_table(SERVICES)?.remove(k.as_str())?;
    txn.open_table(SERVICE_NAMES)?.remove(name_key(&old.service, node, &old.id).as_str())?;
    bump_index_txn(txn, IDX_SERVICES, index)?;
    bump_index_txn(txn, &service_index_key(&old.service), index)?;
    Ok(true)
}

/// Deregisters a check, a service (with its checks) or a whole node (Consul's
/// `DeleteCheck`/`DeleteService`/`DeleteNode`). Deleting what is not there changes nothing.
pub fn deregister_txn(
    txn: &WriteTransaction,
    req: &Deregister,
    index: u64,
    released: &mut Released,
) -> Result<Result<(), CatalogFail>, StoreError> {
    if req.node.is_empty() {
        return Ok(Err(CatalogFail("Must provide node".into())));
    }
    let node = req.node.as_str();
    match (&req.service_id, &req.check_id) {
        (Some(s), _) => {
            delete_service_w(txn, node, s, index, released)?;
        }
        (None, Some(c)) => {
            delete_check_w(txn, node, c, index, released)?;
        }
        (None, None) => {
            if get_w::<Node>(txn, NODES, node)?.is_none() {
                return Ok(Ok(()));
            }
            for (_, s) in range_w::<Service>(txn, SERVICES, node)? {
                delete_service_w(txn, node, &s.id, index, released)?;
            }
            for (_, c) in range_w::<Check>(txn, CHECKS, node)? {
                delete_check_w(txn, node, &c.check_id, index, released)?;
            }
            txn.open_table(NODES)?.remove(node)?;
            bump_index_txn(txn, IDX_NODES, index)?;
            super::coordinate::delete_node_txn(txn, node, index)?;
            super::session::invalidate_txn(txn, node, None, index, released)?;
        }
    }
    Ok(Ok(()))
}

/// Verbs of the Node, Service and Check operations of `/v1/txn`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum CatalogVerb {
    Set,
    Cas,
    Get,
    Delete,
    DeleteCas,
}

impl CatalogVerb {
    pub fn parse(s: &str) -> Option<CatalogVerb> {
        Some(match s {
            "set" => CatalogVerb::Set,
            "cas" => CatalogVerb::Cas,
            "get" => CatalogVerb::Get,
            "delete" => CatalogVerb::Delete,
            "delete-cas" => CatalogVerb::DeleteCas,
            _ => return None,
        })
    }
}

/// A catalog operation of a transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum CatalogOp {
    Node { verb: CatalogVerb, node: Node },
    Service { verb: CatalogVerb, node: String, service: Service },
    Check { verb: CatalogVerb, check: Check },
}

/// What a catalog operation returns (set/cas/get: the record as stored now).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum CatalogResult {
    Node(Node),
    Service(Service),
    Check(Check),
    Nothing,
}

fn cas_ok(verb: CatalogVerb, want: u64, current: Option<u64>) -> bool {
    !matches!(verb, CatalogVerb::Cas | CatalogVerb::DeleteCas) || current.unwrap_or(0) == want
}

/// Applies one catalog operation of a transaction (Consul's `txnNode`/`txnService`/`txnCheck`).
pub fn apply_op_txn(
    txn: &WriteTransaction,
    op: &CatalogOp,
    index: u64,
    released: &mut Released,
) -> Result<Result<CatalogResult, CatalogFail>, StoreError> {
    Ok(match op {
        CatalogOp::Node { verb, node } => {
            let current: Option<Node> = get_w(txn, NODES, &node.node)?;
            if !cas_ok(*verb, node.modify_index, current.as_ref().map(|n| n.modify_index)) {
                return Ok(Err(CatalogFail(format!("failed to set node {:?}, index is stale", node.node))));
            }
            match verb {
                CatalogVerb::Get => match current {
                    Some(n) => Ok(CatalogResult::Node(n)),
                    None => Err(CatalogFail(format!("node {:?} doesn't exist", node.node))),
                },
                CatalogVerb::Set | CatalogVerb::Cas => {
                    let reg = Register { node: node.clone(), ..Register::default() };
                    match register_txn(txn, &reg, index, released)? {
                        Ok(()) => Ok(CatalogResult::Node(get_w(txn, NODES, &node.node)?.unwrap_or_default())),
                        Err(e) => Err(e),
                    }
                }
                CatalogVerb::Delete | CatalogVerb::DeleteCas => deregister_txn(
                    txn,
                    &Deregister { node: node.node.clone(), ..Deregister::default() },
                    index,
                    released,
                )?
                .map(|_| CatalogResult::Nothing),
            }
        }
        CatalogOp::Service { verb, node, service } => {
            let id = if service.id.is_empty() { service.service.clone() } else { service.id.clone() };
            let current: Option<Service> = get_w(txn, SERVICES, &key(node, &id))?;
            if !cas_ok(*verb, service.modify_index, current.as_ref().map(|s| s.modify_index)) {
                return Ok(Err(CatalogFail(format!("failed to set service {id:?} on node {node:?}, index is stale"))));
            }
            match verb {
                CatalogVerb::Get => match current {
                    Some(s) => Ok(CatalogResult::Service(s)),
                    None => Err(CatalogFail(format!("service {id:?} on node {node:?} doesn't exist"))),
                },
                CatalogVerb::Set | CatalogVerb::Cas => {
                    let Some(n) = get_w::<Node>(txn, NODES, node)? else {
                        return Ok(Err(CatalogFail(format!("node {node:?} doesn't exist"))));
                    };
                    let reg = Register {
                        node: n,
                        service: Some(service.clone()),
                        checks: Vec::new(),
                        skip_node_update: true,
                    };
                    match register_txn(txn, &reg, index, released)? {
                        Ok(()) => {
                            Ok(CatalogResult::Service(get_w(txn, SERVICES, &key(node, &id))?.unwrap_or_default()))
                        }
                        Err(e) => Err(e),
                    }
                }
                CatalogVerb::Delete | CatalogVerb::DeleteCas => deregister_txn(
                    txn,
                    &Deregister { node: node.clone(), service_id: Some(id), check_id: None },
                    index,
                    released,
                )?
                .map(|_| CatalogResult::Nothing),
            }
        }
        CatalogOp::Check { verb, check } => {
            let id = if check.check_id.is_empty() { check.name.clone() } else { check.check_id.clone() };
            let current: Option<Check> = get_w(txn, CHECKS, &key(&check.node, &id))?;
            if !cas_ok(*verb, check.modify_index, current.as_ref().map(|c| c.modify_index)) {
                return Ok(Err(CatalogFail(format!(
                    "failed to set check {id:?} on node {:?}, index is stale",
                    check.node
                ))));
            }
            match verb {
                CatalogVerb::Get => match current {
                    Some(c) => Ok(CatalogResult::Check(c)),
                    None => Err(CatalogFail(format!("check {id:?} on node {:?} doesn't exist", check.node))),
                },
                CatalogVerb::Set | CatalogVerb::Cas => {
                    match ensure_check_txn(txn, &check.node, check, index, released)? {
                        Ok(()) => {
                            Ok(CatalogResult::Check(get_w(txn, CHECKS, &key(&check.node, &id))?.unwrap_or_default()))
                        }
                        Err(e) => Err(e),
                    }
                }
                CatalogVerb::Delete | CatalogVerb::DeleteCas => deregister_txn(
                    txn,
                    &Deregister { node: check.node.clone(), service_id: None, check_id: Some(id) },
                    index,
                    released,
                )?
                .map(|_| CatalogResult::Nothing),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn reg(node: &str, svc: Option<(&str, &str)>, checks: Vec<Check>) -> Register {
        Register {
            node: Node { node: node.into(), address: "10.0.0.1".into(), ..Node::default() },
            service: svc.map(|(id, name)| Service { id: id.into(), service: name.into(), ..Service::default() }),
            checks,
            skip_node_update: false,
        }
    }

    fn apply(
        store: &Store,
        _index: u64,
        f: impl FnOnce(&WriteTransaction) -> Result<Result<(), CatalogFail>, StoreError>,
    ) -> Result<(), CatalogFail> {
        let txn = store.write(false).unwrap();
        let r = f(&txn).unwrap();
        txn.commit().unwrap();
        r
    }

    fn instances(s: &Store, name: &str) -> Vec<(String, String)> {
        let r = s.read().unwrap();
        service_nodes(&r, name).unwrap().into_iter().map(|(n, svc)| (n.node, svc.id)).collect()
    }

    #[test]
    fn the_name_index_follows_registrations_renames_and_deletes() {
        let s = Store::in_memory().unwrap();
        let no = &mut Vec::new();
        apply(&s, 1, |t| register_txn(t, &reg("n2", Some(("web-b", "web")), vec![]), 1, no)).unwrap();
        apply(&s, 2, |t| register_txn(t, &reg("n1", Some(("web-a", "web")), vec![]), 2, no)).unwrap();
        apply(&s, 3, |t| register_txn(t, &reg("n1", Some(("db", "db")), vec![]), 3, no)).unwrap();
        // A name that is a prefix of another is not mixed in.
        apply(&s, 4, |t| register_txn(t, &reg("n1", Some(("webx", "web-x")), vec![]), 4, no)).unwrap();
        let web = vec![("n1".to_string(), "web-a".to_string()), ("n2".to_string(), "web-b".to_string())];
        assert_eq!(instances(&s, "web"), web, "ordered by node, then ID");
        // The same ID under a new name moves in the index.
        apply(&s, 5, |t| register_txn(t, &reg("n2", Some(("web-b", "api")), vec![]), 5, no)).unwrap();
        assert_eq!(instances(&s, "web"), web[..1].to_vec());
        assert_eq!(instances(&s, "api"), vec![("n2".to_string(), "web-b".to_string())]);
        // Deleting the node removes its instances.
        apply(&s, 6, |t| deregister_txn(t, &Deregister { node: "n1".into(), ..Deregister::default() }, 6, no)).unwrap();
        assert!(instances(&s, "web").is_empty());
        assert!(instances(&s, "db").is_empty());
        // A rebuild (snapshot import) gives the same index.
        let before: Vec<String> = {
            let r = s.read().unwrap();
            let t = r.open_table(SERVICE_NAMES).unwrap();
            t.iter().unwrap().map(|i| i.unwrap().0.value().to_string()).collect()
        };
        let txn = s.write(false).unwrap();
        rebuild_service_names_txn(&txn).unwrap();
        txn.commit().unwrap();
        let r = s.read().unwrap();
        let t = r.open_table(SERVICE_NAMES).unwrap();
        let after: Vec<String> = t.iter().unwrap().map(|i| i.unwrap().0.value().to_string()).collect();
        assert_eq!(before, after);
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn register_is_idempotent_and_indexes_follow_change() {
        let s = Store::in_memory().unwrap();
        apply(&s, 5, |t| register_txn(t, &reg("n1", Some(("web1", "web")), vec![]), 5, &mut Vec::new())).unwrap();
        apply(&s, 6, |t| register_txn(t, &reg("n1", Some(("web1", "web")), vec![]), 6, &mut Vec::new())).unwrap();
        let r = s.read().unwrap();
        let sn = service_nodes(&r, "web").unwrap();
        assert_eq!(sn.len(), 1);
        assert_eq!((sn[0].1.create_index, sn[0].1.modify_index), (5, 5), "unchanged re-register keeps indexes");
        assert_eq!(service_index(&r, "web").unwrap(), 5);
        drop(r);
        let check = Check {
            check_id: "c1".into(),
            name: "c1".into(),
            service_id: "web1".into(),
            status: "passing".into(),
            ..Check::default()
        };
        apply(&s, 7, |t| register_txn(t, &reg("n1", None, vec![check.clone()]), 7, &mut Vec::new())).unwrap();
        let r = s.read().unwrap();
        let cs = node_checks(&r, "n1").unwrap();
        assert_eq!((cs[0].service_name.as_str(), cs[0].modify_index), ("web", 7));
        assert_eq!(service_index(&r, "web").unwrap(), 7);
    }

    #[test]
    fn check_needs_its_service_and_node_delete_cascades() {
        let s = Store::in_memory().unwrap();
        let bad = Check { check_id: "c".into(), service_id: "nope".into(), ..Check::default() };
        let err = apply(&s, 3, |t| register_txn(t, &reg("n1", None, vec![bad]), 3, &mut Vec::new())).unwrap_err();
        assert!(err.0.contains("Missing service registration"), "{err}");
        let c = Check { check_id: "c".into(), service_id: "db".into(), ..Check::default() };
        apply(&s, 4, |t| register_txn(t, &reg("n1", Some(("db", "db")), vec![c]), 4, &mut Vec::new())).unwrap();
        assert_eq!(node_checks(&s.read().unwrap(), "n1").unwrap()[0].status, "critical");
        apply(&s, 5, |t| {
            deregister_txn(t, &Deregister { node: "n1".into(), ..Deregister::default() }, 5, &mut Vec::new())
        })
        .unwrap();
        let r = s.read().unwrap();
        assert!(node(&r, "n1").unwrap().is_none());
        assert!(all_services(&r).unwrap().is_empty() && all_checks(&r).unwrap().is_empty());
        assert_eq!(service_index(&r, "db").unwrap(), 5);
    }
}
