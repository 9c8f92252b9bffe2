//! legate-agent: the per-node agent. `AgentShared` is one node's state and the handles to the
//! rest of the cluster: its config (live, reloadable), its local services and checks, the
//! `ServerLink` to the servers (the local Raft server on server agents), gossip, user events,
//! ACL resolution and the WASM plugin host. The composition root (`legate_core::node`) builds
//! it and starts the tasks of this crate.
//!
//! # Layout
//!
//! ```text
//! lib.rs          AgentShared: config, identity, members, cluster view, stats, catalog writes
//! local.rs        this node's services and checks (persisted), their sync state
//! checks/         probes: http, tcp, udp, grpc, h2ping, script (TTL/alias/wasm in runner.rs)
//! runner.rs       check scheduling, TTLs, aliases, WASM checks, critical-service reaper
//! ae.rs           anti-entropy: local state -> catalog through the servers
//! coordinates.rs  this agent's network coordinate -> the servers, at a rate-scaled interval
//! cluster.rs      gossip wiring: joins, retry-join, bootstrap-expect, voters, membership
//! wan.rs          the WAN pool of every datacenter's servers, and where another dc's servers are
//! events.rs       user events (ring of 256, fire/receive, keyring events)
//! watches.rs      config watches run against the local HTTP API
//! config_watch.rs reloads on config file changes
//! acl.rs          token -> authorizer (servers: own store; clients: a server), agent tokens
//! acl_replication.rs  a secondary datacenter's copy of the primary's policies, roles, tokens
//! leader.rs       the duties this agent adds to its server's leader (ACL objects, reconcile)
//! plugins.rs      the plugin host's directories and its KV source, each plugin's last run
//! registry.rs     the plugin registry as this agent sees it (store or view + chunk fetches)
//! data_dir.rs     the data dir lock, node id; addr.rs advertise address
//! ```

pub mod acl;
pub mod acl_replication;
pub mod addr;
pub mod ae;
pub mod autopilot;
pub mod checks;
pub mod cluster;
pub mod config_watch;
pub mod coordinates;
pub mod data_dir;
pub mod error;
pub mod events;
pub mod host;
pub mod leader;
pub mod local;
pub mod plugins;
pub mod registry;
pub mod runner;
pub mod templates;
pub mod wan;
pub mod watches;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use legate_api::agent::{member_status, Member};
use legate_config::reload::{ReloadOutcome, Reloader};
use legate_config::Config;
use legate_raft::link::ServerLink;
use legate_raft::Server;

pub use error::AgentError;
use legate_types::version;
use serde_json::{json, Value as Json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    /// The servers: the local Raft server on server agents, and the known servers' RPC
    /// addresses with typed calls to them.
    pub link: ServerLink,
    /// Services and checks of this node.
    pub local: Arc<local::LocalState>,
    /// LAN gossip (absent when the serf LAN port is -1).
    pub gossip: std::sync::OnceLock<Arc<legate_gossip::Gossip>>,
    /// WAN gossip among the servers of every datacenter (servers only; absent when the serf
    /// WAN port is -1).
    pub gossip_wan: std::sync::OnceLock<Arc<legate_gossip::Gossip>>,
    /// ACL replication from the primary datacenter (secondaries' leaders).
    pub acl_replication: acl_replication::Replication,
    /// Wakes the leader's catalog reconciliation (membership changed).
    pub reconcile: tokio::sync::Notify,
    /// Set by a fatal condition (join retries exhausted); the agent stops and exits 1.
    fatal: std::sync::Mutex<Option<String>>,
    stop: CancellationToken,
    /// User events this agent received (ring of 256).
    pub events: events::EventBuffer,
    /// ACL token resolution and the agent's own tokens.
    pub acl: crate::acl::Resolver,
    /// The WASM plugin host (check and event-handler plugins).
    plugins: legate_plugin_host::PluginHost,
    /// The agent's CA and certificate for checks (`enable_agent_tls_for_checks`; None when
    /// off), built at start and at each reload ([`AgentShared::load_check_tls`]).
    check_tls: legate_tls::Live<Option<legate_tls::CheckTls>>,
    /// Since when each server has had its current autopilot health.
    pub autopilot: autopilot::Stability,
    /// One catalog sync at a time (anti-entropy and the API's pushes).
    pub sync_lock: tokio::sync::Mutex<()>,
    /// True once a full anti-entropy sync has succeeded: the agent is joined and in the catalog.
    pub catalog_synced: watch::Sender<bool>,
    /// The last reload's result (API, SIGHUP or file watch), for operators and the UI.
    last_reload: std::sync::Mutex<Option<ReloadRecord>>,
    /// Each WASM check's last run (`/v1/agent/plugins`).
    pub plugin_runs: plugins::Runs,
}

