//! The server role: Raft (openraft) over the state store, the server RPC port (8300), and
//! writes forwarded to the leader. `Server::apply` is the one way a write enters the cluster.

pub mod command;
pub mod disk;
pub mod endpoints;
pub mod error;
pub mod leader;
pub mod link;
mod metrics;
pub mod raft;
pub mod rpc;
mod transfer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use command::{Command, CommandResponse};
pub use error::ServerError;
use legate_state::Store;
use raft::log_store::{LogStats, LogStore};
use raft::network::Network;
use raft::state_machine::StateMachine;
use raft::{NodeId, Raft};
use rpc::{ApplyError, Pool, Request, Response};

/// What the server needs from the agent's config.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub node_id: String,
    pub bind: SocketAddr,
    /// The IP other servers reach this one at (the port is the bound one).
    pub advertise_ip: std::net::IpAddr,
    /// None: everything in memory (`-dev` without a data dir).
    pub data_dir: Option<std::path::PathBuf>,
    /// Elect itself at once if the cluster has no configuration yet (`-bootstrap`, `-dev`,
    /// `-bootstrap-expect=1`).
    pub bootstrap: bool,
    pub raft_multiplier: u32,
    pub snapshot_threshold: u64,
    pub trailing_logs: u64,
    /// How long a write waits for a leader (Consul's rpc_hold_timeout).
    pub hold_timeout: Duration,
    /// How long KV tombstones live before the leader reaps them.
    pub tombstone_ttl: Duration,
    /// TLS of the RPC port and of connections to other servers (replaced on reload).
    pub tls: rpc::SharedTls,
    /// `limits.rpc_handshake_timeout`.
    pub handshake_timeout: Duration,
    /// `limits.rpc_max_conns_per_client`.
    pub max_conns_per_client: u32,
    /// `limits.data_dir_min_free`: below it the leader refuses writes.
    pub data_dir_min_free: u64,
}

pub struct Server {
    pub raft: Raft,
    pub store: Store,
    pub id: NodeId,
    /// This server's advertised RPC address, `ip:port`.
    pub rpc_addr: String,
    pool: Arc<Pool>,
    pub log_stats: Arc<LogStats>,
    hold_timeout: Duration,
    shutdown: CancellationToken,
    /// The agent layer's answers to typed calls (set once the HTTP layer exists).
    pub endpoints: endpoints::EndpointsCell,
    /// ACLs on: raw `Apply` writes are refused unless they come from a Raft member.
    pub acl_enforced: Arc<std::sync::atomic::AtomicBool>,
    /// `limits.rpc_max_conns_per_client`, read by the RPC port at each new connection.
    pub rpc_max_conns: Arc<std::sync::atomic::AtomicU32>,
    /// `limits.rpc_handshake_timeout` in milliseconds, read at each new connection.
    pub rpc_handshake_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The data dir's free space (`limits.data_dir_min_free`, reloadable).
    pub disk: Arc<disk::DiskGuard>,
    batcher: Batcher,
    /// When each peer last answered this node's AppendEntries (autopilot's LastContact).
    pub contacts: Arc<raft::network::Contacts>,
    /// The leader lease: see [`Server::is_leader`].
    lease: Duration,
    /// When this server last heard from a leader (followers).
    pub leader_contact: Arc<raft::network::LeaderContact>,
    /// Session TTL deadlines, kept by the leader (rebuilt when it becomes leader).
    session_deadlines: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    tombstone_ttl: Duration,
    /// The log's last index when this server started, and whether the state store has applied
    /// that far since: see [`Server::caught_up`].
    startup_log: u64,
    caught_up: std::sync::atomic::AtomicBool,
}

