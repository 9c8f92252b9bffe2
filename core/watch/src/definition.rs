//! The `watches []` entry of a config file, as written.

use legate_plugin_host::WasmSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A watch definition (`watches []`): run by this crate: the query
/// (`WatchSpec`) and the handler (`handler::HandlerSpec`: args, handler, http_handler_config,
/// wasm).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchDefinition {
    #[serde(rename = "type")]
    pub kind: String,
    pub datacenter: Option<String>,
    pub token: Option<String>,
    /// Let any server answer (Consul's `stale` watch parameter).
    pub stale: Option<bool>,
    pub key: Option<String>,
    pub prefix: Option<String>,
    pub service: Option<String>,
    pub tag: Option<Json>,
    pub passingonly: Option<bool>,
    pub state: Option<String>,
    pub name: Option<String>,
    pub filter: Option<String>,
    pub args: Vec<String>,
    pub handler: Option<String>,
    pub handler_type: Option<String>,
    pub http_handler_config: Option<Json>,
    pub wasm: Option<WasmSpec>,
}
