//! `/v1/coordinate/*`: the network coordinates the agents send (`datacenters`, `nodes`,
//! `node/<node>`, `update`). The sorting they feed (`?near=`) is `near.rs`.

use http::StatusCode;
use serde_json::Value as Json;

use super::blocking;
use super::{decode, ApiError, ApiResponse, Ctx, Request};
use legate_acl::{Access, Resource};
use legate_agent::cluster::server_rpc_addr;
use legate_api::coordinate::{CoordinateEntry, CoordinateUpdate, DatacenterCoordinates};
use legate_raft::command::Command;
use legate_state::coordinate;
use legate_state::schema::IDX_COORDINATES;
use legate_state::watch::Table;

/// The field names of an update body, for case-insensitive decoding.
const UPDATE_FIELDS: &[&str] = &["Node", "Segment", "Coord", "Vec", "Error", "Adjustment", "Height"];

/// `GET /v1/coordinate/nodes`: every node's coordinate the token may read (blocking).
pub async fn nodes(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    blocking::answer(
        ctx,
        req,
        Table::Coordinates,
        |txn| {
            let index = legate_state::table_index_read(txn, IDX_COORDINATES)?;
            let list: Vec<CoordinateEntry> =
                coordinate::list(txn)?.into_iter().filter(|e| req.can_read(Resource::Node, &e.node)).collect();
            Ok((index, list))
        },
        |list| Ok(ApiResponse::json(&list)),
    )
    .await
}

/// `GET /v1/coordinate/node/<node>`: the node's coordinates (one per segment); 404 when it
/// has none.
pub async fn node(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    blocking::answer(
        ctx,
        req,
        Table::Coordinates,
        |txn| {
            let index = legate_state::table_index_read(txn, IDX_COORDINATES)?;
            Ok((index, coordinate::node(txn, name)?))
        },
        |list| {
            if list.is_empty() {
                return Ok(ApiResponse::empty(StatusCode::NOT_FOUND));
            }
            Ok(ApiResponse::json(&list))
        },
    )
    .await
}

/// `GET /v1/coordinate/datacenters`: every datacenter's servers with their WAN coordinates
/// (the WAN pool's: this server's own and those its pings brought back), named `<node>.<dc>`.
/// Without a WAN pool: this datacenter's servers with the coordinates they keep in the LAN.
pub async fn datacenters(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?;
    let dc = ctx.agent.config().datacenter.clone();
    if let Some(wan) = ctx.agent.gossip_wan.get() {
        let mut by_dc: std::collections::BTreeMap<String, Vec<CoordinateEntry>> = std::collections::BTreeMap::new();
        let own = format!("{}.{dc}", ctx.agent.node_name());
        let mut coords = wan.peer_coordinates();
        if let Some(c) = wan.coordinate() {
            coords.push((own, c));
        }
        for m in wan.members() {
            let Some(member_dc) = m.tags.get("dc") else { continue };
            let entry = by_dc.entry(member_dc.clone()).or_default();
            if let Some((_, coord)) = coords.iter().find(|(n, _)| *n == m.name) {
                entry.push(CoordinateEntry { node: m.name.clone(), segment: String::new(), coord: coord.clone() });
            }
        }
        let out: Vec<DatacenterCoordinates> = by_dc
            .into_iter()
            .map(|(datacenter, mut coordinates)| {
                coordinates.sort_by(|a, b| a.node.cmp(&b.node));
                DatacenterCoordinates { datacenter, area_id: "wan".into(), coordinates }
            })
            .collect();
        return Ok(ApiResponse::json(&out));
    }
    let mut servers: Vec<String> = ctx
        .agent
        .gossip
        .get()
        .map(|g| g.members().into_iter().filter(|m| server_rpc_addr(m).is_some()).map(|m| m.name).collect())
        .unwrap_or_default();
    if !servers.iter().any(|n| n == ctx.agent.node_name()) {
        servers.push(ctx.agent.node_name().to_string());
    }
    servers.sort();
    let txn = server.store.read().map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut coordinates = Vec::new();
    for name in servers {
        if let Some(coord) = coordinate::get(&txn, &name).map_err(|e| ApiError::Internal(e.to_string()))? {
            coordinates.push(CoordinateEntry { node: format!("{name}.{dc}"), segment: String::new(), coord });
        }
    }
    Ok(ApiResponse::json(&vec![DatacenterCoordinates { datacenter: dc, area_id: "wan".into(), coordinates }]))
}

/// `PUT /v1/coordinate/update`: stores a node's coordinate (node:write on the node).
pub async fn update(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?.clone();
    let raw: Json =
        serde_json::from_slice(&req.body).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    let update: CoordinateUpdate = serde_json::from_value(decode::keys_as(raw, UPDATE_FIELDS))
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    req.require(Resource::Node, &update.node, Access::Write)?;
    if !update.coord.is_valid() {
        return Err(ApiError::Internal("invalid coordinate".into()));
    }
    if !update.coord.is_compatible_with(&legate_api::coordinate::Coord::origin()) {
        return Err(ApiError::Internal("incompatible coordinate".into()));
    }
    server.apply(Command::Coordinates(vec![update])).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ApiResponse::empty(StatusCode::OK))
}
