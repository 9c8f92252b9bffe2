//! Prepared queries: `/v1/query` (create, list), `/v1/query/<id>` (read, update, delete),
//! `/v1/query/<id or name>/execute` and `/explain`, as Consul 1.21 has them: name-based ACLs,
//! templates (`name_prefix_match`, `${name.full|prefix|suffix}`, `${match(n)}`,
//! `${agent.segment}`), health, tag and meta filters, `?near=` sorting, `?limit`, and failover
//! to the nearest datacenters and a list of them (executed there through their servers).

use std::collections::BTreeMap;

use http::StatusCode;
use rand::seq::SliceRandom;
use serde_json::{json, Map, Value as Json};

use super::blocking;
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Authz, Resource};
use legate_raft::command::{Command, CommandResponse};
use legate_raft::rpc::HttpCall;
use legate_state::catalog;
use legate_state::query::{self as store, PreparedQuery, QueryOp, QueryService, QueryTemplate, Resolved};
use legate_state::schema::IDX_QUERIES;

const REDACTED: &str = "<hidden>";

// ---- decoding ----

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("Request decode failed: {e}"))
}

/// An object of a query body with its keys matched to `names` (unknown ones refused).
fn fields(v: &Json, names: &[&str]) -> Result<Map<String, Json>, ApiError> {
    super::decode::strict_object(v.clone(), names).map_err(bad)
}

fn s(m: &Map<String, Json>, k: &str) -> String {
    m.get(k).and_then(Json::as_str).unwrap_or_default().to_string()
}

fn b(m: &Map<String, Json>, k: &str) -> bool {
    m.get(k).and_then(Json::as_bool).unwrap_or(false)
}

fn strings(m: &Map<String, Json>, k: &str) -> Option<Vec<String>> {
    m.get(k).and_then(Json::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
}

fn map(m: &Map<String, Json>, k: &str) -> Option<BTreeMap<String, String>> {
    m.get(k)
        .and_then(Json::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
}

/// A query body (Consul's JSON) into the stored form.
fn decode_query(body: &[u8]) -> Result<PreparedQuery, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("EOF"));
    }
    let v: Json = serde_json::from_slice(body).map_err(bad)?;
    let top =
        fields(&v, &["ID", "Name", "Session", "Token", "Template", "Service", "DNS", "CreateIndex", "ModifyIndex"])?;
    let tpl = fields(top.get("Template").unwrap_or(&Json::Null), &["Type", "Regexp", "RemoveEmptyTags"])?;
    let svc = fields(
        top.get("Service").unwrap_or(&Json::Null),
        &[
            "Service",
            "SamenessGroup",
            "Failover",
            "OnlyPassing",
            "IgnoreCheckIDs",
            "Near",
            "Tags",
            "NodeMeta",
            "ServiceMeta",
            "Connect",
            "Peer",
        ],
    )?;
    let failover = fields(svc.get("Failover").unwrap_or(&Json::Null), &["NearestN", "Datacenters", "Targets"])?;
    if failover.get("Targets").is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        return Err(ApiError::Internal(
            "Invalid prepared query: Failover Targets (cluster peers) are not supported".into(),
        ));
    }
    if !s(&svc, "SamenessGroup").is_empty() {
        return Err(ApiError::Internal(
            "Invalid prepared query: sameness-groups are an enterprise-only feature".into(),
        ));
    }
    let dns = fields(top.get("DNS").unwrap_or(&Json::Null), &["TTL"])?;
    Ok(PreparedQuery {
        id: s(&top, "ID"),
        name: s(&top, "Name"),
        session: s(&top, "Session"),
        token: s(&top, "Token"),
        template: QueryTemplate {
            kind: s(&tpl, "Type"),
            regexp: s(&tpl, "Regexp"),
            remove_empty_tags: b(&tpl, "RemoveEmptyTags"),
        },
        service: QueryService {
            service: s(&svc, "Service"),
            nearest_n: failover.get("NearestN").and_then(Json::as_i64).unwrap_or(0),
            datacenters: strings(&failover, "Datacenters"),
            only_passing: b(&svc, "OnlyPassing"),
            ignore_check_ids: strings(&svc, "IgnoreCheckIDs"),
            near: s(&svc, "Near"),
            tags: strings(&svc, "Tags"),
            node_meta: map(&svc, "NodeMeta"),
            service_meta: map(&svc, "ServiceMeta"),
            connect: b(&svc, "Connect"),
            peer: s(&svc, "Peer"),
        },
        dns_ttl: s(&dns, "TTL"),
        create_index: 0,
        modify_index: 0,
    })
}

