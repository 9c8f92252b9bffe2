//! `DnsError`: why a lookup could not be answered (the client then gets SERVFAIL) or a
//! recursor exchange failed.

use legate_raft::link::LinkError;
use legate_state::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// This server's store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The servers could not be asked (client agents, stale servers).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A server answered the catalog read with an error.
    #[error("{status} {path}: {body}")]
    Status { status: u16, path: String, body: String },
    /// A server's answer that does not decode.
    #[error("{path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A recursor could not be reached or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A recursor's answer that is not a DNS message.
    #[error("recursor answer: {0}")]
    Message(#[from] hickory_proto::serialize::binary::DecodeError),
    #[error("query too large")]
    TooLarge,
    /// No server of that datacenter is known (the WAN pool has none alive).
    #[error("No path to datacenter {0}")]
    NoDatacenter(String),
}

impl DnsError {
    /// No server of the datacenter asked for is known (here, or to the server asked).
    pub fn is_no_path(&self) -> bool {
        match self {
            DnsError::NoDatacenter(_) => true,
            DnsError::Status { status: 500, body, .. } => body.starts_with("No path to datacenter"),
            _ => false,
        }
    }
}
