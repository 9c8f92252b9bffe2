//! `/v1/acl/*`: bootstrap, tokens, policies, roles (the 1.4+ API) and the legacy token API
//! (create/update/destroy/info/clone/list), all stored through Raft. 401 when ACLs are off.

use http::Method;
pub use legate_acl::builtin::{global_management, hash_of, httpdate_like, management_token, now_rfc3339};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::acl_templated::{self as templated, Owner, TemplatedBody};
use super::blocking::{self, with_headers};
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Rules, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME};
use legate_raft::command::{Command, CommandResponse};
use legate_state::acl::{self as store, AclOp, Link, NodeIdentity, Policy, Role, ServiceIdentity, Token};
use legate_state::acl_ext::{self as ext, ExtTable, RoleExt, TokenExt};
use legate_state::watch::Table;
use legate_state::StoreError;

/// What every ACL route does first: 401 when ACLs are off; writes run on the leader, which
/// answers with the record as applied (`Some`: the leader's answer).
pub async fn guard(ctx: &Ctx, req: &Request) -> Result<Option<ApiResponse>, ApiError> {
    if !ctx.agent.config().acl.enabled {
        return Err(ApiError::Unauthorized("ACL support disabled".into()));
    }
    let server = blocking::server(ctx)?;
    if req.method != Method::GET && legate_agent::acl_replication::is_secondary(&ctx.agent) && global_write(ctx, req) {
        // Policies, roles and global tokens are the primary's; it replicates them back here.
        let primary = ctx.agent.config().primary_datacenter().to_string();
        return super::forward::to_datacenter(ctx, req, &primary).await.map(Some);
    }
    if req.method != Method::GET && !server.is_leader() {
        return super::forward::to_leader(ctx, server, req).await.map(Some);
    }
    Ok(None)
}

/// Whether an ACL write in a secondary datacenter belongs to the primary: policies, roles, and
/// tokens that are not local (a new one by its body's `Local`, an existing one by its record).
fn global_write(ctx: &Ctx, req: &Request) -> bool {
    let path = req.path.trim_start_matches("/v1/");
    if path.starts_with("acl/policy") || path.starts_with("acl/role") {
        return true;
    }
    let Some(rest) = path.strip_prefix("acl/token") else { return false };
    let accessor = rest.trim_start_matches('/').split('/').next().unwrap_or_default();
    if accessor.is_empty() {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let local =
            body.as_object().and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("local")).map(|(_, v)| v));
        return local != Some(&json!(true));
    }
    let local = read_txn(ctx).ok().and_then(|txn| store::token(&txn, accessor).ok().flatten()).map(|t| t.local);
    local != Some(true)
}

/// `GET /v1/acl/replication`: this server's replication from the primary datacenter.
pub async fn replication(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(&legate_agent::acl_replication::status_json(&ctx.agent)))
}

pub async fn bootstrap(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    bootstrap_acl(ctx).await
}

/// `GET /v1/acl/token/self`: the request's token (or the agent's default token).
pub async fn token_self(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let secret = super::token(req)
        .or_else(|| ctx.agent.acl.agent_token(&ctx.agent, "default"))
        .unwrap_or_else(|| ANONYMOUS_SECRET.into());
    let txn = read_txn(ctx)?;
    let t = store::token_by_secret(&txn, &secret).map_err(internal)?;
    let t = t.ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    Ok(ApiResponse::json(&token_json(&txn, &t, true).map_err(internal)?))
}

pub async fn token_create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    token_write(ctx, req, None).await
}

pub async fn token_update(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    token_write(ctx, req, Some(id)).await
}

pub async fn policy_create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    policy_write(ctx, req, None).await
}

pub async fn policy_update(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    policy_write(ctx, req, Some(id)).await
}

pub async fn policy_get(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    policy_read(ctx, req, Some(id), None).await
}

pub async fn policy_by_name(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    policy_read(ctx, req, None, Some(name)).await
}

pub async fn role_create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    role_write(ctx, req, None).await
}

pub async fn role_update(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    role_write(ctx, req, Some(id)).await
}

pub async fn role_get(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    role_read(ctx, req, Some(id), None).await
}

pub async fn role_by_name(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    role_read(ctx, req, None, Some(name)).await
}

/// `PUT /v1/acl/create` (legacy).
pub async fn legacy_create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    legacy_write(ctx, req, true).await
}

/// `PUT /v1/acl/update` (legacy).
pub async fn legacy_update(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    legacy_write(ctx, req, false).await
}

/// `GET /v1/acl/info/<secret>` (legacy).
pub async fn legacy_get(ctx: &Ctx, req: &Request, secret: &str) -> Result<ApiResponse, ApiError> {
    legacy_info(ctx, req, Some(secret)).await
}

/// `GET /v1/acl/list` (legacy).
pub async fn legacy_list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    legacy_info(ctx, req, None).await
}

