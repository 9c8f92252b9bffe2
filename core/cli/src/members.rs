//! `legate members`, `join`, `leave`, `force-leave`, with Consul's columns and messages.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Print every tag
    #[arg(long)]
    detailed: bool,
    /// Only members whose status matches this regular expression
    #[arg(long, default_value = ".*")]
    status: String,
    /// The WAN pool
    #[arg(long)]
    wan: bool,
}

#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[arg(long)]
    wan: bool,
    addrs: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct LeaveArgs {
    #[command(flatten)]
    http: HttpFlags,
}

#[derive(clap::Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Remove the member entirely instead of marking it left
    #[arg(long)]
    prune: bool,
    /// The member is in the WAN pool (<node>.<datacenter>)
    #[arg(long)]
    wan: bool,
    node: String,
}

fn status_name(code: u64) -> &'static str {
    match code {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

pub fn run_members(a: MembersArgs) -> i32 {
    block_on(async move {
        let re = regex::Regex::new(&a.status).map_err(|e| format!("Failed to compile status regexp: {e}"))?;
        let extra: Vec<(&str, &str)> = if a.wan { vec![("wan", "1")] } else { vec![] };
        let (members, _): (Vec<Json>, _) = a
            .http
            .client()?
            .get_json("/v1/agent/members", &a.http.query(), &extra)
            .await
            .map_err(|e| format!("Error retrieving members: {e}"))?;
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut sorted = members;
        sorted.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
        for m in &sorted {
            let status = status_name(m["Status"].as_u64().unwrap_or(0));
            if !re.is_match(status) {
                continue;
            }
            let tags: BTreeMap<String, String> = serde_json::from_value(m["Tags"].clone()).unwrap_or_default();
            let addr = format!("{}:{}", m["Addr"].as_str().unwrap_or_default(), m["Port"].as_u64().unwrap_or(0));
            let name = m["Name"].as_str().unwrap_or_default().to_string();
            if a.detailed {
                let t = tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                rows.push(vec![name, addr, status.into(), t]);
            } else {
                let server = tags.get("role").map(String::as_str) == Some("consul");
                let build =
                    tags.get("build").map(|b| b.split(':').next().unwrap_or_default().to_string()).unwrap_or_default();
                rows.push(vec![
                    name,
                    addr,
                    status.into(),
                    if server { "server" } else { "client" }.into(),
                    build,
                    tags.get("vsn").cloned().unwrap_or_default(),
                    tags.get("dc").cloned().unwrap_or_default(),
                    "default".into(),
                    if server { "<all>" } else { "<default>" }.into(),
                ]);
            }
        }
        if rows.is_empty() {
            return Ok(2);
        }
        let header: Vec<String> = if a.detailed {
            ["Node", "Address", "Status", "Tags"].iter().map(|s| s.to_string()).collect()
        } else {
            ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        rows.insert(0, header);
        println!("{}", super::table(&rows));
        Ok(0)
    })
}

pub fn run_join(a: JoinArgs) -> i32 {
    block_on(async move {
        if a.addrs.is_empty() {
            return Err("At least one address to join must be specified.".into());
        }
        let client = a.http.client()?;
        let mut joined = 0;
        for addr in &a.addrs {
            let q: Vec<(&str, &str)> = if a.wan { vec![("wan", "1")] } else { vec![] };
            match client.put_json(&format!("/v1/agent/join/{addr}"), &q, None).await {
                Ok(_) => joined += 1,
                Err(e) => eprintln!("Error joining address '{addr}': {e}"),
            }
        }
        if joined == 0 {
            return Err("Failed to join any nodes.".into());
        }
        println!("Successfully joined cluster by contacting {joined} nodes.");
        Ok(0)
    })
}

pub fn run_leave(a: LeaveArgs) -> i32 {
    block_on(async move {
        a.http.client()?.put_json("/v1/agent/leave", &[], None).await.map_err(|e| format!("Error leaving: {e}"))?;
        println!("Graceful leave complete");
        Ok(0)
    })
}

pub fn run_force_leave(a: ForceLeaveArgs) -> i32 {
    block_on(async move {
        let mut q: Vec<(&str, &str)> = if a.prune { vec![("prune", "1")] } else { vec![] };
        if a.wan {
            q.push(("wan", "1"));
        }
        a.http
            .client()?
            .put_json(&format!("/v1/agent/force-leave/{}", a.node), &q, None)
            .await
            .map_err(|e| format!("Error force leaving: {e}"))?;
        Ok(0)
    })
}

#[derive(clap::Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Name of the event
    #[arg(long, default_value = "")]
    name: String,
    /// Regular expression over node names
    #[arg(long, default_value = "")]
    node: String,
    /// Regular expression over service names
    #[arg(long, default_value = "")]
    service: String,
    /// Regular expression over service tags (needs -service)
    #[arg(long, default_value = "")]
    tag: String,
    payload: Vec<String>,
}

pub fn run_event(a: EventArgs) -> i32 {
    block_on(async move {
        if a.name.is_empty() {
            return Err("Event name must be specified".into());
        }
        if !a.tag.is_empty() && a.service.is_empty() {
            return Err("Cannot provide tag filter without service filter.".into());
        }
        if a.payload.len() > 1 {
            return Err("Too many command line arguments.".into());
        }
        let mut q: Vec<(&str, &str)> = Vec::new();
        for (k, v) in [("node", &a.node), ("service", &a.service), ("tag", &a.tag)] {
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        let client = a.http.client()?;
        let body = a.payload.first().cloned().unwrap_or_default();
        let resp = client
            .put_raw(&format!("/v1/event/fire/{}", a.name), &q, body.into_bytes())
            .await
            .map_err(|e| format!("Error firing event: {e}"))?;
        let v: Json = serde_json::from_slice(&resp).map_err(|e| format!("Error decoding response: {e}"))?;
        println!("Event ID: {}", v["ID"].as_str().unwrap_or_default());
        Ok(0)
    })
}

#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    #[command(flatten)]
    http: HttpFlags,
}

pub fn run_reload(a: ReloadArgs) -> i32 {
    block_on(async move {
        a.http.client()?.put_json("/v1/agent/reload", &[], None).await.map_err(|e| format!("Error reloading: {e}"))?;
        println!("Configuration reload triggered");
        Ok(0)
    })
}
