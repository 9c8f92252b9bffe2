//! Raft commands: one enum of small payloads, one dispatch point (`raft::state_machine::apply`).

use serde::{Deserialize, Serialize};

use legate_state::catalog::{CatalogFail, Deregister, Register};
use legate_state::kv::{KvFail, KvOp, KvResult};
use legate_state::snapshot::StateData;
pub use legate_state::txn::{TxnOp, TxnOpResult};
use legate_state::watch::Table;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// One KV verb (`/v1/kv` PUT/DELETE).
    Kv(KvOp),
    /// An atomic KV transaction (`/v1/txn`): all verbs apply or none.
    Txn(Vec<TxnOp>),
    /// Drop tombstones at or below an index (leader's tombstone GC).
    ReapTombstones { index: u64 },
    /// Replace the whole state (`PUT /v1/snapshot`).
    Restore(StateData),
    /// Catalog registration (`/v1/catalog/register`, anti-entropy, leader reconcile).
    Register(Box<Register>),
    /// Catalog deregistration.
    Deregister(Deregister),
    /// `/v1/session/create`.
    SessionCreate(legate_state::session::Session),
    /// `/v1/session/destroy`, TTL expiry: the session goes, its locks are released.
    SessionDestroy { id: String },
    /// ACL tokens, policies and roles (applied together or not at all).
    Acl(Vec<legate_state::acl::AclOp>),
    /// Writes that arrived together on the leader, replicated as one entry (one fsync): applied
    /// in order, each with its own result.
    Batch(Vec<Command>),
    /// `PUT /v1/operator/autopilot/configuration[?cas=]`.
    Autopilot { config: legate_state::autopilot::AutopilotConfig, cas: Option<u64> },
    /// Network coordinates sent by agents (`PUT /v1/coordinate/update`, each agent's periodic
    /// update); updates for nodes not in the catalog are dropped.
    Coordinates(Vec<legate_api::coordinate::CoordinateUpdate>),
    /// `/v1/query` writes.
    Query(legate_state::query::QueryOp),
    /// Plugin registry writes (`/v1/plugin`): a chunk, a commit, a signature, a delete, a reap.
    Plugin(legate_state::plugin::PluginOp),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub enum CommandResponse {
    Kv(Result<KvResult, KvFail>),
    /// Results of every verb, or the (op index, reason) pairs that rolled it back.
    Txn(Result<Vec<TxnOpResult>, Vec<(usize, String)>>),
    Reaped(usize),
    Catalog(Result<(), CatalogFail>),
    Session(Result<(), String>),
    Acl(Result<(), String>),
    Batch(Vec<CommandResponse>),
    Restored,
    /// Blank and membership entries.
    #[default]
    None,
    /// Whether the autopilot configuration was stored (false: the CAS index did not match).
    Autopilot(bool),
    /// How many coordinate updates were stored.
    Coordinates(usize),
    /// A prepared query write, or why the state store refused it.
    Query(Result<(), String>),
    /// A plugin registry write, or why the state store refused it.
    Plugin(Result<(), String>),
}

impl Command {
    /// Whether applying it is cheap enough for the state machine's own task (a few small
    /// records): a restore, tombstone reaping or a large batch is not.
    pub fn is_light(&self) -> bool {
        match self {
            Command::Kv(_)
            | Command::Txn(_)
            | Command::Register(_)
            | Command::Deregister(_)
            | Command::SessionCreate(_)
            | Command::SessionDestroy { .. }
            | Command::Acl(_)
            | Command::Autopilot { .. }
            | Command::Query(_) => true,
            Command::Coordinates(updates) => updates.len() <= 64,
            Command::Batch(cmds) => cmds.len() <= 32 && cmds.iter().all(Command::is_light),
            // A plugin chunk is a quarter of a MiB; registry writes are rare.
            Command::Restore(_) | Command::ReapTombstones { .. } | Command::Plugin(_) => false,
        }
    }

    /// The sample a write is timed under (Consul's `kvs.apply`, `txn.apply`, ...).
    pub fn metric_name(&self) -> &'static str {
        match self {
            Command::Kv(_) => "kvs.apply",
            Command::Txn(_) => "txn.apply",
            Command::ReapTombstones { .. } => "fsm.tombstone.reap",
            Command::Restore(_) => "snapshot.restore",
            Command::Register(_) => "catalog.register",
            Command::Deregister(_) => "catalog.deregister",
            Command::Batch(_) => "raft.batch",
            Command::SessionCreate(_) => "session.apply",
            Command::SessionDestroy { .. } => "session.apply",
            Command::Acl(_) => "acl.apply",
            Command::Autopilot { .. } => "autopilot.apply",
            Command::Coordinates(_) => "fsm.coordinate.batch-update",
            Command::Query(_) => "fsm.prepared-query",
            Command::Plugin(_) => "fsm.plugin",
        }
    }

    /// The bytes of blob data the command carries (plugin chunks): what the batcher and the
    /// AppendEntries budget count, so that chunks do not pile up in one entry or one call.
    pub fn bulk_bytes(&self) -> usize {
        match self {
            Command::Plugin(op) => op.bulk_bytes(),
            Command::Batch(cmds) => cmds.iter().map(Command::bulk_bytes).sum(),
            _ => 0,
        }
    }

    /// Every watch a committed command wakes.
    pub fn tables(&self) -> Vec<Table> {
        match self {
            Command::Txn(ops) => {
                let mut t = vec![Table::Kv];
                if ops.iter().any(|o| matches!(o, TxnOp::Catalog(_))) {
                    t.push(Table::Catalog);
                }
                t
            }
            Command::Batch(cmds) => cmds.iter().flat_map(Command::tables).collect(),
            Command::SessionCreate(_) | Command::SessionDestroy { .. } => vec![Table::Sessions, Table::Kv],
            // A check turning critical or a node going away can invalidate sessions; a node's
            // coordinates go with it.
            Command::Register(_) | Command::Deregister(_) => {
                vec![Table::Catalog, Table::Sessions, Table::Kv, Table::Coordinates]
            }
            Command::Coordinates(_) => vec![Table::Coordinates],
            Command::Query(_) => vec![Table::Catalog],
            Command::Acl(_) => vec![Table::Acl],
            // A chunk is not visible before its commit.
            Command::Plugin(op) if !op.visible() => Vec::new(),
            Command::Plugin(_) => vec![Table::Plugins],
            // Read when needed, never waited on.
            Command::Autopilot { .. } => Vec::new(),
            other => vec![other.table()],
        }
    }

    /// The watch a committed command wakes.
    pub fn table(&self) -> Table {
        match self {
            Command::Batch(cmds) if cmds.iter().any(|c| c.table() == Table::Catalog) => Table::Catalog,
            Command::Register(_) | Command::Deregister(_) => Table::Catalog,
            _ => Table::Kv,
        }
    }
}
