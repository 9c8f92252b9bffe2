//! legate-core: the Legate agent library and the thin `legate` binary.
//!
//! Legate is a Consul-compatible service-discovery and configuration agent. This crate holds
//! every part of the agent; `src/bin/legate.rs` only parses arguments and calls [`cli::run`].
//!
//! # Layout
//!
//! ```text
//! src/bin/legate.rs   args -> cli::run(); nothing else
//! src/cli/            one file per command (agent.rs, validate.rs, version.rs); Consul-style
//!                     single-dash flags are accepted by cli::normalize_args
//! src/config/         mod.rs (Config structs, Consul key names and defaults), load.rs (figment
//!                     layers: defaults < -dev < files/dirs < LEGATE_* env < flags; validation),
//!                     reload.rs (re-load, diff, swap), duration.rs (Go durations)
//! src/agent/          mod.rs (Agent::start, shared state, shutdown), data_dir.rs (lock, node-id),
//!                     addr.rs (advertise address)
//! src/http/           warp server + one dispatcher: mod.rs (routing, headers, pretty),
//!                     error.rs (ApiError -> status), request.rs, response.rs, one file per family
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

pub mod agent;
pub mod cli;
pub mod config;
pub mod http;
pub mod logging;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod version;

pub use agent::{Agent, AgentError};
pub use config::Config;
