//! The Raft state machine over `state::Store`. A batch of entries is applied in a redb write
//! transaction that is not fsynced (the log replays it after a crash: a store that rolled back
//! is re-applied from its last durable `last_applied`); every few applies a durable point is
//! made off the write path ([`super::flusher`]). `Command` is dispatched in exactly one place,
//! `apply_command`.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta, StoredMembership};
use redb::WriteTransaction;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::flusher::Flusher;
use super::{io_err, NodeId, StorageError, TypeConfig};
use crate::command::{Command, CommandResponse};
use legate_state::session::Released;
use legate_state::snapshot::{self, StateData};
use legate_state::watch::Table;
use legate_state::{catalog, kv, meta_get, meta_set_txn, Store, StoreError};

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

fn err_sm<E: std::fmt::Display>(verb: ErrorVerb, e: E) -> StorageError {
    io_err(ErrorSubject::StateMachine, verb, e)
}

/// A snapshot as kept on disk / in memory.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// Most entries applied on the state machine's own task (see `apply`).
const INLINE_ENTRIES: usize = 4;

/// A durable point is asked for after this many apply batches, or after this long (checked
/// at the next apply: an idle store may keep its last few applies undurable, which the log
/// replays). In between, redb keeps the pages the undurable commits freed (it reuses them
/// after a durable one): a bound on both that pile and the log a restart replays.
const DURABLE_AFTER: u32 = 4;
const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Applies since the last durable commit.
struct Undurable {
    since: std::time::Instant,
    commits: u32,
}

impl Undurable {
    fn new() -> Self {
        Undurable { since: std::time::Instant::now(), commits: 0 }
    }

    /// Whether a durable point is due after the next commit (counted as done).
    fn next_durable(&mut self) -> bool {
        self.commits += 1;
        let due = self.commits > DURABLE_AFTER || self.since.elapsed() >= DURABLE_EVERY;
        if due {
            *self = Undurable::new();
        }
        due
    }
}

#[derive(Clone)]
pub struct StateMachine {
    pub store: Store,
    undurable: Arc<std::sync::Mutex<Undurable>>,
    flusher: Arc<Flusher>,
    /// Where the latest snapshot is kept (None: memory only).
    snapshot_path: Option<PathBuf>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

/// Opens the state store at `path`. A damaged one is moved aside (kept for inspection, the name
/// logged) and started afresh: the store is derived state, rebuilt by [`StateMachine::new`] from
/// the last snapshot and by the log's replay, as after a crash.
pub fn open_store(path: &std::path::Path) -> Result<Store, crate::ServerError> {
    match Store::open(path) {
        Err(StoreError::Damaged { path, detail }) => {
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = path.with_file_name(format!("state.db.damaged-{stamp}"));
            std::fs::rename(&path, &aside).map_err(crate::ServerError::io(&path))?;
            tracing::error!(
                file = %path.display(),
                moved_to = %aside.display(),
                %detail,
                "the state store is damaged: moved aside; rebuilding it from the last snapshot and the Raft log"
            );
            Ok(Store::open(&path)?)
        }
        other => Ok(other?),
    }
}

impl StateMachine {
    pub fn new(store: Store, snapshot_path: Option<PathBuf>) -> Result<StateMachine, crate::ServerError> {
        use crate::ServerError;
        let current = match &snapshot_path {
            Some(p) if p.exists() => {
                let bytes = std::fs::read(p).map_err(ServerError::io(p))?;
                Some(bincode::deserialize(&bytes).map_err(|source| ServerError::Snapshot { path: p.clone(), source })?)
            }
            _ => None,
        };
        let sm = StateMachine {
            flusher: Arc::new(Flusher::start(store.clone())),
            store,
            undurable: Arc::new(std::sync::Mutex::new(Undurable::new())),
            snapshot_path,
            current: Arc::new(Mutex::new(current)),
        };
        sm.recover_from_snapshot()?;
        Ok(sm)
    }

