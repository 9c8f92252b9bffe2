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
