//! legate-watch: watches (Consul's `watches` config and `consul watch`): a blocking-query loop against the
//! HTTP API that hands each changed result to a handler. Shared by the agent (config watches,
//! run against the agent's own HTTP address) and the `legate watch` command.
//!
//! The loop, as Consul's watch plans behave:
//! - each round is a blocking GET with the last index; an answer with the same index is a
//!   timeout and changes nothing;
//! - an index that goes backwards (a snapshot restore, a new cluster) resets the index to 0, so
//!   the next query answers at once with the current state;
//! - the first result is always delivered; later ones only when the result differs from the
//!   last delivered one (a new index alone is not a change);
//! - errors back off quadratically (1 s, 4 s, 9 s ... up to 3 minutes) and keep the index;
//! - `event` watches read `/v1/event/list`, whose index is an opaque hash of the newest event's
//!   ID: it is compared for equality only (never reset), and each result is pruned to the events
//!   after the last one delivered.
//!
//! [`handler`] runs the handlers (exec, HTTP, WASM); [`WatchDefinition`] is the config entry.

mod definition;
mod error;
pub mod handler;

pub use definition::WatchDefinition;
pub use error::WatchError;

pub use legate_client::TlsOptions;
use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use legate_client::{Client, QueryOptions};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

/// The watch types, in Consul's spelling.
pub const WATCH_TYPES: &[&str] = &["key", "keyprefix", "services", "nodes", "service", "checks", "event"];

/// First retry delay after an error; the n-th consecutive error waits n² times this.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(180);

/// What a watch reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Key(String),
    KeyPrefix(String),
    Services,
    Nodes,
    Service { service: String, tags: Vec<String>, passing: bool },
    Checks { service: Option<String>, state: Option<String> },
    Event { name: Option<String> },
}

/// A watch's query and its request options.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchSpec {
    pub query: Query,
    pub datacenter: Option<String>,
    pub token: Option<String>,
    pub stale: bool,
    pub filter: Option<String>,
}

/// A validation error: the key (suffix of `watches[i]`, e.g. `.key`) and the reason.
pub type SpecError = (String, String);

fn tags_of(v: &Json) -> Result<Vec<String>, SpecError> {
    match v {
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| (".tag".into(), "tag must be a string or a list of strings".into()))
            })
            .collect(),
        Json::Null => Ok(Vec::new()),
        _ => Err((".tag".into(), "tag must be a string or a list of strings".into())),
    }
}

impl WatchSpec {
    /// Validates the type and its parameters (not the handler): required ones present, ones the
    /// type does not take absent (Consul: "Invalid parameters").
    pub fn from_definition(w: &WatchDefinition) -> Result<WatchSpec, SpecError> {
        if !WATCH_TYPES.contains(&w.kind.as_str()) {
            return Err((
                ".type".into(),
                format!("unsupported watch type {:?} (one of {})", w.kind, WATCH_TYPES.join(", ")),
            ));
        }
        let given: [(&str, bool); 8] = [
            ("key", w.key.is_some()),
            ("prefix", w.prefix.is_some()),
            ("service", w.service.is_some()),
            ("tag", w.tag.as_ref().is_some_and(|t| !t.is_null())),
            ("passingonly", w.passingonly.is_some()),
            ("state", w.state.is_some()),
            ("name", w.name.is_some()),
            ("filter", w.filter.is_some()),
        ];
        let allowed: &[&str] = match w.kind.as_str() {
            "key" => &["key"],
            "keyprefix" => &["prefix"],
            "services" | "nodes" => &["filter"],
            "service" => &["service", "tag", "passingonly", "filter"],
            "checks" => &["service", "state", "filter"],
            _ => &["name"],
        };
        let invalid: Vec<&str> =
            given.iter().filter(|(k, set)| *set && !allowed.contains(k)).map(|(k, _)| *k).collect();
        if let Some(first) = invalid.first() {
            return Err((
                format!(".{first}"),
                format!("Invalid parameters for watch type {}: {}", w.kind, invalid.join(", ")),
            ));
        }
        let query = match w.kind.as_str() {
            "key" => match &w.key {
                Some(k) if !k.is_empty() => Query::Key(k.clone()),
                _ => return Err((".key".into(), "watch type key requires key".into())),
            },
            "keyprefix" => match &w.prefix {
                Some(p) => Query::KeyPrefix(p.clone()),
                None => return Err((".prefix".into(), "watch type keyprefix requires prefix".into())),
            },
            "services" => Query::Services,
            "nodes" => Query::Nodes,
            "service" => match &w.service {
                Some(s) if !s.is_empty() => Query::Service {
                    service: s.clone(),
                    tags: tags_of(w.tag.as_ref().unwrap_or(&Json::Null))?,
                    passing: w.passingonly.unwrap_or(false),
                },
                _ => return Err((".service".into(), "watch type service requires service".into())),
            },
            "checks" => {
                if w.service.is_some() && w.state.is_some() {
                    return Err((".state".into(), "Cannot specify service and state".into()));
                }
                if let Some(s) = &w.state {
                    if !matches!(s.as_str(), "any" | "passing" | "warning" | "critical") {
                        return Err((
                            ".state".into(),
                            format!("invalid state {s:?} (one of any, passing, warning, critical)"),
                        ));
                    }
                }
                Query::Checks { service: w.service.clone(), state: w.state.clone() }
            }
            _ => Query::Event { name: w.name.clone().filter(|n| !n.is_empty()) },
        };
        Ok(WatchSpec {
            query,
            datacenter: w.datacenter.clone().filter(|d| !d.is_empty()),
            token: w.token.clone().filter(|t| !t.is_empty()),
            stale: w.stale.unwrap_or(false),
            filter: w.filter.clone().filter(|f| !f.is_empty()),
        })
    }

