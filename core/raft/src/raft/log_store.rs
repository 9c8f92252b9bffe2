//! The Raft log and vote in redb, written by one writer thread that does group commit: `append`
//! queues its entries and returns at once (openraft keeps going), the writer drains everything
//! queued into one write transaction with one fsync, and only then reports each append flushed,
//! so an entry is acknowledged only once it is on disk. Entries queued but not yet committed are
//! readable from an in-memory overlay (the leader replicates them while they are being
//! flushed).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

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
    /// Whether this server leads (set as its Raft state changes): a leader's appends are
    /// `raft.leader.dispatchLog`, a follower's `raft.rpc.appendEntries.storeLogs`.
    pub leader: std::sync::atomic::AtomicBool,
}

/// Removes the log entries in `range` (truncate: a suffix, purge: a prefix).
fn remove_entries(
    txn: &redb::WriteTransaction,
    range: impl std::ops::RangeBounds<u64> + 'static,
) -> Result<(), StorageError> {
    let mut t = txn.open_table(LOG).map_err(err_w)?;
    let keys: Vec<u64> =
        t.range(range).map_err(err_w)?.map(|r| r.map(|(k, _)| k.value()).map_err(err_w)).collect::<Result<_, _>>()?;
    for k in keys {
        t.remove(k).map_err(err_w)?;
    }
    Ok(())
}

type TxnFn = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), StorageError> + Send>;

enum Job {
    Append {
        seq: u64,
        entries: Vec<(u64, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    /// A write; `done` (None: nobody waits) gets the commit's result.
    Write {
        f: TxnFn,
        durable: bool,
        done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    },
}

/// Appended entries not yet committed: index -> (append sequence, encoded entry).
type Overlay = Arc<Mutex<BTreeMap<u64, (u64, Vec<u8>)>>>;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    overlay: Overlay,
    seq: Arc<AtomicU64>,
    pub stats: Arc<LogStats>,
    /// Resolves when the writer thread has exited and closed the database (every handle
    /// dropped): a restart in the same process may then open it again.
    pub closed: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

/// The writer: takes every queued job, runs them in order in one transaction, commits once
/// (fsync when durable and anything asked for it), then completes them.
fn writer(db: Arc<Database>, durable: bool, rx: mpsc::Receiver<Job>, overlay: Overlay, stats: Arc<LogStats>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let sync = durable && batch.iter().any(|j| matches!(j, Job::Append { .. } | Job::Write { durable: true, .. }));
        let mut appended: Vec<(u64, Vec<u64>, LogFlushed<TypeConfig>)> = Vec::new();
        let mut writes = Vec::new();
        let mut n_entries = 0u64;
        let result = (|| -> Result<(), String> {
            let mut txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(if sync { Durability::Immediate } else { Durability::None });
            for job in batch {
                match job {
                    Job::Append { seq, entries, callback } => {
                        let mut t = txn.open_table(LOG).map_err(|e| e.to_string())?;
                        let mut idxs = Vec::with_capacity(entries.len());
                        for (i, bytes) in &entries {
                            t.insert(*i, bytes.as_slice()).map_err(|e| e.to_string())?;
                            idxs.push(*i);
                        }
                        n_entries += entries.len() as u64;
                        appended.push((seq, idxs, callback));
                    }
                    Job::Write { f, done, .. } => {
                        f(&txn).map_err(|e| e.to_string())?;
                        writes.push(done);
                    }
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })();
        if sync && result.is_ok() {
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        if !appended.is_empty() {
            let name = if stats.leader.load(Ordering::Relaxed) {
                "raft.leader.dispatchLog"
            } else {
                "raft.rpc.appendEntries.storeLogs"
            };
            legate_telemetry::measure_since(name, Vec::new(), started);
        }
        stats.appends.fetch_add(appended.len() as u64, Ordering::Relaxed);
        stats.entries.fetch_add(n_entries, Ordering::Relaxed);
        {
            let mut o = overlay.lock().unwrap_or_else(|p| p.into_inner());
            for (seq, idxs, _) in &appended {
                for i in idxs {
                    if o.get(i).is_some_and(|(s, _)| s == seq) {
                        o.remove(i);
                    }
                }
            }
        }
        for (_, _, cb) in appended {
            cb.log_io_completed(result.clone().map_err(std::io::Error::other));
        }
        for done in writes {
            match done {
                Some(done) => {
                    let _ = done.send(result.clone());
                }
                None => {
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "the Raft log store failed a write nobody waited for");
                    }
                }
            }
        }
    }
}

type Entry = openraft::Entry<TypeConfig>;

fn err_r<E: std::fmt::Display>(e: E) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}
fn err_w<E: std::fmt::Display>(e: E) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub fn open(path: &Path) -> Result<LogStore, crate::ServerError> {
        // redb's default page cache is 1 GiB; the log is written once and read back rarely.
        let db = legate_state::open_file_db(path, 4 << 20).map_err(|e| match e {
            legate_state::StoreError::Damaged { path, detail } => crate::ServerError::DamagedLog { path, detail },
            e => crate::ServerError::Log(format!("{}: {e}", path.display())),
        })?;
        Self::init(db, true)
    }

