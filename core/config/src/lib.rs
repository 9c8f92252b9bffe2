//! legate-config: agent configuration: the structs every part reads (`Config`), their Consul key names and
//! defaults, and validation. `load.rs` builds a `Config` from the figment layers (defaults <
//! config files and dirs < `LEGATE_*` env < flags); `reload.rs` re-runs that on SIGHUP.
//!
//! Keys are snake_case exactly as Consul writes them. Every struct denies unknown fields, as
//! Consul does (an unknown key is a start-up error naming the file and the key). Keys Consul has
//! but Legate gives no meaning (Connect, TLS, segments...) are accepted, kept as raw JSON and
//! reported with a warning, so existing Consul config files load unchanged.

pub use legate_types::duration;
mod deprecated;
pub mod load;
pub mod reload;
pub mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use duration::GoDuration;
pub use load::{load, ConfigError, LoadOptions, Loaded};

/// Keys whose values are maps replaced wholesale by a later source (Consul's merge rule), rather
/// than merged key by key. Dotted paths.
pub const WHOLESALE_MAPS: &[&str] =
    &["node_meta", "dns_config.service_ttl", "http_config.response_headers", "telemetry.dogstatsd_tags"];

/// Consul's user-visible defaults (agent/config/default.go), applied beneath every source.
fn d<T: Default>() -> T {
    T::default()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    // --- role and identity ---
    pub server: bool,
    pub bootstrap: bool,
    pub bootstrap_expect: u32,
    pub datacenter: String,
    pub primary_datacenter: Option<String>,
    pub node_name: Option<String>,
    pub node_id: Option<String>,
    pub disable_host_node_id: bool,
    pub node_meta: BTreeMap<String, String>,
    pub data_dir: Option<PathBuf>,
    /// Legate extension: where WASM plugins named without a path are found (default
    /// `<data_dir>/plugins`).
    pub plugin_dir: Option<PathBuf>,
    /// Set from `-dev`; not a config-file key (Consul has none).
    #[serde(skip)]
    pub dev: bool,

    // --- addresses and ports ---
    pub bind_addr: String,
    pub advertise_addr: Option<String>,
    pub advertise_addr_wan: Option<String>,
    pub advertise_addr_ipv4: Option<String>,
    pub advertise_addr_ipv6: Option<String>,
    pub serf_lan: Option<String>,
    pub serf_wan: Option<String>,
    pub client_addr: String,
    pub addresses: Addresses,
    pub ports: Ports,

    // --- joining ---
    pub start_join: Vec<String>,
    pub start_join_wan: Vec<String>,
    pub retry_join: Vec<String>,
    pub retry_interval: GoDuration,
    pub retry_max: u32,
    pub retry_join_wan: Vec<String>,
    pub retry_interval_wan: GoDuration,
    pub retry_max_wan: u32,
    pub rejoin_after_leave: bool,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    pub reconnect_timeout: GoDuration,
    pub reconnect_timeout_wan: GoDuration,
    pub advertise_reconnect_timeout: Option<GoDuration>,

    // --- gossip encryption ---
    pub encrypt: Option<String>,
    pub encrypt_verify_incoming: bool,
    pub encrypt_verify_outgoing: bool,
    pub disable_keyring_file: bool,

    // --- logging ---
    pub log_level: String,
    pub log_json: bool,
    pub log_file: Option<PathBuf>,
    pub log_rotate_bytes: u64,
    pub log_rotate_duration: GoDuration,
    pub log_rotate_max_files: i64,
    pub enable_syslog: bool,
    pub syslog_facility: String,
    pub pid_file: Option<PathBuf>,

    // --- UI ---
    /// Deprecated `ui = true`; folded into `ui_config.enabled`.
    pub ui: Option<bool>,
    /// Deprecated `ui_dir`; folded into `ui_config.dir`.
    pub ui_dir: Option<PathBuf>,
    pub ui_config: UiConfig,

    // --- checks and scripts ---
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub check_update_interval: GoDuration,
    pub discard_check_output: bool,
    pub check_output_max_size: u32,
    pub disable_remote_exec: bool,

    // --- DNS ---
    pub domain: String,
    pub alt_domain: Option<String>,
    pub recursors: Vec<String>,
    pub dns_config: DnsConfig,

    // --- queries, protocol versions, misc ---
    pub default_query_time: GoDuration,
    pub max_query_time: GoDuration,
    pub raft_protocol: u32,
    pub protocol: u32,
    pub auto_reload_config: bool,
    pub session_ttl_min: GoDuration,
    pub disable_update_check: bool,
    pub disable_coordinates: bool,
    /// How often, at least, this agent sends its network coordinate to the servers (Consul's
    /// internal `sync_coordinate_interval_min`, 15 s; settable here, e.g. for tests).
    pub sync_coordinate_interval_min: GoDuration,
    /// Coordinate updates per second the whole datacenter should stay under: the interval grows
    /// with the number of members (Consul's internal `sync_coordinate_rate_target`, 64).
    pub sync_coordinate_rate_target: f64,
    pub disable_anonymous_signature: bool,
    pub enable_debug: bool,
    pub translate_wan_addrs: bool,
    pub discovery_max_stale: GoDuration,
    pub raft_snapshot_threshold: u64,
    pub raft_snapshot_interval: GoDuration,
    pub raft_trailing_logs: u64,
    /// Legate extension: how long KV tombstones are kept before the leader reaps them
    /// (Consul's internal TombstoneTTL, 15m).
    pub tombstone_ttl: GoDuration,
    pub http_config: HttpConfig,
    pub acl: AclConfig,
    pub limits: Limits,
    /// TLS of the HTTPS API and the RPC port (the old top-level keys are folded in at load).
    pub tls: tls::TlsConfig,
    /// HTTP, gRPC, HTTP/2 and TCP+TLS checks verify their targets with the agent's CA and
    /// present its certificate (`tls.internal_rpc`'s files), as Consul's do.
    pub enable_agent_tls_for_checks: bool,
    pub telemetry: Telemetry,
    pub performance: Performance,
    pub gossip_lan: GossipConfig,
    pub gossip_wan: GossipConfig,
    pub autopilot: Autopilot,
    /// The plugin registry (Legate's own): push size limit and the keys registry plugins must
    /// be signed by.
    pub plugins: Plugins,

    // --- definitions (accumulate across sources) ---
    /// Singular `service {}`; folded into `services` while loading.
    pub service: Option<ServiceDefinition>,
    pub services: Vec<ServiceDefinition>,
    /// Singular `check {}`; folded into `checks` while loading.
    pub check: Option<CheckDefinition>,
    pub checks: Vec<CheckDefinition>,
    pub watches: Vec<WatchDefinition>,
    /// Legate's own: `template` blocks (consul-template's), rendered by the agent.
    pub templates: Vec<legate_template::TemplateSpec>,

    // --- Consul keys accepted without effect in Legate (warned about at load) ---
    pub connect: Option<Json>,
    pub auto_encrypt: Option<Json>,
    pub peering: Option<Json>,
    pub segments: Option<Json>,
    pub config_entries: Option<Json>,
    pub license_path: Option<Json>,
    pub experiments: Option<Json>,
    pub audit: Option<Json>,
}