impl Server {
    pub async fn start(
        opts: ServerOptions,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Server>, ServerError> {
        let listener = legate_types::net::bind_tcp(opts.bind)
            .await
            .map_err(|source| ServerError::Bind { addr: opts.bind, source })?;
        let port = listener.local_addr().map_err(|source| ServerError::Bind { addr: opts.bind, source })?.port();
        let rpc_addr = SocketAddr::new(opts.advertise_ip, port).to_string();

        // Opening files (and waiting for a previous in-process agent to release them) blocks:
        // off the async workers.
        let data_dir = opts.data_dir.clone();
        let (log, store, sm) = tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
            let (log, store, snapshot_path) = match &data_dir {
                Some(dir) => {
                    let raft_dir = dir.join("raft");
                    legate_types::fs::create_private_dir(&raft_dir).map_err(ServerError::io(&raft_dir))?;
                    let stores = (
                        LogStore::open(&raft_dir)?,
                        raft::state_machine::open_store(&raft_dir.join("state.db"))?,
                        Some(raft_dir.join("snapshot.bin")),
                    );
                    // The store holds every ACL secret (the log's files are made the owner's only).
                    let p = raft_dir.join("state.db");
                    legate_types::fs::make_private(&p).map_err(ServerError::io(&p))?;
                    stores
                }
                None => (LogStore::in_memory()?, Store::in_memory()?, None),
            };
            let sm = StateMachine::new(store.clone(), snapshot_path)?;
            Ok((log, store, sm))
        })
        .await??;
        let log_stats = log.stats.clone();
        let log_closed = log.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let m = u64::from(opts.raft_multiplier.max(1));
        let config = openraft::Config {
            cluster_name: "legate".into(),
            heartbeat_interval: 50 * m,
            // openraft 0.9 lets a follower of a known leader stand for election only after
            // election_timeout_max (its "leader lease") plus its random timeout in [min, max):
            // these give 180-240 ms x raft_multiplier (0.9-1.2 s at the default 5, as Consul's
            // heartbeat timeout of 1-2 s), where 150-300 gave 450-600 ms x raft_multiplier and a
            // leader SIGKILL stopped writes for 2.7 s (scripts/bench-failover.py). It stays above
            // the lease `is_leader` gives a leader (100 ms x raft_multiplier).
            election_timeout_min: 60 * m,
            election_timeout_max: 120 * m,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: opts.trailing_logs,
            // Snapshots carry the plugin registry's blobs: give each segment time to travel
            // (openraft's default is 200 ms per 3 MiB segment).
            install_snapshot_timeout: 1000 * m,
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(ServerError::raft)?);
        let pool = Arc::new(Pool::from_source(opts.advertise_ip, opts.tls.clone()));
        let id = raft::raft_id(&opts.node_id);
        let contacts: Arc<raft::network::Contacts> = Arc::default();
        let network = Network { pool: pool.clone(), contacts: contacts.clone() };
        let raft = Raft::new(id, config, network, log, sm).await.map_err(ServerError::raft)?;
        let startup_log = raft.metrics().borrow().last_log_index.unwrap_or(0);

        let endpoints: endpoints::EndpointsCell = Arc::default();
        let acl_enforced: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let rpc_max_conns = Arc::new(std::sync::atomic::AtomicU32::new(opts.max_conns_per_client));
        let rpc_handshake_ms = Arc::new(std::sync::atomic::AtomicU64::new(
            opts.handshake_timeout.as_millis().min(u64::MAX as u128) as u64,
        ));
        let disk = disk::DiskGuard::new(opts.data_dir.as_ref().map(|d| d.join("raft")), opts.data_dir_min_free);
        legate_types::tasks::spawn(tracker, "raft-disk", disk::watch(disk.clone(), shutdown.child_token()));
        let batcher = Batcher::start(raft.clone(), disk.clone(), tracker, shutdown.child_token());
        let leader_contact: Arc<raft::network::LeaderContact> = Arc::default();
        legate_types::tasks::spawn(
            tracker,
            "raft-metrics",
            metrics::observe(raft.clone(), id, contacts.clone(), log_stats.clone(), shutdown.child_token()),
        );
        legate_types::tasks::spawn(
            tracker,
            "rpc",
            rpc::serve(
                listener,
                raft.clone(),
                store.clone(),
                batcher.clone(),
                endpoints.clone(),
                acl_enforced.clone(),
                rpc::PortOptions {
                    tls: opts.tls.clone(),
                    handshake_timeout_ms: rpc_handshake_ms.clone(),
                    max_conns_per_client: rpc_max_conns.clone(),
                    leader_contact: leader_contact.clone(),
                },
                shutdown.child_token(),
            ),
        );
        {
            let raft = raft.clone();
            let shutdown = shutdown.clone();
            legate_types::tasks::spawn(tracker, "raft-shutdown", async move {
                shutdown.cancelled().await;
                let _ = raft.shutdown().await;
                drop(raft);
                // Wait (bounded) for the log to close, so the data dir can be reopened.
                if let Some(closed) = log_closed {
                    let _ = tokio::time::timeout(Duration::from_secs(3), closed).await;
                }
            });
        }

