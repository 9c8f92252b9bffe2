//! What a template reads: each dependency is one blocking query against the agent (a file is
//! polled), kept up to date by its own task, and turned into the values consul-template's
//! functions return.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gotmpl::Value;
use legate_client::{Client, DirEntry, QueryOptions};
use serde_json::Value as Json;

/// A dependency, as the functions name it. Equal dependencies of several templates share one
/// watch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// `key`, `keyOrDefault`, `keyExists`: one KV entry.
    Key { key: String, dc: Option<String> },
    /// `ls`, `tree`, `safeLs`, `safeTree`: every entry under a prefix.
    List { prefix: String, dc: Option<String> },
    /// `service`: healthy (or filtered) instances.
    Service(ServiceQuery),
    /// `services`: names and tags.
    Services { dc: Option<String> },
    /// `node`: one node and its services (`None`: this agent's node).
    Node { name: Option<String>, dc: Option<String> },
    /// `nodes`.
    Nodes { dc: Option<String>, near: Option<String> },
    /// `datacenters` (`true`: only those that answer).
    Datacenters { reachable_only: bool },
    /// `file`: a local file's contents.
    File(PathBuf),
}

/// `service "<TAG>.<NAME>@<DC>~<NEAR>|<FILTER>"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceQuery {
    pub name: String,
    pub tag: Option<String>,
    pub dc: Option<String>,
    pub near: Option<String>,
    /// Empty: healthy instances only (asked with `?passing`). Else the instances whose
    /// aggregated status is one of these (`any` for all).
    pub filter: Vec<String>,
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |dc: &Option<String>| dc.as_ref().map(|d| format!("@{d}")).unwrap_or_default();
        match self {
            Dep::Key { key, dc } => write!(f, "kv.block({key}{})", at(dc)),
            Dep::List { prefix, dc } => write!(f, "kv.list({prefix}{})", at(dc)),
            Dep::Service(q) => write!(
                f,
                "health.service({}{}{})",
                q.tag.as_ref().map(|t| format!("{t}.")).unwrap_or_default(),
                q.name,
                at(&q.dc)
            ),
            Dep::Services { dc } => write!(f, "catalog.services({})", at(dc)),
            Dep::Node { name, dc } => write!(f, "catalog.node({}{})", name.as_deref().unwrap_or(""), at(dc)),
            Dep::Nodes { dc, .. } => write!(f, "catalog.nodes({})", at(dc)),
            Dep::Datacenters { .. } => write!(f, "catalog.datacenters"),
            Dep::File(p) => write!(f, "file({})", p.display()),
        }
    }
}

/// Splits `path@dc` (KV functions).
pub fn kv_query(text: &str) -> (String, Option<String>) {
    match text.rsplit_once('@') {
        Some((path, dc)) if !dc.is_empty() && !dc.contains('/') => (path.to_string(), Some(dc.to_string())),
        _ => (text.to_string(), None),
    }
}

/// Parses `service`'s arguments: `"tag.name@dc~near"` and filters (`"passing,warning"`, `"any"`)
/// after a `|` or as further arguments.
pub fn service_query(args: &[String]) -> Result<ServiceQuery, String> {
    let joined = args.join("|");
    let mut parts = joined.split('|');
    let head = parts.next().unwrap_or_default().trim();
    let mut filter: Vec<String> = Vec::new();
    for f in parts.flat_map(|p| p.split(',')).map(|f| f.trim().to_ascii_lowercase()).filter(|f| !f.is_empty()) {
        if !matches!(f.as_str(), "any" | "passing" | "warning" | "critical" | "maintenance") {
            return Err(format!("service: unknown filter {f:?} (any, passing, warning, critical, maintenance)"));
        }
        filter.push(f);
    }
    let (head, near) = match head.split_once('~') {
        Some((h, n)) => (h, Some(n.to_string())),
        None => (head, None),
    };
    let (head, dc) = match head.split_once('@') {
        Some((h, d)) => (h, Some(d.to_string())),
        None => (head, None),
    };
    let head = head.split_once('?').map_or(head, |(h, _)| h);
    // The name holds no dot: everything before the last one is the tag.
    let (tag, name) = match head.rsplit_once('.') {
        Some((t, n)) => (Some(t.to_string()), n.to_string()),
        None => (None, head.to_string()),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("service: invalid service name in {joined:?}"));
    }
    Ok(ServiceQuery { name, tag, dc, near, filter })
}

