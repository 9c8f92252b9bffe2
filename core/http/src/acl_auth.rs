//! Auth methods (`/v1/acl/auth-method[s]`), binding rules (`/v1/acl/binding-rule[s]`), and
//! `POST /v1/acl/login` / `logout`: a bearer token verified by an auth method becomes an ACL
//! token holding what the matching binding rules bind (`legate_authmethod` verifies and binds;
//! this module stores and answers).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use super::acl::{acl_read, apply, internal, read_txn, token_ext_op, token_json};
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::builtin::{httpdate_like, now_rfc3339};
use legate_authmethod::{binding, jwt};
use legate_state::acl::{self as store, AclOp, Link, NodeIdentity, ServiceIdentity, Token};
use legate_state::acl_ext::{self as ext, AuthMethod, BindingRule, ExtTable, TemplatedPolicy, TokenExt};
use legate_types::GoDuration;

/// The body's top-level keys renamed to `names` (matched case-insensitively, as Go's decoder
/// does); an unknown key is Consul's 400 `<what> decoding failed: json: unknown field "x"`.
/// Nested values (an auth method's `Config`) keep their keys.
fn top_level(body: &[u8], names: &[&str], what: &str) -> Result<Map<String, Json>, ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("{what} decoding failed: {e}"));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("EOF".into()));
    }
    let v: Json = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if v.is_null() {
        return Err(bad("json: cannot unmarshal non-object".into()));
    }
    super::decode::strict_object(v, names).map_err(bad)
}

fn text(m: &Map<String, Json>, key: &str) -> String {
    m.get(key).and_then(Json::as_str).unwrap_or_default().to_string()
}

// ---- auth methods ----

fn method_json(m: &AuthMethod, with_config: bool) -> Json {
    let mut v = Map::new();
    if m.max_token_ttl_ns != 0 {
        v.insert(
            "MaxTokenTTL".into(),
            json!(GoDuration(std::time::Duration::from_nanos(m.max_token_ttl_ns)).to_string()),
        );
    }
    v.insert("Name".into(), json!(m.name));
    v.insert("Type".into(), json!(m.method_type));
    for (k, val) in
        [("DisplayName", &m.display_name), ("Description", &m.description), ("TokenLocality", &m.token_locality)]
    {
        if !val.is_empty() {
            v.insert(k.into(), json!(val));
        }
    }
    if with_config {
        v.insert("Config".into(), m.config.clone());
    }
    v.insert("CreateIndex".into(), json!(m.create_index));
    v.insert("ModifyIndex".into(), json!(m.modify_index));
    Json::Object(v)
}

const METHOD_FIELDS: &[&str] = &[
    "Name",
    "Type",
    "DisplayName",
    "Description",
    "MaxTokenTTL",
    "TokenLocality",
    "Config",
    "CreateIndex",
    "ModifyIndex",
];

fn method_of(body: &[u8]) -> Result<AuthMethod, ApiError> {
    let m = top_level(body, METHOD_FIELDS, "AuthMethod")?;
    let ttl = match m.get("MaxTokenTTL") {
        None => 0,
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Json::String(s)) if s.is_empty() => 0,
        Some(Json::String(s)) => legate_types::duration::parse_go_duration(s)
            .map_err(|e| ApiError::BadRequest(format!("AuthMethod decoding failed: {e}")))?
            .as_nanos() as u64,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("AuthMethod decoding failed: invalid MaxTokenTTL {other}")))
        }
    };
    Ok(AuthMethod {
        name: text(&m, "Name"),
        method_type: text(&m, "Type"),
        display_name: text(&m, "DisplayName"),
        description: text(&m, "Description"),
        max_token_ttl_ns: ttl,
        token_locality: text(&m, "TokenLocality"),
        config: m.get("Config").cloned().unwrap_or(Json::Null),
        create_index: 0,
        modify_index: 0,
    })
}