        if opts.bootstrap && !raft.is_initialized().await.map_err(ServerError::raft)? {
            let mut members = BTreeMap::new();
            members.insert(id, BasicNode { addr: rpc_addr.clone() });
            raft.initialize(members).await.map_err(|e| ServerError::Raft(format!("bootstrap: {e}")))?;
            tracing::info!(id, addr = %rpc_addr, "bootstrapped a new Raft cluster");
        }
        let server = Arc::new(Server {
            raft,
            store,
            id,
            rpc_addr,
            pool,
            log_stats,
            hold_timeout: opts.hold_timeout,
            shutdown: shutdown.clone(),
            endpoints,
            acl_enforced,
            rpc_max_conns,
            rpc_handshake_ms,
            disk,
            batcher,
            contacts,
            lease: Duration::from_millis(100 * m),
            leader_contact,
            session_deadlines: std::sync::Mutex::new(std::collections::HashMap::new()),
            tombstone_ttl: opts.tombstone_ttl,
            startup_log,
            caught_up: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(server)
    }

    /// Waits (up to the hold timeout) until the state store has applied the log as it was when
    /// this server started. Most applies are not fsynced and the committed index is written
    /// lazily, so after a crash the store is behind its own log until a leader commits it
    /// again: a default-consistency read in that window would miss acknowledged writes
    /// (Consul's leaders likewise serve consistent reads only after their barrier).
    pub async fn caught_up(&self) -> Result<(), ServerError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.caught_up.load(Relaxed) {
            return Ok(());
        }
        let applied = |m: &openraft::RaftMetrics<NodeId, BasicNode>| m.last_applied.map_or(0, |l| l.index);
        if applied(&self.raft.metrics().borrow()) < self.startup_log {
            self.raft
                .wait(Some(self.hold_timeout))
                .applied_index_at_least(Some(self.startup_log), "the state store caught up with the log")
                .await
                .map_err(|_| ServerError::NoLeader)?;
        }
        self.caught_up.store(true, Relaxed);
        Ok(())
    }

    /// Waits until openraft's core stops on its own (a storage error such as a full disk is fatal
    /// to it) and returns why; never returns while the core runs or once shutdown has begun.
    pub async fn core_stopped(&self) -> String {
        let mut rx = self.raft.metrics();
        loop {
            if let Err(fatal) = &rx.borrow_and_update().running_state {
                if !self.shutdown.is_cancelled() {
                    return fatal.to_string();
                }
            }
            if rx.changed().await.is_err() {
                if self.shutdown.is_cancelled() {
                    std::future::pending::<()>().await;
                }
                return "the Raft core exited".into();
            }
        }
    }

