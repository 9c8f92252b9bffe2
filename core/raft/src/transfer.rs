//! Leadership transfer (`operator raft transfer-leader`). openraft 0.9 has no transfer of its
//! own, and a follower that still hears from a leader refuses votes for the length of its
//! lease (the longest election timeout). So the leader stops sending heartbeats, which lets
//! every lease run out, and asks the target to stand for election again and again until it
//! wins: being the only one that starts elections on purpose, it is the first once the
//! leases are over, and any voter grants its vote (its log is as long as anyone's). The
//! leader's heartbeats come back on whatever the outcome.

use std::time::Duration;

use tokio::time::Instant;

use crate::raft::{NodeId, Raft};
use crate::rpc::{Request, Response};
use crate::{Server, ServerError};

/// How often a target that has not won yet starts another election.
const RETRY: Duration = Duration::from_millis(50);

/// The target's part: elections until this server leads, or `within` has passed.
pub(crate) async fn stand_for_election(raft: &Raft, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let me = raft.metrics().borrow().id;
    loop {
        if raft.metrics().borrow().current_leader == Some(me) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("timed out waiting for the election".into());
        }
        raft.trigger().elect().await.map_err(|e| e.to_string())?;
        tokio::time::sleep(RETRY).await;
    }
}

impl Server {
    /// Hands leadership to `target` (None: the voter with the most replicated log); the leader
    /// only. Returns the new leader's ID.
    pub async fn transfer_leadership(&self, target: Option<NodeId>) -> Result<NodeId, ServerError> {
        if !self.is_leader() {
            return Err(ServerError::NoLeader);
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let others: Vec<NodeId> = membership.voter_ids().filter(|id| *id != self.id).collect();
        let target = match target {
            Some(t) if others.contains(&t) => t,
            Some(t) => return Err(ServerError::Transfer(format!("cannot find peer {t}"))),
            None => {
                let matched =
                    |id: &NodeId| m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
                others
                    .iter()
                    .copied()
                    .max_by_key(matched)
                    .ok_or_else(|| ServerError::Transfer("cannot find peer to transfer leadership to".into()))?
            }
        };
        let addr = membership
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or_else(|| ServerError::Transfer(format!("cannot find peer {target}")))?;
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let within = lease * 4 + Duration::from_secs(1);
        tracing::info!(target = %addr, "raft: transferring leadership");
        self.raft.runtime_config().heartbeat(false);
        let peer = self.pool.get(&addr).await;
        let answer = peer.call(Request::Elect { within_ms: within.as_millis() as u64 }, within + lease).await;
        // Wait until this server has heard of the new leader (or the attempt is over).
        let deadline = Instant::now() + lease * 2;
        while self.raft.metrics().borrow().current_leader == Some(self.id) && Instant::now() < deadline {
            tokio::time::sleep(RETRY).await;
        }
        self.raft.runtime_config().heartbeat(true);
        match answer {
            Ok(Response::Elect(Ok(()))) => Ok(target),
            Ok(Response::Elect(Err(e))) => {
                Err(ServerError::Transfer(format!("leadership transfer to {addr} failed: {e}")))
            }
            Ok(other) => Err(ServerError::Transfer(format!("unexpected response {other:?}"))),
            Err(e) => Err(ServerError::Transfer(format!("leadership transfer to {addr} failed: {e}"))),
        }
    }
}