pub(crate) fn s(text: impl AsRef<str>) -> Value {
    Value::String(Arc::from(text.as_ref()))
}

pub(crate) fn map(entries: Vec<(&str, Value)>) -> Value {
    let m: BTreeMap<Arc<str>, Value> = entries.into_iter().map(|(k, v)| (Arc::from(k), v)).collect();
    Value::Map(Arc::new(m))
}

pub(crate) fn list(items: Vec<Value>) -> Value {
    Value::List(Arc::from(items))
}

/// JSON as template values (numbers: Int when integral, else Float).
pub fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => n.as_u64().map(Value::Uint).unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        },
        Json::String(t) => s(t),
        Json::Array(a) => list(a.iter().map(from_json).collect()),
        Json::Object(o) => Value::Map(Arc::new(o.iter().map(|(k, v)| (Arc::from(k.as_str()), from_json(v))).collect())),
    }
}

/// Template values as JSON (for `toJSON` and friends).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Uint(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        Value::String(t) => Json::String(t.to_string()),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        Value::Function(_) => Json::Null,
    }
}

fn str_map(j: &Json) -> Value {
    match j {
        Json::Object(_) => from_json(j),
        _ => map(Vec::new()),
    }
}

/// A KV entry as consul-template's `KeyPair` (`Key` is set by the function that lists it).
pub fn key_pair(e: &DirEntry, key: &str) -> Value {
    map(vec![
        ("Path", s(&e.key)),
        ("Key", s(key)),
        ("Value", s(decode(e))),
        ("Flags", Value::Uint(e.flags)),
        ("CreateIndex", Value::Uint(e.create_index)),
        ("ModifyIndex", Value::Uint(e.modify_index)),
        ("LockIndex", Value::Uint(e.lock_index)),
        ("Session", s(e.session.as_deref().unwrap_or(""))),
    ])
}

pub fn decode(e: &DirEntry) -> String {
    legate_client::decode_value(e).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// The worst status of an instance's checks (consul-template's `AggregatedStatus`).
fn aggregated(checks: &[Json]) -> &'static str {
    let statuses: Vec<&str> = checks.iter().map(|c| c["Status"].as_str().unwrap_or("")).collect();
    let maint = checks.iter().any(|c| {
        let id = c["CheckID"].as_str().unwrap_or("");
        id == "_node_maintenance" || id.starts_with("_service_maintenance:")
    });
    if maint {
        "maintenance"
    } else if statuses.contains(&"critical") {
        "critical"
    } else if statuses.contains(&"warning") {
        "warning"
    } else {
        "passing"
    }
}

