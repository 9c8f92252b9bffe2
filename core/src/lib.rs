//! legate-core: the Legate agent library and the thin `legate` binary.
//!
//! Legate is a Consul-compatible service-discovery and configuration agent. This crate holds
//! every part of the agent; `src/bin/legate.rs` only parses arguments and calls [`cli::run`].
//!
//! # Layout
//!
//! ```text
//! src/bin/legate.rs   args -> cli::run(); nothing else
//! src/cli/            one file per command family (agent, validate, version, kv, snapshot,
//!                     catalog/services/maint, members/join/leave/event, operator/keyring/info,
//!                     plugin run/inspect/compile/bench);
//!                     Consul-style single-dash flags are accepted by cli::normalize_args
//! src/config/         mod.rs (Config structs, Consul key names and defaults), load.rs (figment
//!                     layers: defaults < -dev < files/dirs < LEGATE_* env < flags; validation),
//!                     reload.rs (re-load, diff, swap), duration.rs (Go durations)
//! src/agent/          mod.rs (Agent::start, shared state, shutdown, leader reconcile),
//!                     local.rs (this node's services/checks), checks/ (probes), runner.rs
//!                     (check scheduling, TTL, reaper), ae.rs (anti-entropy), cluster.rs
//!                     (gossip wiring, joins, bootstrap-expect, voters), events.rs (user events),
//!                     data_dir.rs (lock, node-id), addr.rs (advertise address)
//! src/gossip/         LAN membership on foca (SWIM): transport, AES-GCM keyring, user events
//! src/server/         Raft (openraft) + RPC port: mod.rs (apply, batching, forwarding),
//!                     command.rs (the Command enum), rpc.rs, raft/ (log store, state machine)
//! src/state/          redb state store: kv.rs, catalog.rs, session.rs, acl.rs (tokens,
//!                     policies, roles), snapshot.rs, watch.rs, schema.rs
//! src/http/           warp server + one dispatcher: mod.rs (routing, headers, pretty, token
//!                     resolution), routes.rs (every route with its ACL permission), error.rs
//!                     (ApiError -> status), request.rs, response.rs, blocking.rs, forward.rs
//!                     (client agents -> servers), one file per endpoint family
//! src/acl/            ACL rules language and authorizer (mod.rs), token resolution, caching
//!                     and the agent's own tokens (resolve.rs)
//! src/dns/            DNS on hickory: mod.rs (listeners, handler, trimming), name.rs (name
//!                     forms), answer.rs (records), source.rs (catalog view / forwarding),
//!                     recurse.rs (recursors), authz.rs (the ACL decision for answers)
//! src/watch/          watches: mod.rs (types, the blocking-query loop), handler.rs (exec,
//!                     http, wasm); the agent runs config watches in agent/watches.rs, the
//!                     CLI in cli/watch.rs
//! src/plugin/         WASM plugin host (wasmtime 48, component model): mod.rs (engine, epoch
//!                     ticker, compiled cache, load/hot swap, check and handler calls, limits),
//!                     host.rs (the log/http/net/kv/host interfaces, grants), bindings.rs
//!                     (bindgen! of sdk/wit, one module per supported WIT version)
//! src/filter.rs       ?filter= (go-bexpr) expressions over JSON
//! src/telemetry.rs    metrics registry behind /v1/agent/metrics
//! src/logging.rs      tracing to stderr / file / syslog, reloadable level
//! src/version.rs      Legate's version and the Consul version it presents
//! ```
//!
//! # Flows
//!
//! Start: `cli::agent` turns flags into a config layer -> `config::load` merges and validates ->
//! `Agent::start_with_sources` locks the data dir, binds listeners, spawns tasks on one
//! `TaskTracker` under one `CancellationToken`. SIGINT/SIGTERM cancel the token and await every
//! task; SIGHUP re-runs `config::load`, diffs, and publishes the new config on a watch channel
//! that the agent's parts subscribe to.
//!
//! A request: warp accepts -> `http::routes` decodes path, query, headers and body ->
//! `http::dispatch` picks the endpoint family -> the handler checks the method and answers an
//! `ApiResponse` or an `ApiError` -> `http::finish` adds Consul's headers and serializes.

pub mod acl;
pub mod agent;
pub mod cli;
pub mod config;
pub mod dns;
pub mod filter;
pub mod gossip;
pub mod http;
pub mod logging;
pub mod plugin;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod version;
pub mod watch;

pub use agent::{Agent, AgentError};
pub use config::Config;

/// Long-lived tasks by name, so a shutdown that does not drain can say which task is stuck.
pub mod tasks {
    use std::collections::HashMap;
    use std::future::Future;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    static LIVE: Mutex<Option<HashMap<u64, &'static str>>> = Mutex::new(None);
    static NEXT: AtomicU64 = AtomicU64::new(0);

    struct Guard(u64);

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(m) = LIVE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                m.remove(&self.0);
            }
        }
    }

    /// Spawns `fut` on `tracker` under `name`.
    pub fn spawn<F>(tracker: &tokio_util::task::TaskTracker, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(id, name);
        tracker.spawn(async move {
            let _guard = Guard(id);
            fut.await
        });
    }

    /// Names of the tasks still running (in this process).
    pub fn live() -> Vec<&'static str> {
        let mut v: Vec<&'static str> = LIVE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }
}
