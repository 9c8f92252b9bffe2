//! `AgentError`: what the agent's own operations (registration sync, tokens, reload, the
//! cluster view, starting its parts) fail with.

use std::path::PathBuf;

use legate_config::ConfigError;
use legate_raft::link::LinkError;
use legate_raft::rpc::ApplyError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A call to the servers failed (client agents).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// This server's Raft did not take a write.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The state machine refused a catalog write (its text, Consul's).
    #[error("{0}")]
    Refused(String),
    /// A file of the data dir.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config sources do not load (the text names file, line and key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("this agent was started from an in-memory config and has no sources to reload")]
    NoSources,
    /// An address setting that cannot be used (bind, advertise, serf).
    #[error("{0}")]
    Address(String),
    /// The plugin host could not start, or a plugin handler failed.
    #[error(transparent)]
    Plugin(#[from] legate_plugin_host::PluginError),
    /// A watch handler failed.
    #[error(transparent)]
    Watch(#[from] legate_watch::WatchError),
    /// A watch delivered something its handler cannot take.
    #[error("{0}")]
    Handler(String),
    /// Gossip could not start or refused an operation.
    #[error(transparent)]
    Gossip(#[from] legate_gossip::GossipError),
}