    /// State-machine commits are not fsynced, so after a crash the store may be behind the
    /// last snapshot (whose log entries may be purged): then the snapshot is loaded into it.
    /// The log replays everything after.
    fn recover_from_snapshot(&self) -> Result<(), StoreError> {
        let Ok(guard) = self.current.try_lock() else { return Ok(()) };
        let Some(snap) = guard.as_ref() else { return Ok(()) };
        let (applied, _) = self.applied()?;
        let snap_index = snap.meta.last_log_id.map(|l| l.index);
        if snap_index > applied.map(|l| l.index) {
            let state: StateData = bincode::deserialize(&snap.data)?;
            let txn = self.store.write(true)?;
            snapshot::import_txn(&txn, &state)?;
            write_applied(&txn, &snap.meta.last_log_id, Some(&snap.meta.last_membership))?;
            txn.commit()?;
            tracing::info!(index = ?snap_index, "state store recovered from the last snapshot");
        }
        Ok(())
    }

    fn applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), StoreError> {
        let txn = self.store.read()?;
        let applied = match meta_get(&txn, "last_applied")? {
            Some(b) => bincode::deserialize(&b)?,
            None => None,
        };
        let membership = match meta_get(&txn, "membership")? {
            Some(b) => bincode::deserialize(&b)?,
            None => Membership::default(),
        };
        Ok((applied, membership))
    }
}

/// The single dispatch point of the state machine. Locks released by the command are added
/// to `released`.
fn apply_command(
    store: &Store,
    txn: &mut WriteTransaction,
    cmd: &Command,
    index: u64,
    released: &mut Released,
) -> Result<CommandResponse, StoreError> {
    Ok(match cmd {
        Command::Kv(op) => CommandResponse::Kv(kv::apply_txn(txn, op, index)?),
        Command::Txn(ops) => {
            // All or nothing: the caller hands a transaction holding nothing else, and aborts
            // it when this returns errors.
            let (results, errors) = legate_state::txn_ops(txn, ops, index, released)?;
            CommandResponse::Txn(if errors.is_empty() { Ok(results) } else { Err(errors) })
        }
        Command::Batch(_) => unreachable!("batches are unpacked by apply_entry"),
        Command::SessionCreate(sess) => CommandResponse::Session(legate_state::session::create_txn(txn, sess, index)?),
        Command::SessionDestroy { id } => {
            legate_state::session::destroy_txn(txn, id, index, released)?;
            CommandResponse::Session(Ok(()))
        }
        Command::Acl(ops) => CommandResponse::Acl(legate_state::acl::apply_txn(txn, ops, index)?),
        Command::Autopilot { config, cas } => {
            CommandResponse::Autopilot(legate_state::autopilot::set_txn(txn, config, *cas, index)?)
        }
        Command::Query(op) => CommandResponse::Query(legate_state::query::apply_txn(txn, op, index)?),
        Command::Plugin(op) => CommandResponse::Plugin(legate_state::plugin::apply_txn(txn, op, index)?),
        Command::Coordinates(updates) => {
            CommandResponse::Coordinates(legate_state::coordinate::update_batch_txn(txn, updates, index)?)
        }
        Command::Register(r) => CommandResponse::Catalog(catalog::register_txn(txn, r, index, released)?),
        Command::Deregister(d) => CommandResponse::Catalog(catalog::deregister_txn(txn, d, index, released)?),
        Command::ReapTombstones { index: upto } => CommandResponse::Reaped(kv::reap_tombstones_txn(txn, *upto)?),
        Command::Restore(data) => {
            snapshot::import_txn(txn, data)?;
            let _ = store;
            // Indexes never go backwards: the restored tables count as written now.
            for t in [
                legate_state::schema::IDX_KVS,
                legate_state::schema::IDX_NODES,
                legate_state::schema::IDX_SERVICES,
                legate_state::schema::IDX_CHECKS,
                legate_state::schema::IDX_PLUGINS,
            ] {
                legate_state::bump_index_txn(txn, t, index)?;
            }
            legate_state::bump_index_txn(txn, legate_state::schema::IDX_RESTORE, index)?;
            CommandResponse::Restored
        }
    })
}

