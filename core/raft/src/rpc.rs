//! The server RPC port (8300): one persistent, multiplexed TCP connection per peer carrying
//! typed, length-prefixed bincode frames. Each request has an id; responses come back tagged
//! with it, in any order, so slow calls (a snapshot) do not block fast ones (heartbeats). Every
//! call has a deadline. Raft messages and follower -> leader forwarding ride on it.
//!
//! TLS (`tls.internal_rpc`): a connection whose first byte is a TLS handshake record (0x16; a
//! plain frame starts with its length, which is never that large) is served over TLS;
//! `verify_incoming` refuses plaintext, and with `verify_server_hostname` too, server-only calls
//! (Raft, raw writes) need a certificate naming `server.<dc>.<domain>`. Outgoing connections use
//! TLS with `verify_outgoing`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use legate_acl::resolved::{resolve_in_store, Resolved};
use legate_state::Store;
use legate_tls::{Live, RpcTls};

use super::command::{Command, CommandResponse};
use super::endpoints::{EndpointError, EndpointsCell};
use super::raft::{NodeId, Raft, TypeConfig};

/// Largest frame accepted (a snapshot chunk or a large transaction).
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// Requests queued to one peer's writer before callers wait (bounded: back-pressure).
const PEER_QUEUE: usize = 1024;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The RPC port's TLS as the agent keeps it (replaced on reload).
pub type SharedTls = Arc<Live<RpcTls>>;

#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write forwarded from a follower (or a client agent) to the leader.
    Apply(Command),
    /// An HTTP API call a client agent forwards to a server (KV, catalog, health, status...),
    /// answered by the server's own HTTP handlers, blocking queries included.
    Http(HttpCall),
    /// A client agent resolving an ACL secret.
    AclResolve {
        secret: String,
    },
    /// A client agent's catalog write (anti-entropy), checked against its token.
    CatalogWrite {
        token: Option<String>,
        cmd: Command,
    },
    /// A KV write through a client agent, checked against the request's token.
    KvWrite {
        token: Option<String>,
        op: legate_state::kv::KvOp,
    },
    /// Whether this server takes server calls from the caller (before the leader adds it to
    /// Raft): answered `true` only on a connection allowed to make them.
    Ping,
    /// The leader hands leadership over (`operator raft transfer-leader`): stand for election
    /// until elected or `within` (ms) has passed.
    Elect {
        within_ms: u64,
    },
    /// A client agent's view of the plugin registry: answered once the registry's index passes
    /// `index` or after `wait_ms`, with the versions `token` may read.
    PluginList {
        token: Option<String>,
        index: u64,
        wait_ms: u64,
    },
    /// One chunk of a registry blob, for a token that may read a version of it.
    PluginChunk {
        token: Option<String>,
        sha256: String,
        chunk: u32,
    },
    /// The voters of this server's Raft configuration (none until it has one): a server about
    /// to bootstrap asks the others first, as Consul's `Status.Peers` before its bootstrap.
    RaftPeers,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HttpCall {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub token: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Errors travel as text; the caller maps them to its own error type.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    Apply(Result<CommandResponse, ApplyError>),
    Http(Result<HttpReply, String>),
    AclResolve(Result<Option<Resolved>, String>),
    CatalogWrite(Result<CommandResponse, EndpointError>),
    KvWrite(Result<CommandResponse, EndpointError>),
    Ping(bool),
    /// Whether this server became the leader.
    Elect(Result<(), String>),
    /// The registry's index and its versions (JSON of `legate_api::plugin::RegistryView`).
    PluginList(Result<(u64, String), EndpointError>),
    /// A chunk's bytes.
    PluginChunk(Result<Vec<u8>, EndpointError>),
    /// The voters' RPC addresses.
    RaftPeers(Vec<String>),
}

