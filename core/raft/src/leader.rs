//! Leader duties: work that only the Raft leader does, started when this server becomes the
//! leader and cancelled (and awaited) when it steps down or shuts down. A new leader starts
//! every duty afresh, so a duty's state (session deadlines, tombstone marks) is rebuilt from
//! the store rather than trusted from an earlier term.
//!
//! Built in: session TTLs, KV tombstone GC and the GC of dead plugin uploads. The agent adds what needs its layers (the ACL
//! objects a cluster must have, reconciling gossip members into the catalog).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::{Command, CommandResponse};
use crate::Server;

type DutyFn = Arc<dyn Fn(Arc<Server>, CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One job of the leader: a task run for as long as this server leads.
#[derive(Clone)]
pub struct Duty {
    pub name: &'static str,
    run: DutyFn,
}

impl Duty {
    pub fn new<F, Fut>(name: &'static str, f: F) -> Duty
    where
        F: Fn(Arc<Server>, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Duty { name, run: Arc::new(move |s, stop| Box::pin(f(s, stop))) }
    }
}

/// The duties every server has.
pub fn builtin(tombstone_ttl: Duration) -> Vec<Duty> {
    vec![
        Duty::new("session-ttl", session_ttls),
        Duty::new("tombstone-gc", move |s, stop| tombstone_gc(s, tombstone_ttl, stop)),
        Duty::new("plugin-gc", plugin_gc),
    ]
}

/// Runs `duties` whenever this server is the leader, until `shutdown`.
pub async fn run(server: Arc<Server>, duties: Vec<Duty>, shutdown: CancellationToken) {
    let mut metrics = server.raft.metrics();
    let mut term: Option<(CancellationToken, TaskTracker)> = None;
    loop {
        match (server.holds_raft_leadership(), term.is_some()) {
            (true, false) => {
                tracing::info!("leadership acquired: starting leader duties");
                let stop = shutdown.child_token();
                let tracker = TaskTracker::new();
                for d in &duties {
                    // Dropped as soon as leadership is lost, even inside a write: a duty must not
                    // act on an earlier term's view (session deadlines the new leader renews).
                    let (duty, stop) = ((d.run)(server.clone(), stop.clone()), stop.clone());
                    legate_types::tasks::spawn(&tracker, d.name, async move {
                        tokio::select! {
                            biased;
                            _ = stop.cancelled() => {}
                            _ = duty => {}
                        }
                    });
                }
                tracker.close();
                term = Some((stop, tracker));
            }
            (false, true) => {
                tracing::info!("leadership lost: stopping leader duties");
                if let Some((stop, tracker)) = term.take() {
                    stop.cancel();
                    tracker.wait().await;
                }
            }
            _ => {}
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
        }
    }
    if let Some((stop, tracker)) = term {
        stop.cancel();
        tracker.wait().await;
    }
}

/// Session TTL timers: every session gets now + 2 x TTL when this server becomes leader (so a
/// failover never expires a session early); renewals push it back ([`Server::renew_session`]);
/// expired sessions are destroyed through Raft.
async fn session_ttls(server: Arc<Server>, stop: CancellationToken) {
    server.session_deadlines.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sessions = match server.store.read().and_then(|t| legate_state::session::list(&t)) {
            Ok(s) => s,
            Err(_) => continue,
        };
        let now = Instant::now();
        let expired = {
            let mut deadlines = server.session_deadlines.lock().unwrap_or_else(|p| p.into_inner());
            let expired = expired_sessions(&mut deadlines, &sessions, now);
            legate_telemetry::gauge("session_ttl.active", Vec::new(), deadlines.len() as f64);
            expired
        };
        for id in expired {
            let _timer = legate_telemetry::Timer::start("session_ttl.invalidate", Vec::new());
            tracing::info!(session = %id, "session TTL expired, destroying it");
            server.session_deadlines.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            if let Err(e) = server.apply(Command::SessionDestroy { id: id.clone() }).await {
                tracing::warn!(session = %id, error = %e, "destroying expired session failed");
            }
        }
    }
}

/// Brings the deadlines in line with the sessions (new ones get now + 2 x TTL, gone ones are
/// dropped) and answers the sessions whose deadline has passed.
fn expired_sessions(
    deadlines: &mut HashMap<String, Instant>,
    sessions: &[legate_state::session::Session],
    now: Instant,
) -> Vec<String> {
    deadlines.retain(|id, _| sessions.iter().any(|s| &s.id == id));
    for s in sessions {
        let Some(ttl) = legate_types::duration::parse_go_duration(&s.ttl).ok().filter(|t| !t.is_zero()) else {
            continue;
        };
        deadlines.entry(s.id.clone()).or_insert(now + ttl * 2);
    }
    deadlines.iter().filter(|(_, t)| **t <= now).map(|(id, _)| id.clone()).collect()
}

/// KV tombstone GC: every tick remembers the applied index; tombstones at or below an index
/// remembered `ttl` ago are reaped (Consul's granularity: ticks of ttl/30).
async fn tombstone_gc(server: Arc<Server>, ttl: Duration, stop: CancellationToken) {
    let tick = (ttl / 30).clamp(Duration::from_millis(50), Duration::from_secs(30));
    let mut marks: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let applied = server.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
        let Some(upto) = reap_index(&mut marks, Instant::now(), applied, ttl) else { continue };
        let oldest = server.store.read().ok().and_then(|t| legate_state::kv::oldest_tombstone(&t).ok().flatten());
        if oldest.is_some_and(|o| o <= upto) {
            match server.apply(Command::ReapTombstones { index: upto }).await {
                Ok(CommandResponse::Reaped(n)) => tracing::debug!(n, upto, "reaped KV tombstones"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "tombstone GC failed"),
            }
        }
    }
}

