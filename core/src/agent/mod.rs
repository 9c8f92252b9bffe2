//! The per-node agent: owns the running config, the data directory, the listeners and every
//! long-lived task. `Agent::start` is what the binary and every test call.
//!
//! Shutdown: every task is spawned on one [`TaskTracker`] and watches a child of one
//! [`CancellationToken`]; [`Agent::shutdown`] cancels and awaits them all.

pub mod addr;
pub mod ae;
pub mod checks;
pub mod cluster;
pub mod config_watch;
pub mod data_dir;
pub mod events;
pub mod local;
pub mod runner;
pub mod watches;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use legate_api::agent::{member_status, Member};
use serde_json::{json, Value as Json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::reload::{ReloadOutcome, Reloader};
use crate::config::{Config, ConfigError, LoadOptions};
use crate::server::{Server, ServerOptions};
use crate::{http, logging, version};
use data_dir::{DataDir, DataDirError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    DataDir(#[from] DataDirError),
    #[error("Failed to get advertise address: {0}")]
    Advertise(String),
    #[error("Error starting HTTP server: listen tcp {addr}: bind: {source}")]
    HttpBind { addr: SocketAddr, source: std::io::Error },
    #[error("Error starting DNS server: listen {proto} {addr}: bind: {source}")]
    DnsBind { addr: SocketAddr, proto: &'static str, source: std::io::Error },
    #[error("{0}")]
    Server(String),
    #[error("Could not write pid file {path}: {source}")]
    PidFile { path: String, source: std::io::Error },
}

/// The leader and peers as this agent knows them.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    pub leader: Option<String>,
    pub peers: Vec<String>,
}

/// State shared by the agent's parts (HTTP handlers, reload, later gossip and RPC).
pub struct AgentShared {
    config: watch::Receiver<Arc<Config>>,
    config_tx: watch::Sender<Arc<Config>>,
    reloader: Option<Reloader>,
    node_name: String,
    node_id: String,
    advertise: IpAddr,
    started: Instant,
    /// The Raft server, on server agents.
    server: Option<Arc<Server>>,
    /// Services and checks of this node.
    pub local: Arc<local::LocalState>,
    /// RPC addresses of the servers this agent knows (from gossip): where a client agent
    /// forwards its calls.
    known_servers: std::sync::RwLock<Vec<String>>,
    /// Connections to servers (client agents).
    pool: Arc<crate::server::rpc::Pool>,
    /// LAN gossip (absent when the serf LAN port is -1).
    pub gossip: std::sync::OnceLock<Arc<crate::gossip::Gossip>>,
    /// Wakes the leader's catalog reconciliation (membership changed).
    pub reconcile: tokio::sync::Notify,
    /// Set by a fatal condition (join retries exhausted); the agent stops and exits 1.
    fatal: std::sync::Mutex<Option<String>>,
    stop: CancellationToken,
    /// User events this agent received (ring of 256).
    pub events: events::EventBuffer,
    /// ACL token resolution and the agent's own tokens.
    pub acl: crate::acl::resolve::Resolver,
    /// The WASM plugin host (check and event-handler plugins).
    plugins: crate::plugin::PluginHost,
}

impl AgentShared {
    pub fn server(&self) -> Option<&Arc<Server>> {
        self.server.as_ref()
    }

    /// The WASM plugin host: run check plugins, validate definitions, run event handlers
    /// ([`crate::plugin::run_handler`]).
    pub fn plugins(&self) -> &crate::plugin::PluginHost {
        &self.plugins
    }

    /// The running config (cheap: an `Arc` clone).
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Subscribes to config changes (reloads).
    pub fn watch_config(&self) -> watch::Receiver<Arc<Config>> {
        self.config_tx.subscribe()
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn advertise_addr(&self) -> IpAddr {
        self.advertise
    }

    pub fn advertise(&self) -> IpAddr {
        self.advertise
    }

    /// Whether script checks may be registered through the HTTP API (`enable_script_checks`);
    /// config files may also use `enable_local_script_checks`.
    pub fn scripts_allowed(&self, from_config: bool) -> bool {
        let c = self.config();
        c.enable_script_checks || (from_config && c.enable_local_script_checks)
    }

    /// A catalog write through the servers: this server's Raft (forwarded to the leader), or
    /// on a client agent a known server's.
    pub async fn catalog_apply(
        &self,
        cmd: crate::server::command::Command,
    ) -> Result<crate::server::command::CommandResponse, String> {
        use crate::server::rpc::HttpCall;
        if let Some(s) = &self.server {
            return s.apply(cmd).await.map_err(|e| e.to_string());
        }
        // Through the servers' token-checked path: the agent's token must allow the write.
        let call = HttpCall {
            method: "PUT".into(),
            path: crate::http::forward::CATALOG_APPLY_PATH.into(),
            query: Vec::new(),
            token: self.acl.agent_token(self, "agent"),
            body: bincode::serialize(&cmd).map_err(|e| e.to_string())?,
        };
        let reply = self.forward_http(call).await?;
        if reply.status != 200 {
            return Err(String::from_utf8_lossy(&reply.body).into_owned());
        }
        bincode::deserialize(&reply.body).map_err(|e| e.to_string())
    }

    /// Stops the agent because of `why` (exit status 1).
    pub fn fatal(&self, why: String) {
        *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.stop.cancel();
    }

    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The config files and dirs this agent was started with (none for in-memory configs).
    pub fn config_sources(&self) -> Vec<PathBuf> {
        self.reloader.as_ref().map(|r| r.sources().to_vec()).unwrap_or_default()
    }

    /// Stops the agent (after `PUT /v1/agent/leave`).
    pub fn request_stop(&self) {
        self.stop.cancel();
    }

    /// Leaves the gossip pool gracefully (others see `left`, not `failed`).
    pub async fn leave(&self) {
        if let Some(g) = self.gossip.get() {
            if let Err(e) = g.leave(Duration::from_secs(5)).await {
                tracing::warn!(error = %e, "leave failed");
            }
        }
    }

    /// Replaces the known servers (gossip feeds this).
    pub fn set_known_servers(&self, servers: Vec<String>) {
        *self.known_servers.write().unwrap_or_else(|p| p.into_inner()) = servers;
    }

    pub fn known_servers(&self) -> Vec<String> {
        self.known_servers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn servers_in_random_order(&self) -> Vec<String> {
        use rand::seq::SliceRandom;
        let mut v = self.known_servers();
        v.shuffle(&mut rand::thread_rng());
        v
    }

    /// Sends an HTTP API call to a server (client agents); tries each known server once. A
    /// blocking query's deadline is its wait plus slack.
    pub async fn forward_http(
        &self,
        call: crate::server::rpc::HttpCall,
    ) -> Result<crate::server::rpc::HttpReply, String> {
        use crate::server::rpc::{Request, Response};
        let c = self.config();
        let wait = call
            .query
            .iter()
            .find(|(k, _)| k == "wait")
            .and_then(|(_, v)| crate::config::duration::parse_go_duration(v).ok())
            .unwrap_or(c.default_query_time.0)
            .min(c.max_query_time.0);
        let deadline = wait + wait / 16 + c.performance.rpc_hold_timeout.0 + Duration::from_secs(5);
        let mut last = "No known Consul servers".to_string();
        for addr in self.servers_in_random_order() {
            let peer = self.pool.get(&addr).await;
            match peer.call(Request::Http(call.clone()), deadline).await {
                Ok(Response::Http(Ok(r))) => return Ok(r),
                Ok(Response::Http(Err(e))) => last = e,
                Ok(other) => last = format!("unexpected response {other:?}"),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// Registers the services and checks of the config (start and reload); drops config ones
    /// the config no longer has. Invalid ones are logged and skipped (validated at load).
    pub fn load_config_definitions(&self) {
        let c = self.config();
        let scripts = self.scripts_allowed(true);
        let mut service_ids = Vec::new();
        let mut check_ids = Vec::new();
        for s in &c.services {
            match self.local.add_service(s, s.token.clone(), local::Source::Config, scripts, true) {
                Ok(id) => service_ids.push(id),
                Err(e) => tracing::error!(service = %s.name, error = %e, "cannot register service from config"),
            }
        }
        for k in &c.checks {
            match self.local.add_check(k, k.token.clone(), local::Source::Config, scripts) {
                Ok(id) => check_ids.push(id),
                Err(e) => tracing::error!(check = ?k.name, error = %e, "cannot register check from config"),
            }
        }
        self.local.retain_config(&service_ids, &check_ids);
    }

    /// Re-reads the config sources (SIGHUP, `PUT /v1/agent/reload`). Errors keep the running
    /// config and are returned as text naming file, line and key.
    pub fn reload(&self) -> Result<ReloadOutcome, String> {
        match &self.reloader {
            Some(r) => r.reload().map_err(|e| e.to_string()),
            None => Err("this agent was started from an in-memory config and has no sources to reload".into()),
        }
    }

    /// This agent as a gossip member, with Consul's tags for its role.
    pub fn local_member(&self) -> Member {
        let c = self.config();
        let mut tags = BTreeMap::new();
        let mut tag = |k: &str, v: String| {
            tags.insert(k.to_string(), v);
        };
        tag("dc", c.datacenter.clone());
        tag("id", self.node_id.clone());
        tag("segment", String::new());
        tag("vsn", version::PROTOCOL.to_string());
        tag("vsn_min", version::PROTOCOL_MIN.to_string());
        tag("vsn_max", version::PROTOCOL_MAX.to_string());
        tag("build", format!("{}:{}", version::CONSUL_VERSION, version::GIT_SHA));
        if c.server {
            tag("role", "consul".into());
            // The bound port (the configured one may be 0: any free port).
            let port = self
                .server
                .as_ref()
                .and_then(|s| s.rpc_addr.rsplit(':').next().map(str::to_string))
                .unwrap_or_else(|| c.ports.server.to_string());
            tag("port", port);
            tag("raft_vsn", c.raft_protocol.to_string());
            tag("wan_join_port", c.ports.serf_wan.to_string());
            if c.bootstrap {
                tag("bootstrap", "1".into());
            }
            if c.bootstrap_expect > 0 {
                tag("expect", c.bootstrap_expect.to_string());
            }
        } else {
            tag("role", "node".into());
        }
        Member {
            name: self.node_name.clone(),
            addr: self.advertise.to_string(),
            port: self
                .gossip
                .get()
                .map(|g| g.local_addr().port())
                .unwrap_or_else(|| u16::try_from(c.ports.serf_lan).unwrap_or(0)),
            tags,
            status: member_status::ALIVE,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: version::PROTOCOL,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }
    }

    /// The members this agent knows. Until gossip runs, that is this agent alone (and, in the
    /// WAN pool, only if it is a server, named `<node>.<dc>` as Consul does).
    pub fn members(&self, wan: bool) -> Vec<Member> {
        let c = self.config();
        if !wan {
            let Some(g) = self.gossip.get() else { return vec![self.local_member()] };
            return g
                .members()
                .into_iter()
                .map(|m| {
                    let mut out = self.local_member();
                    out.name = m.name;
                    out.addr = m.addr.to_string();
                    out.port = m.port;
                    out.tags = m.tags;
                    out.status = m.status;
                    out
                })
                .collect();
        }
        if !c.server {
            return Vec::new();
        }
        let mut m = self.local_member();
        m.name = format!("{}.{}", self.node_name, c.datacenter);
        m.port = u16::try_from(c.ports.serf_wan).unwrap_or(0);
        vec![m]
    }

    /// Leader and peers. A client agent that knows no server answers Consul's error; a server
    /// reports the Raft state it has (none yet: no leader, no peers).
    pub fn cluster_view(&self) -> Result<ClusterView, String> {
        match &self.server {
            Some(s) => Ok(ClusterView { leader: s.leader(), peers: s.peers() }),
            None => Err("No known Consul servers".into()),
        }
    }

    /// Gauges of `/v1/agent/metrics`, read now: runtime, and on servers the Raft state and the
    /// log store's durability counters (appends, fsyncs, entries per fsync).
    pub fn gauges(&self) -> Vec<crate::telemetry::Gauge> {
        use crate::telemetry::Gauge;
        use std::sync::atomic::Ordering::Relaxed;
        let mut g = Vec::new();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            g.push(Gauge::new("runtime.num_goroutines", h.metrics().num_alive_tasks() as f64));
        }
        if let Some(rss) = resident_bytes() {
            g.push(Gauge::new("runtime.alloc_bytes", rss as f64));
            g.push(Gauge::new("runtime.sys_bytes", rss as f64));
        }
        g.push(Gauge::new("agent.uptime_seconds", self.started.elapsed().as_secs_f64()));
        if let Some(server) = &self.server {
            let m = server.raft.metrics().borrow().clone();
            let ls = &server.log_stats;
            let (appends, fsyncs, entries) =
                (ls.appends.load(Relaxed), ls.fsyncs.load(Relaxed), ls.entries.load(Relaxed));
            g.push(Gauge::new("raft.log.appends", appends as f64));
            g.push(Gauge::new("raft.log.fsyncs", fsyncs as f64));
            g.push(Gauge::new("raft.log.entries", entries as f64));
            g.push(Gauge::new(
                "raft.log.entries_per_fsync",
                if fsyncs == 0 { 0.0 } else { entries as f64 / fsyncs as f64 },
            ));
            g.push(Gauge::new("raft.last_index", m.last_log_index.unwrap_or(0) as f64));
            g.push(Gauge::new("raft.applied_index", m.last_applied.map(|l| l.index).unwrap_or(0) as f64));
            g.push(Gauge::new("raft.term", m.current_term as f64));
            g.push(Gauge::new("server.isLeader", if server.is_leader() { 1.0 } else { 0.0 }));
            g.push(Gauge::new("raft.peers", server.peers().len() as f64));
        }
        g
    }

    /// `Stats` of `/v1/agent/self`: string values, as Consul's.
    pub fn stats(&self) -> Json {
        let c = self.config();
        let all_checks =
            c.checks.len() + c.services.iter().map(|s| s.checks.len() + usize::from(s.check.is_some())).sum::<usize>();
        let ttl_checks = c
            .checks
            .iter()
            .chain(c.services.iter().flat_map(|s| s.checks.iter().chain(s.check.iter())))
            .filter(|k| k.ttl.is_some())
            .count();
        let view = self.cluster_view().ok();
        let (alive_tasks, workers) = match tokio::runtime::Handle::try_current() {
            Ok(h) => (h.metrics().num_alive_tasks(), h.metrics().num_workers()),
            Err(_) => (0, 0),
        };
        let serf = json!({
            "members": "1",
            "failed": "0",
            "left": "0",
            "encrypted": c.encrypt.is_some().to_string(),
            "health_score": "0",
        });
        let mut stats = json!({
            "agent": {
                "check_monitors": (all_checks - ttl_checks).to_string(),
                "check_ttls": ttl_checks.to_string(),
                "checks": all_checks.to_string(),
                "services": c.services.len().to_string(),
            },
            "build": {
                "prerelease": "",
                "revision": version::GIT_SHA,
                "version": version::CONSUL_VERSION,
                "version_metadata": "",
                "legate_version": version::VERSION,
            },
            "runtime": {
                "arch": go_arch(),
                "os": std::env::consts::OS,
                "cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string(),
                "max_procs": workers.to_string(),
                "goroutines": alive_tasks.to_string(),
                "version": version::RUSTC,
                "uptime": format!("{}s", self.started.elapsed().as_secs()),
            },
            "serf_lan": serf,
        });
        if let Some(server) = &self.server {
            let m = server.raft.metrics().borrow().clone();
            let ls = &server.log_stats;
            let appends = ls.appends.load(std::sync::atomic::Ordering::Relaxed);
            let fsyncs = ls.fsyncs.load(std::sync::atomic::Ordering::Relaxed);
            let entries = ls.entries.load(std::sync::atomic::Ordering::Relaxed);
            let peers = view.as_ref().map(|v| v.peers.len()).unwrap_or(0);
            stats["consul"] = json!({
                "acl": if c.acl.enabled { "enabled" } else { "disabled" },
                "bootstrap": c.bootstrap.to_string(),
                "known_datacenters": "1",
                "leader": server.is_leader().to_string(),
                "leader_addr": view.and_then(|v| v.leader).unwrap_or_default(),
                "server": "true",
            });
            stats["raft"] = json!({
                "state": format!("{:?}", m.state),
                "term": m.current_term.to_string(),
                "last_log_index": m.last_log_index.unwrap_or(0).to_string(),
                "applied_index": m.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
                "last_snapshot_index": m.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
                "num_peers": peers.saturating_sub(1).to_string(),
                "protocol_version": c.raft_protocol.to_string(),
                "protocol_version_min": "3",
                "protocol_version_max": "3",
                "log_appends": appends.to_string(),
                "log_fsyncs": fsyncs.to_string(),
                "log_entries": entries.to_string(),
                "log_entries_per_fsync": if fsyncs == 0 { "0".to_string() } else { format!("{:.2}", entries as f64 / fsyncs as f64) },
            });
            stats["serf_wan"] = stats["serf_lan"].clone();
        } else {
            stats["consul"] = json!({
                "acl": if c.acl.enabled { "enabled" } else { "disabled" },
                "known_servers": "0",
                "server": "false",
            });
        }
        stats
    }
}

/// Resident set size, from /proc (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Go's GOARCH names, which Consul reports.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// A running agent.
pub struct Agent {
    shared: Arc<AgentShared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    http_addrs: Vec<SocketAddr>,
    dns_addrs: Vec<SocketAddr>,
    data_dir: Option<DataDir>,
    pid_file: Option<PathBuf>,
}

impl Agent {
    /// Starts an agent from a ready config (tests, embedding). It has no sources to reload.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Agent, AgentError> {
        Self::start_inner(config, None, shutdown).await
    }

    /// Loads the config from its layers and starts the agent; reloads re-read the same sources.
    pub async fn start_with_sources(opts: LoadOptions, shutdown: CancellationToken) -> Result<Agent, AgentError> {
        let loaded = crate::config::load(&opts)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        Self::start_inner(loaded.config, Some(opts), shutdown).await
    }

    /// Starts from a config already loaded from `sources` (the binary loads first to set up
    /// logging); reloads re-read `sources`.
    pub async fn start_loaded(
        config: Config,
        sources: LoadOptions,
        shutdown: CancellationToken,
    ) -> Result<Agent, AgentError> {
        Self::start_inner(config, Some(sources), shutdown).await
    }

    async fn start_inner(
        config: Config,
        sources: Option<LoadOptions>,
        shutdown: CancellationToken,
    ) -> Result<Agent, AgentError> {
        let data_dir = match &config.data_dir {
            Some(p) => Some(DataDir::open(p)?),
            None => None,
        };
        let node_id = match &data_dir {
            Some(d) => d.node_id(config.node_id.as_deref())?,
            // -dev without a data dir: nothing is persisted, as Consul's dev mode.
            None => config.node_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        };
        let advertise = addr::advertise_addr(&config).map_err(AgentError::Advertise)?;
        let node_name = config.node_name();

        // Bind every listener before spawning anything, so a bind error fails the start.
        let mut listeners = Vec::new();
        if config.ports.http >= 0 {
            for ip in config.http_addrs() {
                let addr = SocketAddr::new(ip, config.ports.http as u16);
                let l = addr::bind_tcp(addr).await.map_err(|source| AgentError::HttpBind { addr, source })?;
                listeners.push(l);
            }
        }
        let http_addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        let dns = crate::dns::bind(&config).await.map_err(|e| AgentError::DnsBind {
            addr: e.addr,
            proto: e.proto,
            source: e.source,
        })?;
        let dns_addrs = dns.addrs.clone();

        if let Some(path) = &config.pid_file {
            crate::agent::data_dir::write_atomic(path, &format!("{}\n", std::process::id()))
                .map_err(|source| AgentError::PidFile { path: path.display().to_string(), source })?;
        }

        let tracker = TaskTracker::new();
        let server = if config.server {
            if !(0..=65535).contains(&config.ports.server) {
                return Err(AgentError::Server(format!(
                    "ports.server {} is not usable by a server",
                    config.ports.server
                )));
            }
            let bind_ip: IpAddr =
                config.bind_addr.parse().map_err(|_| AgentError::Advertise("bad bind_addr".into()))?;
            let opts = ServerOptions {
                node_id: node_id.clone(),
                bind: SocketAddr::new(bind_ip, config.ports.server as u16),
                advertise_ip: advertise,
                data_dir: config.data_dir.clone(),
                bootstrap: config.bootstrap || config.dev || config.bootstrap_expect == 1,
                raft_multiplier: config.performance.raft_multiplier,
                snapshot_threshold: config.raft_snapshot_threshold,
                trailing_logs: config.raft_trailing_logs,
                hold_timeout: config.performance.rpc_hold_timeout.0,
                tombstone_ttl: config.tombstone_ttl.0,
            };
            Some(Server::start(opts, shutdown.child_token(), &tracker).await.map_err(AgentError::Server)?)
        } else {
            None
        };

        let persist = data_dir.as_ref().map(|d| d.path().join("local-state.json"));
        let local = Arc::new(local::LocalState::new(node_name.clone(), persist));
        let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
        let plugins =
            plugin_host(&config, &node_name, server.as_ref(), config_rx.clone()).map_err(AgentError::Server)?;
        let reloader = sources.map(|opts| Reloader::new(opts, config_tx.clone()));
        let shared = Arc::new(AgentShared {
            config: config_rx,
            config_tx,
            reloader,
            node_name,
            node_id,
            advertise,
            started: Instant::now(),
            server,
            local,
            known_servers: std::sync::RwLock::new(Vec::new()),
            pool: Arc::default(),
            gossip: std::sync::OnceLock::new(),
            reconcile: tokio::sync::Notify::new(),
            fatal: std::sync::Mutex::new(None),
            stop: shutdown.clone(),
            events: events::EventBuffer::default(),
            acl: Default::default(),
            plugins,
        });
        if let Some(server) = &shared.server {
            server.acl_enforced.store(shared.config().acl.enabled, std::sync::atomic::Ordering::Relaxed);
        }
        if shared.config().acl.enable_token_persistence {
            if let Some(d) = data_dir.as_ref() {
                shared.acl.load_persisted(d.path());
            }
        }
        let gossip =
            cluster::start_gossip(&shared, data_dir.as_ref().map(|d| d.path()), shutdown.child_token(), &tracker)
                .await
                .map_err(AgentError::Server)?;
        if let Some(g) = gossip {
            let _ = shared.gossip.set(g.clone());
            crate::tasks::spawn(
                &tracker,
                "join",
                cluster::join_loop(shared.clone(), g.clone(), shutdown.child_token()),
            );
            crate::tasks::spawn(
                &tracker,
                "user-events",
                events::receive_loop(shared.clone(), g.clone(), shutdown.child_token()),
            );
            crate::tasks::spawn(
                &tracker,
                "membership",
                cluster::membership_loop(shared.clone(), g, shutdown.child_token()),
            );
        }
        shared.load_config_definitions();
        shared.local.restore(shared.scripts_allowed(false));
        crate::tasks::spawn(&tracker, "config-watch", config_watch::watch_loop(shared.clone(), shutdown.child_token()));
        crate::tasks::spawn(
            &tracker,
            "check-supervisor",
            runner::supervise(shared.clone(), tracker.clone(), shutdown.child_token()),
        );
        crate::tasks::spawn(&tracker, "anti-entropy", ae::run(shared.clone(), shutdown.child_token()));
        if shared.server.is_some() {
            crate::tasks::spawn(&tracker, "leader-reconcile", leader_reconcile(shared.clone(), shutdown.child_token()));
        }

        let ctx = Arc::new(http::Ctx { agent: shared.clone(), shutdown: shutdown.child_token() });
        if let Some(server) = &shared.server {
            // Weak: the server must not keep the agent (and its stores) alive after shutdown.
            let ctx = Arc::downgrade(&ctx);
            let hook: crate::server::rpc::HttpHook = Arc::new(move |call| {
                let ctx = ctx.upgrade();
                Box::pin(async move {
                    match ctx {
                        Some(ctx) => http::serve_forwarded(&ctx, call).await,
                        None => crate::server::rpc::HttpReply {
                            status: 500,
                            headers: Vec::new(),
                            body: b"agent is shutting down".to_vec(),
                        },
                    }
                })
            });
            let _ = server.http_hook.set(hook);
        }
        for l in listeners {
            crate::tasks::spawn(&tracker, "http", http::serve(ctx.clone(), l, shutdown.child_token()));
        }
        crate::tasks::spawn(&tracker, "dns", crate::dns::serve(shared.clone(), dns, shutdown.child_token()));
        crate::tasks::spawn(
            &tracker,
            "watches",
            watches::supervise(
                shared.clone(),
                watches::local_api_addr(&http_addrs),
                tracker.clone(),
                shutdown.child_token(),
            ),
        );
        crate::tasks::spawn(
            &tracker,
            "reloads",
            apply_reloads(shared.clone(), shared.watch_config(), shutdown.child_token()),
        );
        let pid_file = shared.config().pid_file.clone();
        tracing::info!(
            node = %shared.node_name,
            id = %shared.node_id,
            http = ?http_addrs,
            dns = ?dns_addrs,
            "agent started"
        );
        Ok(Agent { shared, shutdown, tracker, http_addrs, dns_addrs, data_dir, pid_file })
    }

    pub fn shared(&self) -> &Arc<AgentShared> {
        &self.shared
    }

    /// The bound HTTP addresses (with the real port when configured as 0).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// The bound DNS addresses, UDP and TCP on each (the real port when configured as 0;
    /// empty when `ports.dns` is -1).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_ref().map(|d| d.path())
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every task and waits for them (bounded by `timeout`), then removes the pid file and
    /// releases the data dir. Returns false if some task did not finish in time.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        let clean = tokio::time::timeout(timeout, self.tracker.wait()).await.is_ok();
        if !clean {
            tracing::error!(tasks = ?crate::tasks::live(), "tasks still running after shutdown timeout");
            eprintln!("legate: tasks still running after shutdown timeout: {:?}", crate::tasks::live());
        }
        if let Some(p) = &self.pid_file {
            let _ = std::fs::remove_file(p);
        }
        tracing::info!(clean, "agent stopped");
        clean
    }
}

/// The leader's member reconciliation: every alive member gets its node registered with a
/// passing `serfHealth` check ("Agent alive and reachable"), and servers the `consul` service.
/// Until gossip, the members are this agent alone.
/// The agent's plugin host: plugins by name from `plugin_dir` (default `<data_dir>/plugins`),
/// compiled code cached in `<data_dir>/plugin-cache`, KV reads from this server's store.
fn plugin_host(
    config: &Config,
    node_name: &str,
    server: Option<&Arc<Server>>,
    live_config: watch::Receiver<Arc<Config>>,
) -> Result<crate::plugin::PluginHost, String> {
    let plugin_dir = config.plugin_dir.clone().or_else(|| config.data_dir.as_ref().map(|d| d.join("plugins")));
    let cache_dir = config.data_dir.as_ref().map(|d| d.join("plugin-cache"));
    let kv = server.map(|s| Arc::new(StoreKv(s.clone(), live_config)) as Arc<dyn crate::plugin::KvSource>);
    crate::plugin::PluginHost::new(crate::plugin::HostOptions {
        plugin_dir,
        cache_dir,
        facts: crate::plugin::Facts { node_name: node_name.to_string(), datacenter: config.datacenter.clone() },
        kv,
    })
}

/// Plugin KV reads from the server's state store, with the ACL token of the plugin's
/// definition (else the agent's default token) when ACLs are on.
struct StoreKv(Arc<Server>, watch::Receiver<Arc<Config>>);

impl crate::plugin::KvSource for StoreKv {
    fn read_allowed(&self, token: Option<&str>, key: &str) -> Result<(), String> {
        let config = self.1.borrow().clone();
        if !config.acl.enabled {
            return Ok(());
        }
        let secret = token
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .or_else(|| config.acl.tokens.default.clone())
            .unwrap_or_else(|| crate::acl::ANONYMOUS_SECRET.to_string());
        let resolved = crate::acl::resolve::resolve_in_store(&self.0.store, &secret)?.ok_or("ACL not found")?;
        let authz = resolved.compile(config.acl.default_policy == "allow");
        authz.require(crate::acl::Resource::Key, key, crate::acl::Access::Read).map_err(|d| d.0)
    }

    fn get(&self, key: &str) -> Result<Option<crate::plugin::bindings::v0_1::kv::Entry>, String> {
        let txn = self.0.store.read().map_err(|e| e.to_string())?;
        let e = crate::state::kv::get(&txn, key).map_err(|e| e.to_string())?;
        Ok(e.map(|e| crate::plugin::bindings::v0_1::kv::Entry {
            key: key.to_string(),
            value: e.value,
            user_flags: e.flags,
            modify_index: e.modify_index,
        }))
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        let txn = self.0.store.read().map_err(|e| e.to_string())?;
        let entries = crate::state::kv::list(&txn, prefix).map_err(|e| e.to_string())?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }
}

async fn leader_reconcile(agent: Arc<AgentShared>, shutdown: CancellationToken) {
    use crate::server::command::Command;
    use crate::state::catalog::{Check, Register, Service};
    let Some(server) = agent.server.clone() else { return };
    let mut metrics = server.raft.metrics();
    let mut was_leader = false;
    let mut last_full = Instant::now();
    let mut force = false;
    loop {
        let leader = server.is_leader();
        let due = leader && (force || !was_leader || last_full.elapsed() >= Duration::from_secs(60));
        force = false;
        was_leader = leader;
        if due {
            last_full = Instant::now();
            if let Err(e) = crate::http::acl::leader_init(&agent).await {
                tracing::warn!(error = %e, "writing the built-in ACL policy and tokens failed");
            }
            for m in agent.members(false) {
                if m.status == member_status::LEFT {
                    // Left: deregistered with everything on it.
                    let exists = node_in_catalog(&server, &m.name);
                    if exists && m.name != agent.node_name {
                        let d = crate::state::catalog::Deregister { node: m.name.clone(), ..Default::default() };
                        if let Err(e) = server.apply(Command::Deregister(d)).await {
                            tracing::debug!(member = %m.name, error = %e, "deregistering left member failed");
                        }
                    }
                    continue;
                }
                let mut node = ae::node_record(&agent);
                if m.name != agent.node_name {
                    node.node = m.name.clone();
                    node.address = m.addr.clone();
                    node.id = m.tags.get("id").cloned().unwrap_or_default();
                    // The member's own addresses, not this server's (its agent syncs the rest).
                    for a in node.tagged_addresses.values_mut() {
                        *a = m.addr.clone();
                    }
                    node.meta.retain(|k, _| k.starts_with("consul-"));
                }
                let consul = (m.tags.get("role").map(String::as_str) == Some("consul")).then(|| {
                    let mut meta = std::collections::BTreeMap::new();
                    meta.insert("raft_version".to_string(), m.tags.get("raft_vsn").cloned().unwrap_or("3".into()));
                    meta.insert("serf_protocol_current".into(), m.protocol_cur.to_string());
                    meta.insert("serf_protocol_min".into(), m.protocol_min.to_string());
                    meta.insert("serf_protocol_max".into(), m.protocol_max.to_string());
                    meta.insert("version".into(), version::CONSUL_VERSION.to_string());
                    meta.insert("non_voter".into(), "false".into());
                    meta.insert("read_replica".into(), "false".into());
                    Service {
                        id: "consul".into(),
                        service: "consul".into(),
                        port: m.tags.get("port").and_then(|p| p.parse().ok()).unwrap_or(8300),
                        meta,
                        ..Service::default()
                    }
                });
                let serf = Check {
                    node: m.name.clone(),
                    check_id: "serfHealth".into(),
                    name: "Serf Health Status".into(),
                    status: if m.status == member_status::ALIVE { "passing" } else { "critical" }.into(),
                    output: if m.status == member_status::ALIVE {
                        "Agent alive and reachable"
                    } else {
                        "Agent not live or unreachable"
                    }
                    .into(),
                    definition: "{}".into(),
                    ..Check::default()
                };
                let reg =
                    Register { node, service: consul, checks: vec![serf], skip_node_update: m.name == agent.node_name };
                let skip = reg.skip_node_update;
                let mut reg = reg;
                let current = server.store.read().ok().and_then(|t| {
                    let checks = crate::state::catalog::node_checks(&t, &m.name).ok()?;
                    let services = crate::state::catalog::node_services(&t, &m.name).ok()?;
                    Some((checks, services))
                });
                if let Some((checks, services)) = &current {
                    let serf_ok = checks.iter().any(|c| {
                        c.check_id == "serfHealth"
                            && c.status == reg.checks[0].status
                            && c.output == reg.checks[0].output
                    });
                    let svc_ok = reg.service.as_ref().is_none_or(|want| {
                        services.iter().any(|s| s.id == "consul" && s.port == want.port && s.meta == want.meta)
                    });
                    if serf_ok && svc_ok {
                        continue;
                    }
                }
                if skip {
                    // Our own node entry is anti-entropy's; only create it if missing.
                    let exists = node_in_catalog(&server, &m.name);
                    reg.skip_node_update = exists;
                }
                if let Err(e) = server.apply(Command::Register(Box::new(reg))).await {
                    tracing::debug!(member = %m.name, error = %e, "reconcile failed");
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = metrics.changed() => if r.is_err() { return },
            _ = agent.reconcile.notified() => force = true,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

fn node_in_catalog(server: &Server, name: &str) -> bool {
    server.store.read().ok().and_then(|t| crate::state::catalog::node(&t, name).ok().flatten()).is_some()
}

/// Applies the parts of a reloaded config that this agent runs today: the log level. Later
/// parts (services, checks, watches, DNS...) subscribe to the same channel.
async fn apply_reloads(agent: Arc<AgentShared>, mut rx: watch::Receiver<Arc<Config>>, shutdown: CancellationToken) {
    let mut level = rx.borrow().log_level.clone();
    let mut node_meta = rx.borrow().node_meta.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        let config = rx.borrow_and_update().clone();
        if let Some(server) = &agent.server {
            server.acl_enforced.store(config.acl.enabled, std::sync::atomic::Ordering::Relaxed);
        }
        agent.load_config_definitions();
        if config.node_meta != node_meta {
            node_meta = config.node_meta.clone();
            // The node entry in the catalog carries the meta: sync it now, not at the next
            // periodic full sync.
            if !ae::full_sync(&agent).await {
                tracing::warn!("node_meta changed; the catalog will be updated at the next sync");
            }
        }
        if config.log_level != level {
            level = config.log_level.clone();
            match logging::set_level(&level) {
                Ok(()) => tracing::info!(level = %level, "log level changed"),
                Err(e) => tracing::warn!("could not change log level: {e}"),
            }
        }
    }
}