/// Consul's `parseQuery` checks (500 `Invalid prepared query: ...`).
fn validate(q: &PreparedQuery) -> Result<(), ApiError> {
    let invalid = |why: String| Err(ApiError::Internal(format!("Invalid prepared query: {why}")));
    if q.name.is_empty() && !q.is_template() && q.session.is_empty() {
        return invalid("Must be bound to a session".into());
    }
    if q.token == REDACTED {
        return invalid(format!(
            "Bad Token '{REDACTED}', it looks like a query definition with a redacted token was submitted"
        ));
    }
    if q.service.service.is_empty() {
        return invalid("Must provide a Service name to query".into());
    }
    if q.service.nearest_n < 0 {
        return invalid(format!("Bad NearestN '{}', must be >= 0", q.service.nearest_n));
    }
    if q.service.connect {
        return invalid("Connect is not supported by this agent".into());
    }
    if !q.service.peer.is_empty() {
        return invalid("cluster peering is not supported by this agent".into());
    }
    if let Some(meta) = &q.service.node_meta {
        if meta.len() > 64 {
            return invalid("Node metadata cannot contain more than 64 key/value pairs".into());
        }
        for (k, v) in meta {
            let reason = if k.is_empty() {
                Some("Key cannot be blank")
            } else if !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                Some("Key contains invalid characters")
            } else if k.len() > 128 {
                Some("Key is too long (limit: 128 characters)")
            } else if v.len() > 512 {
                Some("Value is too long (limit: 512 characters)")
            } else {
                None
            };
            if let Some(r) = reason {
                return invalid(format!("Couldn't load metadata pair ('{k}', '{v}'): {r}"));
            }
        }
    }
    if !q.dns_ttl.is_empty() {
        let ttl = legate_types::duration::parse_go_duration(q.dns_ttl.trim_start_matches('-'))
            .map_err(|e| ApiError::Internal(format!("Invalid prepared query: Bad DNS TTL '{}': {e}", q.dns_ttl)))?;
        if q.dns_ttl.starts_with('-') {
            return invalid(format!("DNS TTL '-{}', must be >=0", ttl.as_nanos()));
        }
    }
    if q.is_template() {
        if q.template.kind != "name_prefix_match" {
            return raft_refused(format!("failed compiling template: Bad Template.Type '{}'", q.template.kind));
        }
        if !q.template.regexp.is_empty() {
            regex::Regex::new(&q.template.regexp).map_err(|e| {
                ApiError::Internal(format!("raft apply failed: failed compiling template: Bad Regexp: {e}"))
            })?;
        }
        // A test render with the template's own name, as Consul does.
        render(q, &q.name)
            .map_err(|e| ApiError::Internal(format!("raft apply failed: failed compiling template: {e}")))?;
    }
    Ok(())
}

fn raft_refused<T>(why: String) -> Result<T, ApiError> {
    Err(ApiError::Internal(format!("raft apply failed: {why}")))
}

// ---- templates ----

