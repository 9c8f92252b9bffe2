//! What a definition asks of a plugin: the `wasm` block of a check or watch handler, as
//! written in config files and registration bodies.

use std::path::PathBuf;

use legate_types::GoDuration;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A WASM plugin use: which plugin, its configuration and what it may reach. The `wasm` block
/// of a check definition (and of a watch handler). Keys are snake_case; the PascalCase forms of
/// Consul-style API bodies are accepted too.
///
/// `plugin` is a path to a `.wasm` component (containing a `/`, or ending in `.wasm`), or a name
/// looked up as `<plugin_dir>/<name>.wasm` (`plugin_dir` defaults to `<data_dir>/plugins`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WasmSpec {
    #[serde(alias = "Plugin")]
    pub plugin: String,
    /// Passed to the plugin as string pairs (non-string values as their JSON text).
    #[serde(alias = "Args")]
    pub args: serde_json::Map<String, Json>,
    /// Hosts the plugin's `http` and `net` calls may reach: `host`, `host:port`, `*.domain`, or
    /// `*` for any. Empty: no network at all.
    #[serde(alias = "AllowHosts")]
    pub allow_hosts: Vec<String>,
    /// KV prefixes the plugin's `kv` calls may read. Empty: no KV.
    #[serde(alias = "KVReadPrefixes", alias = "KvReadPrefixes")]
    pub kv_read_prefixes: Vec<String>,
    /// Linear-memory cap per call (default 64 MiB).
    #[serde(alias = "MemoryMB", alias = "MemoryMb")]
    pub memory_mb: Option<u32>,
    /// Host directories the plugin may see through WASI (default: none).
    #[serde(alias = "Files")]
    pub files: Vec<FileGrant>,
    /// Budget of one handler call (checks use the check's `timeout`); default 30s.
    #[serde(alias = "Timeout")]
    pub timeout: Option<GoDuration>,
    /// Optional pin: the hex SHA-256 the plugin file must have.
    #[serde(alias = "SHA256", alias = "Sha256")]
    pub sha256: Option<String>,
}

/// A directory granted to a plugin through WASI preopens.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileGrant {
    /// The directory on the agent's host.
    #[serde(alias = "HostDir")]
    pub host_dir: PathBuf,
    /// Where the plugin sees it (default `/`).
    #[serde(alias = "GuestDir")]
    pub guest_dir: Option<String>,
    /// Whether the plugin may create and write files there (default read-only).
    #[serde(alias = "Writable")]
    pub writable: bool,
}
