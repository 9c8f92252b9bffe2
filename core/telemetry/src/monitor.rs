//! The agent's log lines for `/v1/agent/monitor`: the logging layer publishes each formatted
//! line here, and every monitor gets the lines at or above its own level (a monitor may ask
//! for more detail than the agent logs). A monitor's buffer is bounded: a reader that does not
//! keep up loses lines, which are counted; the agent never waits for it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;
use tracing::Level;

/// Lines a monitor may have waiting before new ones are dropped.
pub const BUFFER: usize = 512;

struct Sub {
    level: Level,
    json: bool,
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// Every open monitor.
#[derive(Default)]
pub struct Hub {
    subs: Mutex<Vec<Sub>>,
    /// How many monitors are open: every log event asks, and with none it takes no lock.
    open: AtomicUsize,
}

/// One monitor's end: its lines, and how many it lost.
pub struct Monitor {
    pub lines: mpsc::Receiver<Vec<u8>>,
    pub dropped: Arc<AtomicU64>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.lines.close();
        levels_changed();
    }
}

/// Called when the levels monitors want change (one opened or closed): the logging setup
/// installs tracing's interest-cache rebuild, so that the global max level follows them.
static LEVELS_CHANGED: OnceLock<fn()> = OnceLock::new();

/// Installs what runs when the monitors' levels change (once; later calls are ignored).
pub fn on_levels_changed(f: fn()) {
    let _ = LEVELS_CHANGED.set(f);
}

fn levels_changed() {
    if let Some(f) = LEVELS_CHANGED.get() {
        f();
    }
}

/// Consul's log level names (`err`, `warn`, `trace`...), for `-log-level` and monitors.
pub fn parse_level(name: &str) -> Option<tracing::level_filters::LevelFilter> {
    use tracing::level_filters::LevelFilter;
    Some(match name.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "err" | "error" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return None,
    })
}

/// The process's hub.
pub fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(Hub::default)
}

impl Hub {
    /// A new monitor of the lines at `level` or more severe, as text or JSON.
    pub fn subscribe(&self, level: Level, json: bool) -> Monitor {
        let (tx, lines) = mpsc::channel(BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut subs = self.pruned();
        subs.push(Sub { level, json, tx, dropped: dropped.clone() });
        self.open.store(subs.len(), Ordering::Relaxed);
        drop(subs);
        levels_changed();
        Monitor { lines, dropped }
    }

    /// The most detailed level an open monitor of this format wants (OFF with none).
    pub fn max_level(&self, json: bool) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        if self.open.load(Ordering::Relaxed) == 0 {
            return LevelFilter::OFF;
        }
        self.pruned()
            .iter()
            .filter(|s| s.json == json)
            .map(|s| LevelFilter::from_level(s.level))
            .max()
            .unwrap_or(LevelFilter::OFF)
    }

    /// The monitors, without those whose reader went away.
    fn pruned(&self) -> std::sync::MutexGuard<'_, Vec<Sub>> {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| !s.tx.is_closed());
        self.open.store(subs.len(), Ordering::Relaxed);
        subs
    }

    /// Whether any monitor of this format wants a line at `level` (checked before the line is
    /// formatted; without monitors, one atomic load).
    pub fn wants(&self, level: &Level, json: bool) -> bool {
        if self.open.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.pruned().iter().any(|s| s.json == json && *level <= s.level)
    }

    /// Hands a formatted line to every monitor that wants it.
    pub fn publish(&self, level: &Level, json: bool, line: &[u8]) {
        let subs = self.pruned();
        for s in subs.iter().filter(|s| s.json == json && *level <= s.level) {
            if s.tx.try_send(line.to_vec()).is_err() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                crate::counter("agent.monitor.dropped_lines", Vec::new(), 1.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_get_their_levels_and_slow_ones_drop() {
        let hub = Hub::default();
        let mut debug = hub.subscribe(Level::DEBUG, false);
        let mut warn = hub.subscribe(Level::WARN, false);
        assert!(hub.wants(&Level::INFO, false) && !hub.wants(&Level::INFO, true) && !hub.wants(&Level::TRACE, false));
        use tracing::level_filters::LevelFilter;
        assert_eq!((hub.max_level(false), hub.max_level(true)), (LevelFilter::DEBUG, LevelFilter::OFF));
        hub.publish(&Level::INFO, false, b"info line");
        hub.publish(&Level::ERROR, false, b"error line");
        assert_eq!(debug.lines.try_recv().unwrap(), b"info line");
        assert_eq!(debug.lines.try_recv().unwrap(), b"error line");
        assert_eq!(warn.lines.try_recv().unwrap(), b"error line");
        assert!(warn.lines.try_recv().is_err());
        for _ in 0..BUFFER + 10 {
            hub.publish(&Level::ERROR, false, b"x");
        }
        assert_eq!(debug.dropped.load(Ordering::Relaxed), 10);
        drop(debug);
        assert_eq!(hub.max_level(false), LevelFilter::WARN, "a closed monitor's level is gone at once");
        drop(warn);
        assert!(!hub.wants(&Level::ERROR, false), "closed monitors are gone");
        assert_eq!(hub.open.load(Ordering::Relaxed), 0);
        // A monitor that closes before any line still goes.
        drop(hub.subscribe(Level::ERROR, true));
        assert!(!hub.wants(&Level::ERROR, true));
        assert!(hub.subs.lock().unwrap().is_empty());
    }
}