/// Keys of `Config` that are accepted for compatibility but change nothing
/// (`raft_snapshot_interval`: Raft checks `raft_snapshot_threshold` after every apply instead of
/// on a timer).
pub const INERT_KEYS: &[&str] = &[
    "connect",
    "auto_encrypt",
    "peering",
    "segments",
    "config_entries",
    "license_path",
    "experiments",
    "audit",
    "raft_snapshot_interval",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            server: false,
            bootstrap: false,
            bootstrap_expect: 0,
            datacenter: "dc1".into(),
            primary_datacenter: None,
            node_name: None,
            node_id: None,
            disable_host_node_id: true,
            node_meta: d(),
            data_dir: None,
            plugin_dir: None,
            dev: false,
            bind_addr: "0.0.0.0".into(),
            advertise_addr: None,
            advertise_addr_wan: None,
            advertise_addr_ipv4: None,
            advertise_addr_ipv6: None,
            serf_lan: None,
            serf_wan: None,
            client_addr: "127.0.0.1".into(),
            addresses: d(),
            ports: d(),
            start_join: d(),
            start_join_wan: d(),
            retry_join: d(),
            retry_interval: GoDuration::from_secs(30),
            retry_max: 0,
            retry_join_wan: d(),
            retry_interval_wan: GoDuration::from_secs(30),
            retry_max_wan: 0,
            rejoin_after_leave: false,
            leave_on_terminate: None,
            skip_leave_on_interrupt: None,
            reconnect_timeout: GoDuration::from_secs(72 * 3600),
            reconnect_timeout_wan: GoDuration::from_secs(72 * 3600),
            advertise_reconnect_timeout: None,
            encrypt: None,
            encrypt_verify_incoming: true,
            encrypt_verify_outgoing: true,
            disable_keyring_file: false,
            log_level: "info".into(),
            log_json: false,
            log_file: None,
            log_rotate_bytes: 0,
            log_rotate_duration: GoDuration::from_secs(24 * 3600),
            log_rotate_max_files: 0,
            enable_syslog: false,
            syslog_facility: "LOCAL0".into(),
            pid_file: None,
            ui: None,
            ui_dir: None,
            ui_config: d(),
            enable_script_checks: false,
            enable_local_script_checks: false,
            check_update_interval: GoDuration::from_secs(300),
            discard_check_output: false,
            check_output_max_size: 4096,
            disable_remote_exec: true,
            domain: "consul.".into(),
            alt_domain: None,
            recursors: d(),
            dns_config: d(),
            default_query_time: GoDuration::from_secs(300),
            max_query_time: GoDuration::from_secs(600),
            raft_protocol: 3,
            protocol: 2,
            // Legate watches its config sources by default (Consul: false).
            auto_reload_config: true,
            session_ttl_min: GoDuration::from_secs(10),
            disable_update_check: false,
            disable_coordinates: false,
            sync_coordinate_interval_min: GoDuration::from_secs(15),
            sync_coordinate_rate_target: 64.0,
            disable_anonymous_signature: false,
            enable_debug: false,
            translate_wan_addrs: false,
            discovery_max_stale: GoDuration::default(),
            raft_snapshot_threshold: 16384,
            raft_snapshot_interval: GoDuration::from_secs(30),
            raft_trailing_logs: 10240,
            tombstone_ttl: GoDuration::from_secs(15 * 60),
            http_config: d(),
            acl: d(),
            limits: d(),
            tls: d(),
            enable_agent_tls_for_checks: false,
            telemetry: d(),
            performance: d(),
            gossip_lan: GossipConfig::lan(),
            gossip_wan: GossipConfig::wan(),
            autopilot: d(),
            plugins: d(),
            service: None,
            services: d(),
            check: None,
            checks: d(),
            watches: d(),
            templates: d(),
            connect: None,
            auto_encrypt: None,
            peering: None,
            segments: None,
            config_entries: None,
            license_path: None,
            experiments: None,
            audit: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Addresses {
    pub http: Option<String>,
    pub https: Option<String>,
    pub dns: Option<String>,
    pub grpc: Option<String>,
    pub grpc_tls: Option<String>,
}

/// Ports; `-1` disables a listener, `0` lets the OS choose (used by tests).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Ports {
    pub http: i32,
    pub https: i32,
    pub dns: i32,
    pub serf_lan: i32,
    pub serf_wan: i32,
    pub server: i32,
    pub grpc: i32,
    pub grpc_tls: i32,
    pub sidecar_min_port: i32,
    pub sidecar_max_port: i32,
    pub expose_min_port: i32,
    pub expose_max_port: i32,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: 8500,
            https: -1,
            dns: 8600,
            serf_lan: 8301,
            serf_wan: 8302,
            server: 8300,
            grpc: -1,
            grpc_tls: -1,
            sidecar_min_port: 21000,
            sidecar_max_port: 21255,
            expose_min_port: 21500,
            expose_max_port: 21755,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    pub enabled: bool,
    pub dir: Option<PathBuf>,
    pub content_path: Option<String>,
    pub metrics_provider: Option<String>,
    pub metrics_provider_files: Vec<String>,
    pub metrics_provider_options_json: Option<String>,
    pub metrics_proxy: Option<Json>,
    pub dashboard_url_templates: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    pub allow_stale: bool,
    pub max_stale: GoDuration,
    pub node_ttl: GoDuration,
    pub service_ttl: BTreeMap<String, GoDuration>,
    pub only_passing: bool,
    pub udp_answer_limit: u32,
    pub a_record_limit: u32,
    pub enable_truncate: bool,
    pub recursor_strategy: String,
    pub recursor_timeout: GoDuration,
    pub disable_compression: bool,
    pub enable_additional_node_meta_txt: bool,
    pub soa: SoaConfig,
    pub use_cache: bool,
    pub cache_max_age: GoDuration,
    pub prefer_namespace: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            allow_stale: true,
            max_stale: GoDuration::from_secs(87600 * 3600),
            node_ttl: GoDuration::default(),
            service_ttl: d(),
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            recursor_strategy: "sequential".into(),
            recursor_timeout: GoDuration::from_secs(2),
            disable_compression: false,
            enable_additional_node_meta_txt: true,
            soa: d(),
            use_cache: false,
            cache_max_age: GoDuration::default(),
            prefer_namespace: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SoaConfig {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        SoaConfig { refresh: 3600, retry: 600, expire: 86400, min_ttl: 0 }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub block_endpoints: Vec<String>,
    pub response_headers: BTreeMap<String, String>,
    pub allow_write_http_from: Vec<String>,
    pub use_cache: Option<bool>,
    pub max_header_bytes: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: String,
    pub down_policy: String,
    pub token_ttl: GoDuration,
    pub policy_ttl: GoDuration,
    pub role_ttl: GoDuration,
    pub enable_token_persistence: bool,
    pub enable_key_list_policy: bool,
    pub enable_token_replication: bool,
    pub tokens: AclTokens,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_policy: "allow".into(),
            down_policy: "extend-cache".into(),
            token_ttl: GoDuration::from_secs(30),
            policy_ttl: GoDuration::from_secs(30),
            role_ttl: GoDuration::from_secs(30),
            enable_token_persistence: false,
            enable_key_list_policy: false,
            enable_token_replication: false,
            tokens: d(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AclTokens {
    pub initial_management: Option<String>,
    pub agent: Option<String>,
    pub agent_recovery: Option<String>,
    pub default: Option<String>,
    pub replication: Option<String>,
    pub dns: Option<String>,
    pub config_file_service_registration: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub http_max_conns_per_client: u32,
    /// Legate's: a client must send a request's whole head within this, else the connection
    /// is closed (slowloris); also how long an idle keep-alive connection is kept.
    pub http_handshake_timeout: GoDuration,
    pub https_handshake_timeout: GoDuration,
    pub rpc_handshake_timeout: GoDuration,
    pub rpc_client_timeout: GoDuration,
    pub rpc_max_conns_per_client: u32,
    /// `rpc_rate` accepts a number or the string "inf" (Go's rate.Inf).
    pub rpc_rate: Option<Json>,
    pub rpc_max_burst: u32,
    pub kv_max_value_size: u64,
    pub txn_max_req_len: u64,
    pub request_limits: Option<Json>,
    /// Legate's: a server's leader refuses writes while the data dir's filesystem has fewer
    /// bytes free than this (a full disk would otherwise stop its Raft core).
    pub data_dir_min_free: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_conns_per_client: 200,
            http_handshake_timeout: GoDuration::from_secs(30),
            https_handshake_timeout: GoDuration::from_secs(5),
            rpc_handshake_timeout: GoDuration::from_secs(5),
            rpc_client_timeout: GoDuration::from_secs(60),
            rpc_max_conns_per_client: 100,
            rpc_rate: None,
            rpc_max_burst: 1000,
            kv_max_value_size: 512 * 1024,
            txn_max_req_len: 512 * 1024,
            request_limits: None,
            data_dir_min_free: 64 << 20,
        }
    }
}

pub use legate_telemetry::Telemetry;

/// A CIDR block, or one address as a block of its own.
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse().ok().or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Performance {
    pub raft_multiplier: u32,
    pub leave_drain_time: GoDuration,
    pub rpc_hold_timeout: GoDuration,
}

impl Default for Performance {
    fn default() -> Self {
        Performance {
            raft_multiplier: 5,
            leave_drain_time: GoDuration::from_secs(5),
            rpc_hold_timeout: GoDuration::from_secs(7),
        }
    }
}

pub use legate_gossip::GossipConfig;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Autopilot {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: GoDuration,
    pub max_trailing_logs: u64,
    pub min_quorum: u32,
    pub server_stabilization_time: GoDuration,
    pub disable_upgrade_migration: bool,
    pub redundancy_zone_tag: Option<String>,
    pub upgrade_version_tag: Option<String>,
}

impl Default for Autopilot {
    fn default() -> Self {
        Autopilot {
            cleanup_dead_servers: true,
            last_contact_threshold: GoDuration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: GoDuration::from_secs(10),
            disable_upgrade_migration: false,
            redundancy_zone_tag: None,
            upgrade_version_tag: None,
        }
    }
}

/// The largest plugin `PUT /v1/plugin/<name>` takes by default.
pub const DEFAULT_PLUGIN_MAX_SIZE: u64 = 32 << 20;
/// The most `plugins.max_size` may be (the HTTP API reads bodies up to 64 MiB).
pub const MAX_PLUGIN_MAX_SIZE: u64 = 64 << 20;

/// `plugins {}`: the plugin registry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Plugins {
    /// The largest component a push may store, in bytes (servers; 1 to 64 MiB).
    pub max_size: u64,
    /// Ed25519 public keys (`ed25519:<base64>`, as `legate plugin keygen` prints them). When
    /// set, this agent runs only registry plugins signed by one of them.
    pub trusted_keys: Vec<String>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins { max_size: DEFAULT_PLUGIN_MAX_SIZE, trusted_keys: Vec::new() }
    }
}