async fn method_write(ctx: &Ctx, req: &Request, path_name: Option<&str>) -> Result<ApiResponse, ApiError> {
    let mut m = method_of(&req.body)?;
    if let Some(name) = path_name {
        if m.name.is_empty() {
            m.name = name.to_string();
        } else if m.name != name {
            return Err(ApiError::BadRequest("AuthMethod Name in URL and payload do not match".into()));
        }
    }
    let existing = ext::auth_method(&read_txn(ctx)?, &m.name).map_err(internal)?;
    if let Some(e) = &existing {
        if m.method_type.is_empty() {
            m.method_type = e.method_type.clone();
        } else if m.method_type != e.method_type {
            return Err(ApiError::Internal("the Type field of an Auth Method is immutable".into()));
        }
    }
    let config = ctx.agent.config();
    let primary = config.primary_datacenter() == config.datacenter;
    legate_authmethod::validate_method(&m, primary).await.map_err(ApiError::Internal)?;
    let name = m.name.clone();
    apply(ctx, vec![AclOp::ExtSet { table: ExtTable::AuthMethod, key: name.clone(), json: ext::encode(&m) }]).await?;
    let stored =
        ext::auth_method(&read_txn(ctx)?, &name).map_err(internal)?.ok_or_else(|| internal("auth method vanished"))?;
    Ok(ApiResponse::json(&method_json(&stored, true)))
}

pub async fn method_create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    method_write(ctx, req, None).await
}

pub async fn method_update(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    method_write(ctx, req, Some(name)).await
}

pub async fn method_read(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    let (m, headers) = acl_read(ctx, req, |txn| ext::auth_method(txn, name)).await?;
    let m = m.ok_or_else(|| ApiError::NotFound("Requested auth method does not exist: ACL not found".into()))?;
    Ok(super::blocking::with_headers(ApiResponse::json(&method_json(&m, true)), headers))
}

pub async fn method_list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let (list, headers) = acl_read(ctx, req, ext::auth_methods).await?;
    let list: Vec<Json> = list.iter().map(|m| method_json(m, false)).collect();
    Ok(super::blocking::with_headers(ApiResponse::json(&list), headers))
}

/// Deleting a method deletes its binding rules and the tokens its logins created.
pub async fn method_delete(ctx: &Ctx, _: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    let txn = read_txn(ctx)?;
    if ext::auth_method(&txn, name).map_err(internal)?.is_none() {
        return Ok(ApiResponse::json(&true));
    }
    let mut ops = vec![AclOp::ExtDelete { table: ExtTable::AuthMethod, key: name.to_string() }];
    for r in ext::binding_rules(&txn).map_err(internal)? {
        if r.auth_method == name {
            ops.push(AclOp::ExtDelete { table: ExtTable::BindingRule, key: r.id });
        }
    }
    ops.extend(ext::tokens_of_method(&txn, name).map_err(internal)?.into_iter().map(AclOp::TokenDelete));
    drop(txn);
    apply(ctx, ops).await?;
    Ok(ApiResponse::json(&true))
}

// ---- binding rules ----

fn rule_json(r: &BindingRule) -> Json {
    let mut v = json!({
        "ID": r.id,
        "Description": r.description,
        "AuthMethod": r.auth_method,
        "Selector": r.selector,
        "BindType": r.bind_type,
        "BindName": r.bind_name,
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    });
    if let Some(n) = &r.bind_vars_name {
        v["BindVars"] = json!({"name": n});
    }
    v
}

const RULE_FIELDS: &[&str] =
    &["ID", "Description", "AuthMethod", "Selector", "BindType", "BindName", "BindVars", "CreateIndex", "ModifyIndex"];