/// `text` with `${...}` interpolated for a lookup of `full` through template `q`.
fn interpolate(q: &PreparedQuery, full: &str, path: &str, text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("Bad format '{text}' in Service{path}: unterminated ${{"))?;
        let expr = after[..end].trim();
        let value = match expr {
            "name.full" => full.to_string(),
            "name.prefix" => q.name.clone(),
            "name.suffix" => full.strip_prefix(q.name.as_str()).unwrap_or(full).to_string(),
            "agent.segment" => String::new(),
            e if e.starts_with("match(") && e.ends_with(')') => {
                let n: i64 = e[6..e.len() - 1]
                    .trim()
                    .parse()
                    .map_err(|_| format!("Bad evaluation for '{text}' in Service{path}: match() takes an integer"))?;
                regex::Regex::new(&q.template.regexp)
                    .ok()
                    .filter(|_| !q.template.regexp.is_empty())
                    .and_then(|re| re.captures(full).and_then(|c| usize::try_from(n).ok().and_then(|n| c.get(n))))
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default()
            }
            other => {
                return Err(format!("Bad evaluation for '{text}' in Service{path}: unknown variable accessed: {other}"))
            }
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The query a lookup of `full` runs: a template's `Service` fields interpolated.
fn render(q: &PreparedQuery, full: &str) -> Result<PreparedQuery, String> {
    if !q.is_template() {
        return Ok(q.clone());
    }
    let mut r = q.clone();
    let s = &mut r.service;
    let one = |path: &str, v: &str| interpolate(q, full, path, v);
    let list = |path: &str, l: &Option<Vec<String>>| -> Result<Option<Vec<String>>, String> {
        l.as_ref().map(|l| l.iter().enumerate().map(|(i, v)| one(&format!("{path}[{i}]"), v)).collect()).transpose()
    };
    s.service = one(".Service", &q.service.service)?;
    s.near = one(".Near", &q.service.near)?;
    s.tags = list(".Tags", &q.service.tags)?;
    s.ignore_check_ids = list(".IgnoreCheckIDs", &q.service.ignore_check_ids)?;
    s.datacenters = list(".Failover.Datacenters", &q.service.datacenters)?;
    for (name, field) in [("NodeMeta", &mut s.node_meta), ("ServiceMeta", &mut s.service_meta)] {
        if let Some(m) = field.as_mut() {
            for (k, v) in m.iter_mut() {
                *v = interpolate(q, full, &format!(".{name}[{k}]"), v)?;
            }
        }
    }
    if q.template.remove_empty_tags {
        s.tags = Some(s.tags.take().unwrap_or_default().into_iter().filter(|t| !t.is_empty()).collect());
    }
    Ok(r)
}

// ---- JSON ----

fn query_json(q: &PreparedQuery, show_token: bool) -> Json {
    let token = if q.token.is_empty() || show_token { q.token.clone() } else { REDACTED.to_string() };
    json!({
        "ID": q.id,
        "Name": q.name,
        "Session": q.session,
        "Token": token,
        "Template": {"Type": q.template.kind, "Regexp": q.template.regexp, "RemoveEmptyTags": q.template.remove_empty_tags},
        "Service": {
            "Service": q.service.service,
            "SamenessGroup": "",
            "Failover": {"NearestN": q.service.nearest_n, "Datacenters": q.service.datacenters, "Targets": null},
            "OnlyPassing": q.service.only_passing,
            "IgnoreCheckIDs": q.service.ignore_check_ids,
            "Near": q.service.near,
            "Tags": q.service.tags,
            "NodeMeta": q.service.node_meta,
            "ServiceMeta": q.service.service_meta,
            "Connect": q.service.connect,
            "Peer": q.service.peer,
        },
        "DNS": {"TTL": q.dns_ttl},
        "CreateIndex": q.create_index,
        "ModifyIndex": q.modify_index,
    })
}

/// The name a query's ACLs are checked on: its name, when it has one or is a template.
fn acl_name(q: &PreparedQuery) -> Option<&str> {
    (!q.name.is_empty() || q.is_template()).then_some(q.name.as_str())
}

/// Whether the token may see a query in a list (Consul's filter): management sees all, others
/// named queries they may read.
fn listable(authz: &Authz, q: &PreparedQuery) -> bool {
    authz.is_management() || acl_name(q).is_some_and(|n| authz.allowed(Resource::Query, n, Access::Read))
}

fn show_tokens(req: &Request) -> bool {
    req.authz.allowed(Resource::Acl, "", Access::Write)
}

// ---- writes ----

async fn apply(ctx: &Ctx, op: QueryOp) -> Result<(), ApiError> {
    let server = blocking::server(ctx)?;
    match server.apply(Command::Query(op)).await.map_err(|e| ApiError::Internal(e.to_string()))? {
        CommandResponse::Query(Ok(())) => Ok(()),
        CommandResponse::Query(Err(why)) => raft_refused(why),
        other => Err(ApiError::Internal(format!("unexpected state machine response {other:?}"))),
    }
}

fn require_write(req: &Request, q: &PreparedQuery) -> Result<(), ApiError> {
    match acl_name(q) {
        Some(name) => req.require(Resource::Query, name, Access::Write),
        None => Ok(()),
    }
}

/// `POST /v1/query`: `{"ID": ...}`.
pub async fn create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let mut q = decode_query(&req.body)?;
    if !q.id.is_empty() {
        return Err(ApiError::Internal("ID must be empty when creating a new prepared query".into()));
    }
    require_write(req, &q)?;
    validate(&q)?;
    q.id = uuid::Uuid::new_v4().to_string();
    let id = q.id.clone();
    apply(ctx, QueryOp::Set(serde_json::to_string(&q).unwrap_or_default())).await?;
    Ok(ApiResponse::json(&json!({"ID": id})))
}

