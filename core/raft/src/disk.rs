//! The data dir's free space, watched. A write that runs the Raft log or the state store into
//! ENOSPC stops openraft's core for good (storage errors are fatal to it), so the leader keeps a
//! reserve instead: below `limits.data_dir_min_free` new writes are refused with a clear error
//! (a 500 naming the dir), reads go on, and writes are taken again as soon as space returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the free space is read (a `statvfs`).
const EVERY: Duration = Duration::from_millis(250);

pub struct DiskGuard {
    /// None: everything in memory, nothing to guard.
    dir: Option<PathBuf>,
    min_free: AtomicU64,
    /// Bytes available at the last reading (u64::MAX before the first or when unreadable).
    free: AtomicU64,
}

const MIB: u64 = 1 << 20;

impl DiskGuard {
    pub fn new(dir: Option<PathBuf>, min_free: u64) -> Arc<DiskGuard> {
        let guard = Arc::new(DiskGuard { dir, min_free: AtomicU64::new(min_free), free: AtomicU64::new(u64::MAX) });
        guard.refresh();
        guard
    }

    /// `limits.data_dir_min_free` (reloadable).
    pub fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
    }

    /// Reads the free space now.
    pub fn refresh(&self) {
        if let Some(dir) = &self.dir {
            self.free.store(available(dir).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// Why a write must be refused now, if it must.
    pub fn refusal(&self) -> Option<String> {
        let (free, min) = (self.free.load(Ordering::Relaxed), self.min_free.load(Ordering::Relaxed));
        let dir = self.dir.as_ref()?;
        (free < min).then(|| {
            format!(
                "disk full: {} has {} MiB free, below limits.data_dir_min_free ({} MiB); writes are refused until space is freed",
                dir.display(),
                free / MIB,
                min.div_ceil(MIB)
            )
        })
    }
}

/// Bytes available to this process on the filesystem holding `dir`.
fn available(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Re-reads the free space every 250 ms; logs when writes start and stop being refused.
pub async fn watch(guard: Arc<DiskGuard>, shutdown: CancellationToken) {
    if guard.dir.is_none() {
        return;
    }
    let mut refusing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let g = guard.clone();
        if tokio::task::spawn_blocking(move || g.refresh()).await.is_err() {
            return;
        }
        match (guard.refusal(), refusing) {
            (Some(why), false) => {
                tracing::error!("{why}");
                refusing = true;
            }
            (None, true) => {
                tracing::info!("disk space is back above limits.data_dir_min_free: taking writes again");
                refusing = false;
            }
            _ => {}
        }
    }
}
