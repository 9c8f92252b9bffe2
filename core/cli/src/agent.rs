//! `legate agent`: Consul's agent flags, mapped onto config keys as the top layer; start-up
//! banner; signal handling (SIGINT/SIGTERM graceful or not as Consul decides, SIGHUP reload).

use std::path::PathBuf;

use clap::ArgMatches;
use serde_json::{json, Map as JsonMap, Value as Json};

use legate_config::LoadOptions;

/// Consul's `agent` flags. Boolean flags take no value or `=true|false` (Go's rule).
#[derive(clap::Args, Debug, Default)]
pub struct AgentFlags {
    /// Run in server mode (Raft voter)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    server: Option<bool>,
    /// Self-elect as Raft leader (one server per datacenter)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    bootstrap: Option<bool>,
    /// Number of servers to wait for before bootstrapping the cluster
    #[arg(long)]
    bootstrap_expect: Option<u32>,
    /// Address to bind cluster communication (gossip and server RPC) to
    #[arg(long)]
    bind: Option<String>,
    /// Address to advertise to the cluster
    #[arg(long)]
    advertise: Option<String>,
    /// Address to advertise on the WAN
    #[arg(long)]
    advertise_wan: Option<String>,
    /// Address(es) for HTTP and DNS, space-separated
    #[arg(long)]
    client: Option<String>,
    /// Datacenter of the agent
    #[arg(long, alias = "dc")]
    datacenter: Option<String>,
    /// Directory for agent state
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Node name (default: host name)
    #[arg(long)]
    node: Option<String>,
    /// Node ID (UUID; default: random, persisted in data-dir)
    #[arg(long)]
    node_id: Option<String>,
    /// Node metadata key:value (repeatable)
    #[arg(long, value_name = "KEY:VALUE")]
    node_meta: Vec<String>,
    /// Address of an agent to join at start (repeatable; alias of -retry-join, as Consul)
    #[arg(long)]
    join: Vec<String>,
    /// Address of an agent to join, retried until it succeeds (repeatable)
    #[arg(long)]
    retry_join: Vec<String>,
    /// Time to wait between join attempts
    #[arg(long)]
    retry_interval: Option<String>,
    /// Maximum join attempts (0: unlimited)
    #[arg(long)]
    retry_max: Option<u32>,
    /// WAN address to join at start (repeatable)
    #[arg(long)]
    join_wan: Vec<String>,
    /// WAN address to join, retried (repeatable)
    #[arg(long)]
    retry_join_wan: Vec<String>,
    #[arg(long)]
    retry_interval_wan: Option<String>,
    #[arg(long)]
    retry_max_wan: Option<u32>,
    /// Ignore a previous leave and rejoin on start
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rejoin: Option<bool>,
    /// Gossip encryption key (base64)
    #[arg(long)]
    encrypt: Option<String>,
    /// Log level: trace, debug, info, warn, error
    #[arg(long)]
    log_level: Option<String>,
    /// Log in JSON
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    log_json: Option<bool>,
    /// Also log to this file (or directory, ending in /)
    #[arg(long)]
    log_file: Option<PathBuf>,
    #[arg(long)]
    log_rotate_bytes: Option<u64>,
    #[arg(long)]
    log_rotate_duration: Option<String>,
    #[arg(long)]
    log_rotate_max_files: Option<i64>,
    /// Log to syslog
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    syslog: Option<bool>,
    /// Write the agent's pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Serve the web UI
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ui: Option<bool>,
    /// Directory of web UI assets
    #[arg(long)]
    ui_dir: Option<PathBuf>,
    /// Path prefix of the web UI
    #[arg(long)]
    ui_content_path: Option<String>,
    /// Development mode: server, bootstrapped, in-memory, loopback, UI on
    #[arg(long)]
    dev: bool,
    /// A config file or directory (repeatable; loaded in command-line order)
    #[arg(long)]
    config_file: Vec<PathBuf>,
    /// A config directory (repeatable; *.json, *.hcl, *.toml in lexical order)
    #[arg(long)]
    config_dir: Vec<PathBuf>,
    /// Force the format of config files: json, hcl or toml
    #[arg(long, value_parser = ["json", "hcl", "toml"])]
    config_format: Option<String>,
    /// An HCL config fragment (repeatable; applied above the flags)
    #[arg(long)]
    hcl: Vec<String>,
    #[arg(long, allow_hyphen_values = true)]
    http_port: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    https_port: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    dns_port: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    server_port: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    serf_lan_port: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    serf_wan_port: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    grpc_port: Option<i32>,
    /// Address to bind LAN gossip to
    #[arg(long)]
    serf_lan_bind: Option<String>,
    /// Address to bind WAN gossip to
    #[arg(long)]
    serf_wan_bind: Option<String>,
    /// Allow script checks (from config and the HTTP API)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_script_checks: Option<bool>,
    /// Allow script checks defined in local config files only
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    enable_local_script_checks: Option<bool>,
    /// Upstream DNS server (repeatable)
    #[arg(long)]
    recursor: Vec<String>,
    /// DNS domain (default consul.)
    #[arg(long)]
    domain: Option<String>,
    /// Alternative DNS domain
    #[arg(long)]
    alt_domain: Option<String>,
    /// Gossip protocol version
    #[arg(long)]
    protocol: Option<u32>,
    /// Raft protocol version
    #[arg(long)]
    raft_protocol: Option<u32>,
    #[arg(long)]
    default_query_time: Option<String>,
    #[arg(long)]
    max_query_time: Option<String>,
    /// Reload config automatically when its files change (Legate default: true)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    auto_reload_config: Option<bool>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    disable_host_node_id: Option<bool>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    disable_keyring_file: Option<bool>,
}