fn existing(ctx: &Ctx, id: &str) -> Result<PreparedQuery, ApiError> {
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    store::get(&txn, id)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::Internal(format!("Cannot modify non-existent prepared query: '{id}'")))
}

/// `PUT /v1/query/<id>`: replaces the definition.
pub async fn update(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    let mut q = decode_query(&req.body)?;
    q.id = id.to_string();
    require_write(req, &q)?;
    let old = existing(ctx, id)?;
    require_write(req, &old)?;
    validate(&q)?;
    apply(ctx, QueryOp::Set(serde_json::to_string(&q).unwrap_or_default())).await?;
    Ok(ApiResponse::empty(StatusCode::OK))
}

/// `DELETE /v1/query/<id>`.
pub async fn delete(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    let old = existing(ctx, id)?;
    require_write(req, &old)?;
    apply(ctx, QueryOp::Delete(id.to_string())).await?;
    Ok(ApiResponse::empty(StatusCode::OK))
}

// ---- reads ----

fn index_header(ctx: &Ctx) -> Result<crate::response::Headers, ApiError> {
    let store = &blocking::server(ctx)?.store;
    let index = store.table_index(IDX_QUERIES).map_err(|e| ApiError::Internal(e.to_string()))?.max(1);
    Ok(vec![("X-Consul-Index", index.to_string().into())])
}

/// `GET /v1/query`: the queries the token may see.
pub async fn list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    let all = store::list(&txn).map_err(|e| ApiError::Internal(e.to_string()))?;
    let show = show_tokens(req);
    let mut out = Vec::new();
    for q in &all {
        if listable(&req.authz, q) {
            out.push(query_json(q, show));
        } else if acl_name(q).is_some() {
            // Only hiding a named query counts as filtering.
            req.keep(Resource::Query, &q.name, Access::Read);
        }
    }
    Ok(blocking::with_headers(ApiResponse::json(&out), index_header(ctx)?))
}

/// `GET /v1/query/<id>`: `[query]`.
pub async fn get(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    let q = store::get(&txn, id)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound("Query not found".into()))?;
    if let Some(name) = acl_name(&q) {
        if !req.authz.allowed(Resource::Query, name, Access::Read) {
            return Err(ApiError::Forbidden("Permission denied".into()));
        }
    }
    Ok(blocking::with_headers(ApiResponse::json(&vec![query_json(&q, show_tokens(req))]), index_header(ctx)?))
}