async fn rule_write(ctx: &Ctx, req: &Request, path_id: &str) -> Result<ApiResponse, ApiError> {
    let m = top_level(&req.body, RULE_FIELDS, "BindingRule")?;
    let body_id = text(&m, "ID");
    if !body_id.is_empty() && body_id != path_id {
        return Err(ApiError::BadRequest("BindingRule ID in URL and payload do not match".into()));
    }
    let bind_vars_name = match m.get("BindVars") {
        Some(Json::Object(vars)) => vars
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("name"))
            .map(|(_, v)| v.as_str().unwrap_or_default().to_string()),
        _ => None,
    };
    let mut r = BindingRule {
        id: path_id.to_string(),
        description: text(&m, "Description"),
        auth_method: text(&m, "AuthMethod"),
        selector: text(&m, "Selector"),
        bind_type: text(&m, "BindType"),
        bind_name: text(&m, "BindName"),
        bind_vars_name,
        create_index: 0,
        modify_index: 0,
    };
    let txn = read_txn(ctx)?;
    if r.id.is_empty() {
        r.id = uuid::Uuid::new_v4().to_string();
    } else {
        if uuid::Uuid::parse_str(&r.id).is_err() || r.id.len() != 36 {
            return Err(ApiError::Internal("Binding Rule ID invalid UUID".into()));
        }
        let existing = ext::binding_rule(&txn, &r.id)
            .map_err(internal)?
            .ok_or_else(|| ApiError::Internal(format!("cannot find binding rule {}", r.id)))?;
        if r.auth_method.is_empty() {
            r.auth_method = existing.auth_method;
        } else if r.auth_method != existing.auth_method {
            return Err(ApiError::Internal("the AuthMethod field of an Binding Rule is immutable".into()));
        }
    }
    if r.auth_method.is_empty() {
        return Err(ApiError::Internal("Invalid Binding Rule: no AuthMethod is set".into()));
    }
    let method = ext::auth_method(&txn, &r.auth_method)
        .map_err(internal)?
        .ok_or_else(|| ApiError::Internal(format!("cannot find auth method with name {:?}", r.auth_method)))?;
    drop(txn);
    let config = jwt::JwtConfig::parse(&method.config).map_err(ApiError::Internal)?;
    let (values, lists) = config.mapped_names();
    binding::validate_rule(&r, &values, &lists).map_err(ApiError::Internal)?;
    let id = r.id.clone();
    apply(ctx, vec![AclOp::ExtSet { table: ExtTable::BindingRule, key: id.clone(), json: ext::encode(&r) }]).await?;
    let stored = ext::binding_rule(&read_txn(ctx)?, &id).map_err(internal)?.ok_or_else(|| internal("rule vanished"))?;
    Ok(ApiResponse::json(&rule_json(&stored)))
}

pub async fn rule_create(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    rule_write(ctx, req, "").await
}

pub async fn rule_update(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    rule_write(ctx, req, id).await
}

pub async fn rule_read(ctx: &Ctx, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    let (r, headers) = acl_read(ctx, req, |txn| ext::binding_rule(txn, id)).await?;
    let r = r.ok_or_else(|| ApiError::NotFound("Requested binding rule does not exist: ACL not found".into()))?;
    Ok(super::blocking::with_headers(ApiResponse::json(&rule_json(&r)), headers))
}

pub async fn rule_list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let method = req.param("authmethod").unwrap_or_default().to_string();
    let (list, headers) = acl_read(ctx, req, ext::binding_rules).await?;
    let list: Vec<Json> = list.iter().filter(|r| method.is_empty() || r.auth_method == method).map(rule_json).collect();
    Ok(super::blocking::with_headers(ApiResponse::json(&list), headers))
}

pub async fn rule_delete(ctx: &Ctx, _: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    if ext::binding_rule(&read_txn(ctx)?, id).map_err(internal)?.is_some() {
        apply(ctx, vec![AclOp::ExtDelete { table: ExtTable::BindingRule, key: id.to_string() }]).await?;
    }
    Ok(ApiResponse::json(&true))
}

// ---- login / logout ----

