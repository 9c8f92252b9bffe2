//! The agent's WASM plugin host: where plugins and their compiled code live, and KV reads
//! from this server's store checked against the plugin definition's ACL token.

use std::sync::Arc;

use legate_config::Config;
use legate_raft::Server;
use tokio::sync::watch;

/// The agent's plugin host: plugins by name from `plugin_dir` (default `<data_dir>/plugins`),
/// compiled code cached in `<data_dir>/plugin-cache`, KV reads from this server's store.
pub fn plugin_host(
    config: &Config,
    node_name: &str,
    server: Option<&Arc<Server>>,
    live_config: watch::Receiver<Arc<Config>>,
) -> Result<legate_plugin_host::PluginHost, legate_plugin_host::PluginError> {
    let plugin_dir = config.plugin_dir.clone().or_else(|| config.data_dir.as_ref().map(|d| d.join("plugins")));
    let cache_dir = config.data_dir.as_ref().map(|d| d.join("plugin-cache"));
    let kv = server.map(|s| Arc::new(StoreKv(s.clone(), live_config)) as Arc<dyn legate_plugin_host::KvSource>);
    legate_plugin_host::PluginHost::new(legate_plugin_host::HostOptions {
        plugin_dir,
        cache_dir,
        facts: legate_plugin_host::Facts { node_name: node_name.to_string(), datacenter: config.datacenter.clone() },
        kv,
    })
}

/// Plugin KV reads from the server's state store, with the ACL token of the plugin's
/// definition (else the agent's default token) when ACLs are on.
struct StoreKv(Arc<Server>, watch::Receiver<Arc<Config>>);

impl legate_plugin_host::KvSource for StoreKv {
    fn read_allowed(&self, token: Option<&str>, key: &str) -> Result<(), String> {
        let config = self.1.borrow().clone();
        if !config.acl.enabled {
            return Ok(());
        }
        let secret = token
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .or_else(|| config.acl.tokens.default.clone())
            .unwrap_or_else(|| legate_acl::ANONYMOUS_SECRET.to_string());
        let resolved =
            crate::acl::resolve_in_store(&self.0.store, &secret).map_err(|e| e.to_string())?.ok_or("ACL not found")?;
        let authz = resolved.compile(config.acl.default_policy == "allow");
        authz.require(legate_acl::Resource::Key, key, legate_acl::Access::Read).map_err(|d| d.0)
    }

    fn get(&self, key: &str) -> Result<Option<legate_plugin_host::bindings::v0_1::kv::Entry>, String> {
        let txn = self.0.store.read().map_err(|e| e.to_string())?;
        let e = legate_state::kv::get(&txn, key).map_err(|e| e.to_string())?;
        Ok(e.map(|e| legate_plugin_host::bindings::v0_1::kv::Entry {
            key: key.to_string(),
            value: e.value,
            user_flags: e.flags,
            modify_index: e.modify_index,
        }))
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        let txn = self.0.store.read().map_err(|e| e.to_string())?;
        let entries = legate_state::kv::list(&txn, prefix).map_err(|e| e.to_string())?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }
}

/// One WASM check's last run, as `/v1/agent/plugins` shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginRun {
    /// RFC 3339.
    pub last_run: String,
    pub last_duration_ms: f64,
    /// Runs since the check or watch started on this agent.
    pub runs: u64,
    /// A watch handler's failure (a check's shows in its status and output).
    pub last_error: Option<String>,
    /// The plugin the last run used (a registry reference resolves to a version at each run).
    #[serde(skip)]
    pub running: Option<legate_plugin_host::Running>,
}

/// The key a WASM watch handler's runs are recorded under: the watch's definition.
pub fn watch_run_key(def: &legate_watch::WatchDefinition) -> String {
    format!("watch:{}", serde_json::to_string(def).unwrap_or_default())
}

/// The last run of each WASM check, by check ID.
#[derive(Default)]
pub struct Runs(std::sync::Mutex<std::collections::HashMap<String, PluginRun>>);

impl Runs {
    /// A run that started at `started` and took `took` (`error`: a failed watch handler;
    /// `running`: the plugin it used, once it loaded).
    pub fn record(
        &self,
        key: &str,
        started: std::time::SystemTime,
        took: std::time::Duration,
        error: Option<String>,
        running: Option<legate_plugin_host::Running>,
    ) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let runs = map.get(key).map_or(0, |r| r.runs) + 1;
        let last_run = crate::rfc3339(started);
        let last_duration_ms = took.as_secs_f64() * 1000.0;
        let run = PluginRun { last_run, last_duration_ms, runs, last_error: error, running };
        map.insert(key.to_string(), run);
    }

    pub fn get(&self, key: &str) -> Option<PluginRun> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}
