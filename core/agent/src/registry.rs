//! The plugin registry as this agent sees it ([`FleetRegistry`], installed in the plugin host):
//! server agents read their own replicated store; client agents keep a view of the registry
//! (kept current by [`registry_loop`], one long-poll `PluginList` call to the servers) and
//! fetch blobs chunk by chunk (`PluginChunk`). Both calls carry the agent token and are the
//! agent's own: they do not count against `limits.rpc_rate`.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use legate_acl::{Access, Resource};
use legate_api::plugin::ViewVersion;
use legate_plugin_host::{PluginRef, Registry, RegistryEntry};
use legate_state::plugin as store_registry;
use tokio_util::sync::CancellationToken;

use crate::AgentShared;

/// How long one `PluginList` call waits for a change.
const LONG_POLL: Duration = Duration::from_secs(300);
/// Chunks fetched at once from the servers.
const FETCH_WINDOW: usize = 3;
/// Deadline of one chunk call.
const CHUNK_DEADLINE: Duration = Duration::from_secs(30);

/// A client agent's copy of the registry: every version its agent token may read.
#[derive(Default)]
struct View {
    /// The registry's index when it was read (0: never read).
    index: u64,
    versions: Vec<ViewVersion>,
}

/// The agent's [`Registry`]. Holds the agent weakly: the agent owns the plugin host, which
/// owns this.
pub struct FleetRegistry {
    agent: Weak<AgentShared>,
    view: RwLock<View>,
    /// Wakes [`registry_loop`] from its back-off once a direct read reached a server.
    wake: tokio::sync::Notify,
}

impl FleetRegistry {
    pub fn new(agent: Weak<AgentShared>) -> FleetRegistry {
        FleetRegistry { agent, view: RwLock::default(), wake: tokio::sync::Notify::new() }
    }

    fn agent(&self) -> Result<Arc<AgentShared>, String> {
        self.agent.upgrade().ok_or_else(|| "agent is shutting down".to_string())
    }

    fn index(&self) -> u64 {
        self.view.read().unwrap_or_else(|p| p.into_inner()).index
    }

    fn replace(&self, index: u64, versions: Vec<ViewVersion>) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = View { index, versions };
    }

    /// Reads the registry from a server now (no wait) into the view.
    async fn refresh(&self, agent: &AgentShared) -> Result<(), String> {
        let token = agent.acl.agent_token(agent, "agent");
        let (index, json) = agent.link.plugin_list(token, 0, Duration::ZERO).await.map_err(|e| e.to_string())?;
        let versions: Vec<ViewVersion> =
            serde_json::from_str(&json).map_err(|e| format!("plugin registry view: {e}"))?;
        self.replace(index, versions);
        self.wake.notify_one();
        Ok(())
    }

    /// What the view says a reference names.
    fn in_view(&self, r: &PluginRef) -> Option<ViewVersion> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let found = view.versions.iter().rev().find(|v| match r {
            PluginRef::Registry { name, version: Some(ver) } => &v.name == name && &v.version == ver,
            PluginRef::Registry { name, version: None } => &v.name == name && v.latest,
            PluginRef::Digest(sha) => &v.sha256 == sha,
            PluginRef::File(_) => false,
        });
        let found = found.cloned();
        drop(view);
        found
    }

    /// What a server agent's own store says a reference names, for a token of `authz`.
    fn from_store(
        store: &legate_state::Store,
        r: &PluginRef,
        authz: &legate_acl::Authz,
    ) -> Result<RegistryEntry, String> {
        let txn = store.read().map_err(|e| e.to_string())?;
        let version = match r {
            PluginRef::Registry { name, version } => {
                store_registry::resolve(&txn, name, version.as_deref()).map_err(|e| e.to_string())?
            }
            PluginRef::Digest(sha) => store_registry::by_digest(&txn, sha).map_err(|e| e.to_string())?.pop(),
            PluginRef::File(_) => None,
        };
        let Some(v) = version else {
            return Err(not_found(r));
        };
        if !authz.allowed(Resource::Plugin, &v.name, Access::Read) {
            return Err(format!("plugin {r}: Permission denied: the agent token lacks 'plugin:read' on {:?}", v.name));
        }
        let blob = store_registry::blob(&txn, &v.sha256).map_err(|e| e.to_string())?.unwrap_or_default();
        let signatures = blob
            .signatures
            .iter()
            .filter_map(|s| Some((decode_b64(&s.public_key)?, decode_b64(&s.signature)?)))
            .collect();
        Ok(RegistryEntry { name: v.name, version: v.version, sha256: v.sha256, size: v.size, signatures })
    }
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    legate_plugin_host::signing::from_b64(text).ok()
}