/// Applies one command of an entry, taking and giving back the open write transaction. A
/// transaction runs in a redb transaction of its own, so a rollback is an abort that loses
/// nothing else; a batch applies its commands in order. The locks released by commands that
/// stay applied are added to `released`.
fn apply_entry(
    store: &Store,
    mut txn: WriteTransaction,
    last: &Option<LogId<NodeId>>,
    cmd: &Command,
    index: u64,
    released: &mut Released,
) -> Result<(WriteTransaction, CommandResponse), StoreError> {
    match cmd {
        Command::Batch(cmds) => {
            let mut out = Vec::with_capacity(cmds.len());
            for c in cmds {
                let (t, r) = apply_entry(store, txn, last, c, index, released)?;
                txn = t;
                out.push(r);
            }
            Ok((txn, CommandResponse::Batch(out)))
        }
        Command::Txn(_) => {
            // Not durable (no apply commit is): a crash must not find this entry applied with
            // only the commands before the transaction, and a durable point is only ever made
            // between apply batches (the flusher's commit waits for the batch's to end).
            write_applied(&txn, last, None)?;
            txn.commit()?;
            let mut txn = store.write(false)?;
            let mut own = Released::new();
            let resp = apply_command(store, &mut txn, cmd, index, &mut own)?;
            if matches!(resp, CommandResponse::Txn(Err(_))) {
                // Nothing of a rolled-back transaction happened, its invalidations included;
                // what earlier commands of the batch released stays released.
                txn.abort()?;
                txn = store.write(false)?;
            } else {
                released.extend(own);
            }
            Ok((txn, resp))
        }
        other => {
            let resp = apply_command(store, &mut txn, other, index, released)?;
            Ok((txn, resp))
        }
    }
}