/// A blocking read of the ACL tables: `read` runs in one read transaction and the answer
/// carries the ACL tables' index.
pub(crate) async fn acl_read<T: Clone + Send + Sync + 'static>(
    ctx: &Ctx,
    req: &Request,
    read: impl Fn(&redb::ReadTransaction) -> Result<T, StoreError>,
) -> Result<(T, crate::response::Headers), ApiError> {
    let (_, v, headers) =
        blocking::run(ctx, req, Table::Acl, |txn| Ok((legate_agent::acl::acl_index(txn)?, read(txn)?))).await?;
    Ok((v, headers))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

pub(crate) fn read_txn(ctx: &Ctx) -> Result<redb::ReadTransaction, ApiError> {
    blocking::server(ctx)?.store.read().map_err(internal)
}

/// The field names of the ACL bodies, matched case-insensitively as Consul's decoder does.
const BODY_FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Description",
    "Rules",
    "Datacenters",
    "Datacenter",
    "AccessorID",
    "SecretID",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "ServiceName",
    "NodeName",
    "Local",
    "ExpirationTime",
    "ExpirationTTL",
    "TemplatedPolicies",
    "TemplateName",
    "TemplateVariables",
    "TemplateID",
];

fn decode<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("Request decode failed: {e}"));
    let v: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
    serde_json::from_value(super::decode::keys_as(v, BODY_FIELDS)).map_err(bad)
}

/// Consul's answer to an ACL object ID that is not a UUID.
fn check_uuid(id: &str) -> Result<(), ApiError> {
    if id.len() != 36 {
        return Err(ApiError::Internal("UUID must be 36 characters".into()));
    }
    uuid::Uuid::parse_str(id).map(drop).map_err(|_| ApiError::Internal(format!("Invalid UUID format {id:?}")))
}

pub(crate) async fn apply(ctx: &Ctx, ops: Vec<AclOp>) -> Result<(), ApiError> {
    match ctx.agent.catalog_apply(Command::Acl(ops)).await? {
        CommandResponse::Acl(Err(e)) => Err(ApiError::Forbidden(format!("Permission denied: {e}"))),
        _ => Ok(()),
    }
}

/// The write of a token's templated policies and auth method, beside its record.
pub(crate) fn token_ext_op(accessor: &str, x: &TokenExt) -> AclOp {
    AclOp::ExtSet { table: ExtTable::TokenExt, key: accessor.to_string(), json: ext::encode(x) }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

// ---- JSON shapes ----

fn links_json(txn: &redb::ReadTransaction, links: &[Link], policies: bool) -> Result<Vec<Json>, StoreError> {
    let mut out = Vec::new();
    for l in links {
        let name = if policies {
            store::policy(txn, &l.id)?.map(|p| p.name)
        } else {
            store::role(txn, &l.id)?.map(|r| r.name)
        };
        out.push(json!({"ID": l.id, "Name": name.unwrap_or_else(|| l.name.clone())}));
    }
    Ok(out)
}

fn identities_json(svc: &[ServiceIdentity], nodes: &[NodeIdentity], m: &mut serde_json::Map<String, Json>) {
    if !svc.is_empty() {
        m.insert(
            "ServiceIdentities".into(),
            json!(svc
                .iter()
                .map(|s| {
                    let mut o = json!({"ServiceName": s.service_name});
                    if !s.datacenters.is_empty() {
                        o["Datacenters"] = json!(s.datacenters);
                    }
                    o
                })
                .collect::<Vec<_>>()),
        );
    }
    if !nodes.is_empty() {
        m.insert(
            "NodeIdentities".into(),
            json!(nodes
                .iter()
                .map(|n| json!({"NodeName": n.node_name, "Datacenter": n.datacenter}))
                .collect::<Vec<_>>()),
        );
    }
}

pub(crate) fn token_json(txn: &redb::ReadTransaction, t: &Token, show_secret: bool) -> Result<Json, StoreError> {
    let secret = if show_secret { t.secret_id.clone() } else { "<hidden>".into() };
    let mut m = serde_json::Map::new();
    m.insert("AccessorID".into(), json!(t.accessor_id));
    m.insert("SecretID".into(), json!(secret));
    m.insert("Description".into(), json!(t.description));
    if !t.policies.is_empty() {
        m.insert("Policies".into(), json!(links_json(txn, &t.policies, true)?));
    }
    if !t.roles.is_empty() {
        m.insert("Roles".into(), json!(links_json(txn, &t.roles, false)?));
    }
    identities_json(&t.service_identities, &t.node_identities, &mut m);
    let x = ext::token_ext(txn, &t.accessor_id)?;
    if !x.templated_policies.is_empty() {
        m.insert("TemplatedPolicies".into(), templated::to_json(&x.templated_policies));
    }
    m.insert("Local".into(), json!(t.local));
    if !x.auth_method.is_empty() {
        m.insert("AuthMethod".into(), json!(x.auth_method));
    }
    if !t.expiration_time.is_empty() {
        m.insert("ExpirationTime".into(), json!(t.expiration_time));
    }
    m.insert("CreateTime".into(), json!(t.create_time));
    m.insert("Hash".into(), json!(t.hash));
    m.insert("CreateIndex".into(), json!(t.create_index));
    m.insert("ModifyIndex".into(), json!(t.modify_index));
    Ok(Json::Object(m))
}

fn policy_json(p: &Policy, with_rules: bool) -> Json {
    let mut v = json!({
        "ID": p.id,
        "Name": p.name,
        "Description": p.description,
        "Hash": p.hash,
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    });
    if with_rules {
        v["Rules"] = json!(p.rules);
    }
    if !p.datacenters.is_empty() {
        v["Datacenters"] = json!(p.datacenters);
    }
    v
}

fn role_json(txn: &redb::ReadTransaction, r: &Role) -> Result<Json, StoreError> {
    let mut m = serde_json::Map::new();
    m.insert("ID".into(), json!(r.id));
    m.insert("Name".into(), json!(r.name));
    m.insert("Description".into(), json!(r.description));
    if !r.policies.is_empty() {
        m.insert("Policies".into(), json!(links_json(txn, &r.policies, true)?));
    }
    identities_json(&r.service_identities, &r.node_identities, &mut m);
    let x = ext::role_ext(txn, &r.id)?;
    if !x.templated_policies.is_empty() {
        m.insert("TemplatedPolicies".into(), templated::to_json(&x.templated_policies));
    }
    m.insert("Hash".into(), json!(r.hash));
    m.insert("CreateIndex".into(), json!(r.create_index));
    m.insert("ModifyIndex".into(), json!(r.modify_index));
    Ok(Json::Object(m))
}

// ---- bootstrap ----

async fn bootstrap_acl(ctx: &Ctx) -> Result<ApiResponse, ApiError> {
    // (Runs on the leader: it reads the reset file of its own data dir.)
    let reset_file = ctx.agent.config().data_dir.as_ref().map(|d| std::path::Path::new(d).join("acl-bootstrap-reset"));
    let reset_index =
        reset_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|s| s.trim().parse::<u64>().ok());
    let token = management_token(uuid::Uuid::new_v4().to_string(), "Bootstrap Token (Global Management)");
    let mut ops = Vec::new();
    let has_policy = {
        let txn = read_txn(ctx)?;
        store::policy(&txn, GLOBAL_MANAGEMENT_ID).map_err(internal)?.is_some()
    };
    if !has_policy {
        ops.push(AclOp::PolicySet(global_management()));
    }
    ops.push(AclOp::Bootstrap { token: token.clone(), reset_index });
    apply(ctx, ops).await?;
    if reset_index.is_some() {
        if let Some(p) = reset_file {
            let _ = std::fs::remove_file(p);
        }
    }
    let txn = read_txn(ctx)?;
    let stored = store::token(&txn, &token.accessor_id).map_err(internal)?.unwrap_or(token);
    let mut v = token_json(&txn, &stored, true).map_err(internal)?;
    v["ID"] = json!(stored.secret_id);
    Ok(ApiResponse::json(&v))
}