fn not_found(r: &PluginRef) -> String {
    format!("plugin {r} is not in the registry")
}

fn entry_of(v: ViewVersion) -> RegistryEntry {
    let signatures =
        v.signatures.iter().filter_map(|s| Some((decode_b64(&s.public_key)?, decode_b64(&s.signature)?))).collect();
    RegistryEntry { name: v.name, version: v.version, sha256: v.sha256, size: v.size, signatures }
}

#[async_trait::async_trait]
impl Registry for FleetRegistry {
    async fn resolve(&self, r: &PluginRef) -> Result<RegistryEntry, String> {
        let agent = self.agent()?;
        if let Some(server) = agent.server() {
            let token = agent.acl.agent_token(&agent, "agent");
            let authz = match agent.acl.authorize(&agent, token.as_deref()).await {
                Ok(a) => a,
                Err(crate::acl::ResolveError::NotFound) => return Err("the agent token: ACL not found".into()),
                Err(crate::acl::ResolveError::Unavailable(why)) => return Err(why),
            };
            let store = server.store.clone();
            return Self::from_store(&store, r, &authz);
        }
        if self.index() == 0 {
            self.refresh(&agent).await?;
        }
        if let Some(v) = self.in_view(r) {
            return Ok(entry_of(v));
        }
        // Pushed a moment ago, before the long poll brought it: ask once more.
        self.refresh(&agent).await?;
        self.in_view(r).map(entry_of).ok_or_else(|| not_found(r))
    }

    async fn fetch(&self, e: &RegistryEntry) -> Result<Vec<u8>, String> {
        let agent = self.agent()?;
        if let Some(server) = agent.server() {
            let store = server.store.clone();
            let sha = e.sha256.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                let txn = store.read()?;
                store_registry::assemble(&txn, &sha)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            return bytes.ok_or_else(|| format!("blob {} is not in the registry", e.sha256));
        }
        let token = agent.acl.agent_token(&agent, "agent");
        let total = store_registry::chunk_count(e.size);
        let mut parts: Vec<Option<Vec<u8>>> = vec![None; total as usize];
        let mut calls = tokio::task::JoinSet::new();
        let mut next = 0u32;
        loop {
            while calls.len() < FETCH_WINDOW && next < total {
                let (agent, token, sha, i) = (agent.clone(), token.clone(), e.sha256.clone(), next);
                calls.spawn(async move { (i, agent.link.plugin_chunk(token, &sha, i, CHUNK_DEADLINE).await) });
                next += 1;
            }
            let Some(done) = calls.join_next().await else { break };
            let (i, chunk) = done.map_err(|err| err.to_string())?;
            let chunk = chunk.map_err(|err| format!("fetching chunk {i} of blob {}: {err}", e.sha256))?;
            parts[i as usize] = Some(chunk);
        }
        let mut bytes = Vec::with_capacity(e.size as usize);
        for part in parts {
            bytes.extend_from_slice(&part.ok_or("a chunk is missing")?);
        }
        Ok(bytes)
    }

    fn trusted_keys(&self) -> Vec<[u8; 32]> {
        self.agent.upgrade().map(|a| a.config().plugins.trusted_key_bytes()).unwrap_or_default()
    }
}

/// Keeps a client agent's view of the registry current: one long-poll `PluginList` call at a
/// time, backing off from 1 s to 30 s while the servers cannot answer.
pub async fn registry_loop(registry: Arc<FleetRegistry>, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(agent) = registry.agent.upgrade() else { return };
        let index = registry.index();
        let token = agent.acl.agent_token(&agent, "agent");
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = agent.link.plugin_list(token, index, LONG_POLL) => r,
        };
        drop(agent);
        let failure = match result {
            Ok((new_index, json)) => match serde_json::from_str::<Vec<ViewVersion>>(&json) {
                Ok(versions) => {
                    if new_index != index {
                        tracing::debug!(index = new_index, versions = versions.len(), "plugin registry view updated");
                    }
                    registry.replace(new_index, versions);
                    backoff = Duration::from_secs(1);
                    None
                }
                Err(e) => Some(format!("plugin registry view: {e}")),
            },
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            tracing::debug!(error = %why, retry_in = ?backoff, "plugin registry view not updated");
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = registry.wake.notified() => backoff = Duration::from_secs(1),
                _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(30)),
            }
        }
    }
}
