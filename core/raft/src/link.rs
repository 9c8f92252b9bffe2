//! `ServerLink`: how an agent reaches the servers. On a server it holds the local [`Server`]
//! (writes go through its Raft, forwarded to the leader); every agent also knows the servers
//! gossip reported and calls them over the RPC port with typed requests, trying each known
//! server once in random order.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use legate_acl::resolved::Resolved;
use legate_state::kv::KvOp;
use rand::seq::SliceRandom;

use crate::command::{Command, CommandResponse};
use crate::endpoints::EndpointError;
use crate::rpc::{HttpCall, HttpReply, Pool, Request, Response, RpcError};
use crate::Server;

/// Why a call to the servers failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No server is known (Consul's text).
    #[error("No known Consul servers")]
    NoServers,
    /// A client agent's calls exceed `limits.rpc_rate` (Consul's text; HTTP 429).
    #[error("RPC rate limit exceeded")]
    RateLimited,
    /// No leader to send a leader's call to.
    #[error("No cluster leader")]
    NoLeader,
    /// The call did not reach a server or its answer did not come back.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The server answered the call with a failure.
    #[error("{0}")]
    Remote(String),
    /// The server refused a typed call (ACL) or could not take it.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The server answered another kind of call (a version mismatch).
    #[error("unexpected response {0}")]
    Unexpected(String),
}

impl LinkError {
    pub(crate) fn unexpected(response: &Response) -> LinkError {
        LinkError::Unexpected(format!("{response:?}"))
    }
}

/// What [`ServerLink::each_server`] does after one server's outcome.
enum Next<T> {
    Done(T),
    /// Try the next server; this is the failure if none is left.
    Try(LinkError),
}

pub struct ServerLink {
    server: Option<Arc<Server>>,
    /// RPC addresses of the servers this agent knows (from gossip).
    known: RwLock<Vec<String>>,
    /// Connections to servers (one multiplexed connection each).
    pool: Pool,
    /// A client agent's budget of calls to servers (`limits.rpc_rate`, `rpc_max_burst`);
    /// None: unlimited. Servers' own calls are never limited, as in Consul.
    limiter: RwLock<Option<Arc<governor::DefaultDirectRateLimiter>>>,
}

impl ServerLink {
    /// `tls`: how connections to servers are made (`tls.internal_rpc`).
    pub fn new(server: Option<Arc<Server>>, tls: crate::rpc::SharedTls) -> ServerLink {
        ServerLink { server, known: RwLock::default(), pool: Pool::new(tls), limiter: RwLock::default() }
    }

    /// Sets the client agent's RPC rate: `rate` calls per second with bursts of `burst` (None:
    /// unlimited). A changed limit starts with a full bucket.
    pub fn set_rate_limit(&self, rate: Option<f64>, burst: u32) {
        let limiter = rate.filter(|r| *r > 0.0).and_then(|r| {
            let quota = governor::Quota::with_period(Duration::try_from_secs_f64(1.0 / r).ok()?)?;
            let quota = quota.allow_burst(std::num::NonZeroU32::new(burst.max(1))?);
            Some(Arc::new(governor::RateLimiter::direct(quota)))
        });
        *self.limiter.write().unwrap_or_else(|p| p.into_inner()) = limiter;
    }

    /// Takes one call from the budget; false when it is spent. Only the calls users make
    /// through this agent count (`limited`): the agent's own ACL resolution and anti-entropy
    /// do not, so a spent budget cannot pass for servers being down (the ACL down policy).
    fn within_rate(&self, limited: bool) -> bool {
        if self.server.is_some() || !limited {
            return true;
        }
        let limiter = self.limiter.read().unwrap_or_else(|p| p.into_inner()).clone();
        limiter.is_none_or(|l| l.check().is_ok())
    }

    /// The Raft server of this agent, on server agents.
    pub fn server(&self) -> Option<&Arc<Server>> {
        self.server.as_ref()
    }

    /// Replaces the known servers (gossip feeds this).
    pub fn set_known_servers(&self, servers: Vec<String>) {
        *self.known.write().unwrap_or_else(|p| p.into_inner()) = servers;
    }

    pub fn known_servers(&self) -> Vec<String> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `request()` to the known servers in random order, each once, until `answer`
    /// says it is done with one's outcome; the last failure when none is left.
    async fn each_server<T>(
        &self,
        request: impl Fn() -> Request,
        deadline: Duration,
        limited: bool,
        answer: impl Fn(Result<Response, RpcError>) -> Next<T>,
    ) -> Result<T, LinkError> {
        if !self.within_rate(limited) {
            legate_telemetry::incr("client.rpc.exceeded");
            return Err(LinkError::RateLimited);
        }
        legate_telemetry::incr("client.rpc");
        self.each_of(None, self.known_servers(), request, deadline, answer).await
    }

    /// [`ServerLink::each_server`] over the given servers (of `datacenter`, None: ours).
    async fn each_of<T>(
        &self,
        datacenter: Option<&str>,
        mut servers: Vec<String>,
        request: impl Fn() -> Request,
        deadline: Duration,
        answer: impl Fn(Result<Response, RpcError>) -> Next<T>,
    ) -> Result<T, LinkError> {
        servers.shuffle(&mut rand::thread_rng());
        let mut last = LinkError::NoServers;
        for addr in servers {
            let peer = self.pool.get_in(&addr, datacenter).await;
            match answer(peer.call(request(), deadline).await) {
                Next::Done(v) => return Ok(v),
                Next::Try(why) => last = why,
            }
        }
        legate_telemetry::incr("client.rpc.failed");
        Err(last)
    }