    /// The leader's RPC address, if there is one.
    pub fn leader(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        if leader == self.id && !self.lease_held() {
            return None;
        }
        m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    /// Whether this server leads and may act as the leader: Raft made it leader and a quorum of
    /// the voters answered it within the leader lease (100 ms x raft_multiplier, two heartbeat
    /// intervals, below the 180 ms x raft_multiplier a follower waits at least before it stands for
    /// election). An old leader cut off from the others stops answering as one within the
    /// lease (default-consistency reads, session renewals, leader-only calls get "No cluster
    /// leader" or wait for one), as Consul's leader steps down at its leader_lease_timeout;
    /// openraft 0.9 itself keeps it leader until it hears of a newer term.
    pub fn is_leader(&self) -> bool {
        self.holds_raft_leadership() && self.lease_held()
    }

    /// Raft's own view: this server is the leader of its term (lease or not). Leader duties
    /// follow it, so a lease that lapses for a moment under load does not restart them.
    pub fn holds_raft_leadership(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    fn lease_held(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        // Read in place: openraft's `voter_ids` collects them first, once per request here.
        majority_of_every_config(m.membership_config.membership().get_joint_config(), |v| {
            v == self.id || self.contacts.since(v).is_some_and(|d| d < self.lease)
        })
    }

    /// RPC addresses of the voters.
    pub fn peers(&self) -> Vec<String> {
        voters(&self.raft)
    }

    /// The voters another server at `addr` knows (its Raft configuration's; none before it has
    /// one), asked over the RPC port.
    pub async fn peers_of(&self, addr: &str) -> Result<Vec<String>, ServerError> {
        match self.pool.get(addr).await.call(Request::RaftPeers, Duration::from_secs(5)).await? {
            Response::RaftPeers(p) => Ok(p),
            other => Err(ServerError::Raft(format!("{addr} answered {other:?} to a peers query"))),
        }
    }

    /// Replicates a command and returns the state machine's answer: on the leader directly,
    /// elsewhere forwarded to the leader; while there is none, retried up to the hold timeout.
    ///
    /// Only what certainly did not apply is retried: a refusal by a server that is not the
    /// leader (openraft answers ForwardToLeader before appending, or once the entry is truncated)
    /// and a call that never reached the leader (connection refused). A call sent and left
    /// unanswered (a paused leader, a connection closed) may have been appended and may still
    /// commit: retrying it elsewhere could apply the command twice (found by the pause/kill
    /// linearizability run), so its error goes back to the caller, whose outcome is unknown, as
    /// Consul retries forwarded writes only on "No cluster leader".
    pub async fn apply(&self, cmd: Command) -> Result<CommandResponse, ApplyError> {
        let _timer = legate_telemetry::Timer::start(cmd.metric_name(), Vec::new());
        let deadline = Instant::now() + self.hold_timeout;
        loop {
            let result = match self.leader() {
                Some(addr) if addr != self.rpc_addr => {
                    let peer = self.pool.get(&addr).await;
                    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
                    match forwarded(peer.call(Request::Apply(cmd.clone()), left).await) {
                        Forwarded::Answer(r) => r,
                        Forwarded::Unknown(e) => return Err(e),
                    }
                }
                _ => self.batcher.apply(cmd.clone()).await,
            };
            match result {
                Err(_) if self.shutdown.is_cancelled() => {
                    return Err(ApplyError::Other("agent is shutting down".into()));
                }
                Err(ApplyError::NotLeader(_)) if Instant::now() < deadline => {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
                Err(ApplyError::NotLeader(_)) => return Err(ApplyError::Other("No cluster leader".into())),
                other => return other,
            }
        }
    }

    /// A linearizable read point: confirms leadership with a quorum and waits until the
    /// state machine has applied everything committed before the read.
    pub async fn ensure_consistent(&self) -> Result<(), ServerError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(_))) => {
                Err(ServerError::NoLeader)
            }
            Err(e) => Err(ServerError::raft(e)),
        }
    }

    /// Adds a server as a voter (leader only): first as a learner that catches up, then into
    /// the voter set.
    pub async fn add_voter(&self, id: NodeId, addr: String) -> Result<(), ServerError> {
        // Reach it first (TLS included: a certificate that does not name this datacenter's
        // servers is refused here), so an unreachable server never enters the configuration.
        match self.pool.get(&addr).await.call(Request::Ping, Duration::from_secs(5)).await? {
            Response::Ping(true) => {}
            _ => return Err(ServerError::Raft(format!("{addr} does not take server calls from this server"))),
        }
        self.raft.add_learner(id, BasicNode { addr }, true).await.map_err(ServerError::raft)?;
        let mut voters: std::collections::BTreeSet<NodeId> =
            self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        voters.insert(id);
        self.raft.change_membership(voters, false).await.map_err(ServerError::raft)?;
        Ok(())
    }

    /// `X-Consul-KnownLeader` and `X-Consul-LastContact` (ms).
    pub fn leader_contact(&self) -> (bool, u64) {
        let leader = self.raft.metrics().borrow().current_leader;
        let known = leader.is_some();
        let last = if leader == Some(self.id) {
            0
        } else {
            self.leader_contact.since().map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        };
        (known, last)
    }

    /// Starts the leader duties (the built-in ones and `extra`): they run whenever this server
    /// is the leader ([`leader::run`]).
    pub fn run_leadership(
        self: &Arc<Self>,
        extra: Vec<leader::Duty>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) {
        let mut duties = leader::builtin(self.tombstone_ttl);
        duties.extend(extra);
        legate_types::tasks::spawn(tracker, "leadership", leader::run(self.clone(), duties, shutdown));
    }

    /// Resets a session's TTL timer (leader): it expires after twice its TTL, Consul's grace.
    pub fn renew_session(&self, id: &str, ttl: Duration) {
        self.session_deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), Instant::now() + ttl * 2);
    }

    /// Sends an HTTP call to the leader over the RPC port (a follower's reads and session
    /// renewals); `wait` is how long the call may block there (a blocking query's wait).
    pub async fn forward_to_leader(
        &self,
        call: rpc::HttpCall,
        wait: Duration,
    ) -> Result<rpc::HttpReply, link::LinkError> {
        // As a write, a forwarded call waits for a leader up to the hold timeout (an election).
        let deadline = Instant::now() + self.hold_timeout;
        let leader = loop {
            match self.leader() {
                Some(l) => break l,
                None if Instant::now() < deadline && !self.shutdown.is_cancelled() => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => return Err(link::LinkError::NoLeader),
            }
        };
        let peer = self.pool.get(&leader).await;
        match peer.call(Request::Http(call), wait + wait / 16 + self.hold_timeout).await? {
            Response::Http(r) => r.map_err(link::LinkError::Remote),
            other => Err(link::LinkError::unexpected(&other)),
        }
    }

    pub fn data_dir_store_path(dir: &Path) -> std::path::PathBuf {
        dir.join("raft")
    }
}

