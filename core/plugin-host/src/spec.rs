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
/// `plugin` is a registry reference (`registry:<name>` follows the latest version pushed,
/// `registry:<name>@<version>` is pinned, `sha256:<64 hex>` names a blob; see [`PluginRef`]),
/// a path to a `.wasm` component (containing a `/`, or ending in `.wasm`), or a name looked up
/// as `<plugin_dir>/<name>.wasm` (`plugin_dir` defaults to `<data_dir>/plugins`).
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

/// Where a definition's `plugin` comes from. The registry prefixes are checked first: a file in
/// `plugin_dir` cannot be named `registry:x` or `sha256:...` (a change from before the
/// registry, when that would have been looked up as `<plugin_dir>/registry:x.wasm`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PluginRef {
    /// A path or a name in `plugin_dir`.
    File(String),
    /// A registry plugin: a pinned version, or (None) the latest pushed.
    Registry { name: String, version: Option<String> },
    /// A registry blob by its digest (64 lowercase hex digits).
    Digest(String),
}

/// Whether `name` may name a registry plugin: 1 to 128 of `[A-Za-z0-9._-]`.
pub fn valid_plugin_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `version` may be a registry plugin's version: 1 to 128 of `[A-Za-z0-9.+_-]`.
pub fn valid_plugin_version(version: &str) -> bool {
    (1..=128).contains(&version.len())
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'_' | b'-'))
}

impl PluginRef {
    /// Parses a definition's `plugin`; Err says why a registry reference is malformed.
    pub fn parse(plugin: &str) -> Result<PluginRef, String> {
        if let Some(rest) = plugin.strip_prefix("registry:") {
            let (name, version) = match rest.split_once('@') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            if !valid_plugin_name(name) {
                return Err(format!("plugin {plugin:?}: a registry name is 1 to 128 of A-Z a-z 0-9 . _ -"));
            }
            if let Some(v) = version.filter(|v| !valid_plugin_version(v)) {
                return Err(format!("plugin {plugin:?}: version {v:?} is not 1 to 128 of A-Z a-z 0-9 . + _ -"));
            }
            return Ok(PluginRef::Registry { name: name.to_string(), version: version.map(str::to_string) });
        }
        if let Some(sha) = plugin.strip_prefix("sha256:") {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(format!("plugin {plugin:?}: a digest is sha256: and 64 lowercase hex digits"));
            }
            return Ok(PluginRef::Digest(sha.to_string()));
        }
        Ok(PluginRef::File(plugin.to_string()))
    }

    /// Whether the plugin comes from the registry.
    pub fn is_registry(&self) -> bool {
        !matches!(self, PluginRef::File(_))
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::File(p) => f.write_str(p),
            PluginRef::Registry { name, version: Some(v) } => write!(f, "registry:{name}@{v}"),
            PluginRef::Registry { name, version: None } => write!(f, "registry:{name}"),
            PluginRef::Digest(sha) => write!(f, "sha256:{sha}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PluginRef;

    #[test]
    fn references_parse_registry_prefixes_first() {
        assert_eq!(
            PluginRef::parse("registry:http_json").unwrap(),
            PluginRef::Registry { name: "http_json".into(), version: None }
        );
        assert_eq!(
            PluginRef::parse("registry:http_json@1.2.0+b1").unwrap(),
            PluginRef::Registry { name: "http_json".into(), version: Some("1.2.0+b1".into()) }
        );
        let sha = "a".repeat(64);
        assert_eq!(PluginRef::parse(&format!("sha256:{sha}")).unwrap(), PluginRef::Digest(sha.clone()));
        assert_eq!(PluginRef::parse("http_json").unwrap(), PluginRef::File("http_json".into()));
        assert_eq!(PluginRef::parse("./x/y.wasm").unwrap(), PluginRef::File("./x/y.wasm".into()));
        assert!(PluginRef::parse("registry:").is_err());
        assert!(PluginRef::parse("registry:a/b").is_err());
        assert!(PluginRef::parse("registry:a@").is_err());
        assert!(PluginRef::parse("registry:a@1 2").is_err());
        assert!(PluginRef::parse("sha256:ABC").is_err());
        assert!(PluginRef::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        let digest = format!("sha256:{sha}");
        for text in ["registry:x", "registry:x@1", digest.as_str()] {
            assert_eq!(PluginRef::parse(text).unwrap().to_string(), text);
        }
    }
}
