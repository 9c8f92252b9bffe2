//! `legate catalog datacenters|nodes|services`, `legate services register|deregister`,
//! `legate maint`, with Consul's flags and output.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Subcommand, Debug)]
pub enum CatalogCommand {
    /// Lists the known datacenters
    Datacenters {
        #[command(flatten)]
        http: HttpFlags,
    },
    /// Lists the nodes in the catalog
    Nodes {
        #[command(flatten)]
        http: HttpFlags,
        /// Print every column (full node ID, tagged addresses, meta)
        #[arg(long)]
        detailed: bool,
        /// Only nodes with this service (name or ID)
        #[arg(long)]
        service: Option<String>,
        /// key=value node meta to match (repeatable)
        #[arg(long = "node-meta")]
        node_meta: Vec<String>,
        /// A go-bexpr filter over the nodes
        #[arg(long)]
        filter: Option<String>,
    },
    /// Lists the services in the catalog
    Services {
        #[command(flatten)]
        http: HttpFlags,
        /// Print the tags of each service
        #[arg(long)]
        tags: bool,
        /// Only the services on this node
        #[arg(long)]
        node: Option<String>,
        #[arg(long = "node-meta")]
        node_meta: Vec<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ServicesCommand {
    /// Registers services from definition files (JSON or HCL), or one from flags
    Register {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long = "meta")]
        meta: Vec<String>,
        files: Vec<std::path::PathBuf>,
    },
    /// Deregisters services by ID, or those defined in files
    Deregister {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: Option<String>,
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct MaintArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Enable maintenance mode
    #[arg(long)]
    enable: bool,
    /// Disable maintenance mode
    #[arg(long)]
    disable: bool,
    /// Why (shown in the check's Notes)
    #[arg(long, default_value = "")]
    reason: String,
    /// A service ID instead of the node
    #[arg(long)]
    service: Option<String>,
}

fn meta_pairs(v: &[String]) -> Result<Vec<String>, String> {
    v.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok(format!("{k}:{v}")),
            None => Err(format!("Invalid node-meta {kv:?}: expected key=value")),
        })
        .collect()
}

pub fn run_catalog(cmd: CatalogCommand) -> i32 {
    block_on(async move {
        match cmd {
            CatalogCommand::Datacenters { http } => {
                let (dcs, _): (Vec<String>, _) = http
                    .client()?
                    .get_json("/v1/catalog/datacenters", &http.query(), &[])
                    .await
                    .map_err(|e| format!("Error listing datacenters: {e}"))?;
                for dc in dcs {
                    println!("{dc}");
                }
                Ok(0)
            }
            CatalogCommand::Nodes { http, detailed, service, node_meta, filter } => {
                let client = http.client()?;
                let meta = meta_pairs(&node_meta)?;
                let mut extra: Vec<(&str, &str)> = meta.iter().map(|m| ("node-meta", m.as_str())).collect();
                if let Some(f) = &filter {
                    extra.push(("filter", f));
                }
                let (mut nodes, _): (Vec<Json>, _) = client
                    .get_json("/v1/catalog/nodes", &http.query(), &extra)
                    .await
                    .map_err(|e| format!("Error listing nodes: {e}"))?;
                if let Some(svc) = &service {
                    let (instances, _): (Vec<Json>, _) = client
                        .get_json(&format!("/v1/catalog/service/{svc}"), &http.query(), &[])
                        .await
                        .map_err(|e| format!("Error listing nodes for service: {e}"))?;
                    nodes.retain(|n| instances.iter().any(|i| i["Node"] == n["Node"]));
                }
                if nodes.is_empty() {
                    eprintln!("No nodes match the given query - try expanding your search.");
                    return Ok(0);
                }
                let mut rows = vec![if detailed {
                    vec!["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
                } else {
                    vec!["Node", "ID", "Address", "DC"]
                }
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()];
                for n in &nodes {
                    let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                    let id = s("ID");
                    let mut row = vec![
                        s("Node"),
                        if detailed { id } else { id.chars().take(8).collect() },
                        s("Address"),
                        s("Datacenter"),
                    ];
                    if detailed {
                        let kv = |m: &Json| {
                            let m: BTreeMap<String, String> = serde_json::from_value(m.clone()).unwrap_or_default();
                            m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
                        };
                        row.push(kv(&n["TaggedAddresses"]));
                        row.push(kv(&n["Meta"]));
                    }
                    rows.push(row);
                }
                println!("{}", super::table(&rows));
                Ok(0)
            }
            CatalogCommand::Services { http, tags, node, node_meta } => {
                let client = http.client()?;
                let meta = meta_pairs(&node_meta)?;
                let extra: Vec<(&str, &str)> = meta.iter().map(|m| ("node-meta", m.as_str())).collect();
                let services: BTreeMap<String, Vec<String>> = match &node {
                    Some(n) => {
                        let (v, _): (Json, _) = client
                            .get_json(&format!("/v1/catalog/node/{n}"), &http.query(), &[])
                            .await
                            .map_err(|e| format!("Error listing services for node: {e}"))?;
                        let mut out = BTreeMap::new();
                        for s in v["Services"].as_object().into_iter().flat_map(|m| m.values()) {
                            let tags: Vec<String> = serde_json::from_value(s["Tags"].clone()).unwrap_or_default();
                            out.insert(s["Service"].as_str().unwrap_or_default().to_string(), tags);
                        }
                        out
                    }
                    None => {
                        client
                            .get_json("/v1/catalog/services", &http.query(), &extra)
                            .await
                            .map_err(|e| format!("Error listing services: {e}"))?
                            .0
                    }
                };
                if services.is_empty() {
                    eprintln!("No services match the given query - try expanding your search.");
                    return Ok(0);
                }
                if tags {
                    let rows: Vec<Vec<String>> = services.iter().map(|(s, t)| vec![s.clone(), t.join(",")]).collect();
                    println!("{}", super::table(&rows));
                } else {
                    for s in services.keys() {
                        println!("{s}");
                    }
                }
                Ok(0)
            }
        }
    })
}

/// Service definitions of a file: `service {}` or `services []` (JSON or HCL), as config files.
fn definitions(path: &std::path::Path) -> Result<Vec<Json>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("Error reading {}: {e}", path.display()))?;
    let v: Json = if path.extension().is_some_and(|e| e == "hcl") {
        legate_hcl::from_str(&text).map_err(|e| format!("Error parsing {}: {e}", path.display()))?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("Error parsing {}: {e}", path.display()))?
    };
    let mut out = Vec::new();
    if let Some(s) = v.get("service") {
        out.push(s.clone());
    }
    if let Some(list) = v.get("services").and_then(Json::as_array) {
        out.extend(list.iter().cloned());
    }
    if out.is_empty() {
        return Err(format!("{}: no service definitions found", path.display()));
    }
    Ok(out)
}