// ---- tokens ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinkBody {
    #[serde(rename = "ID", alias = "Id", alias = "id")]
    id: String,
    #[serde(rename = "Name", alias = "name")]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceIdentityBody {
    #[serde(rename = "ServiceName")]
    service_name: String,
    #[serde(rename = "Datacenters")]
    datacenters: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeIdentityBody {
    #[serde(rename = "NodeName")]
    node_name: String,
    #[serde(rename = "Datacenter")]
    datacenter: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenBody {
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
    #[serde(rename = "Description")]
    description: Option<String>,
    #[serde(rename = "Policies")]
    policies: Option<Vec<LinkBody>>,
    #[serde(rename = "Roles")]
    roles: Option<Vec<LinkBody>>,
    #[serde(rename = "ServiceIdentities")]
    service_identities: Option<Vec<ServiceIdentityBody>>,
    #[serde(rename = "NodeIdentities")]
    node_identities: Option<Vec<NodeIdentityBody>>,
    #[serde(rename = "Local")]
    local: bool,
    #[serde(rename = "ExpirationTime")]
    expiration_time: Option<String>,
    #[serde(rename = "ExpirationTTL")]
    expiration_ttl: Option<String>,
    #[serde(rename = "TemplatedPolicies")]
    templated_policies: Option<Vec<TemplatedBody>>,
}

/// Resolves policy or role links given by ID or name.
fn resolve_links(txn: &redb::ReadTransaction, links: &[LinkBody], policies: bool) -> Result<Vec<Link>, ApiError> {
    let kind = if policies { "policy" } else { "role" };
    let mut out: Vec<Link> = Vec::new();
    for l in links {
        let found = if !l.id.is_empty() {
            if policies {
                store::policy(txn, &l.id).map_err(internal)?.map(|p| (p.id, p.name))
            } else {
                store::role(txn, &l.id).map_err(internal)?.map(|r| (r.id, r.name))
            }
        } else if !l.name.is_empty() {
            if policies {
                store::policy_by_name(txn, &l.name).map_err(internal)?.map(|p| (p.id, p.name))
            } else {
                store::role_by_name(txn, &l.name).map_err(internal)?.map(|r| (r.id, r.name))
            }
        } else {
            return Err(ApiError::BadRequest(format!("{kind} link is missing an ID or Name")));
        };
        let (id, name) = found.ok_or_else(|| {
            let what = if l.id.is_empty() { format!("name {:?}", l.name) } else { format!("ID {:?}", l.id) };
            ApiError::BadRequest(format!("No such ACL {kind} with {what}"))
        })?;
        if !out.iter().any(|x| x.id == id) {
            out.push(Link { id, name });
        }
    }
    Ok(out)
}

fn identities(
    svc: Option<Vec<ServiceIdentityBody>>,
    nodes: Option<Vec<NodeIdentityBody>>,
    dc: &str,
) -> Result<(Vec<ServiceIdentity>, Vec<NodeIdentity>), ApiError> {
    let mut s = Vec::new();
    for i in svc.unwrap_or_default() {
        if i.service_name.is_empty() {
            return Err(ApiError::BadRequest("Service identity is missing the service name field".into()));
        }
        s.push(ServiceIdentity { service_name: i.service_name, datacenters: i.datacenters });
    }
    let mut n = Vec::new();
    for i in nodes.unwrap_or_default() {
        if i.node_name.is_empty() {
            return Err(ApiError::BadRequest("Node identity is missing the node name field".into()));
        }
        let datacenter = if i.datacenter.is_empty() { dc.to_string() } else { i.datacenter };
        n.push(NodeIdentity { node_name: i.node_name, datacenter });
    }
    Ok((s, n))
}

async fn token_write(ctx: &Ctx, req: &Request, path_id: Option<&str>) -> Result<ApiResponse, ApiError> {
    let b: TokenBody = decode(&req.body)?;
    let txn = read_txn(ctx)?;
    let existing = match path_id {
        Some(id) => {
            if !b.accessor_id.is_empty() && b.accessor_id != id {
                return Err(ApiError::BadRequest(format!(
                    "Token Accessor ID in URL and payload do not match: {id:?} != {:?}",
                    b.accessor_id
                )));
            }
            let t = store::token(&txn, id).map_err(internal)?;
            Some(t.ok_or_else(|| ApiError::BadRequest(format!("Cannot find token {id:?}")))?)
        }
        None => None,
    };
    let mut t = match existing {
        Some(t) => {
            if !b.secret_id.is_empty() && b.secret_id != t.secret_id {
                return Err(ApiError::BadRequest("Changing a token's SecretID is not permitted".into()));
            }
            if b.expiration_time.is_some() || b.expiration_ttl.is_some() {
                return Err(ApiError::BadRequest("Cannot change expiration time".into()));
            }
            t
        }
        None => {
            for (field, v) in [("AccessorID", &b.accessor_id), ("SecretID", &b.secret_id)] {
                if !v.is_empty() && !is_uuid(v) {
                    return Err(ApiError::BadRequest(format!("Invalid Token: {field} is not a valid UUID")));
                }
            }
            if !b.accessor_id.is_empty() && store::token(&txn, &b.accessor_id).map_err(internal)?.is_some() {
                return Err(ApiError::BadRequest("Invalid Token: AccessorID is already in use".into()));
            }
            if !b.secret_id.is_empty() && store::token_by_secret(&txn, &b.secret_id).map_err(internal)?.is_some() {
                return Err(ApiError::BadRequest("Invalid Token: SecretID is already in use".into()));
            }
            let mut t = Token {
                accessor_id: if b.accessor_id.is_empty() {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    b.accessor_id.clone()
                },
                secret_id: if b.secret_id.is_empty() { uuid::Uuid::new_v4().to_string() } else { b.secret_id.clone() },
                local: b.local,
                create_time: now_rfc3339(),
                ..Default::default()
            };
            let ttl = match b.expiration_ttl.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => Some(
                    legate_config::duration::parse_go_duration(s)
                        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?,
                ),
                None => None,
            };
            if let Some(ttl) = ttl {
                if ttl < std::time::Duration::from_secs(60) || ttl > std::time::Duration::from_secs(24 * 3600) {
                    return Err(ApiError::BadRequest(
                        "Invalid Token: ExpirationTTL must be between 1m0s and 24h0m0s".into(),
                    ));
                }
                let at = std::time::SystemTime::now() + ttl;
                t.expires_unix = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                t.expiration_time = httpdate_like(at);
            } else if let Some(at) = b.expiration_time.as_deref().filter(|s| !s.is_empty()) {
                return Err(ApiError::BadRequest(format!(
                    "Invalid Token: ExpirationTime {at:?} is not supported, use ExpirationTTL"
                )));
            }
            t
        }
    };
    if let Some(d) = b.description {
        t.description = d;
    }
    if let Some(p) = b.policies {
        t.policies = resolve_links(&txn, &p, true)?;
    }
    if let Some(r) = b.roles {
        t.roles = resolve_links(&txn, &r, false)?;
    }
    let dc = ctx.agent.config().datacenter.clone();
    if b.service_identities.is_some() || b.node_identities.is_some() {
        let (s, n) = identities(b.service_identities, b.node_identities, &dc)?;
        t.service_identities = s;
        t.node_identities = n;
    }
    let mut x = ext::token_ext(&txn, &t.accessor_id).map_err(internal)?;
    if let Some(tp) = b.templated_policies {
        x.templated_policies = templated::parse(tp, Owner::Token)?;
    }
    t.hash = legate_acl::builtin::token_hash(&t);
    drop(txn);
    let accessor = t.accessor_id.clone();
    apply(ctx, vec![AclOp::TokenSet(t), token_ext_op(&accessor, &x)]).await?;
    let txn = read_txn(ctx)?;
    let t = store::token(&txn, &accessor).map_err(internal)?.ok_or_else(|| internal("token vanished"))?;
    Ok(ApiResponse::json(&token_json(&txn, &t, true).map_err(internal)?))
}