/// How long an unfinished plugin upload may sit before its chunks are reaped.
const DEAD_UPLOAD: Duration = Duration::from_secs(3600);

/// Plugin registry GC: every 10 minutes, blobs whose upload stopped between chunks over an
/// hour ago and that no version names are dropped (`PluginOp::Reap`).
async fn plugin_gc(server: Arc<Server>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let dead = match server.store.read().and_then(|t| dead_uploads(&t, now)) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "plugin GC could not read the registry");
                continue;
            }
        };
        for sha256 in dead {
            let op = legate_state::plugin::PluginOp::Reap { sha256: sha256.clone() };
            match server.apply(Command::Plugin(op)).await {
                Ok(_) => tracing::info!(%sha256, "reaped an unfinished plugin upload"),
                Err(e) => tracing::warn!(%sha256, error = %e, "plugin GC failed"),
            }
        }
    }
}

/// Incomplete blobs last written over [`DEAD_UPLOAD`] before `now` (unix seconds) that no
/// version names.
fn dead_uploads(txn: &redb::ReadTransaction, now: u64) -> Result<Vec<String>, legate_state::StoreError> {
    let named: std::collections::HashSet<String> =
        legate_state::plugin::versions(txn)?.into_iter().map(|v| v.sha256).collect();
    Ok(legate_state::plugin::blobs(txn)?
        .into_iter()
        .filter(|b| !b.complete && !named.contains(&b.sha256))
        .filter(|b| now.saturating_sub(b.updated_at_unix) > DEAD_UPLOAD.as_secs())
        .map(|b| b.sha256)
        .collect())
}

/// Records `applied` at `now` and answers the newest index recorded at least `ttl` ago.
fn reap_index(marks: &mut VecDeque<(Instant, u64)>, now: Instant, applied: u64, ttl: Duration) -> Option<u64> {
    marks.push_back((now, applied));
    let mut expired = None;
    while let Some(&(at, idx)) = marks.front() {
        if now.duration_since(at) < ttl {
            break;
        }
        expired = Some(idx);
        marks.pop_front();
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use legate_state::session::Session;

    fn session(id: &str, ttl: &str) -> Session {
        Session { id: id.into(), ttl: ttl.into(), ..Session::default() }
    }

    #[test]
    fn sessions_expire_after_twice_their_ttl_and_renewals_push_back() {
        let t0 = Instant::now();
        let mut d = HashMap::new();
        let sessions = vec![session("a", "10s"), session("b", ""), session("c", "1s")];
        assert!(expired_sessions(&mut d, &sessions, t0).is_empty());
        assert_eq!(d.len(), 2, "sessions without a TTL have no deadline");
        assert_eq!(expired_sessions(&mut d, &sessions, t0 + Duration::from_millis(1999)), Vec::<String>::new());
        assert_eq!(expired_sessions(&mut d, &sessions, t0 + Duration::from_secs(2)), vec!["c".to_string()]);
        // A renewal (what Server::renew_session does) moves the deadline.
        d.insert("a".into(), t0 + Duration::from_secs(30));
        assert!(!expired_sessions(&mut d, &sessions, t0 + Duration::from_secs(25)).contains(&"a".to_string()));
        // A destroyed session's deadline goes with it.
        expired_sessions(&mut d, &sessions[..1], t0);
        assert_eq!(d.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn tombstones_are_reaped_up_to_the_index_seen_a_ttl_ago() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut marks = VecDeque::new();
        assert_eq!(reap_index(&mut marks, t0, 10, ttl), None);
        assert_eq!(reap_index(&mut marks, t0 + Duration::from_secs(30), 20, ttl), None);
        assert_eq!(reap_index(&mut marks, t0 + Duration::from_secs(60), 30, ttl), Some(10));
        assert_eq!(reap_index(&mut marks, t0 + Duration::from_secs(200), 40, ttl), Some(30));
        assert_eq!(marks.len(), 1);
    }
}