impl Response {
    /// Whether the call failed (`rpc.request_error`): an error, or an HTTP answer of 500 or more.
    pub fn is_error(&self) -> bool {
        match self {
            Response::AppendEntries(r) => r.is_err(),
            Response::Vote(r) => r.is_err(),
            Response::InstallSnapshot(r) => r.is_err(),
            Response::Apply(r) => r.is_err(),
            Response::Http(r) => r.as_ref().map_or(true, |h| h.status >= 500),
            Response::AclResolve(r) => r.is_err(),
            Response::CatalogWrite(r) | Response::KvWrite(r) => r.is_err(),
            Response::Ping(_) => false,
            Response::Elect(r) => r.is_err(),
            Response::PluginList(r) => r.is_err(),
            Response::PluginChunk(r) => r.is_err(),
            Response::RaftPeers(_) => false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// This server is not the leader; the leader's RPC address if known.
    #[error("No cluster leader")]
    NotLeader(Option<String>),
    #[error("{0}")]
    Other(String),
    /// Refused by the leader for a reason retrying will not cure soon (a full disk): answered
    /// at once, not retried until the hold timeout.
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Frame<T> {
    id: u64,
    body: T,
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum RpcError {
    #[error("rpc error: connect {0}: {1}")]
    Connect(String, String),
    #[error("rpc error: connection to {0} closed")]
    Closed(String),
    #[error("rpc error: {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("rpc error: {0}")]
    Codec(String),
}

async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(w: &mut W, frame: &T) -> std::io::Result<()> {
    let bytes = bincode::serialize(frame).map_err(std::io::Error::other)?;
    w.write_u32(bytes.len() as u32).await?;
    w.write_all(&bytes).await
}

async fn read_frame<R: AsyncReadExt + Unpin, T: serde::de::DeserializeOwned>(r: &mut R) -> std::io::Result<T> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).await?;
    bincode::deserialize(&buf).map_err(std::io::Error::other)
}

/// Decodes one frame's bytes (after the length) as the RPC port does: for the fuzz targets and
/// the replay of their corpora.
pub fn decode_request(bytes: &[u8]) -> Result<Request, bincode::Error> {
    bincode::deserialize::<Frame<Request>>(bytes).map(|f| f.body)
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// One live connection: a writer task fed by a bounded queue, a reader task routing replies.
struct Conn {
    tx: mpsc::Sender<(Frame<Request>, oneshot::Sender<Response>)>,
    closed: CancellationToken,
    /// The TLS generation it was made under: a reload that changes the TLS replaces it.
    generation: u64,
}

/// A client for one peer; reconnects on the next call after a failure.
pub struct PeerClient {
    addr: String,
    /// The peer's datacenter when it is not ours (its certificate names `server.<dc>...`).
    datacenter: Option<String>,
    /// The local IP connections leave from (servers: their advertise IP, so peers can tell
    /// a server's connection by its source address).
    source: Option<std::net::IpAddr>,
    tls: SharedTls,
    /// The last TLS failure logged (each distinct one is logged once, not at every retry).
    tls_failure: std::sync::Mutex<Option<String>>,
    conn: Mutex<Option<Arc<Conn>>>,
    next_id: AtomicU64,
}

impl PeerClient {
    pub fn new(addr: String, tls: SharedTls) -> Self {
        PeerClient {
            addr,
            datacenter: None,
            source: None,
            tls,
            tls_failure: std::sync::Mutex::default(),
            conn: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// A TCP connection, then TLS over it when `verify_outgoing` is on.
    async fn open(&self) -> Result<Box<dyn Io>, RpcError> {
        let failed = |why: String| RpcError::Connect(self.addr.clone(), why);
        let stream = self.connect().await.map_err(|e| failed(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let tls = self.tls.get();
        let Some(config) = tls.client.clone() else { return Ok(Box::new(stream)) };
        let ip = stream.peer_addr().map_err(|e| failed(e.to_string()))?.ip();
        let handshake = tokio_rustls::TlsConnector::from(config)
            .connect(tls.connect_name(ip, self.datacenter.as_deref()), stream)
            .await;
        let mut last = self.tls_failure.lock().unwrap_or_else(|p| p.into_inner());
        match handshake {
            Ok(s) => {
                *last = None;
                Ok(Box::new(s))
            }
            Err(e) => {
                let why = legate_tls::tls_error(&e);
                if last.as_deref() != Some(why.as_str()) {
                    tracing::warn!(peer = %self.addr, "rpc: TLS handshake with {} failed: {why}", self.addr);
                    *last = Some(why.clone());
                }
                Err(failed(format!("tls: {why}")))
            }
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let Some(ip) = self.source else { return TcpStream::connect(&self.addr).await };
        let target: SocketAddr = match self.addr.parse() {
            Ok(a) => a,
            Err(_) => return TcpStream::connect(&self.addr).await,
        };
        let socket = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        if ip.is_ipv4() != target.is_ipv4() || socket.bind(SocketAddr::new(ip, 0)).is_err() {
            return TcpStream::connect(target).await;
        }
        socket.connect(target).await
    }

    async fn connection(&self, deadline: Duration) -> Result<Arc<Conn>, RpcError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.closed.is_cancelled() && c.generation == self.tls.generation() {
                return Ok(c.clone());
            }
            // Made under TLS settings a reload replaced: calls still waiting on it finish there.
            c.closed.cancel();
        }
        let generation = self.tls.generation();
        let stream = tokio::time::timeout(deadline, self.open())
            .await
            // A connection that could not be made within the deadline: nothing was sent.
            .map_err(|_| RpcError::Connect(self.addr.clone(), format!("i/o timeout after {deadline:?}")))??;
        let (r, w) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<(Frame<Request>, oneshot::Sender<Response>)>(PEER_QUEUE);
        let pending: Pending = Arc::default();
        let closed = CancellationToken::new();
        {
            let pending = pending.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut w = BufWriter::new(w);
                loop {
                    let item = tokio::select! {
                        biased;
                        _ = closed.cancelled() => break,
                        item = rx.recv() => item,
                    };
                    let Some((frame, reply)) = item else { break };
                    pending.lock().unwrap().insert(frame.id, reply);
                    if write_frame(&mut w, &frame).await.is_err() {
                        break;
                    }
                    // Batch frames already queued into one flush.
                    if rx.is_empty() && w.flush().await.is_err() {
                        break;
                    }
                }
                closed.cancel();
            });
        }
        {
            let pending = pending.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(r);
                loop {
                    let frame = tokio::select! {
                        biased;
                        _ = closed.cancelled() => break,
                        f = read_frame::<_, Frame<Response>>(&mut r) => f,
                    };
                    let Ok(frame) = frame else { break };
                    if let Some(reply) = pending.lock().unwrap().remove(&frame.id) {
                        let _ = reply.send(frame.body);
                    }
                }
                closed.cancel();
                // Dropping the senders fails every call still waiting.
                pending.lock().unwrap().clear();
            });
        }
        let conn = Arc::new(Conn { tx, closed, generation });
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Sends one request and waits for its response, at most `deadline` in all.
    pub async fn call(&self, req: Request, deadline: Duration) -> Result<Response, RpcError> {
        let fut = async {
            let conn = self.connection(deadline).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (reply_tx, reply_rx) = oneshot::channel();
            conn.tx.send((Frame { id, body: req }, reply_tx)).await.map_err(|_| RpcError::Closed(self.addr.clone()))?;
            reply_rx.await.map_err(|_| RpcError::Closed(self.addr.clone()))
        };
        tokio::time::timeout(deadline, fut).await.map_err(|_| RpcError::Timeout(self.addr.clone(), deadline))?
    }
}

/// Connections to peers by RPC address, shared by the Raft network and forwarding.
pub struct Pool {
    peers: Mutex<HashMap<String, Arc<PeerClient>>>,
    source: Option<std::net::IpAddr>,
    tls: SharedTls,
}

impl Pool {
    pub fn new(tls: SharedTls) -> Pool {
        Pool { peers: Mutex::default(), source: None, tls }
    }

    /// Connections leave from `ip` (a server's advertise address).
    pub fn from_source(ip: std::net::IpAddr, tls: SharedTls) -> Pool {
        Pool { peers: Mutex::default(), source: Some(ip), tls }
    }

    pub async fn get(&self, addr: &str) -> Arc<PeerClient> {
        self.get_in(addr, None).await
    }

    /// A client for a server of `datacenter` (None: ours).
    pub async fn get_in(&self, addr: &str, datacenter: Option<&str>) -> Arc<PeerClient> {
        let mut peers = self.peers.lock().await;
        let source = self.source;
        let key = match datacenter {
            Some(dc) => format!("{addr}@{dc}"),
            None => addr.to_string(),
        };
        peers
            .entry(key)
            .or_insert_with(|| {
                let mut p = PeerClient::new(addr.to_string(), self.tls.clone());
                p.source = source;
                p.datacenter = datacenter.map(str::to_string);
                Arc::new(p)
            })
            .clone()
    }
}

/// What the RPC port needs besides its listener.
pub struct PortOptions {
    pub tls: SharedTls,
    /// How long a new connection may take to say whether it is TLS and to finish the
    /// handshake (`limits.rpc_handshake_timeout`, in milliseconds; a reload changes it).
    pub handshake_timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Open connections one client IP may hold (`limits.rpc_max_conns_per_client`; 0: no
    /// limit); a reload changes it.
    pub max_conns_per_client: Arc<std::sync::atomic::AtomicU32>,
    /// Set when this server accepts an AppendEntries.
    pub leader_contact: Arc<crate::raft::network::LeaderContact>,
}

/// Serves the RPC port until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    store: Store,
    batcher: super::Batcher,
    endpoints: EndpointsCell,
    acl: Arc<AtomicBool>,
    port: PortOptions,
    shutdown: CancellationToken,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    let handlers = Handlers { raft, store, batcher, endpoints, leader_contact: port.leader_contact.clone() };
    let conns: Arc<legate_types::per_client::PerClient> = Arc::default();
    while let Some((stream, peer)) = legate_types::net::accept(&listener, &shutdown, "rpc").await {
        let max = port.max_conns_per_client.load(Ordering::Relaxed);
        let Some(slot) = conns.admit(peer.ip(), max) else {
            tracing::warn!(%peer, max, "rpc: refused a connection: limits.rpc_max_conns_per_client reached for this client");
            continue;
        };
        stream.set_nodelay(true).ok();
        let (tls, generation) = port.tls.get_with_generation();
        let timeout = Duration::from_millis(port.handshake_timeout_ms.load(Ordering::Relaxed));
        let (handlers, acl, live) = (handlers.clone(), acl.clone(), port.tls.clone());
        let shutdown = shutdown.child_token();
        tracker.spawn(async move {
            let _slot = slot;
            // A silent connection must not hold the shutdown for the handshake timeout.
            let admitted = tokio::select! {
                _ = shutdown.cancelled() => None,
                a = admit(stream, peer, &tls, timeout) => a,
            };
            let Some((io, is_server)) = admitted else { return };
            let admitted = Admitted { is_server, tls: live, generation };
            serve_conn(io, peer, handlers, acl, admitted, shutdown).await
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Sorts a new connection into TLS or plain as the settings allow, and finishes the TLS
/// handshake; also says whether the peer may make server-only calls. None: refused (logged
/// with the peer's address) or given up.
async fn admit(stream: TcpStream, peer: SocketAddr, tls: &RpcTls, timeout: Duration) -> Option<(Box<dyn Io>, bool)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        // Closed before a byte, or silent past the timeout.
        _ => return None,
    }
    if first[0] != TLS_HANDSHAKE {
        if tls.verify_incoming {
            tracing::warn!(%peer, "rpc: refused a plaintext connection: tls.internal_rpc.verify_incoming requires TLS");
            return None;
        }
        return Some((Box::new(stream), true));
    }
    let Some(config) = tls.server.clone() else {
        tracing::warn!(%peer, "rpc: refused a TLS connection: this agent has no certificate for the RPC port (tls.internal_rpc.cert_file)");
        return None;
    };
    let accepted = tokio::time::timeout(timeout, tokio_rustls::TlsAcceptor::from(config).accept(stream)).await;
    let tls_stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, "rpc: TLS handshake failed: {}", legate_tls::tls_error(&e));
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "rpc: TLS handshake not finished within {timeout:?}");
            return None;
        }
    };
    let is_server = tls.peer_is_server(tls_stream.get_ref().1.peer_certificates());
    Some((Box::new(tls_stream), is_server))
}

/// What the RPC port answers with: Raft, the write batcher, the store and the agent's endpoints.
#[derive(Clone)]
struct Handlers {
    raft: Raft,
    store: Store,
    batcher: super::Batcher,
    endpoints: EndpointsCell,
    leader_contact: Arc<crate::raft::network::LeaderContact>,
}

/// Calls only servers make: Raft's and raw writes.
fn server_only(req: &Request) -> bool {
    matches!(
        req,
        Request::AppendEntries(_)
            | Request::Vote(_)
            | Request::InstallSnapshot(_)
            | Request::Apply(_)
            | Request::Ping
            | Request::Elect { .. }
            | Request::RaftPeers
    )
}

/// The answer to a server-only call from a peer that may not make it.
fn refused(req: &Request, why: String) -> Response {
    match req {
        Request::AppendEntries(_) => Response::AppendEntries(Err(why)),
        Request::Vote(_) => Response::Vote(Err(why)),
        Request::InstallSnapshot(_) => Response::InstallSnapshot(Err(why)),
        Request::Ping => Response::Ping(false),
        Request::Elect { .. } => Response::Elect(Err(why)),
        _ => Response::Apply(Err(ApplyError::Other(why))),
    }
}

/// What a connection was admitted under.
struct Admitted {
    /// The peer may make server calls.
    is_server: bool,
    /// The TLS settings and the generation the connection was admitted under: once a reload
    /// replaces them, the connection is closed at its next frame and the peer reconnects under
    /// the new ones (turning `verify_incoming` on must not leave plaintext connections open).
    tls: SharedTls,
    generation: u64,
}

async fn serve_conn(
    stream: Box<dyn Io>,
    peer: SocketAddr,
    handlers: Handlers,
    acl: Arc<AtomicBool>,
    admitted: Admitted,
    shutdown: CancellationToken,
) {
    let is_server = admitted.is_server;
    let (r, w) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame<Response>>(PEER_QUEUE);
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::new(w);
        while let Some(frame) = out_rx.recv().await {
            if write_frame(&mut w, &frame).await.is_err() {
                break;
            }
            if out_rx.is_empty() && w.flush().await.is_err() {
                break;
            }
        }
    });
    let mut r = BufReader::new(r);
    let mut warned = false;
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            f = read_frame::<_, Frame<Request>>(&mut r) => f,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, "rpc connection closed: {e}");
                }
                break;
            }
        };
        if admitted.tls.generation() != admitted.generation {
            tracing::debug!(%peer, "rpc: closing a connection admitted under TLS settings a reload replaced");
            break;
        }
        if !is_server && server_only(&frame.body) {
            if !warned {
                tracing::warn!(%peer, "rpc: refused a server call: the peer's certificate does not name this datacenter's servers");
                warned = true;
            }
            let body = refused(&frame.body, format!("Permission denied: {peer} is not a server of this datacenter"));
            let _ = out_tx.send(Frame { id: frame.id, body }).await;
            continue;
        }
        let handlers = handlers.clone();
        let out = out_tx.clone();
        let acl = acl.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let body = if acl && matches!(frame.body, Request::Apply(_)) && !from_member(&handlers.raft, peer) {
                // With ACLs on, agents write through the token-checked `CatalogWrite`; raw
                // writes come from servers only.
                Response::Apply(Err(ApplyError::Other(format!(
                    "Permission denied: {peer} is not a server of this cluster"
                ))))
            } else {
                handlers.handle(frame.body).await
            };
            let _ = out.send(Frame { id: frame.id, body }).await;
        });
    }
    drop(out_tx);
    let _ = writer.await;
}