impl Plugins {
    /// The trusted keys' bytes (validated at load: a key that does not parse is skipped).
    pub fn trusted_key_bytes(&self) -> Vec<[u8; 32]> {
        self.trusted_keys.iter().filter_map(|k| legate_plugin_host::signing::parse_public_key(k).ok()).collect()
    }
}

/// A service definition as written in config files (`service {}` / `services []`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceDefinition {
    pub id: Option<String>,
    pub name: String,
    pub kind: Option<String>,
    pub tags: Vec<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub socket_path: Option<String>,
    pub meta: BTreeMap<String, String>,
    pub tagged_addresses: BTreeMap<String, TaggedAddress>,
    #[serde(alias = "enableTagOverride")]
    pub enable_tag_override: bool,
    pub weights: Option<Weights>,
    pub check: Option<CheckDefinition>,
    pub checks: Vec<CheckDefinition>,
    pub token: Option<String>,
    pub namespace: Option<String>,
    pub partition: Option<String>,
    pub proxy: Option<Json>,
    pub connect: Option<Json>,
    /// Where the service runs (Consul 1.17+); shown by the agent's service endpoints.
    pub locality: Option<Locality>,
}

/// A service's region and zone.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Locality {
    pub region: String,
    pub zone: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TaggedAddress {
    pub address: String,
    pub port: u16,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

/// A check definition as written in config files (`check {}` / `checks []` / inside a service).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckDefinition {
    #[serde(alias = "check_id")]
    pub id: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub status: Option<String>,
    pub service_id: Option<String>,
    pub token: Option<String>,
    pub interval: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
    pub ttl: Option<GoDuration>,
    pub args: Vec<String>,
    #[serde(alias = "script_args")]
    pub script: Option<String>,
    pub http: Option<String>,
    pub method: Option<String>,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: Option<String>,
    pub tls_server_name: Option<String>,
    pub tls_skip_verify: bool,
    pub disable_redirects: bool,
    pub tcp: Option<String>,
    pub tcp_use_tls: bool,
    pub udp: Option<String>,
    pub grpc: Option<String>,
    pub grpc_use_tls: bool,
    pub h2ping: Option<String>,
    pub h2ping_use_tls: bool,
    pub docker_container_id: Option<String>,
    pub shell: Option<String>,
    pub os_service: Option<String>,
    pub alias_service: Option<String>,
    pub alias_node: Option<String>,
    pub deregister_critical_service_after: Option<GoDuration>,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    pub output_max_size: Option<u32>,
    /// Legate extension: a WASM check plugin (see [`WasmSpec`]).
    pub wasm: Option<WasmSpec>,
}

