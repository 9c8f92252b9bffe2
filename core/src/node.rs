//! The composition root: `Agent::start` builds every part of a node and hands each only what
//! it needs: the config channel and reloader, the data dir, the listeners (bound before
//! anything runs, so a bind error fails the start), the Raft server and the `ServerLink`, the
//! agent's state, gossip, the leader duties, the HTTP and DNS servers and the watches. It is
//! what the binary and every test call.
//!
//! Shutdown: every task is spawned on one [`TaskTracker`] and watches a child of one
//! [`CancellationToken`]; [`Agent::shutdown`] cancels and awaits them all.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::data_dir::{DataDir, DataDirError};
use crate::agent::{self, AgentShared};
use crate::config::reload::Reloader;
use crate::config::{Config, ConfigError, LoadOptions};
use crate::server::link::ServerLink;
use crate::server::{Server, ServerOptions};
use crate::{http, logging};
use legate_tls::{Live, RpcTls};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    DataDir(#[from] DataDirError),
    #[error("Failed to get advertise address: {0}")]
    Advertise(#[source] agent::AgentError),
    /// Gossip could not start.
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error("Error starting HTTP server: listen tcp {addr}: bind: {source}")]
    HttpBind { addr: SocketAddr, source: std::io::Error },
    #[error("Error starting HTTPS server: listen tcp {addr}: bind: {source}")]
    HttpsBind { addr: SocketAddr, source: std::io::Error },
    #[error("Error starting DNS server: listen {proto} {addr}: bind: {source}")]
    DnsBind { addr: SocketAddr, proto: &'static str, source: std::io::Error },
    #[error("{0}")]
    Server(String),
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Raft(#[from] crate::server::ServerError),
    #[error("Error initializing telemetry: {0}")]
    Telemetry(#[from] legate_telemetry::sinks::SinkError),
    #[error("Could not write pid file {path}: {source}")]
    PidFile { path: String, source: std::io::Error },
}

/// A running agent.
pub struct Agent {
    shared: Arc<AgentShared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    dns_addrs: Vec<SocketAddr>,
    data_dir: Option<DataDir>,
    pid_file: Option<PathBuf>,
}

impl Agent {
    /// Starts an agent from a ready config (tests, embedding). It has no sources to reload.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Agent, StartError> {
        Self::start_inner(config, None, shutdown).await
    }

    /// Loads the config from its layers and starts the agent; reloads re-read the same sources.
    pub async fn start_with_sources(opts: LoadOptions, shutdown: CancellationToken) -> Result<Agent, StartError> {
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
    ) -> Result<Agent, StartError> {
        Self::start_inner(config, Some(sources), shutdown).await
    }

    async fn start_inner(
        config: Config,
        sources: Option<LoadOptions>,
        shutdown: CancellationToken,
    ) -> Result<Agent, StartError> {
        let data_dir = match &config.data_dir {
            Some(p) => Some(DataDir::open(p)?),
            None => None,
        };
        let node_id = match &data_dir {
            Some(d) => d.node_id(config.node_id.as_deref())?,
            // -dev without a data dir: nothing is persisted, as Consul's dev mode.
            None => config.node_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        };
        let advertise = agent::addr::advertise_addr(&config).map_err(StartError::Advertise)?;
        let node_name = config.node_name();
        let sinks = legate_telemetry::sinks::install(&config.telemetry)?;

        // Bind every listener before spawning anything, so a bind error fails the start.
        let listeners =
            bind_api(&config.http_addrs(), config.ports.http, |addr, source| StartError::HttpBind { addr, source })
                .await?;
        let http_addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        let tls = Tls::new(&config)?;
        let https_listeners =
            bind_api(&config.https_addrs(), config.ports.https, |addr, source| StartError::HttpsBind { addr, source })
                .await?;
        let https_addrs: Vec<SocketAddr> = https_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        let dns = crate::dns::bind(&config).await.map_err(|e| StartError::DnsBind {
            addr: e.addr,
            proto: e.proto,
            source: e.source,
        })?;
        let dns_addrs = dns.addrs.clone();

        if let Some(path) = &config.pid_file {
            agent::data_dir::write_atomic(path, &format!("{}\n", std::process::id()))
                .map_err(|source| StartError::PidFile { path: path.display().to_string(), source })?;
        }

        let tracker = TaskTracker::new();
        let server = if config.server {
            if !(0..=65535).contains(&config.ports.server) {
                return Err(StartError::Server(format!(
                    "ports.server {} is not usable by a server",
                    config.ports.server
                )));
            }
            let bind_ip: IpAddr = config
                .bind_addr
                .parse()
                .map_err(|_| StartError::Server(format!("bind_addr {:?} is not an IP address", config.bind_addr)))?;
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
                tls: tls.rpc.clone(),
                handshake_timeout: config.limits.rpc_handshake_timeout.0,
                max_conns_per_client: config.limits.rpc_max_conns_per_client,
                data_dir_min_free: config.limits.data_dir_min_free,
            };
            Some(Server::start(opts, shutdown.child_token(), &tracker).await?)
        } else {
            None
        };

        let persist = data_dir.as_ref().map(|d| d.path().join("local-state.json"));
        let local = Arc::new(agent::local::LocalState::new(node_name.clone(), persist));
        let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
        let plugins = agent::plugins::plugin_host(&config, &node_name, server.as_ref(), config_rx.clone())
            .map_err(agent::AgentError::from)?;
        let reloader = sources.map(|opts| Reloader::new(opts, config_tx.clone()));
        let shared = Arc::new(AgentShared::new(
            (config_tx, config_rx),
            reloader,
            (node_name, node_id, advertise),
            ServerLink::new(server, tls.rpc.clone()),
            local,
            plugins,
            shutdown.clone(),
        ));
        if let Some(server) = shared.server() {
            server.acl_enforced.store(shared.config().acl.enabled, std::sync::atomic::Ordering::Relaxed);
        }
        shared.link.set_rate_limit(config.rpc_rate(), config.limits.rpc_max_burst);
        // The plugin registry as this agent sees it: installed before any check runs.
        let fleet = Arc::new(agent::registry::FleetRegistry::new(Arc::downgrade(&shared)));
        shared.plugins().set_registry(fleet.clone());
        if shared.config().acl.enable_token_persistence {
            if let Some(d) = data_dir.as_ref() {
                shared.acl.load_persisted(d.path());
            }
        }
        let gossip = agent::cluster::start_gossip(
            &shared,
            data_dir.as_ref().map(|d| d.path()),
            shutdown.child_token(),
            &tracker,
        )
        .await?;
        if let Some(g) = gossip {
            let _ = shared.gossip.set(g.clone());
            crate::tasks::spawn(
                &tracker,
                "join",
                agent::cluster::join_loop(shared.clone(), g.clone(), shutdown.child_token()),
            );
            crate::tasks::spawn(
                &tracker,
                "user-events",
                agent::events::receive_loop(shared.clone(), g.clone(), shutdown.child_token()),
            );
            crate::tasks::spawn(
                &tracker,
                "membership",
                agent::cluster::membership_loop(shared.clone(), g, shutdown.child_token()),
            );
        }
        let wan =
            agent::wan::start(&shared, data_dir.as_ref().map(|d| d.path()), shutdown.child_token(), &tracker).await?;
        if let Some(w) = wan {
            let _ = shared.gossip_wan.set(w.clone());
            crate::tasks::spawn(&tracker, "join-wan", agent::wan::join_loop(shared.clone(), w, shutdown.child_token()));
        }
        shared.load_check_tls();
        shared.load_config_definitions();
        shared.local.restore(shared.scripts_allowed(false));
        crate::tasks::spawn(
            &tracker,
            "config-watch",
            agent::config_watch::watch_loop(shared.clone(), shutdown.child_token()),
        );
        crate::tasks::spawn(
            &tracker,
            "check-supervisor",
            agent::runner::supervise(shared.clone(), tracker.clone(), shutdown.child_token()),
        );
        crate::tasks::spawn(&tracker, "anti-entropy", agent::ae::run(shared.clone(), shutdown.child_token()));
        crate::tasks::spawn(&tracker, "coordinates", agent::coordinates::run(shared.clone(), shutdown.child_token()));
        if shared.server().is_none() {
            crate::tasks::spawn(
                &tracker,
                "startup-pages",
                crate::startup_pages::page_out_after_start(shared.clone(), shutdown.child_token()),
            );
            // Client agents keep a view of the plugin registry (servers read their own store).
            crate::tasks::spawn(
                &tracker,
                "plugin-registry",
                agent::registry::registry_loop(fleet, shutdown.child_token()),
            );
        }
        if let Some(server) = shared.server() {
            server.run_leadership(agent::leader::duties(&shared), &tracker, shutdown.child_token());
            // A server whose Raft core stopped (a storage error: a full disk past the reserve, a
            // failing fsync) can neither write nor vote: it exits 1, its acknowledged writes safe
            // in the fsynced log, for its supervisor to restart it once the disk is fixed.
            let (agent, server, stop) = (shared.clone(), server.clone(), shutdown.child_token());
            crate::tasks::spawn(&tracker, "raft-core-watch", async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    why = server.core_stopped() => {
                        tracing::error!(error = %why, "the Raft core stopped: the agent exits");
                        agent.fatal(format!("the Raft core stopped: {why}"));
                    }
                }
            });
        }

        let ctx = Arc::new(http::Ctx::new(shared.clone(), shutdown.child_token()));
        if let Some(server) = shared.server() {
            let _ = server.endpoints.set(Arc::new(http::endpoints::ServerEndpoints(Arc::downgrade(&ctx))));
        }
        for l in listeners {
            crate::tasks::spawn(&tracker, "http", http::serve(ctx.clone(), l, None, shutdown.child_token()));
        }
        for l in https_listeners {
            let tls = Some(tls.https.clone());
            crate::tasks::spawn(&tracker, "https", http::serve(ctx.clone(), l, tls, shutdown.child_token()));
        }
        crate::tasks::spawn(&tracker, "dns", crate::dns::serve(shared.clone(), dns, shutdown.child_token()));
        crate::tasks::spawn(
            &tracker,
            "watches",
            agent::watches::supervise(
                shared.clone(),
                agent::watches::local_api_addr(&http_addrs, &https_addrs),
                tracker.clone(),
                shutdown.child_token(),
            ),
        );
        crate::tasks::spawn(
            &tracker,
            "templates",
            agent::templates::supervise(
                shared.clone(),
                agent::watches::local_api_addr(&http_addrs, &https_addrs),
                shutdown.child_token(),
            ),
        );
        if sinks {
            crate::tasks::spawn(&tracker, "metrics-sinks", push_metrics(shared.clone(), shutdown.child_token()));
        }
        crate::tasks::spawn(
            &tracker,
            "reloads",
            apply_reloads(shared.clone(), tls, shared.watch_config(), shutdown.child_token()),
        );
        let pid_file = shared.config().pid_file.clone();
        tracing::info!(
            node = %shared.node_name(),
            id = %shared.node_id(),
            http = ?http_addrs,
            https = ?https_addrs,
            dns = ?dns_addrs,
            "agent started"
        );
        Ok(Agent { shared, shutdown, tracker, http_addrs, https_addrs, dns_addrs, data_dir, pid_file })
    }

    pub fn shared(&self) -> &Arc<AgentShared> {
        &self.shared
    }

    /// The bound HTTP addresses (with the real port when configured as 0).
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// The bound HTTPS addresses (empty unless `ports.https` is set).
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
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