pub async fn token_clone(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct CloneBody {
        #[serde(rename = "Description")]
        description: Option<String>,
    }
    let b: CloneBody = decode(&req.body)?;
    let txn = read_txn(ctx)?;
    let src = store::token(&txn, id).map_err(internal)?.ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    if src.accessor_id == ANONYMOUS_ACCESSOR {
        return Err(ApiError::BadRequest("Cannot clone the anonymous token".into()));
    }
    let mut t = src.clone();
    t.accessor_id = uuid::Uuid::new_v4().to_string();
    t.secret_id = uuid::Uuid::new_v4().to_string();
    t.create_time = now_rfc3339();
    if let Some(d) = b.description {
        t.description = d;
    }
    let x = TokenExt {
        templated_policies: ext::token_ext(&txn, &src.accessor_id).map_err(internal)?.templated_policies,
        auth_method: String::new(),
    };
    drop(txn);
    let accessor = t.accessor_id.clone();
    apply(ctx, vec![AclOp::TokenSet(t), token_ext_op(&accessor, &x)]).await?;
    let txn = read_txn(ctx)?;
    let t = store::token(&txn, &accessor).map_err(internal)?.ok_or_else(|| internal("token vanished"))?;
    Ok(ApiResponse::json(&token_json(&txn, &t, true).map_err(internal)?))
}