/// The query `<id or name>` resolves to, rendered for that name.
fn resolve(ctx: &Ctx, id_or_name: &str) -> Result<PreparedQuery, ApiError> {
    if id_or_name.is_empty() {
        return Err(ApiError::Internal("Missing Query ID".into()));
    }
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    match store::resolve(&txn, id_or_name).map_err(|e| ApiError::Internal(e.to_string()))? {
        Resolved::NotFound => Err(ApiError::NotFound("Query not found".into())),
        Resolved::TemplateById => {
            Err(ApiError::Internal("prepared query templates can only be resolved up by name, not by ID".into()))
        }
        Resolved::Found(q) => render(&q, id_or_name).map_err(ApiError::Internal),
    }
}

/// `GET /v1/query/<id or name>/explain`: the query as it would run.
pub async fn explain(ctx: &Ctx, req: &Request, rest: &str) -> Result<ApiResponse, ApiError> {
    let q = resolve(ctx, rest)?;
    if !listable(&req.authz, &q) {
        return Err(ApiError::Forbidden("Permission denied".into()));
    }
    let body = json!({"Query": query_json(&q, show_tokens(req))});
    Ok(blocking::with_headers(ApiResponse::json(&body), index_header(ctx)?))
}

// ---- execution ----

/// One instance of the service with its checks, in `/v1/health/service`'s shape.
type Entry = Json;