/// The API's listeners on `ips` at `port` (none when the port is -1).
async fn bind_api(
    ips: &[IpAddr],
    port: i32,
    error: impl Fn(SocketAddr, std::io::Error) -> StartError,
) -> Result<Vec<tokio::net::TcpListener>, StartError> {
    let mut listeners = Vec::new();
    if port >= 0 {
        for ip in ips {
            let addr = SocketAddr::new(*ip, port as u16);
            listeners.push(agent::addr::bind_tcp(addr).await.map_err(|source| error(addr, source))?);
        }
    }
    Ok(listeners)
}

/// The TLS the agent's listeners and outgoing RPC use, rebuilt from the files at a reload
/// that changes them (the settings or the files' contents).
struct Tls {
    rpc: Arc<Live<RpcTls>>,
    /// None without a certificate (then no HTTPS listener is started: the config check refuses
    /// `ports.https`).
    https: http::HttpsTls,
    /// What the running configs were built from (`Settings::fingerprint`).
    built_from: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    fn new(config: &Config) -> Result<Tls, StartError> {
        let rpc = config.rpc_tls().map_err(|e| StartError::Tls(format!("tls.internal_rpc: {e}")))?;
        let https = config.https_tls().map_err(|e| StartError::Tls(format!("tls.https: {e}")))?;
        Ok(Tls {
            rpc: Arc::new(Live::new(rpc)),
            https: Arc::new(Live::new(https)),
            built_from: std::sync::Mutex::new(Self::fingerprints(config)),
        })
    }