pub async fn token_read(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    let show = req.authz.allowed(legate_acl::Resource::Acl, "", legate_acl::Access::Write);
    let (v, headers) = acl_read(ctx, req, |txn| {
        let t = store::token(txn, id)?;
        t.map(|t| token_json(txn, &t, show)).transpose()
    })
    .await?;
    let v = v.ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    Ok(with_headers(ApiResponse::json(&v), headers))
}

pub async fn token_delete(ctx: &Ctx, _: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if id == ANONYMOUS_ACCESSOR {
        return Err(ApiError::BadRequest("Delete operation not permitted on the anonymous token".into()));
    }
    let txn = read_txn(ctx)?;
    let t = store::token(&txn, id).map_err(internal)?;
    drop(txn);
    if let Some(t) = t {
        let mut ops = vec![AclOp::TokenDelete(t.accessor_id.clone())];
        ops.extend(legacy_policy_of(&t).map(AclOp::PolicyDelete));
        apply(ctx, ops).await?;
    }
    Ok(ApiResponse::json(&true))
}

pub async fn token_list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let show = req.authz.allowed(legate_acl::Resource::Acl, "", legate_acl::Access::Write);
    let policy = req.param("policy").unwrap_or_default().to_string();
    let role = req.param("role").unwrap_or_default().to_string();
    let (list, headers) = acl_read(ctx, req, |txn| {
        let mut out = Vec::new();
        for t in store::tokens(txn)? {
            if !policy.is_empty() && !t.policies.iter().any(|l| l.id == policy) {
                continue;
            }
            if !role.is_empty() && !t.roles.iter().any(|l| l.id == role) {
                continue;
            }
            let mut v = token_json(txn, &t, show)?;
            v["Legacy"] = json!(false);
            out.push(v);
        }
        Ok(out)
    })
    .await?;
    Ok(with_headers(ApiResponse::json(&list), headers))
}