impl Handlers {
    async fn handle(&self, req: Request) -> Response {
        let counted =
            !matches!(req, Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_) | Request::Ping);
        let response = self.answer(req).await;
        if counted {
            legate_telemetry::incr("rpc.request");
            if response.is_error() {
                legate_telemetry::incr("rpc.request_error");
            }
        }
        response
    }

    async fn answer(&self, req: Request) -> Response {
        let raft = &self.raft;
        match req {
            Request::AppendEntries(r) => {
                let answer = raft.append_entries(r).await;
                if matches!(answer, Ok(openraft::raft::AppendEntriesResponse::Success)) {
                    self.leader_contact.record();
                }
                Response::AppendEntries(answer.map_err(|e| e.to_string()))
            }
            Request::Vote(r) => Response::Vote(raft.vote(r).await.map_err(|e| e.to_string())),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(raft.install_snapshot(r).await.map_err(|e| e.to_string()))
            }
            Request::Apply(cmd) => Response::Apply(self.batcher.apply(cmd).await),
            Request::Ping => Response::Ping(true),
            Request::RaftPeers => Response::RaftPeers(crate::voters(raft)),
            Request::Elect { within_ms } => {
                Response::Elect(crate::transfer::stand_for_election(raft, Duration::from_millis(within_ms)).await)
            }
            Request::AclResolve { secret } => {
                let store = self.store.clone();
                let resolved = tokio::task::spawn_blocking(move || resolve_in_store(&store, &secret))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                Response::AclResolve(resolved)
            }
            Request::Http(call) => match self.endpoints.get() {
                Some(e) => Response::Http(Ok(e.http(call).await)),
                None => Response::Http(Err("server is starting".into())),
            },
            Request::CatalogWrite { token, cmd } => match self.endpoints.get() {
                Some(e) => Response::CatalogWrite(e.catalog_write(token, cmd).await),
                None => Response::CatalogWrite(Err(EndpointError::Unavailable("server is starting".into()))),
            },
            Request::KvWrite { token, op } => match self.endpoints.get() {
                Some(e) => Response::KvWrite(e.kv_write(token, op).await),
                None => Response::KvWrite(Err(EndpointError::Unavailable("server is starting".into()))),
            },
            Request::PluginList { token, index, wait_ms } => match self.endpoints.get() {
                Some(e) => Response::PluginList(e.plugin_list(token, index, Duration::from_millis(wait_ms)).await),
                None => Response::PluginList(Err(EndpointError::Unavailable("server is starting".into()))),
            },
            Request::PluginChunk { token, sha256, chunk } => match self.endpoints.get() {
                Some(e) => Response::PluginChunk(e.plugin_chunk(token, sha256, chunk).await),
                None => Response::PluginChunk(Err(EndpointError::Unavailable("server is starting".into()))),
            },
        }
    }
}

/// Whether a connection comes from a server in the Raft configuration (by IP).
fn from_member(raft: &Raft, peer: SocketAddr) -> bool {
    let metrics = raft.metrics().borrow().clone();
    let found = metrics
        .membership_config
        .membership()
        .nodes()
        .any(|(_, n)| n.addr.parse::<SocketAddr>().map(|a| a.ip() == peer.ip()).unwrap_or(false));
    found
}
