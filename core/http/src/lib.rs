//! The `/v1` HTTP API on hyper. Each connection is served by hyper, which hands every request to
//! one handler (`handle`) and its dispatcher; routing, method checks (405 + `Allow`), Consul's
//! headers, `?pretty` and the plain-text errors are ours, so they are the same on every
//! endpoint. One file per endpoint family (agent.rs, status.rs, ...); `ApiError` maps to a
//! status code in error.rs only.

pub(crate) mod acl;
mod acl_auth;
mod acl_templated;
mod agent;
mod agent_local;
mod autopilot;
mod blocking;
mod catalog;
mod conn;
mod coordinate;
mod decode;
pub mod endpoints;
mod error;
mod event;
pub(crate) mod forward;
mod health;
mod kv;
mod near;
mod operator;
mod plugin;
mod query;
mod request;
mod response;
pub mod routes;
mod session;
mod shared_reads;
mod snapshot;
mod status;
mod txn;
mod ui;
mod ui_internal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Method;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use request::{decode_path, parse_query, Request};
pub use response::ApiResponse;

use legate_agent::AgentShared;

/// Largest request body read into memory (snapshot restores are the largest bodies).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What every handler can reach.
pub struct Ctx {
    pub agent: Arc<AgentShared>,
    /// Ends blocking queries at shutdown.
    pub shutdown: CancellationToken,
    /// Open connections per client IP (`limits.http_max_conns_per_client`).
    pub conns: Arc<legate_types::per_client::PerClient>,
    /// What blocking queries woken by the same write share (one read each).
    shared_reads: shared_reads::SharedReads,
}

impl Ctx {
    pub fn new(agent: Arc<AgentShared>, shutdown: CancellationToken) -> Ctx {
        Ctx { agent, shutdown, conns: Arc::default(), shared_reads: Default::default() }
    }
}

/// The HTTPS listeners' TLS (None without a certificate), replaced on reload.
pub type HttpsTls = Arc<legate_tls::Live<Option<Arc<rustls::ServerConfig>>>>;

/// Serves the API on an already-bound listener (HTTPS when `tls` is given) until `shutdown`
/// fires; in-flight requests are finished first.
pub async fn serve(ctx: Arc<Ctx>, listener: TcpListener, tls: Option<HttpsTls>, shutdown: CancellationToken) {
    let tracker = tokio_util::task::TaskTracker::new();
    let kill = CancellationToken::new();
    while let Some((stream, peer)) = legate_types::net::accept(&listener, &shutdown, "http").await {
        let config = ctx.agent.config();
        let max = config.limits.http_max_conns_per_client;
        let Some(slot) = ctx.conns.admit(peer.ip(), max) else {
            tracing::debug!(%peer, max, "closing HTTP connection: too many from this client");
            continue;
        };
        stream.set_nodelay(true).ok();
        let stream = conn::Killable::new(stream, kill.clone(), Some(slot));
        let limits = conn::Limits::of(&config);
        let tls = tls.as_ref().map(|t| t.get().as_ref().clone());
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(ctx, req, peer).await) }
            });
            match tls {
                None => conn::serve_http(stream, service, &limits, shutdown).await,
                Some(None) => tracing::warn!(%peer, "https: no certificate configured; closing the connection"),
                // Boxed: TLS's state would otherwise make every plain connection's task as large.
                Some(Some(config)) => Box::pin(async move {
                    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(limits.tls_handshake, accept).await {
                        Ok(Ok(tls)) => conn::serve_http(tls, service, &limits, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "https: TLS handshake failed: {}", legate_tls::tls_error(&e)),
                        Err(_) => tracing::debug!(%peer, "https: TLS handshake not finished within {:?}", limits.tls_handshake),
                    }
                })
                .await,
            }
        });
    }
    tracker.close();
    // In-flight requests get a grace period; connections a client keeps open past it (some
    // keep-alive pools never close) are then killed, so shutdown stays bounded and nothing
    // keeps the agent alive after it.
    if tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await.is_err() {
        tracing::debug!("closing HTTP connections still open after the grace period");
    }
    kill.cancel();
    // Killed connections end at their next poll; wait (briefly) until they have, so nothing of
    // theirs (the agent, its stores) outlives the shutdown.
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
}