fn write_applied(
    txn: &WriteTransaction,
    applied: &Option<LogId<NodeId>>,
    membership: Option<&Membership>,
) -> Result<(), StoreError> {
    meta_set_txn(txn, "last_applied", &bincode::serialize(applied)?)?;
    if let Some(m) = membership {
        meta_set_txn(txn, "membership", &bincode::serialize(m)?)?;
    }
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let whole = legate_telemetry::Timer::start("raft.snapshot.takeSnapshot", Vec::new());
        let create = legate_telemetry::Timer::start("raft.snapshot.create", Vec::new());
        let store = self.store.clone();
        let (meta_parts, data) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            // The state store need not be durable here: the snapshot file is (fsynced below), and
            // a restart loads it when the store is behind (`recover_from_snapshot`).
            let txn = store.read()?;
            let applied: Option<LogId<NodeId>> = match meta_get(&txn, "last_applied")? {
                Some(b) => bincode::deserialize(&b)?,
                None => None,
            };
            let membership: Membership = match meta_get(&txn, "membership")? {
                Some(b) => bincode::deserialize(&b)?,
                None => Membership::default(),
            };
            let data = bincode::serialize(&snapshot::export(&txn)?)?;
            Ok(((applied, membership), data))
        })
        .await
        .map_err(|e| err_sm(ErrorVerb::Read, e))?
        .map_err(|e| err_sm(ErrorVerb::Read, e))?;
        let (last_log_id, last_membership) = meta_parts;
        let snapshot_id = format!(
            "{}-{}-{}",
            last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
            last_log_id.map(|l| l.index).unwrap_or(0),
            uuid::Uuid::new_v4().simple()
        );
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        drop(create);
        let persist = legate_telemetry::Timer::start("raft.snapshot.persist", Vec::new());
        self.persist(&stored).await?;
        drop(persist);
        drop(whole);
        *self.current.lock().await = Some(stored);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl StateMachine {
    async fn persist(&self, s: &StoredSnapshot) -> Result<(), StorageError> {
        if let Some(path) = &self.snapshot_path {
            let bytes = bincode::serialize(s).map_err(|e| err_sm(ErrorVerb::Write, e))?;
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                // The snapshot holds every ACL secret.
                legate_types::fs::write_private(&path, &bytes)
            })
            .await
            .map_err(|e| err_sm(ErrorVerb::Write, e))?
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        }
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        self.applied().map_err(|e| err_sm(ErrorVerb::Read, e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let _timer = legate_telemetry::Timer::start("raft.fsm.apply", Vec::new());
        let store = self.store.clone();
        if let Some(e) = self.flusher.failure() {
            return Err(err_sm(ErrorVerb::Write, e));
        }
        let durable_due = self.undurable.lock().unwrap_or_else(|p| p.into_inner()).next_durable();
        // A few small commands commit in well under a millisecond (redb, not fsynced): they are
        // applied right here, saving two thread hops per write. While the flusher holds redb's
        // write lock, or for a restore or a large batch, the apply goes to a blocking thread so
        // that the runtime's workers stay free.
        let inline = !self.flusher.busy()
            && entries.len() <= INLINE_ENTRIES
            && entries.iter().all(|e| match &e.payload {
                EntryPayload::Normal(cmd) => cmd.is_light(),
                _ => true,
            });
        let flusher = self.flusher.clone();
        let work = move || -> Result<_, StoreError> {
            let _batch = flusher.batch();
            let mut responses = Vec::with_capacity(entries.len());
            // Not fsynced: the log replays it after a crash.
            let mut txn = store.write(false)?;
            let mut last = None;
            let mut touched: Vec<Table> = Vec::new();
            let mut restored = false;
            let mut released = Released::new();
            for entry in &entries {
                let index = entry.log_id.index;
                last = Some(entry.log_id);
                match &entry.payload {
                    EntryPayload::Blank => responses.push(CommandResponse::None),
                    EntryPayload::Membership(m) => {
                        let sm = Membership::new(Some(entry.log_id), m.clone());
                        write_applied(&txn, &last, Some(&sm))?;
                        responses.push(CommandResponse::None);
                    }
                    EntryPayload::Normal(cmd) => {
                        touched.extend(cmd.tables());
                        restored |= matches!(cmd, Command::Restore(_));
                        let (t, resp) = apply_entry(&store, txn, &last, cmd, index, &mut released)?;
                        txn = t;
                        responses.push(resp);
                    }
                }
            }
            write_applied(&txn, &last, None)?;
            txn.commit()?;
            store.lock_delays.arm(&released);
            Ok((responses, last, touched, restored))
        };
        let applied = if inline {
            work()
        } else {
            tokio::task::spawn_blocking(work).await.map_err(|e| err_sm(ErrorVerb::Write, e))?
        };
        let (responses, last, mut touched, restored) = applied.map_err(|e| err_sm(ErrorVerb::Write, e))?;
        if durable_due {
            self.flusher.request();
        }
        if let Some(last) = last {
            if restored {
                // A restore may change every table: wake every blocked query.
                self.store.watch.notify_all(last.index);
            } else {
                touched.sort_by_key(|t| *t as u8);
                touched.dedup();
                for t in touched {
                    self.store.watch.notify(t, last.index);
                }
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let _timer = legate_telemetry::Timer::start("raft.snapshot.restore", Vec::new());
        let data = snapshot.into_inner();
        let state: StateData = bincode::deserialize(&data).map_err(|e| err_sm(ErrorVerb::Read, e))?;
        let store = self.store.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let txn = store.write(true)?;
            snapshot::import_txn(&txn, &state)?;
            write_applied(&txn, &m.last_log_id, Some(&m.last_membership))?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| err_sm(ErrorVerb::Write, e))?
        .map_err(|e| err_sm(ErrorVerb::Write, e))?;
        self.store.watch.notify_all(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.persist(&stored).await?;
        *self.current.lock().await = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .current
            .lock()
            .await
            .clone()
            .map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry};

    use super::*;
    use crate::command::TxnOp;
    use legate_state::catalog::{Node, Register};
    use legate_state::kv::{KvOp, KvVerb};
    use legate_state::session::Session;

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), index), payload: EntryPayload::Normal(cmd) }
    }

    /// A store with node `n1`, session `s1` (lock-delay 15 s) holding the lock on `locked`.
    async fn with_held_lock() -> StateMachine {
        let mut sm = StateMachine::new(Store::in_memory().unwrap(), None).unwrap();
        let node = Node { node: "n1".into(), address: "10.0.0.1".into(), ..Node::default() };
        let session = Session {
            id: "s1".into(),
            node: "n1".into(),
            lock_delay: 15_000_000_000,
            behavior: "release".into(),
            ..Session::default()
        };
        let acquire = KvOp { session: Some("s1".into()), ..KvOp::new(KvVerb::Lock, "locked") };
        let setup = [
            Command::Register(Box::new(Register { node, ..Register::default() })),
            Command::SessionCreate(session),
            Command::Kv(acquire),
        ];
        let entries: Vec<_> = setup.into_iter().enumerate().map(|(i, c)| entry(i as u64 + 1, c)).collect();
        for r in sm.apply(entries).await.unwrap() {
            assert!(!format!("{r:?}").contains("Err"), "{r:?}");
        }
        assert!(!sm.store.lock_delays.active("locked"));
        sm
    }

    /// A disk that keeps, besides what was written, what was there at each fdatasync: a crash
    /// at any moment leaves one of those images, and a restart opens a store on it.
    #[derive(Debug, Default, Clone)]
    struct CrashDisk {
        written: Arc<std::sync::Mutex<Vec<u8>>>,
        synced: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
        /// Every fdatasync fails (an I/O error) while set.
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl CrashDisk {
        /// The disks a crash could have left since the last call.
        fn crashes(&self) -> Vec<CrashDisk> {
            let images = std::mem::take(&mut *self.synced.lock().unwrap());
            images.into_iter().map(|i| CrashDisk { written: Arc::new(i.into()), ..CrashDisk::default() }).collect()
        }
    }

    impl redb::StorageBackend for CrashDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            Ok(self.written.lock().unwrap().len() as u64)
        }

        fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
            let w = self.written.lock().unwrap();
            Ok(w[offset as usize..offset as usize + len].to_vec())
        }

        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.written.lock().unwrap().resize(len as usize, 0);
            Ok(())
        }

        fn sync_data(&self, _eventual: bool) -> Result<(), std::io::Error> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fdatasync failure"));
            }
            let image = self.written.lock().unwrap().clone();
            self.synced.lock().unwrap().push(image);
            Ok(())
        }

        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.written.lock().unwrap()[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    fn set(key: String) -> KvOp {
        KvOp { value: b"v".to_vec(), ..KvOp::new(KvVerb::Set, key) }
    }

    /// Waits until the flusher has made the durable point asked for, if any.
    async fn flushed(sm: &StateMachine) {
        while sm.flusher.busy() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Applies are not fsynced (the flusher makes durable points between them, on a thread of
    /// its own), and a transaction inside a batch is committed apart from the commands around
    /// it: whenever the process dies, the store on disk holds exactly the entries up to the
    /// `last_applied` it records (the log replays the rest), never an entry marked applied with
    /// only some of its commands.
    #[tokio::test]
    async fn a_crash_leaves_the_store_whole_up_to_its_last_applied() {
        let disk = CrashDisk::default();
        let mut sm = StateMachine::new(Store::with_backend(disk.clone()).unwrap(), None).unwrap();
        disk.crashes(); // the file's creation
        let keys = |i: u64| [format!("{i}/before"), format!("{i}/txn"), format!("{i}/after")];
        let total = 10 * (DURABLE_AFTER as u64 + 1) + 2;
        let mut durable_points = std::collections::BTreeSet::new();
        for i in 1..=total + 1 {
            if i <= total {
                let [before, txn, after] = keys(i);
                let batch = Command::Batch(vec![
                    Command::Kv(set(before)),
                    Command::Txn(vec![TxnOp::Kv(set(txn))]),
                    Command::Kv(set(after)),
                ]);
                sm.apply([entry(i, batch)]).await.unwrap();
            } else {
                flushed(&sm).await;
            }
            let i = i.min(total);
            for crashed in disk.crashes() {
                let crashed = StateMachine::new(Store::with_backend(crashed).unwrap(), None).unwrap();
                let applied = crashed.applied().unwrap().0.map_or(0, |l| l.index);
                durable_points.insert(applied);
                let txn = crashed.store.read().unwrap();
                for j in 1..=i {
                    for key in keys(j) {
                        let present = kv::get(&txn, &key).unwrap().is_some();
                        assert_eq!(present, j <= applied, "during entry {i}: {key} on disk, last_applied {applied}");
                    }
                }
            }
        }
        // Some applies were made durable and most were not (else the test shows nothing).
        assert!(durable_points.len() >= 3 && *durable_points.last().unwrap() < total, "{durable_points:?}");
        // Stopping makes a last durable point: a clean restart replays nothing.
        drop(sm);
        let last = disk.crashes().pop().expect("a durable commit at close");
        let reopened = StateMachine::new(Store::with_backend(last).unwrap(), None).unwrap();
        assert_eq!(reopened.applied().unwrap().0.map(|l| l.index), Some(total));
    }

    /// A durable point that cannot be made fails the next apply (the state machine stops), as
    /// a failed commit on the apply path would.
    #[tokio::test]
    async fn a_failed_durable_point_fails_the_next_apply() {
        let disk = CrashDisk::default();
        let mut sm = StateMachine::new(Store::with_backend(disk.clone()).unwrap(), None).unwrap();
        disk.failing.store(true, std::sync::atomic::Ordering::SeqCst);
        for i in 1..=DURABLE_AFTER as u64 + 1 {
            sm.apply([entry(i, Command::Kv(set(format!("k{i}"))))]).await.unwrap();
        }
        flushed(&sm).await;
        let failure = sm.flusher.failure().expect("the durable commit failed");
        let next = sm.apply([entry(DURABLE_AFTER as u64 + 2, Command::Kv(set("next".into())))]).await;
        let err = next.expect_err("the apply after a failed durable point fails");
        assert!(err.to_string().contains(&failure), "{err} / {failure}");
        disk.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn a_durable_point_is_asked_for_after_every_fifth_apply() {
        let mut u = Undurable::new();
        let pattern: Vec<bool> = (0..10).map(|_| u.next_durable()).collect();
        assert_eq!(pattern, [false, false, false, false, true, false, false, false, false, true]);
    }

    #[tokio::test]
    async fn a_rolled_back_txn_keeps_the_releases_of_earlier_commands_in_its_batch() {
        let mut sm = with_held_lock().await;
        // Fails: the key does not exist, so the whole transaction rolls back.
        let failing = TxnOp::Kv(KvOp { index: 99, ..KvOp::new(KvVerb::CheckIndex, "absent") });
        let batch = Command::Batch(vec![Command::SessionDestroy { id: "s1".into() }, Command::Txn(vec![failing])]);
        let responses = sm.apply([entry(4, batch)]).await.unwrap();
        let CommandResponse::Batch(rs) = &responses[0] else { panic!("{responses:?}") };
        assert!(matches!(rs[1], CommandResponse::Txn(Err(_))), "{rs:?}");
        assert!(sm.store.lock_delays.active("locked"), "the destroyed session's lock-delay is armed");
    }

    #[tokio::test]
    async fn a_rolled_back_txn_releases_nothing() {
        let mut sm = with_held_lock().await;
        // Deregistering the node would invalidate s1, but the failing check rolls it all back.
        let deregister = TxnOp::Catalog(legate_state::catalog::CatalogOp::Node {
            verb: legate_state::catalog::CatalogVerb::Delete,
            node: Node { node: "n1".into(), ..Node::default() },
        });
        let failing = TxnOp::Kv(KvOp { index: 99, ..KvOp::new(KvVerb::CheckIndex, "absent") });
        let responses = sm.apply([entry(4, Command::Txn(vec![deregister, failing]))]).await.unwrap();
        assert!(matches!(responses[0], CommandResponse::Txn(Err(_))), "{responses:?}");
        assert!(!sm.store.lock_delays.active("locked"), "nothing of a rolled-back txn is armed");
        // The same deregistration committed does release the lock.
        let deregister =
            Command::Deregister(legate_state::catalog::Deregister { node: "n1".into(), ..Default::default() });
        sm.apply([entry(5, deregister)]).await.unwrap();
        assert!(sm.store.lock_delays.active("locked"));
    }
}