// ---- policies ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyBody {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "Rules")]
    rules: String,
    #[serde(rename = "Datacenters")]
    datacenters: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn policy_write(ctx: &Ctx, req: &Request, path_id: Option<&str>) -> Result<ApiResponse, ApiError> {
    let b: PolicyBody = decode(&req.body)?;
    if let Some(id) = path_id {
        if !b.id.is_empty() && b.id != id {
            return Err(ApiError::BadRequest(format!(
                "Policy ID in URL and payload do not match: {id:?} != {:?}",
                b.id
            )));
        }
    }
    if !valid_name(&b.name) {
        return Err(ApiError::BadRequest(format!("Invalid Policy: invalid Name {:?}", b.name)));
    }
    Rules::parse(&b.rules, false).map_err(|e| ApiError::BadRequest(format!("Invalid Policy: {e}")))?;
    let txn = read_txn(ctx)?;
    let existing = match path_id {
        Some(id) => Some(
            store::policy(&txn, id)
                .map_err(internal)?
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid Policy: Cannot find policy {id:?}")))?,
        ),
        None => None,
    };
    if let Some(other) = store::policy_by_name(&txn, &b.name).map_err(internal)? {
        if existing.as_ref().map(|e| &e.id) != Some(&other.id) {
            return Err(ApiError::BadRequest(format!(
                "Invalid Policy: A Policy with Name {:?} already exists",
                b.name
            )));
        }
    }
    let mut p = existing.unwrap_or_else(|| Policy { id: uuid::Uuid::new_v4().to_string(), ..Default::default() });
    if p.id == GLOBAL_MANAGEMENT_ID {
        if b.rules.trim() != p.rules.trim() {
            return Err(ApiError::BadRequest(
                "Changing the Rules for the builtin global-management policy is not permitted".into(),
            ));
        }
        if b.name != p.name {
            return Err(ApiError::BadRequest(
                "Changing the Name for the builtin global-management policy is not permitted".into(),
            ));
        }
    }
    p.name = b.name;
    p.description = b.description;
    p.rules = b.rules;
    p.datacenters = b.datacenters;
    p.hash = hash_of(&(&p.name, &p.rules, &p.description));
    drop(txn);
    let id = p.id.clone();
    apply(ctx, vec![AclOp::PolicySet(p)]).await?;
    let txn = read_txn(ctx)?;
    let p = store::policy(&txn, &id).map_err(internal)?.ok_or_else(|| internal("policy vanished"))?;
    Ok(ApiResponse::json(&policy_json(&p, true)))
}

async fn policy_read(ctx: &Ctx, req: &Request, id: Option<&str>, name: Option<&str>) -> Result<ApiResponse, ApiError> {
    if let Some(id) = id {
        check_uuid(id)?;
    }
    let (p, headers) = acl_read(ctx, req, |txn| {
        let p = match (id, name) {
            (Some(id), _) => store::policy(txn, id)?,
            (_, Some(n)) => store::policy_by_name(txn, n)?,
            _ => None,
        };
        Ok(p)
    })
    .await?;
    let p = p.ok_or_else(|| ApiError::NotFound("Requested policy does not exist: ACL not found".into()))?;
    Ok(with_headers(ApiResponse::json(&policy_json(&p, true)), headers))
}

pub async fn policy_delete(ctx: &Ctx, _: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if id == GLOBAL_MANAGEMENT_ID {
        return Err(ApiError::BadRequest(
            "Delete operation not permitted on the builtin global-management policy".into(),
        ));
    }
    check_uuid(id)?;
    let txn = read_txn(ctx)?;
    if store::policy(&txn, id).map_err(internal)?.is_none() {
        return Err(ApiError::NotFound("Cannot find policy to delete".into()));
    }
    // Tokens and roles linking it drop the link.
    let mut ops = vec![AclOp::PolicyDelete(id.to_string())];
    for mut t in store::tokens(&txn).map_err(internal)? {
        if t.policies.iter().any(|l| l.id == id) {
            t.policies.retain(|l| l.id != id);
            ops.push(AclOp::TokenSet(t));
        }
    }
    for mut r in store::roles(&txn).map_err(internal)? {
        if r.policies.iter().any(|l| l.id == id) {
            r.policies.retain(|l| l.id != id);
            ops.push(AclOp::RoleSet(r));
        }
    }
    drop(txn);
    apply(ctx, ops).await?;
    Ok(ApiResponse::json(&true))
}

pub async fn policy_list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let (list, headers) = acl_read(ctx, req, |txn| {
        let list: Vec<Json> = store::policies(txn)?.iter().map(|p| policy_json(p, false)).collect();
        Ok(list)
    })
    .await?;
    Ok(with_headers(ApiResponse::json(&list), headers))
}

// ---- roles ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleBody {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "Policies")]
    policies: Vec<LinkBody>,
    #[serde(rename = "ServiceIdentities")]
    service_identities: Option<Vec<ServiceIdentityBody>>,
    #[serde(rename = "NodeIdentities")]
    node_identities: Option<Vec<NodeIdentityBody>>,
    #[serde(rename = "TemplatedPolicies")]
    templated_policies: Vec<TemplatedBody>,
}

