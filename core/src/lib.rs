//! legate-core: the composition root, the CLI and the thin `legate` binary.
//!
//! Legate is a Consul-compatible service-discovery and configuration agent. Its parts are
//! crates of their own (`core/<part>/`, mapped in `docs/architecture.md`); this crate puts them
//! together and re-exports them under the module paths callers and tests use
//! (`legate_core::http`, `::server`, `::state`, ...).
//!
//! # Layout
//!
//! ```text
//! src/bin/legate.rs   args -> cli::run(); nothing else
//! src/node.rs         Agent::start: binds every listener, starts the Raft server, builds the
//!                     agent's state with its ServerLink, gossip, leader duties, HTTP, DNS,
//!                     watches and reloads on one TaskTracker under one CancellationToken
//! src/cli/            one file per command family (agent, validate, version, kv, snapshot,
//!                     catalog/services/maint, members/join/leave/event, operator/keyring/info,
//!                     acl, lock, watch, plugin); Consul-style single-dash flags are accepted by
//!                     cli::normalize_args
//! src/acl.rs          the ACL rules and authorizer (legate-acl) with the agent's token
//!                     resolution as `acl::resolve` (legate-agent)
//! src/logging.rs      tracing to stderr / file / syslog, reloadable level
//! ```
//!
//! # Flows
//!
//! Start: `cli::agent` turns flags into a config layer -> `config::load` merges and validates ->
//! `Agent::start_with_sources` (node.rs) locks the data dir and starts every part.
//! SIGINT/SIGTERM cancel the token and await every task; SIGHUP re-runs `config::load`, diffs,
//! and publishes the new config on a watch channel that the parts subscribe to.
//!
//! A request: warp accepts (`legate_http::serve`) -> `dispatch` looks the method and path up in
//! the route table -> forward / ACL check -> the route's handler answers an `ApiResponse` or an
//! `ApiError` -> `finish` adds Consul's headers and serializes.

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