pub use legate_plugin_host::spec::{FileGrant, WasmSpec};

pub use legate_watch::WatchDefinition;

/// A recursor address: an IP (port 53) or `ip:port`.
pub fn parse_recursor(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

impl Config {
    /// The node name: configured, else the host name (Consul's default).
    pub fn node_name(&self) -> String {
        match &self.node_name {
            Some(n) => n.clone(),
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        }
    }

    /// `client_addr` is a space-separated list of IPs (Consul).
    pub fn client_addrs(&self) -> Vec<IpAddr> {
        self.client_addr.split_whitespace().filter_map(|s| s.parse().ok()).collect()
    }

    /// Addresses the HTTP API listens on: `addresses.http` if set, else `client_addr`.
    pub fn http_addrs(&self) -> Vec<IpAddr> {
        match &self.addresses.http {
            Some(a) => a.split_whitespace().filter_map(|s| s.parse().ok()).collect(),
            None => self.client_addrs(),
        }
    }

    /// Addresses the HTTPS API listens on: `addresses.https` if set, else `client_addr`.
    pub fn https_addrs(&self) -> Vec<IpAddr> {
        match &self.addresses.https {
            Some(a) => a.split_whitespace().filter_map(|s| s.parse().ok()).collect(),
            None => self.client_addrs(),
        }
    }

    /// TLS of the HTTPS API (`tls.https` over `tls.defaults`).
    pub fn https_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, legate_tls::TlsError> {
        self.tls.settings(tls::Listener::Https).server_config(&[b"h2", b"http/1.1"])
    }

    /// TLS of the RPC port and of outgoing RPC (`tls.internal_rpc` over `tls.defaults`).
    pub fn rpc_tls(&self) -> Result<legate_tls::RpcTls, legate_tls::TlsError> {
        legate_tls::RpcTls::new(&self.tls.settings(tls::Listener::InternalRpc), &self.datacenter, &self.domain)
    }

    /// `limits.rpc_rate` as requests per second; None: no limit (unset, "inf", or a number so
    /// large it is Go's rate.Inf).
    pub fn rpc_rate(&self) -> Option<f64> {
        match &self.limits.rpc_rate {
            Some(Json::Number(n)) => n.as_f64().filter(|r| r.is_finite() && *r < f64::MAX),
            _ => None,
        }
    }

    /// Networks allowed to write through the HTTP API (`http_config.allow_write_http_from`);
    /// empty: every client.
    pub fn allow_write_from(&self) -> Vec<ipnet::IpNet> {
        self.http_config.allow_write_http_from.iter().filter_map(|c| parse_cidr(c)).collect()
    }

    /// Addresses the DNS server listens on: `addresses.dns` if set, else `client_addr`.
    pub fn dns_addrs(&self) -> Vec<IpAddr> {
        match &self.addresses.dns {
            Some(a) => a.split_whitespace().filter_map(|s| s.parse().ok()).collect(),
            None => self.client_addrs(),
        }
    }

    /// Consul: `ui_config.enabled`, or a custom UI in `ui_config.dir`.
    pub fn ui_enabled(&self) -> bool {
        self.ui_config.enabled || self.ui_config.dir.is_some()
    }

    /// Where the UI is served: `ui_config.content_path` with a leading and trailing `/`
    /// (Consul adds them), default `/ui/`.
    pub fn ui_content_path(&self) -> String {
        let path = self.ui_config.content_path.as_deref().unwrap_or("/ui/").trim_matches('/');
        if path.is_empty() {
            "/".into()
        } else {
            format!("/{path}/")
        }
    }

    /// Consul's defaults for leave behaviour differ by role.
    pub fn leave_on_terminate(&self) -> bool {
        self.leave_on_terminate.unwrap_or(!self.server)
    }

    pub fn skip_leave_on_interrupt(&self) -> bool {
        self.skip_leave_on_interrupt.unwrap_or(self.server)
    }

    pub fn primary_datacenter(&self) -> &str {
        self.primary_datacenter.as_deref().unwrap_or(&self.datacenter)
    }
}