/// What a write forwarded to the leader came to.
enum Forwarded {
    /// The leader's answer, or a call that never left (connection refused: as good as a
    /// refusal, `NotLeader`, which is retried).
    Answer(Result<CommandResponse, ApplyError>),
    /// Sent and not answered (timed out, connection closed): it may have been appended and may
    /// still commit, so it must not be retried.
    Unknown(ApplyError),
}

/// The RPC addresses of the voters in `raft`'s configuration.
fn voters(raft: &Raft) -> Vec<String> {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    membership.voter_ids().filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone())).collect()
}

fn forwarded(reply: Result<Response, rpc::RpcError>) -> Forwarded {
    match reply {
        Ok(Response::Apply(r)) => Forwarded::Answer(r),
        Ok(other) => Forwarded::Unknown(ApplyError::Other(format!("unexpected response {other:?}"))),
        Err(rpc::RpcError::Connect(..)) => Forwarded::Answer(Err(ApplyError::NotLeader(None))),
        Err(e) => Forwarded::Unknown(ApplyError::Other(e.to_string())),
    }
}

/// Applies on this node if it is the leader.
type Pending = (Command, tokio::sync::oneshot::Sender<Result<CommandResponse, ApplyError>>);

/// Group commit above Raft: writes that arrive while the previous entry is being replicated
/// and fsynced are gathered into one `Command::Batch` entry, so N concurrent writers cost one
/// log append and one fsync, not N. One writer alone goes through unchanged.
#[derive(Clone)]
pub struct Batcher {
    tx: tokio::sync::mpsc::Sender<Pending>,
    disk: Arc<disk::DiskGuard>,
}

/// Most commands in one entry.
const MAX_BATCH: usize = 512;
/// Most bulk bytes (plugin chunks) gathered into one entry: a chunk that would pass it waits
/// for the next entry (one alone always goes), so concurrent pushes cannot make one huge entry.
const MAX_BATCH_BYTES: usize = 1 << 20;

