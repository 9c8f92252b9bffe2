//! openraft's network over the server RPC port (`server::rpc`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, BasicNode, EntryPayload};

use super::{NodeId, TypeConfig};
use crate::rpc::{PeerClient, Pool, Request, Response, RpcError};

#[derive(Clone)]
pub struct Network {
    pub pool: Arc<Pool>,
    pub contacts: Arc<Contacts>,
}

/// When each peer last answered an AppendEntries from this node (a leader's heartbeats and
/// replication): autopilot's `LastContact`.
#[derive(Default)]
pub struct Contacts(std::sync::Mutex<HashMap<NodeId, Instant>>);

impl Contacts {
    fn record(&self, peer: NodeId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, Instant::now());
    }

    /// How long ago `peer` last answered (None: never, since this node started).
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&peer).map(Instant::elapsed)
    }
}

/// When this server last accepted an AppendEntries (a follower's view of its leader):
/// `X-Consul-LastContact` on followers, and whether DNS answers are stale.
#[derive(Default)]
pub struct LeaderContact(std::sync::Mutex<Option<Instant>>);

impl LeaderContact {
    pub fn record(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub fn since(&self) -> Option<Duration> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed())
    }
}

pub struct Peer {
    target: NodeId,
    client: Arc<PeerClient>,
    contacts: Arc<Contacts>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, client: self.pool.get(&node.addr).await, contacts: self.contacts.clone() }
    }
}

type E<Err = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, Err>>;

fn transport<Err: std::error::Error>(e: RpcError) -> RPCError<NodeId, BasicNode, RaftError<NodeId, Err>> {
    match e {
        RpcError::Connect(..) | RpcError::Closed(_) => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

fn remote<Err: std::error::Error>(target: NodeId, msg: String) -> RPCError<NodeId, BasicNode, RaftError<NodeId, Err>> {
    // The remote's RaftError arrives as text; openraft treats it as a network-level failure and
    // retries, which is what a fatal remote error warrants too.
    RPCError::Network(NetworkError::new(&AnyError::error(format!("node {target}: {msg}"))))
}

/// Most bulk bytes (plugin chunks) in one AppendEntries call. openraft times a call out at the
/// heartbeat interval and sends up to 300 entries: 300 chunks of 256 KiB could never arrive in
/// time, and replication would retry the same range forever.
const APPEND_BUDGET: usize = 1 << 20;

/// How many of `entries` fit [`APPEND_BUDGET`] (at least one), if not all do.
fn entries_within_budget(entries: &[openraft::Entry<TypeConfig>]) -> Option<u64> {
    if entries.len() <= 1 {
        return None;
    }
    let mut bytes = 0usize;
    for (n, e) in entries.iter().enumerate() {
        if let EntryPayload::Normal(cmd) = &e.payload {
            bytes += cmd.bulk_bytes();
        }
        if bytes > APPEND_BUDGET {
            return Some(n.max(1) as u64);
        }
    }
    None
}

fn deadline(option: &RPCOption) -> Duration {
    option.hard_ttl().max(Duration::from_millis(50))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, E> {
        if let Some(fit) = entries_within_budget(&rpc.entries) {
            // openraft retries at once with fewer entries (a single entry always goes out).
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit)));
        }
        let peer: legate_telemetry::Labels = vec![("peer_id", self.target.to_string().into())];
        let logs = rpc.entries.len();
        let timer = legate_telemetry::Timer::start("raft.replication.appendEntries.rpc", peer.clone());
        match self.client.call(Request::AppendEntries(rpc), deadline(&option)).await.map_err(transport)? {
            Response::AppendEntries(Ok(r)) => {
                drop(timer);
                if logs > 0 {
                    legate_telemetry::counter("raft.replication.appendEntries.logs", peer, logs as f64);
                }
                self.contacts.record(self.target);
                Ok(r)
            }
            Response::AppendEntries(Err(e)) => Err(remote(self.target, e)),
            other => Err(remote(self.target, format!("unexpected response {other:?}"))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, E<InstallSnapshotError>> {
        match self.client.call(Request::InstallSnapshot(rpc), deadline(&option)).await.map_err(transport)? {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => Err(remote(self.target, e)),
            other => Err(remote(self.target, format!("unexpected response {other:?}"))),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, E> {
        match self.client.call(Request::Vote(rpc), deadline(&option)).await.map_err(transport)? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(remote(self.target, e)),
            other => Err(remote(self.target, format!("unexpected response {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, LogId};

    use super::*;
    use crate::command::Command;
    use legate_state::plugin::PluginOp;

    fn chunk(index: u64, len: usize) -> Entry<TypeConfig> {
        let op = PluginOp::Chunk {
            sha256: "0".repeat(64),
            index: 0,
            total: 1,
            size: len as u64,
            at_unix: 0,
            data: vec![0; len],
        };
        let log_id = LogId::new(CommittedLeaderId::new(1, 0), index);
        Entry { log_id, payload: EntryPayload::Normal(Command::Plugin(op)) }
    }

    #[test]
    fn append_entries_over_the_byte_budget_are_split() {
        let small: Vec<_> = (1..=3).map(|i| chunk(i, 1000)).collect();
        assert_eq!(entries_within_budget(&small), None);
        let big: Vec<_> = (1..=10).map(|i| chunk(i, 256 * 1024)).collect();
        assert_eq!(entries_within_budget(&big), Some(4));
        // One entry always goes out, however large.
        assert_eq!(entries_within_budget(&big[..1]), None);
        let first_too_big = vec![chunk(1, 2 << 20), chunk(2, 10)];
        assert_eq!(entries_within_budget(&first_too_big), Some(1));
    }
}