/// Now as RFC 3339 (UTC), as the API shows times.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

pub fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// How the last configuration reload went.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReloadRecord {
    /// RFC 3339.
    pub time: String,
    pub ok: bool,
    /// The error (naming file, line and key); the running config was kept.
    pub error: Option<String>,
    pub applied: Vec<String>,
    pub requires_restart: Vec<String>,
}

impl AgentShared {
    /// A node's state before any task runs: `config` is the running config's channel (the
    /// reloader, when there are sources to reload, publishes on it).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: (watch::Sender<Arc<Config>>, watch::Receiver<Arc<Config>>),
        reloader: Option<Reloader>,
        identity: (String, String, IpAddr),
        link: ServerLink,
        local: Arc<local::LocalState>,
        plugins: legate_plugin_host::PluginHost,
        stop: CancellationToken,
    ) -> AgentShared {
        let (config_tx, config) = config;
        let (node_name, node_id, advertise) = identity;
        AgentShared {
            config,
            config_tx,
            reloader,
            node_name,
            node_id,
            advertise,
            started: Instant::now(),
            link,
            local,
            gossip: std::sync::OnceLock::new(),
            gossip_wan: std::sync::OnceLock::new(),
            acl_replication: Default::default(),
            reconcile: tokio::sync::Notify::new(),
            fatal: std::sync::Mutex::new(None),
            stop,
            events: events::EventBuffer::default(),
            acl: Default::default(),
            plugins,
            check_tls: legate_tls::Live::new(None),
            autopilot: autopilot::Stability::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            catalog_synced: watch::Sender::new(false),
            last_reload: std::sync::Mutex::new(None),
            plugin_runs: plugins::Runs::default(),
        }
    }

    pub fn server(&self) -> Option<&Arc<Server>> {
        self.link.server()
    }

    /// The WASM plugin host: run check plugins, validate definitions, run event handlers
    /// ([`legate_plugin_host::run_handler`]).
    pub fn plugins(&self) -> &legate_plugin_host::PluginHost {
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
    /// on a client agent a known server's typed `CatalogWrite`, checked there against the
    /// agent's token.
    pub async fn catalog_apply(
        &self,
        cmd: legate_raft::command::Command,
    ) -> Result<legate_raft::command::CommandResponse, AgentError> {
        if let Some(s) = self.server() {
            return Ok(s.apply(cmd).await?);
        }
        let token = self.acl.agent_token(self, "agent");
        Ok(self.link.catalog_write(token, cmd, self.rpc_deadline(Some("0s"))).await?)
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

    /// The last reload's result (None: no reload since the start).
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the agent (after `PUT /v1/agent/leave`).
    pub fn request_stop(&self) {
        self.stop.cancel();
    }

    /// Leaves the gossip pool gracefully (others see `left`, not `failed`).
    pub async fn leave(&self) {
        // The WAN pool first, as Consul's servers leave it.
        for (pool, g) in [("WAN", self.gossip_wan.get()), ("LAN", self.gossip.get())] {
            if let Some(g) = g {
                if let Err(e) = g.leave(Duration::from_secs(5)).await {
                    tracing::warn!(pool, error = %e, "leave failed");
                }
            }
        }
    }

    /// Replaces the known servers (gossip feeds this).
    pub fn set_known_servers(&self, servers: Vec<String>) {
        self.link.set_known_servers(servers);
    }

    pub fn known_servers(&self) -> Vec<String> {
        self.link.known_servers()
    }

    /// How long a call to a server may take: a blocking query's wait (`?wait=`, else
    /// `default_query_time`, at most `max_query_time`) plus its jitter, the RPC hold timeout
    /// and slack.
    /// The agent's CA and certificate for checks, when `enable_agent_tls_for_checks` is on.
    pub fn check_tls(&self) -> Arc<Option<legate_tls::CheckTls>> {
        self.check_tls.get()
    }

    /// Reads the files checks use (`enable_agent_tls_for_checks`, `tls.internal_rpc`) from the
    /// running config; unreadable files leave checks without them, with the error logged.
    pub fn load_check_tls(&self) {
        let c = self.config();
        let tls = if c.enable_agent_tls_for_checks {
            match legate_tls::CheckTls::from_settings(&c.tls.settings(legate_config::tls::Listener::InternalRpc)) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!("enable_agent_tls_for_checks: the agent's TLS files cannot be used: {e}");
                    None
                }
            }
        } else {
            None
        };
        self.check_tls.set(tls);
    }

    pub fn rpc_deadline(&self, wait: Option<&str>) -> Duration {
        let c = self.config();
        let wait = wait
            .and_then(|v| legate_config::duration::parse_go_duration(v).ok())
            .unwrap_or(c.default_query_time.0)
            .min(c.max_query_time.0);
        wait + wait / 16 + c.performance.rpc_hold_timeout.0 + Duration::from_secs(5)
    }

    /// Sends an HTTP API call to a server (client agents); tries each known server once.
    pub async fn forward_http(
        &self,
        call: legate_raft::rpc::HttpCall,
    ) -> Result<legate_raft::rpc::HttpReply, legate_raft::link::LinkError> {
        let wait = call.query.iter().find(|(k, _)| k == "wait").map(|(_, v)| v.as_str());
        let deadline = self.rpc_deadline(wait);
        self.link.forward_http(call, deadline).await
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
    pub fn reload(&self) -> Result<ReloadOutcome, AgentError> {
        let Some(r) = &self.reloader else { return Err(AgentError::NoSources) };
        let timer = legate_telemetry::Timer::start("legate.config.reload.duration", Vec::new());
        let outcome = r.reload();
        drop(timer);
        let record = ReloadRecord {
            time: now_rfc3339(),
            ok: outcome.is_ok(),
            error: outcome.as_ref().err().map(|e| e.to_string()),
            applied: outcome.as_ref().map(|o| o.applied.clone()).unwrap_or_default(),
            requires_restart: outcome.as_ref().map(|o| o.requires_restart.clone()).unwrap_or_default(),
        };
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
        legate_telemetry::incr(if outcome.is_ok() {
            "legate.config.reload.count"
        } else {
            "legate.config.reload.failures"
        });
        Ok(outcome?)
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
                .server()
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
        let pool = if wan { self.gossip_wan.get() } else { self.gossip.get() };
        if let Some(g) = pool {
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
        if !wan {
            return vec![self.local_member()];
        }
        if !c.server {
            return Vec::new();
        }
        let mut m = self.local_member();
        m.name = format!("{}.{}", self.node_name, c.datacenter);
        m.port = u16::try_from(c.ports.serf_wan).unwrap_or(0);
        vec![m]
    }

    /// Sends an HTTP API call to a server of another datacenter (through the WAN pool's list
    /// of its servers); `None` when no server of it is known (Consul's `No path to datacenter`).
    pub async fn forward_http_dc(
        &self,
        dc: &str,
        call: legate_raft::rpc::HttpCall,
    ) -> Option<Result<legate_raft::rpc::HttpReply, legate_raft::link::LinkError>> {
        let servers = wan::servers_in(self.gossip_wan.get()?, dc);
        if servers.is_empty() {
            return None;
        }
        let wait = call.query.iter().find(|(k, _)| k == "wait").map(|(_, v)| v.as_str());
        let deadline = self.rpc_deadline(wait);
        Some(self.link.forward_http_to(dc, servers, call, deadline).await)
    }

    /// Leader and peers. A client agent that knows no server answers Consul's error; a server
    /// reports the Raft state it has (none yet: no leader, no peers).
    pub fn cluster_view(&self) -> Result<ClusterView, AgentError> {
        match self.server() {
            Some(s) => Ok(ClusterView { leader: s.leader(), peers: s.peers() }),
            None => Err(legate_raft::link::LinkError::NoServers.into()),
        }
    }

    /// Gauges of `/v1/agent/metrics`, read now: runtime, and on servers the Raft state and the
    /// log store's durability counters (appends, fsyncs, entries per fsync).
    pub fn gauges(&self) -> Vec<legate_telemetry::Gauge> {
        use legate_telemetry::Gauge;
        use std::sync::atomic::Ordering::Relaxed;
        let mut g = legate_telemetry::runtime::gauges();
        g.push(Gauge::new("agent.telemetry.sink_dropped", legate_telemetry::sinks::dropped() as f64));
        g.push(Gauge::new("agent.uptime_seconds", self.started.elapsed().as_secs_f64()));
        if let Some(server) = self.server() {
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
            g.push(Gauge::new("rpc.queries_blocking", server.store.watch.blocked_queries() as f64));
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
        let pool = self
            .gossip
            .get()
            .map(|g| g.stats())
            .unwrap_or(legate_gossip::PoolStats { members: 1, ..Default::default() });
        let serf = json!({
            "members": pool.members.to_string(),
            "failed": pool.failed.to_string(),
            "left": pool.left.to_string(),
            "encrypted": c.encrypt.is_some().to_string(),
            "health_score": pool.health_score.to_string(),
            "intent_queue": pool.intent_queue.to_string(),
            "event_queue": pool.event_queue.to_string(),
            "event_time": pool.event_time.to_string(),
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
        if let Some(server) = self.server() {
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

/// Go's GOARCH names, which Consul reports.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
