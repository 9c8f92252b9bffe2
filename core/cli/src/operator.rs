//! `legate operator raft list-peers|remove-peer`, `legate operator autopilot
//! get-config|set-config|state`, `legate keygen`, `legate keyring`, `legate info`,
//! `legate monitor`.

use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value as Json};

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Subcommand, Debug)]
pub enum OperatorCommand {
    /// Raft peer operations
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Autopilot configuration and state
    #[command(subcommand)]
    Autopilot(AutopilotCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum AutopilotCommand {
    /// Shows the autopilot configuration
    GetConfig {
        #[command(flatten)]
        http: HttpFlags,
    },
    /// Changes the given settings of the autopilot configuration (atomically)
    SetConfig {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long = "cleanup-dead-servers")]
        cleanup_dead_servers: Option<bool>,
        #[arg(long = "max-trailing-logs")]
        max_trailing_logs: Option<u64>,
        #[arg(long = "min-quorum")]
        min_quorum: Option<u32>,
        #[arg(long = "last-contact-threshold")]
        last_contact_threshold: Option<String>,
        #[arg(long = "server-stabilization-time")]
        server_stabilization_time: Option<String>,
        #[arg(long = "redundancy-zone-tag")]
        redundancy_zone_tag: Option<String>,
        #[arg(long = "disable-upgrade-migration")]
        disable_upgrade_migration: Option<bool>,
        #[arg(long = "upgrade-version-tag")]
        upgrade_version_tag: Option<String>,
    },
    /// Shows the autopilot state of the servers
    State {
        #[command(flatten)]
        http: HttpFlags,
        /// Output format: pretty (default) or json
        #[arg(long, default_value = "pretty")]
        format: String,
    },
}