impl Batcher {
    pub fn start(
        raft: Raft,
        disk: Arc<disk::DiskGuard>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Batcher {
        // Bounded: callers wait (back-pressure) when writes arrive faster than they commit.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(4 * MAX_BATCH);
        legate_types::tasks::spawn(tracker, "raft-batcher", async move {
            // A command taken from the queue that did not fit the previous entry's byte budget.
            let mut carried: Option<Pending> = None;
            loop {
                let first = match carried.take() {
                    Some(p) => p,
                    None => tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        p = rx.recv() => match p { Some(p) => p, None => return },
                    },
                };
                let mut bytes = first.0.bulk_bytes();
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(p) => {
                            let more = p.0.bulk_bytes();
                            if more > 0 && bytes + more > MAX_BATCH_BYTES {
                                carried = Some(p);
                                break;
                            }
                            bytes += more;
                            batch.push(p);
                        }
                        Err(_) => break,
                    }
                }
                legate_telemetry::sample("raft.batch.size", Vec::new(), batch.len() as f64);
                if batch.len() == 1 {
                    let (cmd, reply) = batch.pop().expect("one");
                    let _ = reply.send(apply_raw(&raft, cmd).await);
                    continue;
                }
                let (cmds, replies): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
                match apply_raw(&raft, Command::Batch(cmds)).await {
                    Ok(CommandResponse::Batch(results)) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Ok(other) => {
                        for reply in replies {
                            let _ = reply.send(Err(ApplyError::Other(format!("unexpected batch result {other:?}"))));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Batcher { tx, disk }
    }

    pub async fn apply(&self, cmd: Command) -> Result<CommandResponse, ApplyError> {
        legate_telemetry::incr("raft.apply");
        if let Some(why) = self.disk.refusal() {
            return Err(ApplyError::Refused(why));
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send((cmd, reply)).await.map_err(|_| ApplyError::Other("agent is shutting down".into()))?;
        rx.await.map_err(|_| ApplyError::Other("agent is shutting down".into()))?
    }
}

async fn apply_raw(raft: &Raft, cmd: Command) -> Result<CommandResponse, ApplyError> {
    let _timer = legate_telemetry::Timer::start("raft.commitTime", Vec::new());
    match raft.client_write(cmd).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ApplyError::NotLeader(f.leader_node.map(|n| n.addr)))
        }
        Err(e) => Err(ApplyError::Other(e.to_string())),
    }
}

#[cfg(test)]
mod forward_tests {
    use super::*;

    /// Only a call that never left is retried; one sent and unanswered is the caller's unknown
    /// outcome (retrying it applied a write twice under a leader SIGKILL).
    #[test]
    fn only_unsent_forwarded_writes_are_retried() {
        let retried = |r| matches!(forwarded(r), Forwarded::Answer(Err(ApplyError::NotLeader(_))));
        assert!(retried(Err(rpc::RpcError::Connect("10.0.0.1:8300".into(), "refused".into()))));
        assert!(!retried(Err(rpc::RpcError::Closed("10.0.0.1:8300".into()))));
        assert!(!retried(Err(rpc::RpcError::Timeout("10.0.0.1:8300".into(), Duration::from_secs(7)))));
        assert!(!retried(Err(rpc::RpcError::Codec("bad frame".into()))));
        assert!(retried(Ok(Response::Apply(Err(ApplyError::NotLeader(None))))));
        assert!(matches!(forwarded(Ok(Response::Ping(true))), Forwarded::Unknown(_)));
    }
}

/// Whether `fresh` holds for a majority of every configuration (two while a membership change
/// is joint), the quorum a commit needs: the leader lease's test.
fn majority_of_every_config(configs: &[std::collections::BTreeSet<u64>], fresh: impl Fn(u64) -> bool) -> bool {
    configs.iter().all(|voters| voters.iter().filter(|v| fresh(**v)).count() * 2 > voters.len())
}

#[cfg(test)]
mod lease_tests {
    use super::majority_of_every_config;

    #[test]
    fn the_lease_needs_a_majority_of_each_joint_configuration() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<std::collections::BTreeSet<u64>>();
        let fresh = |ids: &'static [u64]| move |v: u64| ids.contains(&v);
        assert!(majority_of_every_config(&[set(&[1, 2, 3])], fresh(&[1, 2])));
        assert!(!majority_of_every_config(&[set(&[1, 2, 3])], fresh(&[1])));
        // Joint {1,2,3} + {1,4,5}: 1, 2 and 3 are three of the five voters, but only one of
        // the new configuration's three.
        let joint = [set(&[1, 2, 3]), set(&[1, 4, 5])];
        assert!(!majority_of_every_config(&joint, fresh(&[1, 2, 3])));
        assert!(majority_of_every_config(&joint, fresh(&[1, 2, 4])));
    }
}
