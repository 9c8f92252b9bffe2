//! Wire types of Legate's Consul-compatible `/v1` HTTP API, shared by the agent, the client
//! SDK and the CLI. Field names and casing are Consul's, exactly: these structs are the JSON
//! that python-consul, node-consul, Spring Cloud Consul and consul-template read.
//!
//! # Layout
//! - `agent`: `/v1/agent/*` (self, version, members)
//! - `coordinate`: `/v1/coordinate/*` and the Vivaldi distance estimate (`?near=`, `legate rtt`)
//! - `kv`: `/v1/kv`, `/v1/txn` (DirEntry, transaction results and errors)
//! - `plugin`: `/v1/plugin/*`, `/v1/plugins` (the plugin registry; Legate's own)

pub mod agent;
pub mod coordinate;
pub mod kv;
pub mod operator;
pub mod plugin;