    fn fingerprints(config: &Config) -> (Vec<u8>, Vec<u8>) {
        use crate::config::tls::Listener;
        let mut rpc = config.tls.settings(Listener::InternalRpc).fingerprint();
        rpc.extend_from_slice(format!("{}.{}", config.datacenter, config.domain).as_bytes());
        (rpc, config.tls.settings(Listener::Https).fingerprint())
    }

    /// Reads the certificate, key and CA files again; replaces what changed; a failure keeps
    /// what runs.
    fn reload(&self, config: &Config) {
        let now = Self::fingerprints(config);
        let mut built = self.built_from.lock().unwrap_or_else(|p| p.into_inner());
        if *built == now {
            return;
        }
        match (config.rpc_tls(), config.https_tls()) {
            (Ok(rpc), Ok(https)) => {
                if built.0 != now.0 {
                    self.rpc.set(rpc);
                }
                if built.1 != now.1 {
                    self.https.set(https);
                }
                *built = now;
                tracing::info!("TLS certificates and settings reloaded");
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!("TLS not reloaded, keeping the running certificates: {e}"),
        }
    }
}

/// Applies the parts of a reloaded config that this agent runs today: the log level. Later
/// parts (services, checks, watches, DNS...) subscribe to the same channel.
async fn apply_reloads(
    agent: Arc<AgentShared>,
    tls: Tls,
    mut rx: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let mut level = rx.borrow().log_level.clone();
    let mut node_meta = rx.borrow().node_meta.clone();
    let mut rpc_rate = (rx.borrow().rpc_rate(), rx.borrow().limits.rpc_max_burst);
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
        tls.reload(&config);
        agent.load_check_tls();
        if let Some(server) = agent.server() {
            server.acl_enforced.store(config.acl.enabled, std::sync::atomic::Ordering::Relaxed);
            server.rpc_max_conns.store(config.limits.rpc_max_conns_per_client, std::sync::atomic::Ordering::Relaxed);
            server.disk.set_min_free(config.limits.data_dir_min_free);
            let ms = config.limits.rpc_handshake_timeout.0.as_millis().min(u64::MAX as u128) as u64;
            server.rpc_handshake_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
        }
        agent.load_config_definitions();
        if (config.rpc_rate(), config.limits.rpc_max_burst) != rpc_rate {
            rpc_rate = (config.rpc_rate(), config.limits.rpc_max_burst);
            agent.link.set_rate_limit(rpc_rate.0, rpc_rate.1);
        }
        if config.node_meta != node_meta {
            node_meta = config.node_meta.clone();
            // The node entry in the catalog carries the meta: sync it now, not at the next
            // periodic full sync.
            if !agent::ae::full_sync(&agent).await {
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

/// With statsd, statsite or DogStatsD configured: the gauges read now go out every interval,
/// and the sinks' buffers are sent every second so a quiet agent's lines do not wait.
async fn push_metrics(agent: Arc<AgentShared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_interval = legate_telemetry::INTERVAL.as_secs().max(1);
    for n in 0u64.. {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if n % per_interval == 0 {
            legate_telemetry::sinks::emit_gauges(&agent.gauges());
        }
        legate_telemetry::sinks::flush();
    }
    legate_telemetry::sinks::flush();
}
