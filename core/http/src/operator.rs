//! `/v1/operator/raft/configuration`, `/v1/operator/raft/peer`, `/v1/operator/keyring`.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{blocking, decode, ApiError, ApiResponse, Ctx, Request};
use legate_agent::cluster::server_rpc_addr;

/// Node names by server RPC address, from gossip.
fn names_by_addr(ctx: &Ctx) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    if let Some(g) = ctx.agent.gossip.get() {
        for m in g.members() {
            if let Some(addr) = server_rpc_addr(&m) {
                out.insert(addr, (m.name.clone(), m.tags.get("id").cloned().unwrap_or_default()));
            }
        }
    }
    if let Some(s) = ctx.agent.server() {
        out.insert(s.rpc_addr.clone(), (ctx.agent.node_name().to_string(), ctx.agent.node_id().to_string()));
    }
    out
}

pub async fn raft_configuration(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?;
    let m = server.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let names = names_by_addr(ctx);
    let leader = server.leader();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let servers: Vec<Json> = membership
        .nodes()
        .map(|(id, node)| {
            let (name, node_id) = names.get(&node.addr).cloned().unwrap_or_else(|| (String::new(), id.to_string()));
            json!({
                "ID": node_id,
                "Node": name,
                "Address": node.addr,
                "Leader": leader.as_deref() == Some(node.addr.as_str()),
                "ProtocolVersion": "3",
                "Voter": voters.contains(id),
                "LastIndex": m.last_log_index.unwrap_or(0),
            })
        })
        .collect();
    // Consul's answer carries no index here (its `Index` is always 0).
    Ok(ApiResponse::json(&json!({"Servers": servers, "Index": 0})))
}

pub async fn remove_peer(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?;
    let m = server.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    let names = names_by_addr(ctx);
    let target = match (req.param("id"), req.param("address")) {
        (Some(id), _) if !id.is_empty() => membership
            .nodes()
            .find(|(rid, node)| names.get(&node.addr).is_some_and(|(_, nid)| nid == id) || rid.to_string() == id)
            .map(|(rid, _)| *rid),
        (_, Some(addr)) if !addr.is_empty() => membership.nodes().find(|(_, n)| n.addr == addr).map(|(rid, _)| *rid),
        _ => {
            return Err(ApiError::BadRequest(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".into(),
            ))
        }
    };
    let Some(target) = target else {
        let what = req.param("address").or(req.param("id")).unwrap_or_default();
        return Err(ApiError::Internal(format!("address {what:?} was not found in the Raft configuration")));
    };
    let keep: std::collections::BTreeSet<u64> = membership.voter_ids().filter(|v| *v != target).collect();
    server.raft.change_membership(keep, false).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ApiResponse::empty(StatusCode::OK))
}