pub fn run_services(cmd: ServicesCommand) -> i32 {
    block_on(async move {
        match cmd {
            ServicesCommand::Register { http, name, id, address, port, tags, meta, files } => {
                let client = http.client()?;
                let mut defs = Vec::new();
                for f in &files {
                    defs.extend(definitions(f)?);
                }
                if let Some(name) = name {
                    let meta: BTreeMap<String, String> = meta
                        .iter()
                        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                        .collect();
                    defs.push(
                        json!({"name": name, "id": id, "address": address, "port": port, "tags": tags, "meta": meta}),
                    );
                }
                if defs.is_empty() {
                    return Err("Error! Must specify service definition files or -name".into());
                }
                for d in defs {
                    let label = d
                        .get("id")
                        .and_then(Json::as_str)
                        .or(d.get("name").and_then(Json::as_str))
                        .unwrap_or("")
                        .to_string();
                    client
                        .put_json("/v1/agent/service/register", &[], Some(&d))
                        .await
                        .map_err(|e| format!("Error registering service {label:?}: {e}"))?;
                    println!("Registered service: {label}");
                }
                Ok(0)
            }
            ServicesCommand::Deregister { http, id, files } => {
                let client = http.client()?;
                let mut ids: Vec<String> = id.into_iter().collect();
                for f in &files {
                    for d in definitions(f)? {
                        let id = d.get("id").and_then(Json::as_str).or(d.get("name").and_then(Json::as_str));
                        ids.extend(id.map(str::to_string));
                    }
                }
                if ids.is_empty() {
                    return Err("Error! Must specify -id or service definition files".into());
                }
                for id in ids {
                    client
                        .put_json(&format!("/v1/agent/service/deregister/{id}"), &[], None)
                        .await
                        .map_err(|e| format!("Error deregistering service {id:?}: {e}"))?;
                    println!("Deregistered service: {id}");
                }
                Ok(0)
            }
        }
    })
}

pub fn run_maint(a: MaintArgs) -> i32 {
    block_on(async move {
        if a.enable && a.disable {
            return Err("Only one of -enable or -disable may be provided".into());
        }
        let client = a.http.client()?;
        if !a.enable && !a.disable {
            let (checks, _): (BTreeMap<String, Json>, _) = client
                .get_json("/v1/agent/checks", &a.http.query(), &[])
                .await
                .map_err(|e| format!("Error querying agent checks: {e}"))?;
            for (id, c) in &checks {
                if id == "_node_maintenance" {
                    println!(
                        "Node:\n  Name:   {}\n  Reason: {}",
                        c["Node"].as_str().unwrap_or_default(),
                        c["Notes"].as_str().unwrap_or_default()
                    );
                } else if let Some(svc) = id.strip_prefix("_service_maintenance:") {
                    println!("Service:\n  ID:     {svc}\n  Reason: {}", c["Notes"].as_str().unwrap_or_default());
                }
            }
            return Ok(0);
        }
        let enable = if a.enable { "true" } else { "false" };
        let path = match &a.service {
            Some(id) => format!("/v1/agent/service/maintenance/{id}"),
            None => "/v1/agent/maintenance".to_string(),
        };
        client
            .put_json(&path, &[("enable", enable), ("reason", &a.reason)], None)
            .await
            .map_err(|e| format!("Error toggling maintenance mode: {e}"))?;
        let state = if a.enable { "enabled" } else { "disabled" };
        match &a.service {
            Some(id) => println!("Service maintenance is now {state} for {id:?}"),
            None => println!("Node maintenance is now {state}"),
        }
        Ok(0)
    })
}
