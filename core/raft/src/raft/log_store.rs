//! The Raft log and vote: entries in the segment log (`wal.rs`), written by one writer thread
//! that does group commit: `append` queues its entries and returns at once (openraft keeps
//! going), the writer writes everything queued and fdatasyncs once, and only then reports each
//! append flushed, so an entry is acknowledged only once it is on disk. Entries queued but not
//! yet synced are readable from an in-memory overlay (the leader replicates them while they
//! are being flushed). The vote, the purge point and the last committed id are a small file,
//! `meta`, beside the segments, replaced atomically when the vote or the purge point changes
//! (the committed id rides along: openraft tolerates an older one; what was committed after it
//! is applied again once a leader commits, and `Server` holds reads until that has happened).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, Vote};
use serde::{Deserialize, Serialize};

use super::wal::{self, Wal, WalReader};
use super::{io_err, NodeId, StorageError, TypeConfig};

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

/// What the log keeps besides its entries.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub last_purged: Option<LogId<NodeId>>,
}

impl Meta {
    /// Writes `meta` durably (a new file renamed over the old one).
    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = bincode::serialize(self).map_err(std::io::Error::other)?;
        legate_types::fs::write_private(path, &bytes)
    }

    fn load(path: &Path, raft_dir: &Path) -> Result<Meta, crate::ServerError> {
        match std::fs::read(path) {
            Ok(bytes) => bincode::deserialize(&bytes).map_err(|e| crate::ServerError::DamagedLog {
                path: path.to_path_buf(),
                dir: raft_dir.to_path_buf(),
                detail: format!("the vote and purge point do not decode: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(crate::ServerError::io(path)(e)),
        }
    }
}

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

enum Job {
    Append { seq: u64, entries: Vec<(u64, Vec<u8>)>, callback: LogFlushed<TypeConfig> },
    Truncate { index: u64, done: Done },
    Purge { upto: LogId<NodeId>, done: Done },
    Vote { vote: Vote<NodeId>, done: Done },
}

/// Appended entries not yet synced: index -> (append sequence, encoded entry).
type Overlay = Arc<Mutex<BTreeMap<u64, (u64, Vec<u8>)>>>;

#[derive(Clone)]
pub struct LogStore {
    jobs: mpsc::Sender<Job>,
    reader: WalReader,
    overlay: Overlay,
    /// As last saved, but for `committed`, which is as last given (written with the next save).
    meta: Arc<Mutex<Meta>>,
    seq: Arc<AtomicU64>,
    pub stats: Arc<LogStats>,
    /// Resolves when the writer thread has exited (every job done): a restart in the same
    /// process may then open the log again.
    pub closed: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

/// The writer thread's side: the log's files and what it reports to.
struct Writer {
    wal: Wal,
    meta_path: Option<PathBuf>,
    meta: Arc<Mutex<Meta>>,
    overlay: Overlay,
    stats: Arc<LogStats>,
    /// The first write or fdatasync that failed: every later job fails with it (after a failed
    /// fdatasync nothing says what reached the disk).
    failed: Option<String>,
}

/// Appends written but not yet synced: (sequence, indexes, callback).
type Appended = Vec<(u64, Vec<u64>, LogFlushed<TypeConfig>)>;

impl Writer {
    /// Takes every queued job, writes the appends among them and fdatasyncs once; a job of
    /// another kind first makes the appends before it durable.
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            let mut appended: Appended = Vec::new();
            for job in batch {
                match job {
                    Job::Append { seq, entries, callback } => {
                        // A failure sticks and is reported by `flush` to every append of the batch.
                        let _ = self.io(|w| w.wal.write(&entries));
                        appended.push((seq, entries.iter().map(|(i, _)| *i).collect(), callback));
                    }
                    other => {
                        self.flush(std::mem::take(&mut appended), started);
                        self.other(other);
                    }
                }
            }
            self.flush(appended, started);
        }
    }

    /// Makes the written appends durable and reports them.
    fn flush(&mut self, appended: Appended, started: std::time::Instant) {
        if appended.is_empty() {
            return;
        }
        if self.io(|w| w.wal.sync()).is_ok() {
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let name = if self.stats.leader.load(Ordering::Relaxed) {
            "raft.leader.dispatchLog"
        } else {
            "raft.rpc.appendEntries.storeLogs"
        };
        legate_telemetry::measure_since(name, Vec::new(), started);
        self.stats.appends.fetch_add(appended.len() as u64, Ordering::Relaxed);
        let n: usize = appended.iter().map(|(_, idxs, _)| idxs.len()).sum();
        self.stats.entries.fetch_add(n as u64, Ordering::Relaxed);
        {
            let mut o = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
            for (seq, idxs, _) in &appended {
                for i in idxs {
                    if o.get(i).is_some_and(|(s, _)| s == seq) {
                        o.remove(i);
                    }
                }
            }
        }
        for (_, _, cb) in appended {
            cb.log_io_completed(match &self.failed {
                None => Ok(()),
                Some(e) => Err(std::io::Error::other(e.clone())),
            });
        }
    }

    fn other(&mut self, job: Job) {
        let (result, done) = match job {
            Job::Append { .. } => unreachable!("appends are batched by run"),
            Job::Truncate { index, done } => (self.io(|w| w.wal.truncate(index)), done),
            Job::Purge { upto, done } => {
                let r = self.save_meta(|m| m.last_purged = Some(upto));
                (r.and_then(|()| self.io(|w| w.wal.purge(upto.index))), done)
            }
            Job::Vote { vote, done } => (self.save_meta(|m| m.vote = Some(vote)), done),
        };
        let _ = done.send(result);
    }

    /// Runs an I/O step unless an earlier one failed; a failure sticks.
    fn io(&mut self, f: impl FnOnce(&mut Self) -> std::io::Result<()>) -> Result<(), String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        f(self).map_err(|e| {
            self.failed = Some(e.to_string());
            e.to_string()
        })
    }

    /// Changes the meta, writes it durably (with the committed id as last given), and only
    /// then lets readers see the change.
    fn save_meta(&mut self, change: impl FnOnce(&mut Meta)) -> Result<(), String> {
        let mut next = *self.meta.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut next);
        let path = self.meta_path.clone();
        self.io(|_| path.map_or(Ok(()), |p| next.save(&p)))?;
        let mut m = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        m.vote = next.vote;
        m.last_purged = next.last_purged;
        Ok(())
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
    /// Opens the log in `raft_dir/log` (a redb `raft.db` of an earlier version is moved into it
    /// first).
    pub fn open(raft_dir: &Path) -> Result<LogStore, crate::ServerError> {
        super::legacy_log::migrate(raft_dir)?;
        let dir = raft_dir.join("log");
        let meta_path = dir.join("meta");
        let meta = Meta::load(&meta_path, raft_dir)?;
        let (wal, _) = Wal::open(&dir, meta.last_purged.map(|l| l.index)).map_err(|e| match e {
            wal::OpenError::Damaged(d) => {
                crate::ServerError::DamagedLog { path: d.path, dir: raft_dir.to_path_buf(), detail: d.detail }
            }
            wal::OpenError::Io(p, e) => crate::ServerError::io(&p)(e),
        })?;
        Self::start(wal, Some(meta_path), meta)
    }

    /// In memory (`-dev` without a data dir; tests). Nothing is fsynced.
    pub fn in_memory() -> Result<LogStore, crate::ServerError> {
        Self::start(Wal::in_memory(), None, Meta::default())
    }

    fn start(wal: Wal, meta_path: Option<PathBuf>, meta: Meta) -> Result<LogStore, crate::ServerError> {
        let (tx, rx) = mpsc::channel();
        let overlay: Overlay = Arc::default();
        let stats: Arc<LogStats> = Arc::default();
        let meta = Arc::new(Mutex::new(meta));
        let reader = wal.reader();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let writer =
            Writer { wal, meta_path, meta: meta.clone(), overlay: overlay.clone(), stats: stats.clone(), failed: None };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || {
                writer.run(rx);
                let _ = closed_tx.send(());
            })
            .map_err(|e| crate::ServerError::Log(format!("cannot start the log writer: {e}")))?;
        Ok(LogStore {
            jobs: tx,
            reader,
            overlay,
            meta,
            seq: Arc::default(),
            stats,
            closed: Arc::new(Mutex::new(Some(closed_rx))),
        })
    }

    fn meta(&self) -> Meta {
        *self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job that reports on `done`, and waits for it.
    async fn call(&self, job: impl FnOnce(Done) -> Job) -> Result<(), StorageError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.jobs.send(job(done)).map_err(|_| err_w("log writer stopped"))?;
        rx.await.map_err(|_| err_w("log writer stopped"))?.map_err(err_w)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let start = start.max(self.meta().last_purged.map_or(0, |l| l.index + 1));
        if start >= end {
            return Ok(Vec::new());
        }
        // The overlay first, the files second: the writer publishes a flushed entry to the files
        // before it drops it from the overlay, so every entry is in one of the two reads (the
        // other order could miss one flushed between them, and a short read of committed
        // entries stops openraft's core). What is being flushed (or was rewritten after a
        // truncation) wins.
        let pending: Vec<(u64, Vec<u8>)> = {
            let o = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
            o.range(start..end).map(|(i, (_, bytes))| (*i, bytes.clone())).collect()
        };
        let mut found: BTreeMap<u64, Vec<u8>> = self.reader.read(start, end).map_err(err_r)?.into_iter().collect();
        found.extend(pending);
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
        let last_purged = self.meta().last_purged;
        let pending = {
            let o = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
            o.last_key_value().map(|(_, (_, b))| b.clone())
        };
        let last_bytes = match pending {
            Some(b) => Some(b),
            None => match self.reader.last_index() {
                Some(i) => self.reader.read(i, i + 1).map_err(err_r)?.pop().map(|(_, b)| b),
                None => None,
            },
        };
        let last = match last_bytes {
            Some(b) => Some(bincode::deserialize::<Entry>(&b).map_err(err_r)?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.max(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.call(|done| Job::Vote { vote, done }).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.meta().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // Kept in memory and written with the next vote or purge: it is on every write's path,
        // and openraft tolerates an older one after a restart (it re-derives it).
        self.meta.lock().unwrap_or_else(|p| p.into_inner()).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.meta().committed)
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
        self.call(|done| Job::Truncate { index: log_id.index, done }).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.call(|done| Job::Purge { upto: log_id, done }).await
    }
}