async fn role_write(ctx: &Ctx, req: &Request, path_id: Option<&str>) -> Result<ApiResponse, ApiError> {
    let b: RoleBody = decode(&req.body)?;
    if let Some(id) = path_id {
        if !b.id.is_empty() && b.id != id {
            return Err(ApiError::BadRequest(format!("Role ID in URL and payload do not match: {id:?} != {:?}", b.id)));
        }
    }
    if !valid_name(&b.name) {
        return Err(ApiError::BadRequest(format!("Invalid Role: invalid Name {:?}", b.name)));
    }
    let txn = read_txn(ctx)?;
    let existing = match path_id {
        Some(id) => Some(
            store::role(&txn, id)
                .map_err(internal)?
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid Role: Cannot find role {id:?}")))?,
        ),
        None => None,
    };
    if let Some(other) = store::role_by_name(&txn, &b.name).map_err(internal)? {
        if existing.as_ref().map(|e| &e.id) != Some(&other.id) {
            return Err(ApiError::BadRequest(format!("Invalid Role: A Role with Name {:?} already exists", b.name)));
        }
    }
    let mut r = existing.unwrap_or_else(|| Role { id: uuid::Uuid::new_v4().to_string(), ..Default::default() });
    r.name = b.name;
    r.description = b.description;
    r.policies = resolve_links(&txn, &b.policies, true)?;
    let (s, n) = identities(b.service_identities, b.node_identities, &ctx.agent.config().datacenter)?;
    r.service_identities = s;
    r.node_identities = n;
    let x = RoleExt { templated_policies: templated::parse(b.templated_policies, Owner::Role)? };
    r.hash = hash_of(&(&r.name, &r.policies, &r.description));
    drop(txn);
    let id = r.id.clone();
    let x = AclOp::ExtSet { table: ExtTable::RoleExt, key: id.clone(), json: ext::encode(&x) };
    apply(ctx, vec![AclOp::RoleSet(r), x]).await?;
    let txn = read_txn(ctx)?;
    let r = store::role(&txn, &id).map_err(internal)?.ok_or_else(|| internal("role vanished"))?;
    Ok(ApiResponse::json(&role_json(&txn, &r).map_err(internal)?))
}

async fn role_read(ctx: &Ctx, req: &Request, id: Option<&str>, name: Option<&str>) -> Result<ApiResponse, ApiError> {
    if let Some(id) = id {
        check_uuid(id)?;
    }
    let (r, headers) = acl_read(ctx, req, |txn| {
        let r = match (id, name) {
            (Some(id), _) => store::role(txn, id)?,
            (_, Some(n)) => store::role_by_name(txn, n)?,
            _ => None,
        };
        r.map(|r| role_json(txn, &r)).transpose()
    })
    .await?;
    let r = r.ok_or_else(|| ApiError::NotFound("Requested role does not exist: ACL not found".into()))?;
    Ok(with_headers(ApiResponse::json(&r), headers))
}

pub async fn role_delete(ctx: &Ctx, _: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    check_uuid(id)?;
    let txn = read_txn(ctx)?;
    if store::role(&txn, id).map_err(internal)?.is_none() {
        return Err(ApiError::NotFound("Cannot find role to delete".into()));
    }
    let mut ops = vec![AclOp::RoleDelete(id.to_string())];
    for mut t in store::tokens(&txn).map_err(internal)? {
        if t.roles.iter().any(|l| l.id == id) {
            t.roles.retain(|l| l.id != id);
            ops.push(AclOp::TokenSet(t));
        }
    }
    drop(txn);
    apply(ctx, ops).await?;
    Ok(ApiResponse::json(&true))
}

