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
//! src/agent_cmd.rs    `legate agent`: config load, logging, runtime, signals, banner; the rest
//!                     of the command line is legate-cli (`cli::run` hands it this runner)
//! src/acl.rs          the ACL rules and authorizer (legate-acl) with the agent's token
//!                     resolution as `acl::resolve` (legate-agent)
//! src/logging.rs      tracing to stderr / file / syslog, reloadable level
//! src/startup_pages.rs a client agent pages out its binary's startup-only code once it is up
//! ```
//!
//! # Flows
//!
//! Start: `cli::agent` turns flags into a config layer -> `config::load` merges and validates ->
//! `Agent::start_with_sources` (node.rs) locks the data dir and starts every part.
//! SIGINT/SIGTERM cancel the token and await every task; SIGHUP re-runs `config::load`, diffs,
//! and publishes the new config on a watch channel that the parts subscribe to.
//!
//! A request: hyper reads it (`legate_http::serve`) -> `dispatch` looks the method and path up in
//! the route table -> forward / ACL check -> the route's handler answers an `ApiResponse` or an
//! `ApiError` -> `finish` adds Consul's headers and serializes.

pub mod acl;
pub mod agent_cmd;
mod hclog;
pub mod logging;
pub mod node;
mod startup_pages;
mod systemd;

pub use legate_agent as agent;
pub use legate_config as config;

/// The command line (`legate-cli`), with `legate agent` run by this crate's [`agent_cmd`].
pub mod cli {
    pub use legate_cli::*;

    /// Runs the command line; returns the process exit code.
    pub fn run<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> i32 {
        legate_cli::run(args, crate::agent_cmd::run)
    }
}

pub use legate_dns as dns;
pub use legate_filter as filter;
pub use legate_gossip as gossip;
pub use legate_http as http;
pub use legate_plugin_host as plugin;
pub use legate_raft as server;
pub use legate_state as state;
pub use legate_telemetry as telemetry;
pub use legate_tls as tls;
pub use legate_types::{tasks, version};
pub use legate_watch as watch;

pub use config::Config;
pub use node::{Agent, StartError};