    /// A call any server may answer: the next one is tried after any failure.
    async fn call_any<T>(
        &self,
        request: impl Fn() -> Request,
        deadline: Duration,
        limited: bool,
        accept: impl Fn(Response) -> Result<T, LinkError>,
    ) -> Result<T, LinkError> {
        self.each_server(request, deadline, limited, |outcome| {
            match outcome.map_err(LinkError::from).and_then(&accept) {
                Ok(v) => Next::Done(v),
                Err(why) => Next::Try(why),
            }
        })
        .await
    }

    /// An HTTP API call answered by a server's handlers (client agents' reads and blocking
    /// queries); `deadline` covers a blocking query's wait.
    pub async fn forward_http(&self, call: HttpCall, deadline: Duration) -> Result<HttpReply, LinkError> {
        self.call_any(
            || Request::Http(call.clone()),
            deadline,
            true,
            |resp| match resp {
                Response::Http(r) => r.map_err(LinkError::Remote),
                other => Err(LinkError::unexpected(&other)),
            },
        )
        .await
    }

    /// An HTTP API call answered by one of `servers` of `datacenter` (`?dc=`).
    pub async fn forward_http_to(
        &self,
        datacenter: &str,
        servers: Vec<String>,
        call: HttpCall,
        deadline: Duration,
    ) -> Result<HttpReply, LinkError> {
        self.each_of(
            Some(datacenter),
            servers,
            || Request::Http(call.clone()),
            deadline,
            |outcome| match outcome.map_err(LinkError::from).and_then(|resp| match resp {
                Response::Http(r) => r.map_err(LinkError::Remote),
                other => Err(LinkError::unexpected(&other)),
            }) {
                Ok(v) => Next::Done(v),
                Err(why) => Next::Try(why),
            },
        )
        .await
    }

    /// A token's flattened policies from a server of another datacenter (a secondary asking the
    /// primary about a token it does not replicate).
    pub async fn acl_resolve_in(
        &self,
        datacenter: &str,
        servers: Vec<String>,
        secret: &str,
        deadline: Duration,
    ) -> Result<Option<Resolved>, LinkError> {
        self.each_of(
            Some(datacenter),
            servers,
            || Request::AclResolve { secret: secret.to_string() },
            deadline,
            |outcome| match outcome.map_err(LinkError::from).and_then(|resp| match resp {
                Response::AclResolve(r) => r.map_err(LinkError::Remote),
                other => Err(LinkError::unexpected(&other)),
            }) {
                Ok(v) => Next::Done(v),
                Err(why) => Next::Try(why),
            },
        )
        .await
    }

    /// A token's flattened policies from a server's store (`Ok(None)`: no such token).
    pub async fn acl_resolve(&self, secret: &str, deadline: Duration) -> Result<Option<Resolved>, LinkError> {
        self.call_any(
            || Request::AclResolve { secret: secret.to_string() },
            deadline,
            false,
            |resp| match resp {
                Response::AclResolve(r) => r.map_err(LinkError::Remote),
                other => Err(LinkError::unexpected(&other)),
            },
        )
        .await
    }

    /// The plugin registry as `token` may read it, once its index passes `index` (or after
    /// `wait`): the index and the versions as JSON. The agent's own call: not rate limited.
    pub async fn plugin_list(
        &self,
        token: Option<String>,
        index: u64,
        wait: Duration,
    ) -> Result<(u64, String), LinkError> {
        let wait_ms = wait.as_millis().min(u128::from(u64::MAX)) as u64;
        self.call_any(
            || Request::PluginList { token: token.clone(), index, wait_ms },
            wait + Duration::from_secs(5),
            false,
            |resp| match resp {
                Response::PluginList(r) => r.map_err(LinkError::from),
                other => Err(LinkError::unexpected(&other)),
            },
        )
        .await
    }

    /// One chunk of a registry blob. The agent's own call: not rate limited.
    pub async fn plugin_chunk(
        &self,
        token: Option<String>,
        sha256: &str,
        chunk: u32,
        deadline: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        self.call_any(
            || Request::PluginChunk { token: token.clone(), sha256: sha256.to_string(), chunk },
            deadline,
            false,
            |resp| match resp {
                Response::PluginChunk(r) => r.map_err(LinkError::from),
                other => Err(LinkError::unexpected(&other)),
            },
        )
        .await
    }

    /// A client agent's catalog write, checked by the server against `token`.
    pub async fn catalog_write(
        &self,
        token: Option<String>,
        cmd: Command,
        deadline: Duration,
    ) -> Result<CommandResponse, LinkError> {
        self.checked_write(|| Request::CatalogWrite { token: token.clone(), cmd: cmd.clone() }, deadline, false).await
    }

    /// A KV write through a client agent, checked by the server against `token`.
    pub async fn kv_write(
        &self,
        token: Option<String>,
        op: KvOp,
        deadline: Duration,
    ) -> Result<CommandResponse, LinkError> {
        self.checked_write(|| Request::KvWrite { token: token.clone(), op: op.clone() }, deadline, true).await
    }

    /// A write the server checks against a token. Only a server that could not be reached is
    /// skipped for the next one: once a server has the write, a timeout or a lost connection
    /// may hide a commit, and sending it again could apply it twice (a CAS would then answer
    /// `false` for a write that happened), so that is reported, not retried.
    async fn checked_write(
        &self,
        request: impl Fn() -> Request,
        deadline: Duration,
        limited: bool,
    ) -> Result<CommandResponse, LinkError> {
        self.each_server(request, deadline, limited, |outcome| match outcome {
            Err(e @ RpcError::Connect(..)) => Next::Try(e.into()),
            Err(e) => Next::Done(Err(e.into())),
            Ok(Response::CatalogWrite(r) | Response::KvWrite(r)) => Next::Done(r.map_err(LinkError::from)),
            Ok(other) => Next::Done(Err(LinkError::unexpected(&other))),
        })
        .await?
    }
}
