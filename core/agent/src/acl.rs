//! From a request's secret to an [`Authz`]. Servers read the token, its roles and policies from
//! their state store (compiled authorizers are cached until an ACL table changes); client
//! agents ask a server (an internal call over the RPC port) and cache the answer for
//! `acl.token_ttl`, falling back to `acl.down_policy` when no server answers.
//!
//! Also the agent's own tokens (`acl.tokens` in config, replaced at run time through
//! `/v1/agent/token/<kind>` and persisted when `enable_token_persistence` is set).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

pub use legate_acl::resolved::{now_unix, resolve_in_store, Resolved};

use crate::{AgentError, AgentShared};
use legate_acl::{Authz, Rules, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET};
use legate_raft::link::LinkError;
use legate_state::Store;

/// Why a secret resolves to no authorizer.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolveError {
    /// 403 `ACL not found`.
    NotFound,
    /// No server could answer and the down policy is `deny`... or an internal error (500).
    Unavailable(String),
}

struct Cached {
    authz: Arc<Authz>,
    /// The token's expiry (unix seconds, 0 never).
    expires_unix: u64,
    /// Servers: the ACL table index it was compiled at. Clients: 0.
    index: u64,
    fetched: Instant,
}

/// Token kinds settable through `/v1/agent/token/<kind>`.
pub const TOKEN_KINDS: &[&str] =
    &["default", "agent", "agent_recovery", "replication", "dns", "config_file_service_registration"];

/// Old names of those kinds.
pub fn canonical_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "default" | "acl_token" => "default",
        "agent" | "acl_agent_token" => "agent",
        "agent_recovery" | "agent_master" | "acl_agent_master_token" => "agent_recovery",
        "replication" | "acl_replication_token" => "replication",
        "dns" => "dns",
        "config_file_service_registration" => "config_file_service_registration",
        _ => return None,
    })
}

#[derive(Default)]
pub struct Resolver {
    cache: Mutex<HashMap<String, Cached>>,
    /// Tokens set at run time (kind -> secret), over the config's.
    agent_tokens: RwLock<HashMap<String, String>>,
}

fn disabled() -> Arc<Authz> {
    static D: OnceLock<Arc<Authz>> = OnceLock::new();
    D.get_or_init(|| Arc::new(Authz::disabled())).clone()
}

const CACHE_LIMIT: usize = 4096;

impl Resolver {
    /// The agent's token of a kind: set at run time, else from config. `dns` falls back to
    /// `default` (Consul).
    pub fn agent_token(&self, agent: &AgentShared, kind: &str) -> Option<String> {
        if let Some(t) = self.agent_tokens.read().unwrap_or_else(|p| p.into_inner()).get(kind) {
            return Some(t.clone()).filter(|t| !t.is_empty());
        }
        let c = agent.config();
        let t = &c.acl.tokens;
        let v = match kind {
            "default" => t.default.clone(),
            "agent" => t.agent.clone().or_else(|| t.default.clone()),
            "agent_recovery" => t.agent_recovery.clone(),
            "replication" => t.replication.clone(),
            "dns" => t.dns.clone().or_else(|| self.agent_token(agent, "default")),
            "config_file_service_registration" => t.config_file_service_registration.clone(),
            _ => None,
        };
        v.filter(|t| !t.is_empty())
    }

    /// Sets a token at run time (`/v1/agent/token/<kind>`), persisted in the data dir when
    /// `enable_token_persistence` is on.
    pub fn set_agent_token(&self, agent: &AgentShared, kind: &str, secret: String) -> Result<(), AgentError> {
        let snapshot = {
            let mut m = self.agent_tokens.write().unwrap_or_else(|p| p.into_inner());
            m.insert(kind.to_string(), secret);
            m.clone()
        };
        let c = agent.config();
        if c.acl.enable_token_persistence {
            if let Some(dir) = c.data_dir.as_ref() {
                let path = std::path::Path::new(dir).join("acl-tokens.json");
                let body = serde_json::to_vec_pretty(&snapshot).map_err(std::io::Error::from);
                body.and_then(|body| legate_types::fs::write_private_blocking(&path, &body))
                    .map_err(|source| AgentError::Io { path: path.clone(), source })?;
            }
        }
        Ok(())
    }

    /// Loads tokens persisted by an earlier run (at start, when persistence is on).
    pub fn load_persisted(&self, data_dir: &std::path::Path) {
        let path = data_dir.join("acl-tokens.json");
        if let Ok(bytes) = std::fs::read(&path) {
            match serde_json::from_slice::<HashMap<String, String>>(&bytes) {
                Ok(m) => *self.agent_tokens.write().unwrap_or_else(|p| p.into_inner()) = m,
                Err(e) => tracing::warn!(path = %path.display(), "ignoring persisted ACL tokens: {e}"),
            }
        }
    }