async fn autopilot(cmd: AutopilotCommand) -> Result<i32, String> {
    let path = "/v1/operator/autopilot/configuration";
    match cmd {
        AutopilotCommand::GetConfig { http } => {
            let (v, _): (Json, _) = http
                .client()?
                .get_json(path, &http.query(), &[])
                .await
                .map_err(|e| format!("Error querying Autopilot configuration: {e}"))?;
            for k in legate_api::operator::AUTOPILOT_FIELDS {
                let val = match &v[*k] {
                    Json::String(s) if s.is_empty() => "\"\"".to_string(),
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{k} = {val}");
            }
            Ok(0)
        }
        AutopilotCommand::SetConfig {
            http,
            cleanup_dead_servers,
            max_trailing_logs,
            min_quorum,
            last_contact_threshold,
            server_stabilization_time,
            redundancy_zone_tag,
            disable_upgrade_migration,
            upgrade_version_tag,
        } => {
            let client = http.client()?;
            let (mut v, _): (Json, _) = client
                .get_json(path, &http.query(), &[])
                .await
                .map_err(|e| format!("Error querying Autopilot configuration: {e}"))?;
            for d in [&last_contact_threshold, &server_stabilization_time].into_iter().flatten() {
                legate_types::duration::parse_go_duration(d)
                    .map_err(|e| format!("Error parsing duration {d:?}: {e}"))?;
            }
            let changes = [
                ("CleanupDeadServers", cleanup_dead_servers.map(Json::from)),
                ("MaxTrailingLogs", max_trailing_logs.map(Json::from)),
                ("MinQuorum", min_quorum.map(Json::from)),
                ("LastContactThreshold", last_contact_threshold.map(Json::from)),
                ("ServerStabilizationTime", server_stabilization_time.map(Json::from)),
                ("RedundancyZoneTag", redundancy_zone_tag.map(Json::from)),
                ("DisableUpgradeMigration", disable_upgrade_migration.map(Json::from)),
                ("UpgradeVersionTag", upgrade_version_tag.map(Json::from)),
            ];
            for (k, new) in changes {
                if let Some(new) = new {
                    v[k] = new;
                }
            }
            let cas = v["ModifyIndex"].as_u64().unwrap_or(0).to_string();
            let body = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
            let answer = client
                .put_raw(path, &[("cas", cas.as_str())], body)
                .await
                .map_err(|e| format!("Error setting Autopilot configuration: {e}"))?;
            if String::from_utf8_lossy(&answer).trim() == "true" {
                println!("Configuration updated!");
                Ok(0)
            } else {
                Err("Configuration could not be atomically updated, please try again".into())
            }
        }
        AutopilotCommand::State { http, format } => {
            let (v, _): (Json, _) = http
                .client()?
                .get_json("/v1/operator/autopilot/state", &http.query(), &[])
                .await
                .map_err(|e| format!("Error querying Autopilot state: {e}"))?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
                return Ok(0);
            }
            let s = |j: &Json| j.as_str().map(str::to_string).unwrap_or_else(|| j.to_string());
            println!("Healthy:                      {}", s(&v["Healthy"]));
            println!("Failure Tolerance:            {}", s(&v["FailureTolerance"]));
            println!("Optimistic Failure Tolerance: {}", s(&v["OptimisticFailureTolerance"]));
            println!("Leader:                       {}", s(&v["Leader"]));
            println!("Voters:");
            for id in v["Voters"].as_array().into_iter().flatten() {
                println!("   {}", s(id));
            }
            println!("\nServers:");
            for (id, srv) in v["Servers"].as_object().into_iter().flatten() {
                println!("   {id}");
                for k in [
                    "Name",
                    "Address",
                    "Version",
                    "Status",
                    "NodeType",
                    "NodeStatus",
                    "Healthy",
                    "LastContact",
                    "LastTerm",
                    "LastIndex",
                ] {
                    println!("      {:<14}{}", format!("{k}:"), s(&srv[k]));
                }
            }
            Ok(0)
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum RaftCommand {
    /// Lists the Raft peers
    ListPeers {
        #[command(flatten)]
        http: HttpFlags,
    },
    /// Removes a Raft peer by -address or -id
    RemovePeer {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// Transfers Raft leadership to another server (-id, or the most up-to-date one)
    TransferLeader {
        #[command(flatten)]
        http: HttpFlags,
        /// The server ID of the new leader
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct KeyringArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[arg(long)]
    list: bool,
    #[arg(long)]
    install: Option<String>,
    #[arg(long = "use")]
    use_key: Option<String>,
    #[arg(long)]
    remove: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// trace, debug, info (default), warn or err
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
    /// Lines as JSON
    #[arg(long = "log-json")]
    log_json: bool,
}

/// `legate monitor`: prints the agent's log lines as they come, until interrupted.
pub fn run_monitor(a: MonitorArgs) -> i32 {
    block_on(async move {
        let mut q = vec![("loglevel", a.log_level.as_str())];
        if a.log_json {
            q.push(("logjson", "true"));
        }
        let mut resp = a
            .http
            .client()?
            .get_stream("/v1/agent/monitor", &q)
            .await
            .map_err(|e| format!("Error starting monitor: {e}"))?;
        let mut out = std::io::stdout();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("Error reading logs: {e}"))? {
            use std::io::Write;
            out.write_all(&chunk).and_then(|()| out.flush()).map_err(|e| e.to_string())?;
        }
        Ok(0)
    })
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    http: HttpFlags,
}

pub fn run_operator(cmd: OperatorCommand) -> i32 {
    block_on(async move {
        match cmd {
            OperatorCommand::Autopilot(cmd) => autopilot(cmd).await,
            OperatorCommand::Raft(RaftCommand::ListPeers { http }) => {
                let (v, _): (Json, _) = http
                    .client()?
                    .get_json("/v1/operator/raft/configuration", &http.query(), &[])
                    .await
                    .map_err(|e| format!("Error getting peers: {e}"))?;
                let mut rows =
                    vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"].map(String::from).to_vec()];
                for s in v["Servers"].as_array().into_iter().flatten() {
                    let state = if s["Leader"].as_bool() == Some(true) { "leader" } else { "follower" };
                    rows.push(vec![
                        s["Node"].as_str().unwrap_or_default().to_string(),
                        s["ID"].as_str().unwrap_or_default().to_string(),
                        s["Address"].as_str().unwrap_or_default().to_string(),
                        state.to_string(),
                        s["Voter"].as_bool().unwrap_or(false).to_string(),
                        s["ProtocolVersion"].as_str().unwrap_or("3").to_string(),
                    ]);
                }
                println!("{}", super::table(&rows));
                Ok(0)
            }
            OperatorCommand::Raft(RaftCommand::RemovePeer { http, address, id }) => {
                let q: Vec<(&str, &str)> = match (&address, &id) {
                    (Some(a), None) => vec![("address", a)],
                    (None, Some(i)) => vec![("id", i)],
                    _ => return Err("Error removing peer: exactly one of -address or -id is required".into()),
                };
                let client = http.client()?;
                client
                    .delete_path("/v1/operator/raft/peer", &q)
                    .await
                    .map_err(|e| format!("Error removing peer: {e}"))?;
                match (address, id) {
                    (Some(a), _) => println!("Removed peer with address \"{a}\""),
                    (_, Some(i)) => println!("Removed peer with id \"{i}\""),
                    _ => {}
                }
                Ok(0)
            }
            OperatorCommand::Raft(RaftCommand::TransferLeader { http, id }) => {
                let path = match id.as_deref().filter(|i| !i.is_empty()) {
                    Some(i) => format!("/v1/operator/raft/transfer-leader?id={}", urlencoding(i)),
                    None => "/v1/operator/raft/transfer-leader".to_string(),
                };
                let client = http.client()?;
                client
                    .request_json("POST", &path, &serde_json::Value::Null)
                    .await
                    .map_err(|e| format!("Error transferring leadership: {e}"))?;
                println!("Success");
                Ok(0)
            }
        }
    })
}

pub fn run_keygen() -> i32 {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
    0
}

pub fn run_keyring(a: KeyringArgs) -> i32 {
    block_on(async move {
        let client = a.http.client()?;
        let chosen =
            [a.list, a.install.is_some(), a.use_key.is_some(), a.remove.is_some()].iter().filter(|x| **x).count();
        if chosen != 1 {
            return Err("Exactly one of -list, -install, -use, or -remove must be provided".into());
        }
        if a.list {
            println!("==> Gathering installed encryption keys...");
            let (v, _): (Json, _) = client
                .get_json("/v1/operator/keyring", &a.http.query(), &[])
                .await
                .map_err(|e| format!("Error: {e}"))?;
            for pool in v.as_array().into_iter().flatten() {
                let n = pool["NumNodes"].as_u64().unwrap_or(0);
                println!("\n{} (LAN):", pool["Datacenter"].as_str().unwrap_or_default());
                for (k, c) in pool["Keys"].as_object().into_iter().flatten() {
                    println!("  {k} [{}/{n}]", c.as_u64().unwrap_or(0));
                }
            }
            return Ok(0);
        }
        let (method, key, msg) = if let Some(k) = &a.install {
            ("POST", k, "Installing new gossip encryption key...")
        } else if let Some(k) = &a.use_key {
            ("PUT", k, "Changing primary gossip encryption key...")
        } else {
            ("DELETE", a.remove.as_ref().expect("one chosen"), "Removing gossip encryption key...")
        };
        println!("==> {msg}");
        client
            .request_json(method, "/v1/operator/keyring", &json!({"Key": key}))
            .await
            .map_err(|e| format!("error: {e}"))?;
        Ok(0)
    })
}

pub fn run_info(a: InfoArgs) -> i32 {
    block_on(async move {
        let (v, _): (Json, _) = a
            .http
            .client()?
            .get_json("/v1/agent/self", &a.http.query(), &[])
            .await
            .map_err(|e| format!("Error querying agent: {e}"))?;
        for (section, values) in v["Stats"].as_object().into_iter().flatten() {
            println!("{section}:");
            for (k, val) in values.as_object().into_iter().flatten() {
                println!("\t{k} = {}", val.as_str().map(str::to_string).unwrap_or_else(|| val.to_string()));
            }
        }
        Ok(0)
    })
}

/// `s` as a URL query value.
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
