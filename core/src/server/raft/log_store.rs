//! The Raft log and vote in redb. `append` writes a whole batch in one write transaction with
//! one fsync (group commit: openraft hands over every entry that queued while the previous
//! flush ran), and reports the flush only after the commit returns, so an entry is acknowledged
//! only once it is on disk.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, Vote};
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::{io_err, NodeId, StorageError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// Counters that show writes are durable: appends, fsyncs, entries.
#[derive(Debug, Default)]
pub struct LogStats {
    pub appends: AtomicU64,
    pub fsyncs: AtomicU64,
    pub entries: AtomicU64,
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    durable: bool,
    pub stats: Arc<LogStats>,
}

type Entry = openraft::Entry<TypeConfig>;

fn err_r<E: std::fmt::Display>(e: E) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}
fn err_w<E: std::fmt::Display>(e: E) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub fn open(path: &Path) -> Result<LogStore, String> {
        let db = Database::create(path).map_err(|e| format!("raft log {}: {e}", path.display()))?;
        Self::init(db, true)
    }

    /// In memory (`-dev` without a data dir; tests). Nothing is fsynced.
    pub fn in_memory() -> Result<LogStore, String> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| e.to_string())?;
        Self::init(db, false)
    }

    fn init(db: Database, durable: bool) -> Result<LogStore, String> {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(LOG).map_err(|e| e.to_string())?;
        txn.open_table(META).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(LogStore { db: Arc::new(db), durable, stats: Arc::default() })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(err_r)?;
        let t = txn.open_table(META).map_err(err_r)?;
        let v = t.get(key).map_err(err_r)?;
        v.map(|v| bincode::deserialize(v.value()).map_err(err_r)).transpose()
    }

    /// Writes in one transaction, fsynced when the store is durable.
    async fn write<F>(&self, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        let durable = self.durable;
        let stats = self.stats.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(err_w)?;
            txn.set_durability(if durable { Durability::Immediate } else { Durability::None });
            f(&txn)?;
            txn.commit().map_err(err_w)?;
            if durable {
                stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .await
        .map_err(err_w)?
    }

    fn put_meta<T: serde::Serialize>(txn: &redb::WriteTransaction, key: &str, v: &T) -> Result<(), StorageError> {
        let bytes = bincode::serialize(v).map_err(err_w)?;
        txn.open_table(META).map_err(err_w)?.insert(key, bytes.as_slice()).map_err(err_w)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(err_r)?;
        let t = txn.open_table(LOG).map_err(err_r)?;
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in t.range(start..).map_err(err_r)? {
            let (k, v) = item.map_err(err_r)?;
            if !range.contains(&k.value()) {
                break;
            }
            out.push(bincode::deserialize(v.value()).map_err(err_r)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta("last_purged")?;
        let txn = self.db.begin_read().map_err(err_r)?;
        let t = txn.open_table(LOG).map_err(err_r)?;
        let last = match t.last().map_err(err_r)? {
            Some((_, v)) => Some(bincode::deserialize::<Entry>(v.value()).map_err(err_r)?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.write(move |txn| Self::put_meta(txn, "vote", &vote)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        self.write(move |txn| Self::put_meta(txn, "committed", &committed)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, bincode::serialize(&e).map_err(err_w)?));
        }
        let n = encoded.len() as u64;
        let res = self
            .write(move |txn| {
                let mut t = txn.open_table(LOG).map_err(err_w)?;
                for (i, bytes) in &encoded {
                    t.insert(*i, bytes.as_slice()).map_err(err_w)?;
                }
                Ok(())
            })
            .await;
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        self.stats.entries.fetch_add(n, Ordering::Relaxed);
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.write(move |txn| {
            let mut t = txn.open_table(LOG).map_err(err_w)?;
            let keys: Vec<u64> = t
                .range(log_id.index..)
                .map_err(err_w)?
                .map(|r| r.map(|(k, _)| k.value()).map_err(err_w))
                .collect::<Result<_, _>>()?;
            for k in keys {
                t.remove(k).map_err(err_w)?;
            }
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.write(move |txn| {
            Self::put_meta(txn, "last_purged", &log_id)?;
            let mut t = txn.open_table(LOG).map_err(err_w)?;
            let keys: Vec<u64> = t
                .range(..=log_id.index)
                .map_err(err_w)?
                .map(|r| r.map(|(k, _)| k.value()).map_err(err_w))
                .collect::<Result<_, _>>()?;
            for k in keys {
                t.remove(k).map_err(err_w)?;
            }
            Ok(())
        })
        .await
    }
}