/// Whether an entry passes the query's health, meta and tag filters.
fn keep(q: &QueryService, e: &Entry) -> bool {
    let ignored = q.ignore_check_ids.as_deref().unwrap_or_default();
    let healthy = e["Checks"].as_array().into_iter().flatten().all(|c| {
        let id = c["CheckID"].as_str().unwrap_or_default();
        let status = c["Status"].as_str().unwrap_or_default();
        ignored.iter().any(|i| i == id) || if q.only_passing { status == "passing" } else { status != "critical" }
    });
    let meta_ok = |want: &Option<BTreeMap<String, String>>, have: &Json| {
        want.iter().flatten().all(|(k, v)| have[k].as_str() == Some(v.as_str()))
    };
    let tags: Vec<String> = e["Service"]["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_lowercase))
        .collect();
    let tags_ok = q.tags.iter().flatten().all(|t| match t.strip_prefix('!') {
        Some(not) => !tags.contains(&not.to_lowercase()),
        None => tags.contains(&t.to_lowercase()),
    });
    healthy && meta_ok(&q.node_meta, &e["Node"]["Meta"]) && meta_ok(&q.service_meta, &e["Service"]["Meta"]) && tags_ok
}

/// This datacenter's instances the token may read.
fn local_entries(ctx: &Ctx, service: &str, authz: &Authz) -> Result<Vec<Entry>, ApiError> {
    let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = Vec::new();
    for (n, s) in catalog::service_nodes(&txn, service).map_err(|e| ApiError::Internal(e.to_string()))? {
        if !authz.allowed(Resource::Node, &n.node, Access::Read)
            || !authz.allowed(Resource::Service, &s.service, Access::Read)
        {
            continue;
        }
        let checks: Vec<Json> = catalog::node_checks(&txn, &n.node)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_iter()
            .filter(|c| c.service_id.is_empty() || c.service_id == s.id)
            .map(|c| super::catalog::check_json(&c))
            .collect();
        out.push(json!({"Node": super::catalog::node_json(&n), "Service": super::catalog::service_json(&s, None), "Checks": checks}));
    }
    Ok(out)
}

/// Another datacenter's instances, read there with the query's token.
async fn remote_entries(ctx: &Ctx, dc: &str, service: &str, token: Option<String>) -> Result<Vec<Entry>, String> {
    // Forwarded paths travel decoded, as the HTTP layer forwards them.
    let path = format!("/v1/health/service/{service}");
    let call = HttpCall { method: "GET".into(), path, query: Vec::new(), token, body: Vec::new() };
    let reply = ctx.agent.forward_http_dc(dc, call).await.ok_or_else(|| "No path to datacenter".to_string())?;
    let reply = reply.map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body)));
    }
    let mut v: Json = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
    if ctx.agent.config().translate_wan_addrs {
        legate_agent::wan::translate_addresses(&mut v);
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// `GET /v1/query/<id or name>/execute[?near=&limit=]`.
pub async fn execute(ctx: &Ctx, req: &Request, rest: &str) -> Result<ApiResponse, ApiError> {
    let _timer = legate_telemetry::Timer::start("prepared-query.execute", Vec::new());
    let q = resolve(ctx, rest)?;
    let limit = match req.param("limit").filter(|l| !l.is_empty()) {
        None => 0,
        Some(l) => {
            l.parse::<i64>().map_err(|e| ApiError::Internal(format!("Bad limit: strconv.Atoi: parsing {l:?}: {e}")))?
        }
    };
    // The query's own token, else the caller's (else the agent's default, then anonymous).
    let token = if q.token.is_empty() { super::token(req) } else { Some(q.token.clone()) };
    let authz = ctx
        .agent
        .acl
        .authorize(&ctx.agent, token.as_deref())
        .await
        .map_err(|_| ApiError::Forbidden("ACL not found".into()))?;
    let dc = ctx.agent.config().datacenter.clone();
    let mut nodes: Vec<Entry> =
        local_entries(ctx, &q.service.service, &authz)?.into_iter().filter(|e| keep(&q.service, e)).collect();
    nodes.shuffle(&mut rand::thread_rng());
    // Near: the request's, else the query's; `_agent` is this agent's node.
    let near = req
        .param("near")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| (!q.service.near.is_empty()).then(|| q.service.near.clone()));
    let near = near.map(|n| if n == super::near::AGENT { ctx.agent.node_name().to_string() } else { n });
    if let Some(near) = &near {
        let txn = blocking::server(ctx)?.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
        super::near::sort(&txn, Some(near), &mut nodes, |j| j["Node"]["Node"].as_str())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Some(i) =
            nodes.iter().take(10).position(|e| e["Node"]["Node"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(near)))
        {
            nodes.swap(0, i);
        }
    }
    let cut = |nodes: &mut Vec<Entry>| {
        if limit > 0 {
            nodes.truncate(limit as usize);
        }
    };
    cut(&mut nodes);
    let mut answered_dc = dc.clone();
    let mut failovers = 0;
    if nodes.is_empty() {
        for target in failover_targets(ctx, &q.service) {
            failovers += 1;
            answered_dc = target.clone();
            match remote_entries(ctx, &target, &q.service.service, token.clone()).await {
                Ok(entries) => {
                    let mut found: Vec<Entry> = entries.into_iter().filter(|e| keep(&q.service, e)).collect();
                    found.shuffle(&mut rand::thread_rng());
                    cut(&mut found);
                    if !found.is_empty() {
                        nodes = found;
                        break;
                    }
                }
                Err(e) => tracing::warn!(datacenter = %target, error = %e, "prepared query failover failed"),
            }
        }
    }
    let body = json!({
        "Service": q.service.service,
        "Nodes": nodes,
        "DNS": {"TTL": q.dns_ttl},
        "Datacenter": answered_dc,
        "PeerName": "",
        "Failovers": failovers,
    });
    Ok(blocking::with_headers(ApiResponse::json(&body), index_header(ctx)?))
}

/// The datacenters a failover tries, in order: the `NearestN` nearest other ones (by the
/// servers' network coordinates, else by name), then the listed ones that the WAN pool knows and
/// that NearestN did not pick.
fn failover_targets(ctx: &Ctx, q: &QueryService) -> Vec<String> {
    let ours = ctx.agent.config().datacenter.clone();
    let nearest: Vec<String> =
        legate_agent::wan::datacenters_by_distance(&ctx.agent).into_iter().filter(|d| *d != ours).collect();
    let mut out: Vec<String> = nearest.iter().take(q.nearest_n.max(0) as usize).cloned().collect();
    let picked = out.clone();
    for dc in q.datacenters.iter().flatten() {
        if nearest.contains(dc) && !picked.contains(dc) {
            out.push(dc.clone());
        }
    }
    out
}