    /// The type name (`key`, `service`, ...).
    pub fn kind(&self) -> &'static str {
        match self.query {
            Query::Key(_) => "key",
            Query::KeyPrefix(_) => "keyprefix",
            Query::Services => "services",
            Query::Nodes => "nodes",
            Query::Service { .. } => "service",
            Query::Checks { .. } => "checks",
            Query::Event { .. } => "event",
        }
    }

    /// The endpoint and its query pairs (besides index, wait, stale and dc).
    pub fn request(&self) -> (String, Vec<(&'static str, String)>) {
        const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
        const KEY: &AsciiSet = &SEGMENT.remove(b'/');
        let seg = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let mut q = Vec::new();
        let path = match &self.query {
            Query::Key(k) => format!("/v1/kv/{}", utf8_percent_encode(k, KEY)),
            Query::KeyPrefix(p) => {
                q.push(("recurse", String::new()));
                format!("/v1/kv/{}", utf8_percent_encode(p, KEY))
            }
            Query::Services => "/v1/catalog/services".into(),
            Query::Nodes => "/v1/catalog/nodes".into(),
            Query::Service { service, tags, passing } => {
                for t in tags {
                    q.push(("tag", t.clone()));
                }
                if *passing {
                    q.push(("passing", String::new()));
                }
                format!("/v1/health/service/{}", seg(service))
            }
            Query::Checks { service: Some(s), .. } => format!("/v1/health/checks/{}", seg(s)),
            Query::Checks { state, .. } => format!("/v1/health/state/{}", seg(state.as_deref().unwrap_or("any"))),
            Query::Event { name } => {
                if let Some(n) = name {
                    q.push(("name", n.clone()));
                }
                "/v1/event/list".into()
            }
        };
        if let Some(f) = &self.filter {
            q.push(("filter", f.clone()));
        }
        (path, q)
    }

    /// The client this watch queries with: `addr` (HTTPS as `tls` says) and the watch's token
    /// (else `default_token`).
    pub fn client(&self, addr: &str, default_token: Option<&str>, tls: &TlsOptions) -> Result<Client, WatchError> {
        let token = self.token.clone().or_else(|| default_token.map(str::to_string));
        Ok(Client::with_tls(addr, token, tls)?)
    }

    /// One blocking read: (index, result). A missing key or prefix is `null`, as Consul's.
    pub async fn fetch(&self, client: &Client, index: u64) -> Result<(u64, Json), WatchError> {
        let (path, extra) = self.request();
        let opts = QueryOptions { index, stale: self.stale, datacenter: self.datacenter.clone(), ..Default::default() };
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, meta, body) = client.get_raw(&path, &opts, &extra).await?;
        let kv = matches!(self.query, Query::Key(_) | Query::KeyPrefix(_));
        let result = match status {
            200 => serde_json::from_slice::<Json>(&body)
                .map_err(|source| WatchError::Decode { path: path.clone(), source })?,
            404 if kv => Json::Null,
            s => {
                let body = String::from_utf8_lossy(&body).trim().to_string();
                return Err(WatchError::Status { status: s, body });
            }
        };
        let result = match (&self.query, result) {
            // A key read answers a one-element list; the watch delivers the entry itself.
            (Query::Key(_), Json::Array(mut a)) => a.pop().unwrap_or(Json::Null),
            (_, r) => r,
        };
        Ok((meta.index, result))
    }

    /// Runs the loop until `shutdown` or until `deliver` breaks. `deliver` gets each changed
    /// result with its index (the handler's `CONSUL_INDEX`).
    pub async fn run<F, Fut>(&self, client: &Client, shutdown: &CancellationToken, mut deliver: F)
    where
        F: FnMut(u64, Json) -> Fut,
        Fut: Future<Output = ControlFlow<()>>,
    {
        let mut state = LoopState::new(matches!(self.query, Query::Event { .. }));
        let mut failures: u32 = 0;
        loop {
            let fetched = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                r = self.fetch(client, state.index()) => r,
            };
            match fetched {
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let retry = retry_delay(failures);
                    tracing::warn!(watch = self.kind(), error = %e, retry = ?retry, "watch query failed");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => continue,
                    }
                }
                Ok((index, result)) => {
                    failures = 0;
                    if let Some(result) = state.observe(index, result) {
                        // A handler still running at shutdown is dropped (and so killed).
                        let flow = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return,
                            f = deliver(index, result) => f,
                        };
                        if flow.is_break() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Wait after the n-th consecutive error.
pub fn retry_delay(failures: u32) -> Duration {
    let n = failures.min(1000);
    (RETRY_BASE * (n * n)).min(RETRY_MAX)
}

/// The index and change bookkeeping of one watch (sans-IO: fed results, says what to deliver).
#[derive(Debug)]
pub struct LoopState {
    event: bool,
    /// The index to send next; None before the first result.
    index: Option<u64>,
    last: Option<Json>,
}

impl LoopState {
    pub fn new(event: bool) -> LoopState {
        LoopState { event, index: None, last: None }
    }

    pub fn index(&self) -> u64 {
        self.index.unwrap_or(0)
    }

    /// Takes one answer; returns the result to deliver, if any.
    pub fn observe(&mut self, index: u64, mut result: Json) -> Option<Json> {
        let previous = self.index;
        if previous == Some(index) {
            return None;
        }
        if self.event {
            if let (Some(prev), Json::Array(events)) = (previous, &mut result) {
                // Keep the events after the one the last delivery ended with.
                let after = events.iter().position(|e| {
                    e.get("ID").and_then(Json::as_str).map(legate_types::event::event_index) == Some(prev)
                });
                if let Some(pos) = after {
                    events.drain(..=pos);
                }
            }
            self.index = Some(index);
        } else {
            self.index = Some(match previous {
                Some(p) if p > index => 0,
                _ => index,
            });
        }
        if previous.is_some() && self.last.as_ref() == Some(&result) {
            return None;
        }
        self.last = Some(result.clone());
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(kind: &str) -> WatchDefinition {
        WatchDefinition { kind: kind.into(), args: vec!["true".into()], ..Default::default() }
    }

    #[test]
    fn first_result_is_delivered_then_only_changes() {
        let mut s = LoopState::new(false);
        assert_eq!(s.observe(5, json!([1])), Some(json!([1])));
        assert_eq!(s.index(), 5);
        // Same index: a timed-out blocking query.
        assert_eq!(s.observe(5, json!([1])), None);
        // New index, same result: no delivery, but the index moves on.
        assert_eq!(s.observe(7, json!([1])), None);
        assert_eq!(s.index(), 7);
        assert_eq!(s.observe(9, json!([1, 2])), Some(json!([1, 2])));
    }

    #[test]
    fn backwards_index_resets_to_zero() {
        let mut s = LoopState::new(false);
        s.observe(50, json!("a"));
        assert_eq!(s.observe(3, json!("a")), None);
        assert_eq!(s.index(), 0);
        assert_eq!(s.observe(3, json!("a")), None);
        assert_eq!(s.index(), 3);
        assert_eq!(s.observe(4, json!("b")), Some(json!("b")));
    }

    #[test]
    fn events_are_pruned_to_the_new_ones_and_the_index_is_opaque() {
        let id = |n: u32| format!("00000000-0000-0000-0000-{n:012}");
        let ev = |n: u32| json!({"ID": id(n), "Name": "deploy"});
        let idx = |n: u32| legate_types::event::event_index(&id(n));
        let mut s = LoopState::new(true);
        assert_eq!(s.observe(1, json!([])), Some(json!([])));
        assert_eq!(s.observe(idx(9), json!([ev(9)])), Some(json!([ev(9)])));
        // A smaller hash is not "backwards" for events.
        assert_eq!(s.observe(idx(2), json!([ev(9), ev(2)])), Some(json!([ev(2)])));
        assert_eq!(s.index(), idx(2));
        assert_eq!(s.observe(idx(2), json!([ev(9), ev(2)])), None);
    }

    #[test]
    fn definitions_are_validated_per_type() {
        let mut w = def("key");
        assert_eq!(WatchSpec::from_definition(&w).unwrap_err().0, ".key");
        w.key = Some("a/b c".into());
        let spec = WatchSpec::from_definition(&w).unwrap();
        assert_eq!(spec.request().0, "/v1/kv/a/b%20c");
        w.service = Some("web".into());
        let e = WatchSpec::from_definition(&w).unwrap_err();
        assert_eq!(e.0, ".service");
        assert!(e.1.contains("Invalid parameters"), "{e:?}");

        let mut w = def("checks");
        w.service = Some("web".into());
        w.state = Some("passing".into());
        assert_eq!(WatchSpec::from_definition(&w).unwrap_err().1, "Cannot specify service and state");
        w.service = None;
        assert_eq!(WatchSpec::from_definition(&w).unwrap().request().0, "/v1/health/state/passing");

        let mut w = def("service");
        w.service = Some("web".into());
        w.tag = Some(json!(["a", "b"]));
        w.passingonly = Some(true);
        let (path, q) = WatchSpec::from_definition(&w).unwrap().request();
        assert_eq!(path, "/v1/health/service/web");
        assert_eq!(q, vec![("tag", "a".into()), ("tag", "b".into()), ("passing", String::new())]);

        assert!(WatchSpec::from_definition(&def("bogus")).unwrap_err().1.contains("unsupported watch type"));
    }

    #[test]
    fn retry_grows_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(9));
        assert_eq!(retry_delay(100), RETRY_MAX);
    }
}