    /// In memory (`-dev` without a data dir; tests). Nothing is fsynced.
    pub fn in_memory() -> Result<LogStore, crate::ServerError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(legate_state::StoreError::from)?;
        Self::init(db, false)
    }

    fn init(db: Database, durable: bool) -> Result<LogStore, crate::ServerError> {
        use legate_state::StoreError;
        let txn = db.begin_write().map_err(StoreError::from)?;
        txn.open_table(LOG).map_err(StoreError::from)?;
        txn.open_table(META).map_err(StoreError::from)?;
        txn.commit().map_err(StoreError::from)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let overlay: Overlay = Arc::default();
        let stats: Arc<LogStats> = Arc::default();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        {
            let (db, overlay, stats) = (db.clone(), overlay.clone(), stats.clone());
            let weak = Arc::downgrade(&db);
            std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || {
                    writer(db, durable, rx, overlay, stats);
                    // Readers may still hold the database for a moment.
                    while weak.strong_count() > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    let _ = closed_tx.send(());
                })
                .map_err(|e| crate::ServerError::Log(format!("cannot start the log writer: {e}")))?;
        }
        Ok(LogStore {
            db,
            jobs: tx,
            overlay,
            seq: Arc::default(),
            stats,
            closed: Arc::new(Mutex::new(Some(closed_rx))),
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(err_r)?;
        let t = txn.open_table(META).map_err(err_r)?;
        let v = t.get(key).map_err(err_r)?;
        v.map(|v| bincode::deserialize(v.value()).map_err(err_r)).transpose()
    }

    /// Runs `f` in the writer's next transaction (fsynced when the store is durable and
    /// `durable`), and waits for its commit.
    async fn write_with<F>(&self, durable: bool, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), StorageError> + Send + 'static,
    {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Write { f: Box::new(f), durable, done: Some(done) })
            .map_err(|_| err_w("log writer stopped"))?;
        rx.await.map_err(|_| err_w("log writer stopped"))?.map_err(err_w)
    }

    async fn write<F>(&self, f: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), StorageError> + Send + 'static,
    {
        self.write_with(true, f).await
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
        let mut found: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for item in t.range(start..).map_err(err_r)? {
            let (k, v) = item.map_err(err_r)?;
            if !range.contains(&k.value()) {
                break;
            }
            found.insert(k.value(), v.value().to_vec());
        }
        {
            let o = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
            for (i, (_, bytes)) in o.range(start..) {
                if !range.contains(i) {
                    break;
                }
                found.insert(*i, bytes.clone());
            }
        }
        // Contiguous from the start: a gap means the rest is not there (yet).
        let mut out = Vec::with_capacity(found.len());
        let mut expect = None;
        for (i, bytes) in found {
            if expect.is_some_and(|e| e != i) {
                break;
            }
            expect = Some(i + 1);
            out.push(bincode::deserialize(&bytes).map_err(err_r)?);
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
        let pending = {
            let o = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
            o.last_key_value().map(|(_, (_, b))| b.clone())
        };
        let last = match pending {
            Some(b) => Some(bincode::deserialize::<Entry>(&b).map_err(err_r)?.log_id),
            None => match t.last().map_err(err_r)? {
                Some((_, v)) => Some(bincode::deserialize::<Entry>(v.value()).map_err(err_r)?.log_id),
                None => last_purged,
            },
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
        // Neither fsynced nor waited for (it is on every write's path, before the apply):
        // openraft tolerates losing it (it is re-derived), the writer commits it after the
        // appends it names, and the next durable append carries it to disk.
        let f = Box::new(move |txn: &redb::WriteTransaction| Self::put_meta(txn, "committed", &committed));
        self.jobs.send(Job::Write { f, durable: false, done: None }).map_err(|_| err_w("log writer stopped"))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, bincode::serialize(&e).map_err(err_w)?));
        }
        {
            let mut o = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
            for (i, bytes) in &encoded {
                o.insert(*i, (seq, bytes.clone()));
            }
        }
        self.jobs.send(Job::Append { seq, entries: encoded, callback }).map_err(|_| err_w("log writer stopped"))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.overlay.lock().unwrap_or_else(|p| p.into_inner()).retain(|i, _| *i < log_id.index);
        self.write(move |txn| remove_entries(txn, log_id.index..)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.write_with(false, move |txn| {
            Self::put_meta(txn, "last_purged", &log_id)?;
            remove_entries(txn, ..=log_id.index)
        })
        .await
    }
}
