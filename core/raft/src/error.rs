//! What can go wrong starting or running the server, with the cause kept.

use std::net::SocketAddr;
use std::path::PathBuf;

use legate_state::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("Error starting server RPC: listen tcp {addr}: bind: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A file or directory of the data dir.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file that does not decode.
    #[error("{}: {source}", path.display())]
    Snapshot {
        path: PathBuf,
        #[source]
        source: bincode::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Raft log file fails its integrity check: it is this server's record of the cluster's
    /// writes and its vote, which nothing local can rebuild.
    #[error(
        "{}: the Raft log is damaged ({detail}); it cannot be rebuilt from this server's own files. \
         Ways out: a server of a cluster: stop it, move {} aside and start it again: it rejoins \
         with an empty log and receives the leader's snapshot; a single server: start it on an empty \
         data dir and restore your last `legate snapshot save` with `legate snapshot restore <file>`",
        path.display(),
        dir.display()
    )]
    DamagedLog { path: PathBuf, dir: PathBuf, detail: String },
    /// The Raft log store (its writer reports errors as text to several waiters at once).
    #[error("raft log: {0}")]
    Log(String),
    /// openraft refused (its errors are generic over the node types: kept as text).
    #[error("raft: {0}")]
    Raft(String),
    /// A leadership transfer could not be made (Consul's texts).
    #[error("{0}")]
    Transfer(String),
    #[error("No cluster leader")]
    NoLeader,
    /// A server that could not be reached over the RPC port (or refused this one: TLS).
    #[error("{0}")]
    Unreachable(#[from] crate::rpc::RpcError),
    /// A blocking task that died.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl ServerError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ServerError {
        let path = path.into();
        move |source| ServerError::Io { path, source }
    }

    pub(crate) fn raft(e: impl std::fmt::Display) -> ServerError {
        ServerError::Raft(e.to_string())
    }
}
