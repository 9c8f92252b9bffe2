//! `/v1/health/*`: node/<n>, checks/<service>, service/<service> (passing, tag, node-meta,
//! filter), state/<state>; every one a blocking query.

use serde_json::{json, Value as Json};

use super::blocking::{self, with_headers};
use super::catalog::{
    check_filter, check_json, filter, node_json, node_matches, node_meta_filter, service_json, tags_match,
};
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::Resource;
use legate_state::catalog;
use legate_state::schema::IDX_CHECKS;
use legate_state::watch::Table;

pub async fn node_checks(ctx: &Ctx, req: &Request, node: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_CHECKS])?;
            let checks = catalog::node_checks(txn, node)?;
            Ok((index, checks.iter().filter(|c| check_readable(req, c)).map(check_json).collect::<Vec<_>>()))
        },
        |list| Ok(ApiResponse::json(&filter(req, list)?)),
    )
    .await
}

pub async fn service_checks(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let meta = node_meta_filter(req);
    let peer = super::catalog::peer_param(req);
    let near = super::near::node(ctx, req);
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::service_index(txn, name)?;
            let mut list = Vec::new();
            if peer {
                return Ok((index, list));
            }
            for c in catalog::all_checks(txn)?.iter().filter(|c| c.service_name == name) {
                if !req.can_read(Resource::Service, &c.service_name) || !req.can_read(Resource::Node, &c.node) {
                    continue;
                }
                if meta.is_empty() || catalog::node(txn, &c.node)?.is_some_and(|n| node_matches(&n, &meta)) {
                    list.push(check_json(c));
                }
            }
            super::near::sort(txn, near.as_deref(), &mut list, |j| j["Node"].as_str())?;
            Ok((index, list))
        },
        |list| Ok(ApiResponse::json(&filter(req, list)?)),
    )
    .await
}

/// `?passing` by presence; `?passing=false` (or 0) turns it off, as Consul's parser.
fn passing_only(req: &Request) -> bool {
    match req.param("passing") {
        None => false,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"),
    }
}

pub async fn service(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    let meta = node_meta_filter(req);
    let passing = passing_only(req);
    let peer = super::catalog::peer_param(req);
    let near = super::near::node(ctx, req);
    let (_, outcome, headers) = blocking::wait(ctx, req, Table::Catalog, |txn| {
        let index = catalog::service_index(txn, name)?;
        let mut list = Vec::new();
        if peer {
            return Ok((index, list));
        }
        for (n, s) in catalog::service_nodes(txn, name)? {
            if !node_matches(&n, &meta)
                || !tags_match(&s, req)
                || !req.can_read(Resource::Service, &s.service)
                || !req.can_read(Resource::Node, &n.node)
            {
                continue;
            }
            let checks: Vec<catalog::Check> = catalog::node_checks(txn, &n.node)?
                .into_iter()
                .filter(|c| c.service_id.is_empty() || c.service_id == s.id)
                .collect();
            if passing && checks.iter().any(|c| c.status != "passing") {
                continue;
            }
            list.push(json!({
                "Node": node_json(&n),
                "Service": service_json(&s, None),
                "Checks": checks.iter().map(check_json).collect::<Vec<_>>(),
            }));
        }
        super::near::sort(txn, near.as_deref(), &mut list, |j| j["Node"]["Node"].as_str())?;
        Ok((index, list))
    })
    .await?;
    super::catalog::count_service_query(super::catalog::ServiceQuery::Health, req, name, outcome.result().len());
    let resp = outcome.respond(req, |list| Ok(ApiResponse::json(&filter(req, list)?)))?;
    Ok(with_headers(resp, headers))
}

pub async fn state(ctx: &Ctx, req: &Request, state: &str) -> Result<ApiResponse, ApiError> {
    check_filter(req)?;
    if !matches!(state, "any" | "passing" | "warning" | "critical") {
        return Err(ApiError::BadRequest("Invalid check state".into()));
    }
    let meta = node_meta_filter(req);
    blocking::answer(
        ctx,
        req,
        Table::Catalog,
        |txn| {
            let index = catalog::tables_index(txn, &[IDX_CHECKS])?;
            let mut list: Vec<Json> = Vec::new();
            for c in catalog::all_checks(txn)?.iter().filter(|c| state == "any" || c.status == state) {
                if !check_readable(req, c) {
                    continue;
                }
                if meta.is_empty() || catalog::node(txn, &c.node)?.is_some_and(|n| node_matches(&n, &meta)) {
                    list.push(check_json(c));
                }
            }
            Ok((index, list))
        },
        |list| Ok(ApiResponse::json(&filter(req, list)?)),
    )
    .await
}

/// A check is readable with node:read on its node and, for a service check, service:read on
/// its service.
fn check_readable(req: &Request, c: &catalog::Check) -> bool {
    req.can_read(Resource::Node, &c.node)
        && (c.service_name.is_empty() || req.can_read(Resource::Service, &c.service_name))
}
