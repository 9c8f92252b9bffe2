//! Client agents hold no state: the routes the table marks `Forward::Servers` (KV reads,
//! catalog, health, status, txn, sessions, snapshot, ACL, operator raft) go to a server over the
//! RPC port, which answers them with its own handlers (blocking queries block there). Servers
//! run forwarded calls through `serve_call`. (KV writes go as typed `KvWrite`s: `kv.rs`.)

use bytes::Bytes;
use http::StatusCode;

use super::response::Body;
use super::{dispatch, ApiError, ApiResponse, Ctx, Request};
use legate_raft::rpc::{HttpCall, HttpReply};

/// Response headers carried back from the server.
const HEADERS: &[&str] = &[
    "X-Consul-Index",
    "X-Consul-Knownleader",
    "X-Consul-Lastcontact",
    "X-Consul-Effective-Consistency",
    "X-Content-Type-Options",
    "Content-Security-Policy",
    "Allow",
    "X-Consul-Results-Filtered-By-Acls",
    "X-Consul-Translate-Addresses",
];

pub async fn forward(ctx: &Ctx, req: &Request) -> Result<ApiResponse, ApiError> {
    let mut body = req.body.to_vec();
    if req.path == "/v1/session/create" {
        body = with_default_node(&body, ctx.agent.node_name());
    }
    let call = outgoing(ctx, req, body);
    let foreign = req.param("dc").is_some_and(|dc| !dc.is_empty() && dc != ctx.agent.config().datacenter);
    let reply = reply_to_response(ctx.agent.forward_http(call).await?);
    Ok(if foreign { translated(ctx, reply) } else { reply })
}

/// The call as this agent passes it on: `?near=_agent` names this agent's node (not the node
/// of the server that answers), and without a token the request carries this agent's default
/// token (the server would otherwise use its own).
fn outgoing(ctx: &Ctx, req: &Request, body: Vec<u8>) -> HttpCall {
    let mut call = call_of(req, body);
    for (k, v) in call.query.iter_mut() {
        if k == "near" && v == super::near::AGENT {
            *v = ctx.agent.node_name().to_string();
        }
    }
    if call.token.is_none() {
        call.token = ctx.agent.acl.agent_token(&ctx.agent, "default");
    }
    call
}

/// A session is created on the agent's own node unless the body names one: the server that
/// answers the forwarded call would otherwise use its own.
fn with_default_node(body: &[u8], node: &str) -> Vec<u8> {
    let mut v: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return body.to_vec(),
        }
    };
    if let Some(m) = v.as_object_mut() {
        let named = m.iter().any(|(k, v)| k.eq_ignore_ascii_case("node") && v.as_str().is_some_and(|s| !s.is_empty()));
        if !named {
            m.retain(|k, _| !k.eq_ignore_ascii_case("node"));
            m.insert("Node".into(), serde_json::Value::String(node.to_string()));
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
}

/// The forwarded form of a request (its token travels with it).
fn call_of(req: &Request, body: Vec<u8>) -> HttpCall {
    HttpCall {
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        token: super::token(req),
        body,
    }
}

/// Sends a call to a server of datacenter `dc` (`?dc=`, a catalog write's `Datacenter`),
/// which answers it as its own; 500 `No path to datacenter` when no server of it is known.
pub async fn to_datacenter(ctx: &Ctx, req: &Request, dc: &str) -> Result<ApiResponse, ApiError> {
    let call = outgoing(ctx, req, req.body.to_vec());
    match ctx.agent.forward_http_dc(dc, call).await {
        None => Err(ApiError::Internal("No path to datacenter".into())),
        Some(reply) => Ok(translated(ctx, reply_to_response(reply?))),
    }
}

/// `translate_wan_addrs`: another datacenter's answer with its WAN addresses, and
/// `X-Consul-Translate-Addresses: true`.
fn translated(ctx: &Ctx, mut resp: ApiResponse) -> ApiResponse {
    if !ctx.agent.config().translate_wan_addrs {
        return resp;
    }
    let json = match &resp.body {
        Body::Json(data) | Body::Raw { content_type: "application/json", data } => {
            serde_json::from_slice::<serde_json::Value>(data).ok()
        }
        _ => None,
    };
    if let Some(mut v) = json {
        legate_agent::wan::translate_addresses(&mut v);
        resp.body = ApiResponse::json(&v).body;
        resp.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("X-Consul-Translate-Addresses"));
        resp.headers.push(("X-Consul-Translate-Addresses", "true".into()));
    }
    resp
}