    /// The authorizer of a request's secret (None: the agent's default token, else anonymous).
    pub async fn authorize(&self, agent: &AgentShared, secret: Option<&str>) -> Result<Arc<Authz>, ResolveError> {
        let c = agent.config();
        if !c.acl.enabled {
            return Ok(disabled());
        }
        let _timer = legate_telemetry::Timer::start("acl.ResolveToken", Vec::new());
        let default_allow = c.acl.default_policy == "allow";
        let secret = match secret {
            Some(s) => s.to_string(),
            None => self.agent_token(agent, "default").unwrap_or_else(|| ANONYMOUS_SECRET.to_string()),
        };
        if let Some(recovery) = self.agent_token(agent, "agent_recovery") {
            if legate_acl::secret_eq(&secret, &recovery) {
                return Ok(Arc::new(recovery_authz(agent.node_name(), default_allow)));
            }
        }
        if let Some(server) = agent.server() {
            let index = cache_generation(&server.store);
            if let Some(hit) = self.cached(&secret, |c| c.index == index) {
                return Ok(hit);
            }
            let resolved =
                resolve_in_store(&server.store, &secret).map_err(|e| ResolveError::Unavailable(e.to_string()))?;
            let resolved = match resolved {
                Some(r) => r,
                None if asks_primary(agent) => return self.resolve_in_primary(agent, secret, default_allow).await,
                None => return Err(ResolveError::NotFound),
            };
            let authz = Arc::new(resolved.compile(default_allow));
            self.store_cache(secret, authz.clone(), index, resolved.expires_unix);
            return Ok(authz);
        }
        let ttl = c.acl.token_ttl.0;
        if let Some(hit) = self.cached(&secret, |c| c.fetched.elapsed() < ttl) {
            return Ok(hit);
        }
        match agent.link.acl_resolve(&secret, agent.rpc_deadline(Some("0s"))).await {
            Ok(Some(resolved)) => {
                let authz = Arc::new(resolved.compile(default_allow));
                self.store_cache(secret, authz.clone(), 0, resolved.expires_unix);
                Ok(authz)
            }
            Ok(None) => {
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&secret);
                Err(ResolveError::NotFound)
            }
            Err(e) => self.on_down(agent, &secret, e),
        }
    }

    /// A secondary datacenter's server without token replication resolves global tokens in the
    /// primary, as Consul does, and caches them for `token_ttl` (the down policy applies when
    /// the primary cannot be reached).
    async fn resolve_in_primary(
        &self,
        agent: &AgentShared,
        secret: String,
        default_allow: bool,
    ) -> Result<Arc<Authz>, ResolveError> {
        let c = agent.config();
        let ttl = c.acl.token_ttl.0;
        if let Some(hit) = self.cached(&secret, |e| e.index == FROM_PRIMARY && e.fetched.elapsed() < ttl) {
            return Ok(hit);
        }
        let primary = c.primary_datacenter().to_string();
        let servers = agent.gossip_wan.get().map(|g| crate::wan::servers_in(g, &primary)).unwrap_or_default();
        match agent.link.acl_resolve_in(&primary, servers, &secret, agent.rpc_deadline(Some("0s"))).await {
            Ok(Some(resolved)) => {
                let authz = Arc::new(resolved.compile(default_allow));
                self.store_cache(secret, authz.clone(), FROM_PRIMARY, resolved.expires_unix);
                Ok(authz)
            }
            Ok(None) => {
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&secret);
                Err(ResolveError::NotFound)
            }
            Err(e) => self.on_down(agent, &secret, e),
        }
    }

    /// The authorizer of the agent's DNS token (`tokens.dns` > `tokens.default` > anonymous)
    /// for DNS answers, without waiting: servers compile it from their store (cached until an
    /// ACL table changes); client agents use what [`warm_dns`](Self::warm_dns) resolved, and
    /// until then (or when it was not found) nothing is revealed.
    pub fn dns_authz(&self, agent: &AgentShared) -> Arc<Authz> {
        let c = agent.config();
        if !c.acl.enabled {
            return disabled();
        }
        let secret = self.agent_token(agent, "dns").unwrap_or_else(|| ANONYMOUS_SECRET.to_string());
        let default_allow = c.acl.default_policy == "allow";
        if let Some(server) = agent.server() {
            let index = cache_generation(&server.store);
            if let Some(hit) = self.cached(&secret, |c| c.index == index) {
                return hit;
            }
            if let Ok(Some(resolved)) = resolve_in_store(&server.store, &secret) {
                let authz = Arc::new(resolved.compile(default_allow));
                self.store_cache(secret, authz.clone(), index, resolved.expires_unix);
                return authz;
            }
        } else if let Some(hit) = self.cached(&secret, |_| true) {
            return hit;
        }
        Arc::new(Authz::compile(ANONYMOUS_ACCESSOR, std::iter::empty(), false))
    }

    /// Client agents: resolves the DNS token through a server when its cache entry is stale,
    /// so [`dns_authz`](Self::dns_authz) has it.
    pub async fn warm_dns(&self, agent: &AgentShared) {
        if agent.server().is_some() || !agent.config().acl.enabled {
            return;
        }
        let secret = self.agent_token(agent, "dns").unwrap_or_else(|| ANONYMOUS_SECRET.to_string());
        let _ = self.authorize(agent, Some(&secret)).await;
    }

    fn on_down(&self, agent: &AgentShared, secret: &str, why: LinkError) -> Result<Arc<Authz>, ResolveError> {
        let policy = agent.config().acl.down_policy.clone();
        tracing::warn!(error = %why, "ACL token resolution failed; applying down_policy {policy}");
        self.down_authz(agent, Some(secret)).ok_or(ResolveError::Unavailable(format!("ACL not found: {why}")))
    }

    fn cached(&self, secret: &str, fresh: impl Fn(&Cached) -> bool) -> Option<Arc<Authz>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let live = |c: &&Cached| c.expires_unix == 0 || c.expires_unix > now_unix();
        cache.get(secret).filter(live).filter(|c| fresh(c)).map(|c| c.authz.clone())
    }

    fn store_cache(&self, secret: String, authz: Arc<Authz>, index: u64, expires_unix: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(secret, Cached { authz, expires_unix, index, fetched: Instant::now() });
    }

    /// A client agent that could not reach a server: the authorizer down_policy gives.
    pub fn down_authz(&self, agent: &AgentShared, secret: Option<&str>) -> Option<Arc<Authz>> {
        let c = agent.config();
        match c.acl.down_policy.as_str() {
            "allow" => Some(Arc::new(Authz::compile("", std::iter::empty(), true))),
            "extend-cache" | "async-cache" => {
                let secret = secret.map(str::to_string).or_else(|| self.agent_token(agent, "default"))?;
                self.cached(&secret, |_| true)
            }
            _ => None,
        }
    }
}

