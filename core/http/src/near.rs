//! `?near=<node>` on `catalog/nodes`, `catalog/service/<s>`, `health/service/<s>` and
//! `health/checks/<s>`: the answer sorted by the estimated round trip from that node, from the
//! network coordinates the agents sent (`_agent` is the node of the agent that took the request). As Consul: the sort is
//! stable, nodes without a coordinate go last, and when the `near` node has no coordinate the
//! order stays as it is.

use std::collections::HashMap;

use legate_state::coordinate;
use legate_state::StoreError;
use redb::ReadTransaction;
use serde_json::Value as Json;

use super::{Ctx, Request};

/// The `near` value that names the requesting agent's own node.
pub const AGENT: &str = "_agent";

/// The node to sort from, if the request asks for a sort.
pub fn node(ctx: &Ctx, req: &Request) -> Option<String> {
    let near = req.param("near").filter(|n| !n.is_empty())?;
    Some(if near == AGENT { ctx.agent.node_name().to_string() } else { near.to_string() })
}

/// Sorts `list` by distance from `near`; `node_of` finds an entry's node name.
pub fn sort(
    txn: &ReadTransaction,
    near: Option<&str>,
    list: &mut [Json],
    node_of: impl Fn(&Json) -> Option<&str>,
) -> Result<(), StoreError> {
    let Some(near) = near else { return Ok(()) };
    let Some(from) = coordinate::get(txn, near)? else { return Ok(()) };
    let mut distance: HashMap<String, f64> = HashMap::new();
    for e in coordinate::list(txn)? {
        if e.segment.is_empty() && e.coord.is_compatible_with(&from) {
            distance.insert(e.node, from.distance_to(&e.coord).as_secs_f64());
        }
    }
    let key = |j: &Json| node_of(j).and_then(|n| distance.get(n).copied()).unwrap_or(f64::INFINITY);
    list.sort_by(|a, b| key(a).total_cmp(&key(b)));
    Ok(())
}
