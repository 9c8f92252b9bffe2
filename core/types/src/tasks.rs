//! Long-lived tasks by name, so a shutdown that does not drain can say which task is stuck.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static LIVE: Mutex<Option<HashMap<u64, &'static str>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(0);

struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(m) = LIVE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            m.remove(&self.0);
        }
    }
}

/// Spawns `fut` on `tracker` under `name`.
pub fn spawn<F>(tracker: &tokio_util::task::TaskTracker, name: &'static str, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(id, name);
    tracker.spawn(async move {
        let _guard = Guard(id);
        fut.await
    });
}

/// Names of the tasks still running (in this process).
pub fn live() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}
