//! Legate's black-box tests: one test binary, a module per area.

mod acl;
mod acl_login;
mod agent_api;
mod cli;
mod cli_kv;
mod cluster;
mod config;
mod coordinates;
mod dns;
mod durability;
mod federation;
mod hot_reload;
mod http_api;
mod kv;
mod lifecycle;
mod packaging;
mod plugins;
mod query;
mod raft_cluster;
mod secrets;
mod security;
mod services;
mod sessions;
mod snapshot;
mod telemetry;
mod watch;