/// The agent recovery token: the agent's own endpoints on this node, and reading nodes.
fn recovery_authz(node: &str, default_allow: bool) -> Authz {
    let mut r = Rules::default();
    r.segments
        .entry((legate_acl::Resource::Agent, true))
        .or_default()
        .insert(node.to_string(), legate_acl::Access::Write);
    r.segments.entry((legate_acl::Resource::Node, false)).or_default().insert(String::new(), legate_acl::Access::Read);
    Authz::compile("agent-recovery-token", [&r], default_allow)
}

/// What compiled authorizers are cached under on servers: bumped by every applied ACL write
/// and every snapshot restore (no read transaction per request).
fn cache_generation(store: &Store) -> u64 {
    store.watch.current(legate_state::watch::Table::Acl)
}

/// The newest index of any ACL table (`X-Consul-Index` of the ACL endpoints).
pub fn acl_index(txn: &redb::ReadTransaction) -> Result<u64, legate_state::StoreError> {
    use legate_state::schema::{
        IDX_ACL_AUTH_METHODS, IDX_ACL_BINDING_RULES, IDX_ACL_POLICIES, IDX_ACL_ROLES, IDX_ACL_TOKENS, IDX_RESTORE,
    };
    let mut max = 0;
    for t in [IDX_ACL_TOKENS, IDX_ACL_POLICIES, IDX_ACL_ROLES, IDX_ACL_AUTH_METHODS, IDX_ACL_BINDING_RULES, IDX_RESTORE]
    {
        max = max.max(legate_state::table_index_read(txn, t)?);
    }
    Ok(max)
}

/// The cache index of tokens resolved in the primary datacenter (kept for `token_ttl`, not until
/// the local ACL tables change).
const FROM_PRIMARY: u64 = u64::MAX;

/// Whether a token this server's store lacks is asked of the primary datacenter: in a
/// secondary that does not replicate tokens.
fn asks_primary(agent: &AgentShared) -> bool {
    crate::acl_replication::is_secondary(agent) && !agent.config().acl.enable_token_replication
}
