//! Consensus with openraft (0.9, storage-v2): the type config, the log store (segment files), the state
//! machine over `state::Store`, and the TCP network.

// openraft's StorageError is large and fixed by its traits; our helpers return it as is.
#![allow(clippy::result_large_err)]

mod flusher;
mod legacy_log;
pub mod log_store;
pub mod network;
pub mod state_machine;
mod wal;

use std::io::Cursor;

use super::command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// Legate's Raft types: commands in, responses out, nodes addressed by their server RPC
    /// address.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type StorageError = openraft::StorageError<NodeId>;

/// The Raft node ID of a server: the first 8 bytes of its node UUID.
pub fn raft_id(node_id: &str) -> NodeId {
    match uuid::Uuid::parse_str(node_id) {
        Ok(u) => u64::from_be_bytes(u.as_bytes()[..8].try_into().expect("8 bytes")),
        Err(_) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            node_id.hash(&mut h);
            h.finish()
        }
    }
}

pub(crate) fn io_err<E: std::fmt::Display>(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: E,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{StorageError, TypeConfig};
    use legate_state::Store;

    struct InMemory;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for InMemory {
        async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
            let sm = StateMachine::new(Store::in_memory().unwrap(), None).unwrap();
            Ok(((), LogStore::in_memory().unwrap(), sm))
        }
    }

    struct OnDisk;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for OnDisk {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().unwrap();
            let log = LogStore::open(dir.path()).unwrap();
            let store = Store::open(&dir.path().join("state.db")).unwrap();
            let sm = StateMachine::new(store, Some(dir.path().join("snapshot.bin"))).unwrap();
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite_in_memory() {
        Suite::test_all(InMemory).unwrap();
    }

    #[test]
    fn openraft_storage_suite_on_disk() {
        Suite::test_all(OnDisk).unwrap();
    }
}