pub async fn role_list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let policy = req.param("policy").unwrap_or_default().to_string();
    let (list, headers) = acl_read(ctx, req, |txn| {
        let mut out = Vec::new();
        for r in store::roles(txn)? {
            if policy.is_empty() || r.policies.iter().any(|l| l.id == policy) {
                out.push(role_json(txn, &r)?);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(with_headers(ApiResponse::json(&list), headers))
}

// ---- legacy API: tokens by secret, with Name, Type and Rules ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct LegacyBody {
    #[serde(rename = "ID", alias = "Id", alias = "id")]
    id: String,
    #[serde(rename = "Name", alias = "name")]
    name: String,
    #[serde(rename = "Type", alias = "type")]
    kind: String,
    #[serde(rename = "Rules", alias = "rules")]
    rules: String,
}

/// The policy a legacy token's rules live in.
fn legacy_policy_name(accessor: &str) -> String {
    format!("legacy-token-{accessor}")
}

fn legacy_policy_of(t: &Token) -> Option<String> {
    let name = legacy_policy_name(&t.accessor_id);
    t.policies.iter().find(|l| l.name == name).map(|l| l.id.clone())
}

/// The ops that store a legacy token: the token (management -> global-management) and, for
/// client tokens with rules, its own policy (legacy prefix semantics).
fn legacy_ops(
    txn: &redb::ReadTransaction,
    mut t: Token,
    kind: &str,
    name: String,
    rules: &str,
) -> Result<Vec<AclOp>, ApiError> {
    let kind = if kind.is_empty() { "client" } else { kind };
    if kind != "client" && kind != "management" {
        return Err(ApiError::BadRequest(format!("Invalid token type {kind:?}")));
    }
    if kind == "client" {
        Rules::parse(rules, true).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let mut ops = Vec::new();
    let old_policy = legacy_policy_of(&t);
    t.description = name;
    t.legacy_type = kind.to_string();
    t.policies.clear();
    if kind == "management" {
        if store::policy(txn, GLOBAL_MANAGEMENT_ID).map_err(internal)?.is_none() {
            ops.push(AclOp::PolicySet(global_management()));
        }
        t.policies.push(Link { id: GLOBAL_MANAGEMENT_ID.into(), name: GLOBAL_MANAGEMENT_NAME.into() });
        ops.extend(old_policy.map(AclOp::PolicyDelete));
    } else if !rules.trim().is_empty() {
        let pname = legacy_policy_name(&t.accessor_id);
        let mut p = Policy {
            id: old_policy.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: pname.clone(),
            description: format!("Rules of legacy token {:?}", t.description),
            rules: rules.to_string(),
            legacy: true,
            ..Default::default()
        };
        p.hash = hash_of(&(&p.name, &p.rules));
        t.policies.push(Link { id: p.id.clone(), name: pname });
        ops.push(AclOp::PolicySet(p));
    } else {
        ops.extend(old_policy.map(AclOp::PolicyDelete));
    }
    t.hash = hash_of(&(&t.policies, &t.description, &t.legacy_type));
    ops.push(AclOp::TokenSet(t));
    Ok(ops)
}

async fn legacy_write(ctx: &Ctx, req: &Request, create: bool) -> Result<ApiResponse, ApiError> {
    let b: LegacyBody = decode(&req.body)?;
    let txn = read_txn(ctx)?;
    let existing = if b.id.is_empty() { None } else { store::token_by_secret(&txn, &b.id).map_err(internal)? };
    let t = match (create, existing) {
        (false, None) if b.id.is_empty() => return Err(ApiError::BadRequest("Must specify an ID".into())),
        (false, None) => return Err(ApiError::BadRequest(format!("Cannot find token {:?}", b.id))),
        (true, Some(_)) => return Err(ApiError::BadRequest("Invalid Token: SecretID is already in use".into())),
        (_, Some(t)) => t,
        (true, None) => Token {
            accessor_id: uuid::Uuid::new_v4().to_string(),
            secret_id: if b.id.is_empty() { uuid::Uuid::new_v4().to_string() } else { b.id.clone() },
            create_time: now_rfc3339(),
            ..Default::default()
        },
    };
    if t.accessor_id == ANONYMOUS_ACCESSOR && b.kind == "management" {
        return Err(ApiError::BadRequest("Cannot make the anonymous token a management token".into()));
    }
    let secret = t.secret_id.clone();
    let ops = legacy_ops(&txn, t, &b.kind, b.name, &b.rules)?;
    drop(txn);
    apply(ctx, ops).await?;
    Ok(ApiResponse::json(&json!({ "ID": secret })))
}

pub async fn legacy_destroy(ctx: &Ctx, req: &Request, secret: &str) -> Result<ApiResponse, ApiError> {
    let txn = read_txn(ctx)?;
    let t = store::token_by_secret(&txn, secret).map_err(internal)?;
    drop(txn);
    match t {
        Some(t) => token_delete(ctx, req, &t.accessor_id).await,
        None => Ok(ApiResponse::json(&true)),
    }
}

pub async fn legacy_clone(ctx: &Ctx, _: &Request, secret: &str) -> Result<ApiResponse, ApiError> {
    let txn = read_txn(ctx)?;
    let src = store::token_by_secret(&txn, secret)
        .map_err(internal)?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    let (kind, rules) = legacy_shape(&txn, &src).map_err(internal)?;
    let t = Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        create_time: now_rfc3339(),
        ..Default::default()
    };
    let new_secret = t.secret_id.clone();
    let ops = legacy_ops(&txn, t, &kind, src.description.clone(), &rules)?;
    drop(txn);
    apply(ctx, ops).await?;
    Ok(ApiResponse::json(&json!({ "ID": new_secret })))
}

/// A token seen through the legacy API: Type and Rules.
fn legacy_shape(txn: &redb::ReadTransaction, t: &Token) -> Result<(String, String), StoreError> {
    if t.legacy_type == "management" || t.policies.iter().any(|l| l.id == GLOBAL_MANAGEMENT_ID) {
        return Ok(("management".into(), String::new()));
    }
    let rules = match legacy_policy_of(t) {
        Some(id) => store::policy(txn, &id)?.map(|p| p.rules).unwrap_or_default(),
        None => String::new(),
    };
    Ok(("client".into(), rules))
}

async fn legacy_info(ctx: &Ctx, req: &Request, secret: Option<&str>) -> Result<ApiResponse, ApiError> {
    let (list, headers) = acl_read(ctx, req, |txn| {
        let tokens = match secret {
            Some(s) => store::token_by_secret(txn, s)?.into_iter().collect(),
            None => store::tokens(txn)?,
        };
        let mut out = Vec::new();
        for t in tokens {
            let (kind, rules) = legacy_shape(txn, &t)?;
            out.push(json!({
                "CreateIndex": t.create_index,
                "ModifyIndex": t.modify_index,
                "ID": t.secret_id,
                "Name": t.description,
                "Type": kind,
                "Rules": rules,
            }));
        }
        Ok(out)
    })
    .await?;
    Ok(with_headers(ApiResponse::json(&list), headers))
}