/// Sends a call to the Raft leader (a follower's read, or a write it must not answer).
pub async fn to_leader(ctx: &Ctx, server: &legate_raft::Server, req: &Request) -> Result<ApiResponse, ApiError> {
    // A blocking query blocks on the leader: the call may take its whole wait; others get
    // Consul's default RPC client timeout (a snapshot of a large state takes a while).
    let wait = match req.param("index") {
        Some(i) if !i.is_empty() && i != "0" => super::blocking::query_options(ctx, req)?.wait,
        _ => std::time::Duration::from_secs(60),
    };
    to_leader_for(ctx, server, req, wait).await
}

/// [`to_leader`] for a call that may take `wait` on the leader besides the RPC hold timeout.
pub async fn to_leader_for(
    ctx: &Ctx,
    server: &legate_raft::Server,
    req: &Request,
    wait: std::time::Duration,
) -> Result<ApiResponse, ApiError> {
    let reply = server.forward_to_leader(outgoing(ctx, req, req.body.to_vec()), wait).await?;
    Ok(reply_to_response(reply))
}

fn reply_to_response(reply: HttpReply) -> ApiResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = Vec::new();
    let mut content_type = None;
    for (k, v) in reply.headers {
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v);
        } else if let Some(name) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&k)) {
            headers.push((*name, v.into()));
        }
    }
    let body = match content_type {
        None if reply.body.is_empty() => Body::Empty,
        ct => Body::Raw { content_type: static_type(ct.as_deref()), data: Bytes::from(reply.body) },
    };
    ApiResponse { status, headers, body }
}

fn static_type(ct: Option<&str>) -> &'static str {
    match ct {
        Some(t) if t.starts_with("application/json") => "application/json",
        Some(t) if t.starts_with("application/x-gzip") => "application/x-gzip",
        Some(t) if t.starts_with("text/plain") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Answers a call forwarded by a client agent, as if it came to this server's HTTP port.
pub async fn serve_call(ctx: &Ctx, call: HttpCall) -> HttpReply {
    let method = call.method.parse().unwrap_or(http::Method::GET);
    let mut headers = http::HeaderMap::new();
    if let Some(t) = call.token.as_deref().and_then(|t| http::HeaderValue::from_str(t).ok()) {
        headers.insert("X-Consul-Token", t);
    }
    // Only the routes that run on servers are forwarded, and with `?dc=` (a call from another
    // datacenter, or on its way there) every datacenter-scoped one: KV writes and events are
    // then carried out in that datacenter. A call for an agent's own endpoint (the
    // never-ending monitor...) is refused.
    let cross_dc = call.query.iter().any(|(k, v)| k == "dc" && !v.is_empty());
    let forwardable = call.path.strip_prefix("/v1/").is_some_and(|p| {
        matches!(super::routes::lookup(&method, p), super::routes::Lookup::Found(r, _)
            if r.forward == super::routes::Forward::Servers || (cross_dc && r.datacenter_scoped()))
    });
    if !forwardable {
        return HttpReply {
            status: 400,
            headers: Vec::new(),
            body: format!("{} {} is not forwarded to servers", call.method, call.path).into_bytes(),
        };
    }
    let pretty = call.query.iter().any(|(k, _)| k == "pretty");
    let mut req = Request::new(method, call.path, call.query, headers, Bytes::from(call.body), None);
    req.pretty = pretty;
    let resp = dispatch(ctx, &mut req).await.unwrap_or_else(ApiError::into_response);
    let resp = super::mark_filtered(&req, resp);
    let http = resp.into_http(pretty);
    let status = http.status().as_u16();
    let headers = http
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let body = hyper::body::to_bytes(http.into_body()).await.map(|b| b.to_vec()).unwrap_or_default();
    HttpReply { status, headers, body }
}
