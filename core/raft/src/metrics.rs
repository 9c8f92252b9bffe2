//! Raft's metrics that come from watching it rather than from one call: state transitions
//! (`raft.state.*`) and, on the leader, how long ago each follower last answered
//! (`raft.leader.lastContact`, sampled as Consul's leader does at every lease check).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::raft::log_store::LogStats;
use crate::raft::network::Contacts;
use crate::raft::{NodeId, Raft};

/// How often the leader samples its followers' last contact (Consul: the leader lease, 500 ms).
const LEASE_CHECK: Duration = Duration::from_millis(500);

pub async fn observe(raft: Raft, id: NodeId, contacts: Arc<Contacts>, log: Arc<LogStats>, shutdown: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut state = None;
    let mut lease = tokio::time::interval(LEASE_CHECK);
    lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = metrics.borrow().state;
        if state != Some(now) {
            state = Some(now);
            match now {
                ServerState::Leader => legate_telemetry::incr("raft.state.leader"),
                ServerState::Candidate => legate_telemetry::incr("raft.state.candidate"),
                ServerState::Follower => legate_telemetry::incr("raft.state.follower"),
                ServerState::Learner | ServerState::Shutdown => {}
            }
            log.leader.store(now == ServerState::Leader, Ordering::Relaxed);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            _ = lease.tick(), if state == Some(ServerState::Leader) => {
                let voters: Vec<NodeId> = metrics.borrow().membership_config.membership().voter_ids().collect();
                for peer in voters.into_iter().filter(|p| *p != id) {
                    if let Some(since) = contacts.since(peer) {
                        legate_telemetry::sample("raft.leader.lastContact", Vec::new(), since.as_secs_f64() * 1000.0);
                    }
                }
            }
        }
    }
}
