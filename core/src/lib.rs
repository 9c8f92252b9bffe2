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
pub mod cli;
pub mod logging;
pub mod node;

pub use legate_agent as agent;
pub use legate_config as config;
pub use legate_dns as dns;
pub use legate_filter as filter;
pub use legate_gossip as gossip;
pub use legate_http as http;
pub use legate_plugin_host as plugin;
pub use legate_raft as server;
pub use legate_state as state;
pub use legate_telemetry as telemetry;
pub use legate_types::{tasks, version};
pub use legate_watch as watch;

pub use config::Config;
pub use node::{Agent, AgentError};
