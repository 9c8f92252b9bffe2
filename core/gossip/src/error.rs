//! `GossipError`: what starting the pool and its operations (join, leave, force-leave, user
//! events, the keyring) fail with. The texts are Consul's where Consul has one.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("failed to bind gossip (serf LAN) UDP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gossip: node name must not be empty")]
    EmptyName,
    #[error("gossip: local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    #[error("gossip is not running")]
    NotRunning,
    #[error("gossip is not running (shut down without leaving)")]
    StoppedWithoutLeave,
    /// No address given to `join` answered; the text lists each address's failure.
    #[error("failed to join{0}")]
    Join(String),
    /// A join address that does not resolve.
    #[error("{0}")]
    Address(String),
    #[error("Cannot force-leave the local agent; use leave")]
    ForceLeaveSelf,
    #[error("No node found with name '{0}'")]
    NoSuchNode(String),
    #[error("gossip: this agent has left the cluster")]
    Left,
    #[error("user event exceeds limit of {0} bytes after encoding")]
    EventTooLarge(usize),
    #[error("duplicate user event id {0}")]
    DuplicateEvent(String),
    #[error("gossip: cannot broadcast event: {0}")]
    Broadcast(String),
    /// A key that is not base64 of 16, 24 or 32 bytes.
    #[error("Invalid key: {0}")]
    InvalidKey(String),
    #[error("Requested key is not in the keyring")]
    KeyNotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
    #[error("Gossip encryption is not enabled on this agent")]
    EncryptionDisabled,
    /// The keyring file in the data dir (`serf/local.keyring`).
    #[error("keyring file {}: {why}", path.display())]
    KeyringFile { path: PathBuf, why: String },
    /// A datagram that does not open or decode (the fuzz entry points).
    #[error("{0}")]
    Packet(String),
}

impl GossipError {
    /// Whether the caller asked for something this agent refuses (a 400 to an HTTP client),
    /// rather than the agent failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            GossipError::InvalidKey(_)
                | GossipError::KeyNotInstalled
                | GossipError::RemovePrimary
                | GossipError::EncryptionDisabled
                | GossipError::ForceLeaveSelf
                | GossipError::NoSuchNode(_)
                | GossipError::EventTooLarge(_)
                | GossipError::DuplicateEvent(_)
        )
    }
}