/// `POST /v1/operator/raft/transfer-leader[?id=<server ID>]`: hands leadership to that voter
/// (or the most up-to-date one); `{"Success": true}` once it leads. A follower asks the leader.
pub async fn transfer_leader(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?;
    if !server.is_leader() {
        // A transfer takes a few election timeouts on the leader.
        return super::forward::to_leader_for(ctx, server, req, std::time::Duration::from_secs(15)).await;
    }
    let target = match req.param("id").filter(|id| !id.is_empty()) {
        None => None,
        Some(id) => {
            let names = names_by_addr(ctx);
            let m = server.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership().clone();
            let found = membership
                .nodes()
                .find(|(rid, node)| names.get(&node.addr).is_some_and(|(_, nid)| nid == id) || rid.to_string() == id)
                .map(|(rid, _)| *rid);
            Some(found.ok_or_else(|| ApiError::Internal(format!("cannot find peer {id}")))?)
        }
    };
    server.transfer_leadership(target).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ApiResponse::json(&json!({"Success": true})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyBody {
    key: String,
}

/// The LAN keyring: changes apply here and are relayed to every member by an internal gossip
/// event; listing shows this agent's keys (per-node counts are not collected).
/// One pool's keyring as Consul reports it: each key's count from every member's answer.
async fn keyring_report(g: &legate_gossip::Gossip, wan: bool, dc: &str) -> Json {
    let report = g.query_keyrings(KEYRING_QUERY_TIMEOUT).await;
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    let mut primary: BTreeMap<String, usize> = BTreeMap::new();
    for keys in &report.answers {
        for k in keys {
            *all.entry(k.clone()).or_default() += 1;
        }
        if let Some(p) = keys.first() {
            *primary.entry(p.clone()).or_default() += 1;
        }
    }
    json!({
        "WAN": wan,
        "Datacenter": if wan { "" } else { dc },
        "Segment": "",
        "Keys": all,
        "PrimaryKeys": primary,
        "NumNodes": report.asked,
    })
}

/// How long `GET /v1/operator/keyring` waits for members' answers.
const KEYRING_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn keyring(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let g = ctx.agent.gossip.get().ok_or_else(|| ApiError::Internal("gossip is disabled".into()))?;
    if req.method == Method::GET {
        let keys = g.keyring_list();
        if keys.is_empty() {
            // Every member answers that it has no keyring; Consul reports the pool's failure.
            let dc = &ctx.agent.config().datacenter;
            return Err(ApiError::Internal(format!(
                "1 error occurred:\n\t* {dc} (LAN) error: Keyring is empty (encryption not enabled)\n\n"
            )));
        }
        // Every member answers with its own keys: a key's count is how many have it. Servers
        // report the WAN pool first, as Consul does.
        let dc = ctx.agent.config().datacenter.clone();
        let mut pools = Vec::new();
        if let Some(wan) = ctx.agent.gossip_wan.get() {
            pools.push(keyring_report(wan, true, &dc).await);
        }
        pools.push(keyring_report(g, false, &dc).await);
        // Then every other datacenter's LAN pool, as its servers see it.
        for answer in other_datacenters(ctx, req).await? {
            let list: Vec<Json> = serde_json::from_slice(&answer.body).unwrap_or_default();
            pools.extend(list.into_iter().filter(|p| p["WAN"] == false));
        }
        return Ok(ApiResponse::json(&pools));
    }
    let body: KeyBody = decode::body(&req.body)?;
    if body.key.is_empty() {
        return Err(ApiError::BadRequest("Missing key".into()));
    }
    let change = |g: &legate_gossip::Gossip| match req.method {
        Method::POST => ("install", g.keyring_install(&body.key)),
        Method::PUT => ("use", g.keyring_use(&body.key)),
        _ => ("remove", g.keyring_remove(&body.key)),
    };
    let (op, r) = change(g);
    r?;
    if let Some(wan) = ctx.agent.gossip_wan.get() {
        change(wan).1?;
    }
    // Relay to every member (sealed with the cluster's key), unless ?local-only.
    if req.param("local-only").is_none() {
        let ev = legate_gossip::UserEvent {
            id: String::new(),
            name: format!("{}{op}", legate_agent::events::KEYRING_EVENT_PREFIX),
            payload: body.key.into_bytes(),
            ltime: 0,
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            origin: String::new(),
        };
        g.fire_event(ev).await?;
        // Every datacenter changes its keyrings in lockstep: a WAN key one of them lacks
        // would cut it off.
        for answer in other_datacenters(ctx, req).await? {
            if answer.status != 200 {
                return Err(ApiError::Internal(format!(
                    "{} ({}) error: {}",
                    answer.datacenter,
                    op,
                    String::from_utf8_lossy(&answer.body).trim()
                )));
            }
        }
    }
    Ok(ApiResponse::empty(StatusCode::OK))
}

/// The query parameter that marks a keyring call relayed from another datacenter's server
/// (it is carried out there and not relayed again).
const RELAYED: &str = "legate-relayed";

struct DcAnswer {
    datacenter: String,
    status: u16,
    body: Vec<u8>,
}

/// The same keyring call in every other datacenter the WAN pool knows (servers only; not for
/// a call that is itself relayed). A datacenter that cannot be reached is an error answer.
async fn other_datacenters(ctx: &Ctx, req: &Request) -> Result<Vec<DcAnswer>, ApiError> {
    if ctx.agent.gossip_wan.get().is_none() || req.param(RELAYED).is_some() {
        return Ok(Vec::new());
    }
    let ours = ctx.agent.config().datacenter.clone();
    let mut out = Vec::new();
    for dc in legate_agent::wan::datacenters(&ctx.agent).into_iter().filter(|d| *d != ours) {
        let mut query: Vec<(String, String)> = req.query.iter().filter(|(k, _)| k != "dc").cloned().collect();
        query.push(("dc".into(), dc.clone()));
        query.push((RELAYED.into(), "1".into()));
        let call = legate_raft::rpc::HttpCall {
            method: req.method.to_string(),
            path: req.path.clone(),
            query,
            token: super::token(req),
            body: req.body.to_vec(),
        };
        let answer = match ctx.agent.forward_http_dc(&dc, call).await {
            Some(Ok(r)) => DcAnswer { datacenter: dc, status: r.status, body: r.body },
            Some(Err(e)) => DcAnswer { datacenter: dc, status: 500, body: e.to_string().into_bytes() },
            None => DcAnswer { datacenter: dc, status: 500, body: b"No path to datacenter".to_vec() },
        };
        out.push(answer);
    }
    Ok(out)
}