/// `health/service` entries as consul-template's `HealthService`, filtered and sorted as it does.
pub fn health_services(entries: &[Json], q: &ServiceQuery) -> Value {
    let mut out: Vec<(String, String, Value)> = Vec::new();
    for e in entries {
        let (node, svc) = (&e["Node"], &e["Service"]);
        let checks: Vec<Json> = e["Checks"].as_array().cloned().unwrap_or_default();
        let status = aggregated(&checks);
        if !q.filter.is_empty() && !q.filter.iter().any(|f| f == "any" || f == status) {
            continue;
        }
        let address = svc["Address"].as_str().filter(|a| !a.is_empty()).or(node["Address"].as_str()).unwrap_or("");
        let mut tags: Vec<String> =
            svc["Tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect();
        tags.sort();
        let node_name = node["Node"].as_str().unwrap_or("").to_string();
        let id = svc["ID"].as_str().unwrap_or("").to_string();
        let entry = map(vec![
            ("Node", s(&node_name)),
            ("NodeID", s(node["ID"].as_str().unwrap_or(""))),
            ("NodeAddress", s(node["Address"].as_str().unwrap_or(""))),
            ("NodeDatacenter", s(node["Datacenter"].as_str().unwrap_or(""))),
            ("NodeTaggedAddresses", str_map(&node["TaggedAddresses"])),
            ("NodeMeta", str_map(&node["Meta"])),
            ("ServiceMeta", str_map(&svc["Meta"])),
            ("Address", s(address)),
            ("ServiceTaggedAddresses", str_map(&svc["TaggedAddresses"])),
            ("ID", s(&id)),
            ("Name", s(svc["Service"].as_str().unwrap_or(""))),
            ("Kind", s(svc["Kind"].as_str().unwrap_or(""))),
            ("Tags", list(tags.iter().map(s).collect())),
            ("Checks", from_json(&Json::Array(checks.clone()))),
            ("Status", s(status)),
            ("Port", Value::Int(svc["Port"].as_i64().unwrap_or(0))),
            ("Weights", from_json(&svc["Weights"])),
            ("Namespace", s(svc["Namespace"].as_str().unwrap_or("default"))),
        ]);
        out.push((node_name, id, entry));
    }
    // Sorted by node, then ID, unless ordered by distance (`~near`).
    if q.near.is_none() {
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    }
    list(out.into_iter().map(|(_, _, v)| v).collect())
}

fn node_value(n: &Json) -> Value {
    map(vec![
        ("ID", s(n["ID"].as_str().unwrap_or(""))),
        ("Node", s(n["Node"].as_str().unwrap_or(""))),
        ("Address", s(n["Address"].as_str().unwrap_or(""))),
        ("Datacenter", s(n["Datacenter"].as_str().unwrap_or(""))),
        ("TaggedAddresses", str_map(&n["TaggedAddresses"])),
        ("Meta", str_map(&n["Meta"])),
    ])
}

/// Fetches a dependency: the value the functions use and the index to block on next. `index`
/// 0 answers at once.
pub async fn fetch(client: &Client, dep: &Dep, index: u64, wait: Duration) -> Result<(Value, u64), String> {
    let opts = |dc: &Option<String>| QueryOptions {
        index,
        wait: Some(wait),
        datacenter: dc.clone(),
        ..QueryOptions::default()
    };
    let e = |e: legate_client::Error| e.to_string();
    match dep {
        Dep::Key { key, dc } => {
            let (entry, meta) = client.kv_get(key, &opts(dc)).await.map_err(e)?;
            Ok((entry.map(|e| s(decode(&e))).unwrap_or(Value::Nil), meta.index))
        }
        Dep::List { prefix, dc } => {
            let (entries, meta) = client.kv_list(prefix, &opts(dc)).await.map_err(e)?;
            let pairs = entries.iter().map(|x| key_pair(x, &x.key)).collect();
            Ok((list(pairs), meta.index))
        }
        Dep::Service(q) => {
            let mut extra: Vec<(&str, &str)> = Vec::new();
            if let Some(t) = &q.tag {
                extra.push(("tag", t));
            }
            if let Some(n) = &q.near {
                extra.push(("near", n));
            }
            if q.filter.is_empty() {
                extra.push(("passing", ""));
            }
            let path = format!("/v1/health/service/{}", q.name);
            let (entries, meta): (Vec<Json>, _) = client.get_json(&path, &opts(&q.dc), &extra).await.map_err(e)?;
            Ok((health_services(&entries, q), meta.index))
        }
        Dep::Services { dc } => {
            let (m, meta): (BTreeMap<String, Vec<String>>, _) =
                client.get_json("/v1/catalog/services", &opts(dc), &[]).await.map_err(e)?;
            let items = m
                .into_iter()
                .map(|(name, mut tags)| {
                    tags.sort();
                    map(vec![("Name", s(name)), ("Tags", list(tags.iter().map(s).collect()))])
                })
                .collect();
            Ok((list(items), meta.index))
        }
        Dep::Node { name, dc } => {
            let name = match name {
                Some(n) => n.clone(),
                None => {
                    let (me, _): (Json, _) =
                        client.get_json("/v1/agent/self", &QueryOptions::default(), &[]).await.map_err(e)?;
                    me["Config"]["NodeName"].as_str().unwrap_or_default().to_string()
                }
            };
            let path = format!("/v1/catalog/node/{name}");
            let (j, meta): (Json, _) = client.get_json(&path, &opts(dc), &[]).await.map_err(e)?;
            if j.is_null() || j["Node"].is_null() {
                return Ok((Value::Nil, meta.index));
            }
            let mut services: Vec<(String, Value)> = j["Services"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, svc)| {
                    let mut tags: Vec<String> = svc["Tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect();
                    tags.sort();
                    let id = svc["ID"].as_str().unwrap_or("").to_string();
                    let v = map(vec![
                        ("ID", s(&id)),
                        ("Service", s(svc["Service"].as_str().unwrap_or(""))),
                        ("Tags", list(tags.iter().map(s).collect())),
                        ("Meta", str_map(&svc["Meta"])),
                        ("Port", Value::Int(svc["Port"].as_i64().unwrap_or(0))),
                        ("Address", s(svc["Address"].as_str().unwrap_or(""))),
                        ("EnableTagOverride", Value::Bool(svc["EnableTagOverride"].as_bool().unwrap_or(false))),
                    ]);
                    (id, v)
                })
                .collect();
            services.sort_by(|a, b| a.0.cmp(&b.0));
            let node = map(vec![
                ("Node", node_value(&j["Node"])),
                ("Services", list(services.into_iter().map(|(_, v)| v).collect())),
            ]);
            Ok((node, meta.index))
        }
        Dep::Nodes { dc, near } => {
            let mut extra = Vec::new();
            if let Some(n) = near {
                extra.push(("near", n.as_str()));
            }
            let (nodes, meta): (Vec<Json>, _) =
                client.get_json("/v1/catalog/nodes", &opts(dc), &extra).await.map_err(e)?;
            let mut items: Vec<(String, String, Value)> = nodes
                .iter()
                .map(|n| {
                    let key =
                        (n["Node"].as_str().unwrap_or("").to_string(), n["Address"].as_str().unwrap_or("").to_string());
                    (key.0, key.1, node_value(n))
                })
                .collect();
            if near.is_none() {
                items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            }
            Ok((list(items.into_iter().map(|(_, _, v)| v).collect()), meta.index))
        }
        Dep::Datacenters { reachable_only } => {
            let (mut dcs, _): (Vec<String>, _) =
                client.get_json("/v1/catalog/datacenters", &QueryOptions::default(), &[]).await.map_err(e)?;
            dcs.sort();
            if *reachable_only {
                let mut up = Vec::new();
                for dc in dcs {
                    let o = QueryOptions { consistent: true, datacenter: Some(dc.clone()), ..QueryOptions::default() };
                    if client.get_json::<Json>("/v1/catalog/services", &o, &[]).await.is_ok() {
                        up.push(dc);
                    }
                }
                dcs = up;
            }
            // No index: the watcher re-reads it on a timer.
            Ok((list(dcs.iter().map(s).collect()), 0))
        }
        Dep::File(path) => match tokio::fs::read_to_string(path).await {
            Ok(text) => Ok((s(text), 0)),
            Err(err) => Err(format!("file({}): {err}", path.display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_queries_parse_like_consul_templates() {
        let q = service_query(&["release.web@dc2~_agent|passing,warning".into()]).unwrap();
        assert_eq!(q.name, "web");
        assert_eq!(q.tag.as_deref(), Some("release"));
        assert_eq!(q.dc.as_deref(), Some("dc2"));
        assert_eq!(q.near.as_deref(), Some("_agent"));
        assert_eq!(q.filter, vec!["passing", "warning"]);
        let q = service_query(&["v1.2.web".into(), "any".into()]).unwrap();
        assert_eq!((q.tag.as_deref(), q.name.as_str()), (Some("v1.2"), "web"));
        assert_eq!(q.filter, vec!["any"]);
        assert!(service_query(&["web|bogus".into()]).is_err());
        assert_eq!(kv_query("app/config@dc2"), ("app/config".into(), Some("dc2".into())));
        assert_eq!(kv_query("mail/a@b.c/x"), ("mail/a@b.c/x".into(), None));
    }
}