/// One request, start to end: hyper's request taken apart (its headers moved, not copied),
/// dispatched, measured, logged and answered.
async fn handle(ctx: Arc<Ctx>, req: hyper::Request<hyper::Body>, remote: SocketAddr) -> http::Response<hyper::Body> {
    let (parts, body) = req.into_parts();
    let pretty_default = ctx.agent.config().dev;
    let query = request::parse_query(parts.uri.query().unwrap_or_default());
    let pretty = pretty_default || query.iter().any(|(k, _)| k == "pretty");
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return finish(&ctx, e.into_response(), pretty),
    };
    let path = request::decode_path(parts.uri.path());
    let mut req = Request::new(parts.method, path, query, parts.headers, body, Some(remote));
    req.pretty = pretty;
    let started = std::time::Instant::now();
    // Room for the route's label, added below.
    let mut labels = Vec::with_capacity(2);
    labels.push(("method", method_label(&req.method)));
    let mut timer = legate_telemetry::Timer::start("api.http", labels);
    let resp = dispatch(&ctx, &mut req).await.unwrap_or_else(ApiError::into_response);
    let resp = mark_filtered(&req, resp);
    // The route's label (`v1_kv_`), from the lookup dispatch made: no second lookup.
    timer.label("path", req.route.map_or("unknown", routes::Route::metric));
    let ms = timer.elapsed_ms();
    drop(timer);
    request_metrics(&ctx, &req, resp.status.as_u16(), ms);
    tracing::debug!(
        method = %req.method,
        url = %logged_url(&req),
        from = %remote,
        status = resp.status.as_u16(),
        latency = ?started.elapsed(),
        "Request finished"
    );
    finish(&ctx, resp, pretty)
}

/// The metrics of one answered request beside `api.http`: on a server, the route's work is a
/// request it served (`rpc.request`, and `rpc.request_error` for a 5xx), as Consul's HTTP
/// handlers make an RPC to their own server; with `telemetry.disable_compat_1_9 = false`, Consul
/// 1.9's per-route timer `http.<METHOD>.<path>`.
fn request_metrics(ctx: &Ctx, req: &Request, status: u16, ms: f64) {
    let Some(route) = req.route else { return };
    if route.forward == routes::Forward::Servers && ctx.agent.server().is_some() {
        legate_telemetry::incr("rpc.request");
        if status >= 500 {
            legate_telemetry::incr("rpc.request_error");
        }
    }
    if ctx.agent.config().telemetry.compat_http_metrics() {
        legate_telemetry::sample(&format!("http.{}.{}", req.method, route.compat_metric()), Vec::new(), ms);
    }
}

/// The `method` label of `api.http`: the standard methods' names are not copied per request.
fn method_label(method: &Method) -> std::borrow::Cow<'static, str> {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    const NAMES: [&str; 9] = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT"];
    match STANDARD.iter().position(|m| m == method) {
        Some(i) => NAMES[i].into(),
        None => method.to_string().into(),
    }
}

