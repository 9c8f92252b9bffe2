//! The typed calls a server answers on the RPC port besides Raft's own: what client agents
//! (and followers) send instead of HTTP requests to internal paths.
//!
//! - `AclResolve`: a secret -> the token's flattened policies, read from this server's store
//!   (answered here: it needs nothing but the store);
//! - `CatalogWrite`: a client agent's anti-entropy write, checked against its token and applied;
//! - `KvWrite`: a KV verb written through a client agent, checked against the request's token
//!   (and the key's lock-delay) and applied;
//! - `Http`: an HTTP API call a client agent forwards (reads, blocking queries), answered by the
//!   server's own handlers;
//! - `PluginList` / `PluginChunk`: a client agent's view of the plugin registry (a blocking
//!   read) and the chunks of the blobs it runs, checked against its agent token.
//!
//! The last two need the agent's ACL resolution and HTTP layer, which live above this crate:
//! the composition root installs them as [`Endpoints`] once they exist.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use legate_state::kv::KvOp;

use crate::command::{Command, CommandResponse};
use crate::rpc::{HttpCall, HttpReply};

/// Why a typed call was refused or failed (carried back to the caller as is).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
pub enum EndpointError {
    /// The token does not exist (Consul's 403 `ACL not found`).
    #[error("ACL not found")]
    AclNotFound,
    /// The token lacks a permission; the text is Consul's `Permission denied: ...`.
    #[error("{0}")]
    PermissionDenied(String),
    /// This server cannot answer (starting, shutting down, no leader...).
    #[error("{0}")]
    Unavailable(String),
}

/// The server-side implementation of the calls that need the agent's layers.
#[async_trait::async_trait]
pub trait Endpoints: Send + Sync {
    /// An HTTP API call forwarded by a client agent, as if it came to this server's HTTP port.
    async fn http(&self, call: HttpCall) -> HttpReply;
    /// A client agent's catalog registration or deregistration, checked against `token`.
    async fn catalog_write(&self, token: Option<String>, cmd: Command) -> Result<CommandResponse, EndpointError>;
    /// A KV write (`PUT`/`DELETE /v1/kv`) through a client agent, checked against `token`.
    async fn kv_write(&self, token: Option<String>, op: KvOp) -> Result<CommandResponse, EndpointError>;
    /// The plugin registry's versions `token` may read, as JSON, with the registry's index:
    /// answered once that index passes `index`, or after `wait`.
    async fn plugin_list(
        &self,
        token: Option<String>,
        index: u64,
        wait: Duration,
    ) -> Result<(u64, String), EndpointError>;
    /// Chunk `chunk` of blob `sha256`, if `token` may read a version of it.
    async fn plugin_chunk(&self, token: Option<String>, sha256: String, chunk: u32) -> Result<Vec<u8>, EndpointError>;
}

/// Where the composition root puts the [`Endpoints`] once the HTTP layer exists.
pub type EndpointsCell = Arc<OnceLock<Arc<dyn Endpoints>>>;