impl AgentFlags {
    /// The flags that were given, as config keys.
    pub fn to_layer(&self) -> Result<JsonMap<String, Json>, String> {
        let mut m = JsonMap::new();
        let mut set = |path: &str, v: Json| {
            let mut parts: Vec<&str> = path.split('.').collect();
            let last = parts.pop().expect("non-empty path");
            let mut cur = &mut m;
            for p in parts {
                cur = cur
                    .entry(p.to_string())
                    .or_insert_with(|| Json::Object(JsonMap::new()))
                    .as_object_mut()
                    .expect("object");
            }
            cur.insert(last.to_string(), v);
        };
        macro_rules! opt {
            ($field:expr, $key:expr) => {
                if let Some(v) = &$field {
                    set($key, json!(v));
                }
            };
        }
        macro_rules! list {
            ($field:expr, $key:expr) => {
                if !$field.is_empty() {
                    set($key, json!($field));
                }
            };
        }
        opt!(self.server, "server");
        opt!(self.bootstrap, "bootstrap");
        opt!(self.bootstrap_expect, "bootstrap_expect");
        opt!(self.bind, "bind_addr");
        opt!(self.advertise, "advertise_addr");
        opt!(self.advertise_wan, "advertise_addr_wan");
        opt!(self.client, "client_addr");
        opt!(self.datacenter, "datacenter");
        opt!(self.data_dir, "data_dir");
        opt!(self.node, "node_name");
        opt!(self.node_id, "node_id");
        if !self.node_meta.is_empty() {
            let mut meta = JsonMap::new();
            for kv in &self.node_meta {
                let (k, v) =
                    kv.split_once(':').ok_or_else(|| format!("-node-meta: {kv:?} is not in key:value form"))?;
                meta.insert(k.to_string(), json!(v));
            }
            set("node_meta", Json::Object(meta));
        }
        list!(self.join, "start_join");
        list!(self.retry_join, "retry_join");
        opt!(self.retry_interval, "retry_interval");
        opt!(self.retry_max, "retry_max");
        list!(self.join_wan, "start_join_wan");
        list!(self.retry_join_wan, "retry_join_wan");
        opt!(self.retry_interval_wan, "retry_interval_wan");
        opt!(self.retry_max_wan, "retry_max_wan");
        opt!(self.rejoin, "rejoin_after_leave");
        opt!(self.encrypt, "encrypt");
        opt!(self.log_level, "log_level");
        opt!(self.log_json, "log_json");
        opt!(self.log_file, "log_file");
        opt!(self.log_rotate_bytes, "log_rotate_bytes");
        opt!(self.log_rotate_duration, "log_rotate_duration");
        opt!(self.log_rotate_max_files, "log_rotate_max_files");
        opt!(self.syslog, "enable_syslog");
        opt!(self.pid_file, "pid_file");
        opt!(self.ui, "ui_config.enabled");
        opt!(self.ui_dir, "ui_config.dir");
        opt!(self.ui_content_path, "ui_config.content_path");
        opt!(self.http_port, "ports.http");
        opt!(self.https_port, "ports.https");
        opt!(self.dns_port, "ports.dns");
        opt!(self.server_port, "ports.server");
        opt!(self.serf_lan_port, "ports.serf_lan");
        opt!(self.serf_wan_port, "ports.serf_wan");
        opt!(self.grpc_port, "ports.grpc");
        opt!(self.serf_lan_bind, "serf_lan");
        opt!(self.serf_wan_bind, "serf_wan");
        opt!(self.enable_script_checks, "enable_script_checks");
        opt!(self.enable_local_script_checks, "enable_local_script_checks");
        list!(self.recursor, "recursors");
        opt!(self.domain, "domain");
        opt!(self.alt_domain, "alt_domain");
        opt!(self.protocol, "protocol");
        opt!(self.raft_protocol, "raft_protocol");
        opt!(self.default_query_time, "default_query_time");
        opt!(self.max_query_time, "max_query_time");
        opt!(self.auto_reload_config, "auto_reload_config");
        opt!(self.disable_host_node_id, "disable_host_node_id");
        opt!(self.disable_keyring_file, "disable_keyring_file");
        Ok(m)
    }

    /// `-config-file` and `-config-dir` in the order they were given.
    fn sources(&self, matches: &ArgMatches) -> Vec<PathBuf> {
        let mut indexed: Vec<(usize, PathBuf)> = Vec::new();
        for (id, values) in [("config_file", &self.config_file), ("config_dir", &self.config_dir)] {
            if let Some(idx) = matches.indices_of(id) {
                indexed.extend(idx.zip(values.iter().cloned()));
            }
        }
        indexed.sort_by_key(|(i, _)| *i);
        indexed.into_iter().map(|(_, p)| p).collect()
    }
}

/// Builds the load options from the flags (the process's `LEGATE_*` env included).
pub fn load_options(flags: &AgentFlags, matches: &ArgMatches) -> Result<LoadOptions, String> {
    let mut layer = flags.to_layer()?;
    // -hcl fragments sit above the flags, as in Consul.
    for fragment in &flags.hcl {
        let v: Json = legate_hcl::from_str(fragment).map_err(|e| format!("-hcl {fragment:?}: {e}"))?;
        if let Json::Object(map) = v {
            for (k, v) in map {
                layer.insert(k, v);
            }
        }
    }
    Ok(LoadOptions {
        sources: flags.sources(matches),
        config_format: flags.config_format.clone(),
        dev: flags.dev,
        flags: layer,
        ..LoadOptions::default()
    }
    .with_process_env())
}