/// The request's path and query as logged: a `token` parameter is hidden, as Consul does, and
/// so is the secret the legacy ACL endpoints take in their path.
fn logged_url(req: &Request) -> String {
    let path = ["/v1/acl/info/", "/v1/acl/destroy/", "/v1/acl/clone/"]
        .iter()
        .find(|p| req.path.starts_with(**p))
        .map_or_else(|| req.path.clone(), |p| format!("{p}<hidden>"));
    if req.query.is_empty() {
        return path;
    }
    let query: Vec<String> = req
        .query
        .iter()
        .map(|(k, v)| match (k.as_str(), v.is_empty()) {
            ("token", _) => "token=<hidden>".to_string(),
            (_, true) => k.clone(),
            _ => format!("{k}={v}"),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

async fn read_body(mut body: hyper::Body) -> Result<Bytes, ApiError> {
    use hyper::body::HttpBody;
    let mut out = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::TooLarge(format!("Request body too large, max size: {MAX_BODY} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Headers every response carries: Consul's, then the operator's `http_config.response_headers`
/// (validated at config load).
fn finish(ctx: &Ctx, resp: ApiResponse, pretty: bool) -> http::Response<hyper::Body> {
    let config = ctx.agent.config();
    let policy: std::borrow::Cow<'static, str> = match config.acl.default_policy.as_str() {
        "allow" => "allow".into(),
        "deny" => "deny".into(),
        other => other.to_string().into(),
    };
    let mut r = resp.header("X-Consul-Default-Acl-Policy", policy).header("Vary", "Accept-Encoding").into_http(pretty);
    for (name, value) in &config.http_config.response_headers {
        if let (Ok(n), Ok(v)) =
            (http::header::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

/// The request's ACL token: `?token=` > `X-Consul-Token` > `Authorization: Bearer` (Consul's
/// order); None when absent.
pub fn token(req: &Request) -> Option<String> {
    if let Some(t) = req.param("token").filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    if let Some(t) = req.headers.get("X-Consul-Token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    let auth = req.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    (scheme == "Bearer")
        .then(|| rest.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|t| !t.is_empty())
}

/// Adds `X-Consul-Results-Filtered-By-ACLs` when a handler dropped entries.
pub(crate) fn mark_filtered(req: &Request, resp: ApiResponse) -> ApiResponse {
    if req.filtered.load(std::sync::atomic::Ordering::Relaxed) {
        resp.header("X-Consul-Results-Filtered-By-ACLs", "true")
    } else {
        resp
    }
}

/// Resolves the request's token and applies the route table's check (ACLs enabled only).
async fn authorize(ctx: &Ctx, req: &mut Request, route: &routes::Route, rest: &str) -> Result<(), ApiError> {
    let secret = token(req);
    let authz = match ctx.agent.acl.authorize(&ctx.agent, secret.as_deref()).await {
        Ok(a) => a,
        Err(legate_agent::acl::ResolveError::NotFound) => return Err(ApiError::Forbidden("ACL not found".into())),
        Err(legate_agent::acl::ResolveError::Unavailable(why)) => return Err(ApiError::Forbidden(why)),
    };
    req.authz = authz;
    routes::enforce(req, ctx.agent.node_name(), route, rest)
}

/// `http_config.allow_write_http_from`: writes (any method but GET, HEAD and OPTIONS) on this
/// agent's listeners only from the listed networks; everything when the list is empty. A call a
/// client agent forwarded over RPC has no remote address here: its own agent checked it.
fn write_allowed(config: &legate_config::Config, req: &Request) -> bool {
    if config.http_config.allow_write_http_from.is_empty()
        || matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS)
    {
        return true;
    }
    let Some(ip) = req.remote.map(|r| r.ip()) else { return true };
    config.allow_write_from().iter().any(|net| net.contains(&ip))
}

/// One request through the route table: lookup -> 405 / `OPTIONS` -> forward (client agents)
/// -> ACL -> `?consistent` to the leader -> the route's handler.
///
/// The forwarding and ACL paths are boxed: each future is about 3 KiB, and unboxed they made
/// every request's future (and every parked blocking query) that large.
async fn dispatch(ctx: &Ctx, req: &mut Request) -> Result<ApiResponse, ApiError> {
    let config = ctx.agent.config();
    if req.path == "/" {
        req.allow(&[Method::GET, Method::HEAD])?;
        return Ok(ui::root(&config));
    }
    if let Some(answer) = ui::serve(ctx, req) {
        return answer;
    }
    let Some(path) = req.path.strip_prefix("/v1/") else {
        return Err(ApiError::NotFound(
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'".into(),
        ));
    };
    if !write_allowed(&config, req) {
        return Err(ApiError::Forbidden("Access is restricted".into()));
    }
    for blocked in &config.http_config.block_endpoints {
        if req.path.starts_with(blocked.as_str()) {
            return Err(ApiError::Forbidden("Endpoint is blocked by agent configuration".into()));
        }
    }
    let path = path.to_string();
    let (route, rest) = match routes::lookup(&req.method, &path) {
        routes::Lookup::Found(route, rest) => {
            req.route = Some(route);
            (route, rest)
        }
        routes::Lookup::Method(allow) => return Err(req.not_allowed(&allow)),
        routes::Lookup::Unknown => {
            return Err(ApiError::NotFound("Invalid URL path: not a recognized HTTP API endpoint".into()))
        }
    };
    if let routes::Need::Invalid(why) = route.need {
        return Err(ApiError::BadRequest(why.into()));
    }
    let servers = route.forward == routes::Forward::Servers;
    if let Some(dc) = other_datacenter(ctx, req, route) {
        // A client agent hands it to a server of its own datacenter, which knows the others.
        if ctx.agent.server().is_none() {
            return Box::pin(forward::forward(ctx, req)).await;
        }
        return Box::pin(forward::to_datacenter(ctx, req, &dc)).await;
    }
    if servers && ctx.agent.server().is_none() {
        // The server resolves the token and enforces.
        return Box::pin(forward::forward(ctx, req)).await;
    }
    if config.acl.enabled {
        Box::pin(authorize(ctx, req, route, rest)).await?;
    }
    let req: &Request = req;
    // Reads are the leader's unless `?stale` (Consul's default and `consistent` modes): a
    // follower passes them on, so a read after a write sees it wherever it is asked.
    if let Some(server) = ctx.agent.server() {
        let read = req.method == Method::GET || req.method == Method::HEAD;
        // Each server answers these about itself (Consul's status and replication calls).
        let own_state = route.pattern.starts_with("status/") || route.pattern == "acl/replication";
        if servers && read && !own_state && req.param("stale").is_none() && !server.is_leader() {
            return Box::pin(forward::to_leader(ctx, server, req)).await;
        }
    }
    (route.handler)(ctx, req, rest).await
}

/// `?dc=` naming another datacenter on a datacenter-scoped route: the call goes there.
fn other_datacenter(ctx: &Ctx, req: &Request, route: &routes::Route) -> Option<String> {
    if !route.datacenter_scoped() {
        return None;
    }
    req.param("dc").filter(|dc| !dc.is_empty() && *dc != ctx.agent.config().datacenter).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn a_standard_method_labels_with_a_shared_literal_and_another_with_its_name() {
        assert!(matches!(method_label(&Method::GET), Cow::Borrowed("GET")));
        assert!(matches!(method_label(&Method::DELETE), Cow::Borrowed("DELETE")));
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert!(matches!(method_label(&purge), Cow::Owned(ref s) if s == "PURGE"));
    }
}
