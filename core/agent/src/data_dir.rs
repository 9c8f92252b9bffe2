//! The agent's data directory: created if missing, locked for the life of the agent (a second
//! agent on the same directory fails at start), and home of the persisted node ID.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("Failed to create data_dir {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("data_dir {path} is already in use by another agent{}", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: String, holder: Option<u32> },
    #[error("data_dir {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("node ID in {path} is not a UUID: {value:?}")]
    BadNodeId { path: String, value: String },
}

/// A locked data directory. The lock (flock on `legate.lock`) is released when this is dropped
/// or the process dies.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let shown = path.display().to_string();
        // The data dir holds tokens and keys: only the agent's user may enter it.
        legate_types::fs::create_private_dir(path)
            .map_err(|source| DataDirError::Create { path: shown.clone(), source })?;
        let lock_path = path.join("legate.lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| DataDirError::Io { path: shown.clone(), source })?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = lock.read_to_string(&mut text);
                return Err(DataDirError::Locked { path: shown, holder: text.trim().parse().ok() });
            }
            return Err(DataDirError::Io { path: shown, source: err });
        }
        let io = |source| DataDirError::Io { path: shown.clone(), source };
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(DataDir { path: path.to_path_buf(), _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node ID: the configured one (persisted so it survives a later start without the
    /// flag), else the one persisted in `node-id`, else a new random UUID, persisted.
    pub fn node_id(&self, configured: Option<&str>) -> Result<String, DataDirError> {
        let file = self.path.join("node-id");
        let shown = file.display().to_string();
        if let Some(id) = configured {
            write_atomic(&file, id).map_err(|source| DataDirError::Io { path: shown, source })?;
            return Ok(id.to_string());
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let id = text.trim().to_string();
                if uuid::Uuid::parse_str(&id).is_err() {
                    return Err(DataDirError::BadNodeId { path: shown, value: id });
                }
                Ok(id)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().to_string();
                write_atomic(&file, &id).map_err(|source| DataDirError::Io { path: shown, source })?;
                Ok(id)
            }
            Err(source) => Err(DataDirError::Io { path: shown, source }),
        }
    }
}

/// Writes via a temporary file and rename, fsynced, so a crash leaves the old or the new file.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_and_node_id_persists() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        let id = first.node_id(None).unwrap();
        assert_eq!(first.node_id(None).unwrap(), id);
        drop(first);
        let again = DataDir::open(dir.path()).unwrap();
        assert_eq!(again.node_id(None).unwrap(), id);
    }
}