/// `POST /v1/acl/login` with `{AuthMethod, BearerToken, Meta}`: no token needed.
pub async fn login(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("Failed to decode request body: {e}"));
    let m = top_level(&req.body, &["AuthMethod", "BearerToken", "Meta"], "Login")
        .map_err(|e| bad(e.to_string().trim_start_matches("Login decoding failed: ").to_string()))?;
    let method_name = text(&m, "AuthMethod");
    let bearer = text(&m, "BearerToken");
    let meta: BTreeMap<String, String> = match m.get("Meta") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?,
        None => BTreeMap::new(),
    };
    let txn = read_txn(ctx)?;
    let method = ext::auth_method(&txn, &method_name)
        .map_err(internal)?
        .ok_or_else(|| ApiError::Forbidden(format!("ACL not found: auth method {method_name:?} not found")))?;
    let rules: Vec<BindingRule> =
        ext::binding_rules(&txn).map_err(internal)?.into_iter().filter(|r| r.auth_method == method.name).collect();
    drop(txn);
    let config = jwt::JwtConfig::parse(&method.config).map_err(ApiError::Internal)?;
    let verified =
        jwt::verify(&config, &method.name, method.modify_index, &bearer).await.map_err(ApiError::Internal)?;
    let (values, _) = config.mapped_names();
    let bound = binding::bind(&rules, &values, &verified).map_err(ApiError::Internal)?;

    let txn = read_txn(ctx)?;
    let mut roles = Vec::new();
    for name in &bound.roles {
        if let Some(r) = store::role_by_name(&txn, name).map_err(internal)? {
            if !roles.iter().any(|l: &Link| l.id == r.id) {
                roles.push(Link { id: r.id, name: r.name });
            }
        }
    }
    let mut policies = Vec::new();
    for name in &bound.policies {
        if let Some(p) = store::policy_by_name(&txn, name).map_err(internal)? {
            if !policies.iter().any(|l: &Link| l.id == p.id) {
                policies.push(Link { id: p.id, name: p.name });
            }
        }
    }
    drop(txn);
    let dc = ctx.agent.config().datacenter.clone();
    let templated: Vec<TemplatedPolicy> = bound
        .templated
        .iter()
        .map(|(t, name)| TemplatedPolicy { template_name: t.clone(), name: name.clone(), datacenters: Vec::new() })
        .collect();
    if roles.is_empty()
        && policies.is_empty()
        && bound.service_identities.is_empty()
        && bound.node_identities.is_empty()
        && templated.is_empty()
    {
        return Err(ApiError::Forbidden("Permission denied".into()));
    }
    let mut t = Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        description: legate_authmethod::login_description(&meta),
        policies,
        roles,
        service_identities: bound
            .service_identities
            .iter()
            .map(|s| ServiceIdentity { service_name: s.clone(), datacenters: Vec::new() })
            .collect(),
        node_identities: bound
            .node_identities
            .iter()
            .map(|n| NodeIdentity { node_name: n.clone(), datacenter: dc.clone() })
            .collect(),
        local: method.token_locality != "global",
        create_time: now_rfc3339(),
        ..Default::default()
    };
    if method.max_token_ttl_ns != 0 {
        let at = std::time::SystemTime::now() + std::time::Duration::from_nanos(method.max_token_ttl_ns);
        t.expires_unix = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        t.expiration_time = httpdate_like(at);
    }
    t.hash = legate_acl::builtin::token_hash(&t);
    let accessor = t.accessor_id.clone();
    let x = TokenExt { templated_policies: templated, auth_method: method.name.clone() };
    apply(ctx, vec![AclOp::TokenSet(t), token_ext_op(&accessor, &x)]).await?;
    let txn = read_txn(ctx)?;
    let t = store::token(&txn, &accessor).map_err(internal)?.ok_or_else(|| internal("token vanished"))?;
    Ok(ApiResponse::json(&token_json(&txn, &t, true).map_err(internal)?))
}

/// `POST /v1/acl/logout`: deletes the request's token, if a login created it.
pub async fn logout(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let secret = super::token(req).ok_or_else(|| ApiError::Unauthorized("Supplied token does not exist".into()))?;
    let txn = read_txn(ctx)?;
    let t = store::token_by_secret(&txn, &secret)
        .map_err(internal)?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    if ext::token_ext(&txn, &t.accessor_id).map_err(internal)?.auth_method.is_empty() {
        return Err(ApiError::Forbidden("Permission denied: token wasn't created via login".into()));
    }
    drop(txn);
    apply(ctx, vec![AclOp::TokenDelete(t.accessor_id)]).await?;
    Ok(ApiResponse::json(&true))
}
