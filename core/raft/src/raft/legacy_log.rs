//! The Raft log of earlier versions, a redb file (`raft/raft.db`): moved once, at start, into
//! the segment log (`raft/log`), then removed. The segment log is written apart
//! (`raft/log.migrating`) and renamed into place whole, so a crash part way leaves the old file
//! in charge and the move starts over.

use std::path::Path;

use openraft::{LogId, Vote};
use redb::{ReadableTable, TableDefinition};

use super::log_store::Meta;
use super::wal::Wal;
use super::NodeId;
use crate::ServerError;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// Entries written per fdatasync while moving.
const CHUNK: usize = 1024;

pub fn migrate(raft_dir: &Path) -> Result<(), ServerError> {
    let old = raft_dir.join("raft.db");
    if !old.exists() {
        return Ok(());
    }
    let target = raft_dir.join("log");
    if target.exists() {
        // Renamed into place last: only the old file's removal was left.
        std::fs::remove_file(&old).map_err(ServerError::io(&old))?;
        return Ok(());
    }
    let damaged = |detail: String| ServerError::DamagedLog { path: old.clone(), dir: raft_dir.to_path_buf(), detail };
    let db = legate_state::open_file_db(&old, 4 << 20).map_err(|e| match e {
        legate_state::StoreError::Damaged { detail, .. } => damaged(detail),
        e => ServerError::Log(format!("{}: {e}", old.display())),
    })?;
    let redb_err = |e: &dyn std::fmt::Display| ServerError::Log(format!("{}: {e}", old.display()));
    let txn = db.begin_read().map_err(|e| redb_err(&e))?;
    let meta_table = txn.open_table(META).map_err(|e| redb_err(&e))?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, ServerError> {
        Ok(meta_table.get(key).map_err(|e| redb_err(&e))?.map(|v| v.value().to_vec()))
    };
    let decode_err = |e: bincode::Error| damaged(format!("the vote or purge point does not decode: {e}"));
    let meta = Meta {
        vote: get("vote")?.map(|b| bincode::deserialize::<Vote<NodeId>>(&b)).transpose().map_err(decode_err)?,
        committed: get("committed")?
            .map(|b| bincode::deserialize::<Option<LogId<NodeId>>>(&b))
            .transpose()
            .map_err(decode_err)?
            .flatten(),
        last_purged: get("last_purged")?
            .map(|b| bincode::deserialize::<LogId<NodeId>>(&b))
            .transpose()
            .map_err(decode_err)?,
    };

    let moving = raft_dir.join("log.migrating");
    if moving.exists() {
        std::fs::remove_dir_all(&moving).map_err(ServerError::io(&moving))?;
    }
    let (mut wal, _) = Wal::open(&moving, None).map_err(|e| match e {
        super::wal::OpenError::Io(p, e) => ServerError::io(&p)(e),
        super::wal::OpenError::Damaged(d) => ServerError::Log(format!("{}: {}", d.path.display(), d.detail)),
    })?;
    let log = txn.open_table(LOG).map_err(|e| redb_err(&e))?;
    let mut chunk: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
    let mut moved = 0usize;
    let mut last: Option<u64> = None;
    let mut write = |chunk: &mut Vec<(u64, Vec<u8>)>| -> Result<(), ServerError> {
        wal.write(chunk).and_then(|()| wal.sync()).map_err(ServerError::io(&moving))?;
        moved += chunk.len();
        chunk.clear();
        Ok(())
    };
    for item in log.iter().map_err(|e| redb_err(&e))? {
        let (k, v) = item.map_err(|e| redb_err(&e))?;
        let expected = chunk.last().map(|(i, _)| i + 1).or(last.map(|i| i + 1));
        if expected.is_some_and(|e| e != k.value()) {
            return Err(damaged(format!("entry {} follows entry {}", k.value(), expected.unwrap_or(1) - 1)));
        }
        last = Some(k.value());
        chunk.push((k.value(), v.value().to_vec()));
        if chunk.len() == CHUNK {
            write(&mut chunk)?;
        }
    }
    write(&mut chunk)?;
    drop(wal);
    meta.save(&moving.join("meta")).map_err(ServerError::io(&moving))?;
    drop((log, meta_table, txn, db));
    std::fs::rename(&moving, &target).map_err(ServerError::io(&target))?;
    std::fs::File::open(raft_dir).and_then(|d| d.sync_all()).map_err(ServerError::io(raft_dir))?;
    std::fs::remove_file(&old).map_err(ServerError::io(&old))?;
    tracing::info!(entries = moved, from = %old.display(), to = %target.display(), "moved the Raft log to its segment files");
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, RaftLogReader};

    use super::*;
    use crate::raft::log_store::LogStore;
    use crate::raft::TypeConfig;

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(3, 7), index)
    }

    /// A raft.db as earlier versions wrote it: entries 11..=40 (10 purged), a vote.
    fn old_log(dir: &Path) {
        let db = redb::Database::create(dir.join("raft.db")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            for i in 11..=40u64 {
                let e: Entry<TypeConfig> = Entry { log_id: log_id(i), payload: EntryPayload::Blank };
                log.insert(i, bincode::serialize(&e).unwrap().as_slice()).unwrap();
            }
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("vote", bincode::serialize(&Vote::<NodeId>::new_committed(3, 7)).unwrap().as_slice()).unwrap();
            meta.insert("last_purged", bincode::serialize(&log_id(10)).unwrap().as_slice()).unwrap();
            meta.insert("committed", bincode::serialize(&Some(log_id(38))).unwrap().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn an_old_redb_log_is_moved_into_segments_whole() {
        let dir = tempfile::tempdir().unwrap();
        old_log(dir.path());
        let mut log = LogStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("raft.db").exists(), "the old file is removed");
        assert!(!dir.path().join("log.migrating").exists());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(3, 7)));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(38)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(10)), Some(log_id(40))));
        let entries = log.try_get_log_entries(11..=40).await.unwrap();
        assert_eq!(entries.iter().map(|e| e.log_id).collect::<Vec<_>>(), (11..=40).map(log_id).collect::<Vec<_>>());
    }

    #[test]
    fn a_move_cut_short_starts_over_and_a_finished_one_only_removes_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        old_log(dir.path());
        // A crash part way: a half-written log.migrating is thrown away and the move redone.
        std::fs::create_dir(dir.path().join("log.migrating")).unwrap();
        std::fs::write(dir.path().join("log.migrating/00000000000000000011.seg"), b"half").unwrap();
        migrate(dir.path()).unwrap();
        let seg = dir.path().join("log/00000000000000000011.seg");
        assert!(std::fs::metadata(&seg).unwrap().len() > 4, "the segment is whole");
        // A crash after the rename, before the old file went: the old file is just removed.
        old_log(dir.path());
        let before = std::fs::read(&seg).unwrap();
        migrate(dir.path()).unwrap();
        assert!(!dir.path().join("raft.db").exists());
        assert_eq!(std::fs::read(&seg).unwrap(), before);
    }
}
