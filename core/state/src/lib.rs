//! legate-state: the replicated state store on redb: KV (with tombstones so prefix indexes never go
//! backwards), per-table max indexes, and the Raft state machine's own bookkeeping (last
//! applied log id, membership). Every write happens at a Raft index, inside one redb write
//! transaction per applied batch; readers use redb read transactions (MVCC snapshots).
//!
//! Public wrappers own the transaction; inner `*_txn` functions take the open transaction so
//! they compose (one `/v1/txn` = one transaction).

pub mod acl;
pub mod acl_ext;
pub mod autopilot;
pub mod catalog;
pub mod coordinate;
pub mod kv;
pub mod plugin;
pub mod query;
pub mod schema;
pub mod session;
pub mod snapshot;
pub mod txn;
pub mod watch;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

pub use kv::{DirEntry, KvOp, KvResult, KvVerb};
use schema::{INDEXES, META};
pub use txn::txn_ops;

/// A failure of the store itself (not a refused write: those are the `*Fail` results).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Boxed: redb's error is large, and every store call returns this.
    #[error("state store: {0}")]
    Redb(#[source] Box<redb::Error>),
    #[error("state store: corrupt record: {0}")]
    Decode(#[from] bincode::Error),
    /// A store file that fails the integrity check at open: pages whose checksums do not match,
    /// or that redb cannot read at all.
    #[error("{}: damaged: {detail}", path.display())]
    Damaged { path: PathBuf, detail: String },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The state store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    pub watch: Arc<watch::Watches>,
    /// Lock-delays armed by session invalidations on this replica.
    pub lock_delays: Arc<session::LockDelays>,
}

impl Store {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // redb's default page cache is 1 GiB; bound it (reads of hot keys stay cached).
        let db = open_file_db(path, 16 << 20)?;
        Self::init(db)
    }

    /// An in-memory store (`-dev` without a data dir, tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::with_backend(redb::backends::InMemoryBackend::new())
    }

    /// A store on a storage backend of the caller's (tests: a disk that can crash).
    pub fn with_backend(backend: impl redb::StorageBackend) -> Result<Store, StoreError> {
        let db = Database::builder().create_with_backend(backend)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Store, StoreError> {
        let txn = db.begin_write()?;
        schema::create_tables(&txn)?;
        let unindexed = {
            let names = txn.open_table(schema::SERVICE_NAMES)?;
            let services = txn.open_table(schema::SERVICES)?;
            names.is_empty()? && !services.is_empty()?
        };
        if unindexed {
            catalog::rebuild_service_names_txn(&txn)?;
        }
        txn.commit()?;
        Ok(Store { db: Arc::new(db), watch: Arc::new(watch::Watches::new()), lock_delays: Arc::default() })
    }

    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// A write transaction: `durable` commits with redb's `Immediate` (fdatasynced), else with
    /// `Durability::None`: visible to every later read at once, on disk only with the next
    /// durable commit, and gone after a crash (the store rolls back to its last durable commit,
    /// a consistent one). The state machine's applies are mostly the latter: the Raft log,
    /// fsynced, replays them. (redb's `Eventual` is no cheaper on Linux: its file backend
    /// fdatasyncs it like `Immediate`.)
    pub fn write(&self, durable: bool) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None });
        Ok(txn)
    }

    /// A max index of a table (0 if never written).
    pub fn table_index(&self, table: &str) -> Result<u64, StoreError> {
        let txn = self.read()?;
        table_index_read(&txn, table)
    }
}

/// Opens (or creates) a redb file with a page cache of `cache` bytes and verifies it: every
/// page's checksum (redb's own check), so that a file damaged on disk is refused here, naming
/// it, rather than answering garbage or panicking at some later read. The agent's data-dir lock
/// already excludes other agents, so a file still held open is a previous agent of this process
/// finishing its shutdown (an in-process restart): wait for it a little, as binds wait for an
/// exiting process's ports.
pub fn open_file_db(path: &Path, cache: usize) -> Result<Database, StoreError> {
    let damaged = |detail: String| StoreError::Damaged { path: path.to_path_buf(), detail };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    // redb panics on some damage (an offset read from a garbled page): caught, it is the
    // file's fault, not ours.
    let guarded = |f: &mut dyn FnMut() -> Result<bool, redb::DatabaseError>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(format!("unreadable ({text})"))))
        })
    };
    let as_store = |e: redb::DatabaseError| match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => damaged(detail),
        e => StoreError::from(e),
    };
    let mut db = None;
    loop {
        let opened = guarded(&mut || {
            db = Some(Database::builder().set_cache_size(cache).create(path)?);
            Ok(true)
        });
        match opened {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(as_store(e)),
            Ok(_) => break,
        }
    }
    let mut db = db.expect("opened");
    match guarded(&mut || db.check_integrity()) {
        Ok(true) => Ok(db),
        // redb fell back to the previous commit or rebuilt its allocator state: what it
        // reports as repaired it vouches for, as after a crash; said, not hidden.
        Ok(false) => {
            tracing::warn!(file = %path.display(), "store file failed its integrity check and was repaired by redb");
            Ok(db)
        }
        Err(e) => Err(as_store(e)),
    }
}

pub fn table_index_read(txn: &ReadTransaction, table: &str) -> Result<u64, StoreError> {
    let t = txn.open_table(INDEXES)?;
    Ok(t.get(table)?.map(|v| v.value()).unwrap_or(0))
}

pub fn bump_index_txn(txn: &WriteTransaction, table: &str, index: u64) -> Result<(), StoreError> {
    let mut t = txn.open_table(INDEXES)?;
    let cur = t.get(table)?.map(|v| v.value()).unwrap_or(0);
    if index > cur {
        t.insert(table, index)?;
    }
    Ok(())
}

pub fn meta_get(txn: &ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let t = txn.open_table(META)?;
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

pub fn meta_set_txn(txn: &WriteTransaction, key: &str, value: &[u8]) -> Result<(), StoreError> {
    let mut t = txn.open_table(META)?;
    t.insert(key, value)?;
    Ok(())
}
