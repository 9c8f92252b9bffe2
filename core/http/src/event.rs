//! `/v1/event/fire/<name>` and `/v1/event/list` (Consul's user events).

use base64::Engine;
use rand::Rng;
use serde_json::{json, Value as Json};

use super::{ApiError, ApiResponse, Ctx, Request};
use legate_agent::events::{event_index, MAX_PAYLOAD};
use legate_gossip::UserEvent;

fn event_json(e: &UserEvent) -> Json {
    json!({
        "ID": e.id,
        "Name": e.name,
        "Payload": if e.payload.is_empty() { Json::Null } else { json!(base64::engine::general_purpose::STANDARD.encode(&e.payload)) },
        "NodeFilter": e.node_filter,
        "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter,
        "Version": 1,
        "LTime": e.ltime,
    })
}

pub async fn fire(ctx: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    if name.is_empty() {
        return Err(ApiError::BadRequest("Missing name".into()));
    }
    if name.starts_with('_') {
        return Err(ApiError::BadRequest("User event name cannot start with '_'".into()));
    }
    let param = |k: &str| req.param(k).unwrap_or_default().to_string();
    let (node_filter, service_filter, tag_filter) = (param("node"), param("service"), param("tag"));
    if !tag_filter.is_empty() && service_filter.is_empty() {
        return Err(ApiError::BadRequest("Cannot provide tag filter without service filter.".into()));
    }
    for re in [&node_filter, &service_filter, &tag_filter] {
        if !re.is_empty() {
            regex::Regex::new(re).map_err(|e| ApiError::BadRequest(format!("Invalid filter: {e}")))?;
        }
    }
    if req.body.len() > MAX_PAYLOAD {
        return Err(ApiError::TooLarge(format!(
            "Event payload of {} bytes exceeds the limit of {MAX_PAYLOAD} bytes",
            req.body.len()
        )));
    }
    let ev = UserEvent {
        id: uuid::Uuid::from_u128(rand::thread_rng().gen()).to_string(),
        name: name.to_string(),
        payload: req.body.to_vec(),
        ltime: 0,
        node_filter,
        service_filter,
        tag_filter,
        origin: ctx.agent.node_name().to_string(),
    };
    match ctx.agent.gossip.get() {
        Some(g) => g.fire_event(ev.clone()).await?,
        // No gossip (serf LAN port -1): the event reaches this agent only.
        None => {
            if legate_agent::events::accepts(&ctx.agent, &ev) {
                ctx.agent.events.push(ev.clone());
            }
        }
    }
    Ok(ApiResponse::json(&event_json(&ev)))
}

pub async fn list(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let opts = super::blocking::query_options(ctx, req)?;
    let name = req.param("name").unwrap_or_default().to_string();
    let deadline = tokio::time::Instant::now() + opts.wait;
    let mut rx = ctx.agent.events.index.subscribe();
    let mut timed_out = false;
    loop {
        rx.borrow_and_update();
        let events: Vec<UserEvent> =
            ctx.agent.events.list().into_iter().filter(|e| name.is_empty() || e.name == name).collect();
        let events: Vec<_> =
            events.into_iter().filter(|e| req.can_read(legate_acl::Resource::Event, &e.name)).collect();
        // The index is opaque (a hash of the newest matching event's ID; 1 when none match, so a
        // watch does not spin): block while it equals the one the client holds. Events of other
        // names wake the query but do not answer it.
        let index = events.last().map(|e| event_index(&e.id)).unwrap_or(0).max(1);
        if opts.index > 0 && index == opts.index && !timed_out {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => timed_out = true,
                _ = tokio::time::sleep_until(deadline) => timed_out = true,
                r = rx.changed() => if r.is_err() { timed_out = true },
            }
            continue;
        }
        let body: Vec<Json> = events.iter().map(event_json).collect();
        return Ok(ApiResponse::json(&body).header("X-Consul-Index", index.to_string()));
    }
}
