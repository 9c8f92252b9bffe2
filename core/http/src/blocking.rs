//! Blocking queries and consistency modes, for every endpoint backed by the state store:
//! parse `?index`, `?wait`, `?stale`, `?consistent`; subscribe to the table's watch *before*
//! reading; answer when the result's index passes `index`, or when `wait` (+ jitter up to
//! wait/16) runs out, or at shutdown; set `X-Consul-Index` (never 0), `X-Consul-KnownLeader`,
//! `X-Consul-LastContact`, `X-Consul-Effective-Consistency`. Queries woken by the same write
//! that ask the same thing read once, and serialize their answer once, between them
//! (`shared_reads.rs`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::shared_reads::{self, Shared};
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_config::duration::parse_go_duration;
use legate_raft::Server;
use legate_state::watch::Table;
use legate_state::StoreError;
use redb::ReadTransaction;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

impl Consistency {
    fn as_str(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct QueryOptions {
    pub index: u64,
    pub wait: Duration,
    pub consistency: Consistency,
}

/// Parses the blocking and consistency parameters with Consul's errors.
pub fn query_options(ctx: &Ctx, req: &Request) -> Result<QueryOptions, ApiError> {
    let config = ctx.agent.config();
    let stale = req.param("stale").is_some();
    let consistent = req.param("consistent").is_some();
    if stale && consistent {
        return Err(ApiError::BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.".into()));
    }
    let index = match req.param("index") {
        None | Some("") => 0,
        Some(v) => v.parse::<u64>().map_err(|_| ApiError::BadRequest("Invalid index".into()))?,
    };
    let max = config.max_query_time.0;
    let wait = match req.param("wait") {
        None | Some("") => config.default_query_time.0,
        Some(v) => parse_go_duration(v).map_err(|_| ApiError::BadRequest("Invalid wait time".into()))?,
    };
    let consistency = if stale {
        Consistency::Stale
    } else if consistent {
        Consistency::Consistent
    } else {
        Consistency::Default
    };
    Ok(QueryOptions { index, wait: wait.min(max), consistency })
}

/// The server, or Consul's error for an agent that knows none.
pub fn server(ctx: &Ctx) -> Result<&std::sync::Arc<Server>, ApiError> {
    ctx.agent.server().ok_or_else(|| ApiError::Internal("No known Consul servers".into()))
}

/// Runs `read` (given a read transaction of the state store; returning the result's index and
/// body) as a blocking query on `table`.
pub async fn run<T, F>(
    ctx: &Ctx,
    req: &Request,
    table: Table,
    read: F,
) -> Result<(u64, T, crate::response::Headers), ApiError>
where
    F: Fn(&ReadTransaction) -> Result<(u64, T), StoreError>,
    T: Clone + Send + Sync + 'static,
{
    let (index, outcome, headers) = wait(ctx, req, table, read).await?;
    let body = match outcome {
        Outcome::Own(body) => body,
        Outcome::Shared(shared) => shared.result.clone(),
    };
    Ok((index, body, headers))
}

/// Runs `read` as a blocking query on `table` and answers with `respond`'s response to its
/// result, the blocking headers added. Queries woken by the same write that ask the same thing
/// build and serialize that response once between them.
pub async fn answer<T, F, R>(
    ctx: &Ctx,
    req: &Request,
    table: Table,
    read: F,
    respond: R,
) -> Result<ApiResponse, ApiError>
where
    F: Fn(&ReadTransaction) -> Result<(u64, T), StoreError>,
    T: Clone + Send + Sync + 'static,
    R: FnOnce(T) -> Result<ApiResponse, ApiError>,
{
    let (_, outcome, headers) = wait(ctx, req, table, read).await?;
    Ok(with_headers(outcome.respond(req, respond)?, headers))
}

/// What a blocking query answers with: its own read, or one it shares with the queries asking
/// the same thing.
pub enum Outcome<T> {
    Own(T),
    Shared(Arc<Shared<T>>),
}

impl<T: Clone> Outcome<T> {
    pub fn result(&self) -> &T {
        match self {
            Outcome::Own(r) => r,
            Outcome::Shared(s) => &s.result,
        }
    }

    /// `respond`'s response to the result; for a shared one, built and serialized by the first
    /// query that answers with it, and sent as it is by the others.
    pub fn respond(
        self,
        req: &Request,
        respond: impl FnOnce(T) -> Result<ApiResponse, ApiError>,
    ) -> Result<ApiResponse, ApiError> {
        match self {
            Outcome::Own(r) => respond(r),
            Outcome::Shared(s) => s.respond(req, req.pretty, || respond(s.result.clone())),
        }
    }
}

/// Runs `read` as a blocking query on `table`: the result's index, the result and the blocking
/// headers.
pub async fn wait<T, F>(
    ctx: &Ctx,
    req: &Request,
    table: Table,
    read: F,
) -> Result<(u64, Outcome<T>, crate::response::Headers), ApiError>
where
    F: Fn(&ReadTransaction) -> Result<(u64, T), StoreError>,
    T: Send + Sync + 'static,
{
    let opts = query_options(ctx, req)?;
    let server = server(ctx)?;
    // Boxed: inline, these Raft waits made every query's future (a parked one too) 2 KiB.
    match opts.consistency {
        Consistency::Consistent => Box::pin(server.ensure_consistent()).await,
        Consistency::Default => Box::pin(server.caught_up()).await,
        _ => Ok(()),
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let read = || read(&server.store.read()?);
    let watch = &server.store.watch;
    let mut rx = watch.subscribe(table);
    // Held by blocking queries only, from before the first read: the count behind the
    // rpc.queries_blocking gauge.
    let mut restores = (opts.index > 0).then(|| watch.subscribe_restores());
    let internal = |e: StoreError| ApiError::Internal(e.to_string());
    let (index, body) = read().map_err(internal)?;
    if opts.index > 0 {
        legate_telemetry::incr("rpc.query");
    }
    let (index, outcome) = match restores.as_mut() {
        Some(restores) if index <= opts.index => {
            // Parked without its result, which is read again when the query answers: ten
            // thousand waiters on a 100-instance health query held 800 KB each.
            drop(body);
            let jitter = if opts.wait.as_nanos() >= 16 {
                rand::thread_rng().gen_range(Duration::ZERO..opts.wait / 16)
            } else {
                Duration::ZERO
            };
            let deadline = tokio::time::Instant::now() + opts.wait + jitter;
            let shutdown = ctx.shutdown.clone();
            // Woken by a write, the queries asking the same thing read once between them.
            let slot = ctx.shared_reads.slot::<T>(shared_reads::key(req, watch.current(Table::Acl)));
            let answer = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break None,
                    _ = tokio::time::sleep_until(deadline) => break None,
                    _ = restores.changed() => {
                        req.filtered.store(false, Relaxed);
                        let (i, b) = read().map_err(internal)?;
                        break Some((i, Outcome::Own(b)));
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            break None;
                        }
                        let version = *rx.borrow_and_update();
                        let shared = slot.read(version, req, read).map_err(internal)?;
                        if shared.index > opts.index {
                            break Some((shared.index, Outcome::Shared(shared)));
                        }
                    }
                }
            };
            match answer {
                Some(a) => a,
                // Timed out (or ended): the result as it stands.
                None => {
                    let shared = slot.read(watch.current(table), req, read).map_err(internal)?;
                    (shared.index, Outcome::Shared(shared))
                }
            }
        }
        _ => (index, Outcome::Own(body)),
    };
    let mut headers = Vec::with_capacity(4);
    headers.push(("X-Consul-Index", index.max(1).to_string().into()));
    headers.extend(leader_headers(server));
    headers.push(("X-Consul-Effective-Consistency", opts.consistency.as_str().into()));
    Ok((index.max(1), outcome, headers))
}

/// `X-Consul-Knownleader` and `X-Consul-Lastcontact`: whether this server knows a leader, and
/// the milliseconds since it last heard from it (0 on the leader).
pub fn leader_headers(server: &Server) -> [(&'static str, std::borrow::Cow<'static, str>); 2] {
    let (known, last) = server.leader_contact();
    [
        ("X-Consul-Knownleader", if known { "true" } else { "false" }.into()),
        ("X-Consul-Lastcontact", last.to_string().into()),
    ]
}

/// Adds the headers of a blocking read to a response.
pub fn with_headers(mut resp: ApiResponse, headers: crate::response::Headers) -> ApiResponse {
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp
}
