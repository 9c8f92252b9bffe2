//! The agent's config watches (`watches []`): each runs as its own task against the agent's own
//! HTTP API (as Consul's do), with the watch's `token` (else the agent's default token) and
//! `datacenter`. On reload the set is reconciled: removed watches stop (a running handler is
//! killed), new ones start, unchanged ones keep running. Shutdown stops them all.

use base64::Engine;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AgentError, AgentShared};
use legate_config::WatchDefinition;
use legate_watch::handler::{self, HandlerSpec, HttpHandler, Output};
use legate_watch::WatchSpec;

/// Longest an exec handler may run before it is killed (with everything it started), so a
/// hanging handler cannot stall its watch forever.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs a WASM event-handler plugin for a watch: the plugin gets the watch type, the index and
/// the JSON an exec handler would read on stdin.
pub async fn run_wasm_handler(
    shared: &AgentShared,
    wasm: &legate_config::WasmSpec,
    watch_type: &str,
    index: u64,
    payload_json: &str,
) -> Result<String, AgentError> {
    use legate_plugin_host::HandlerEvent;
    if watch_type == "event" {
        // User events reach the plugin typed, one call per event (oldest first).
        let events: Vec<Json> =
            serde_json::from_str(payload_json).map_err(|e| AgentError::Handler(format!("bad event list: {e}")))?;
        let mut outputs = Vec::new();
        for e in events {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let payload = match e["Payload"].as_str() {
                Some(b) => base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default(),
                None => Vec::new(),
            };
            let event = HandlerEvent::User {
                id: s("ID"),
                name: s("Name"),
                payload,
                ltime: e["LTime"].as_u64().unwrap_or(0),
                node_filter: s("NodeFilter"),
                service_filter: s("ServiceFilter"),
                tag_filter: s("TagFilter"),
            };
            let out = legate_plugin_host::run_handler(shared.plugins(), wasm, event).await?;
            if !out.output.is_empty() {
                outputs.push(out.output);
            }
        }
        return Ok(outputs.join("\n"));
    }
    let event =
        HandlerEvent::Watch { watch_type: watch_type.to_string(), index, payload_json: payload_json.to_string() };
    Ok(legate_plugin_host::run_handler(shared.plugins(), wasm, event).await?.output)
}

/// The address watches query: the first HTTP listener, else the first HTTPS one
/// (`https://...`); loopback if it listens on all addresses.
pub fn local_api_addr(http: &[SocketAddr], https: &[SocketAddr]) -> Option<String> {
    let (a, scheme) = match (http.first(), https.first()) {
        (Some(a), _) => (a, ""),
        (None, Some(a)) => (a, "https://"),
        (None, None) => return None,
    };
    let ip = match a.ip() {
        std::net::IpAddr::V4(v) if v.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(v) if v.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("{scheme}{}", SocketAddr::new(ip, a.port())))
}

/// How watches speak to this agent's HTTPS API: trusting the agent's CA and presenting its
/// certificate (`tls.https` over `tls.defaults`), as the agent's own client.
pub(crate) fn local_api_tls(addr: &str, config: &legate_config::Config) -> legate_watch::TlsOptions {
    if !addr.starts_with("https://") {
        return legate_watch::TlsOptions::default();
    }
    let s = config.tls.settings(legate_config::tls::Listener::Https);
    legate_watch::TlsOptions {
        https: true,
        ca_file: s.ca_file,
        ca_path: s.ca_path,
        client_cert: s.cert_file,
        client_key: s.key_file,
        ..Default::default()
    }
}

/// Keeps the running watches equal to the config's, across reloads.
pub async fn supervise(
    agent: Arc<AgentShared>,
    api_addr: Option<String>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut rx = agent.watch_config();
    // Running watches by their definition (as JSON); identical definitions run once each.
    let mut running: HashMap<String, Vec<CancellationToken>> = HashMap::new();
    let mut warned = false;
    loop {
        let defs = rx.borrow_and_update().watches.clone();
        match &api_addr {
            Some(addr) => reconcile(&agent, addr, &tracker, &shutdown, &defs, &mut running),
            None if !defs.is_empty() && !warned => {
                warned = true;
                tracing::error!("watches need the HTTP or HTTPS API, and both are disabled; not running them");
            }
            None => {}
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = rx.changed() => if r.is_err() { break },
        }
    }
    for t in running.values().flatten() {
        t.cancel();
    }
}

fn reconcile(
    agent: &Arc<AgentShared>,
    addr: &str,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    defs: &[WatchDefinition],
    running: &mut HashMap<String, Vec<CancellationToken>>,
) {
    let mut wanted: HashMap<String, (usize, &WatchDefinition)> = HashMap::new();
    for d in defs {
        let key = serde_json::to_string(d).unwrap_or_default();
        wanted.entry(key).or_insert((0, d)).0 += 1;
    }
    running.retain(|key, tokens| {
        let keep = wanted.get(key).map_or(0, |(n, _)| *n);
        while tokens.len() > keep {
            if let Some(t) = tokens.pop() {
                t.cancel();
                tracing::info!(watch = %key, "watch stopped (removed from the config)");
            }
        }
        !tokens.is_empty()
    });
    for (key, (n, def)) in wanted {
        let tokens = running.entry(key).or_default();
        while tokens.len() < n {
            let stop = shutdown.child_token();
            tokens.push(stop.clone());
            legate_types::tasks::spawn(tracker, "watch", run_watch(agent.clone(), def.clone(), addr.to_string(), stop));
        }
    }
}

/// One config watch until `stop`.
async fn run_watch(agent: Arc<AgentShared>, def: WatchDefinition, addr: String, stop: CancellationToken) {
    let spec = match WatchSpec::from_definition(&def) {
        Ok(s) => s,
        Err((key, e)) => return tracing::error!(key = %key, "invalid watch: {e}"),
    };
    let handler_spec = match HandlerSpec::from_definition(&def) {
        Ok(h) => h,
        Err((key, e)) => return tracing::error!(key = %key, "invalid watch handler: {e}"),
    };
    let http = match &handler_spec {
        HandlerSpec::Http(c) => match HttpHandler::new(c.clone()) {
            Ok(h) => Some(h),
            Err(e) => return tracing::error!(watch = spec.kind(), "{e}"),
        },
        _ => None,
    };
    let config = agent.config();
    let default_token = config.acl.tokens.default.clone();
    let client = match spec.client(&addr, default_token.as_deref(), &local_api_tls(&addr, &config)) {
        Ok(c) => c,
        Err(e) => return tracing::error!(watch = spec.kind(), "cannot query the local agent: {e}"),
    };
    let kind = spec.kind();
    tracing::info!(watch = kind, "watch started");
    let (agent_ref, handler_ref, http_ref) = (&*agent, &handler_spec, http.as_ref());
    let labels: legate_telemetry::Labels =
        vec![("type", kind.to_string().into()), ("handler", handler_spec.kind().to_string().into())];
    let labels = &labels;
    let run_key = crate::plugins::watch_run_key(&def);
    let run_key = &run_key;
    spec.run(&client, &stop, |index, result| async move {
        let payload = serde_json::to_vec(&result).unwrap_or_default();
        legate_telemetry::counter("legate.watch.fires", labels.clone(), 1.0);
        let timer = legate_telemetry::Timer::start("legate.watch.handler.duration", labels.clone());
        let outcome = match handler_ref {
            HandlerSpec::Exec(argv) => handler::exec(argv, &payload, index, Some(EXEC_TIMEOUT), Output::Capture)
                .await
                .map_err(AgentError::from),
            HandlerSpec::Shell(cmd) => {
                handler::exec(&handler::shell_argv(cmd), &payload, index, Some(EXEC_TIMEOUT), Output::Capture)
                    .await
                    .map_err(AgentError::from)
            }
            HandlerSpec::Http(_) => match http_ref {
                Some(h) => h.call(index, payload).await.map_err(AgentError::from),
                None => Err(AgentError::Handler("http handler not built".into())),
            },
            HandlerSpec::Wasm(w) => {
                let text = String::from_utf8_lossy(&payload);
                let (wall, started) = (std::time::SystemTime::now(), std::time::Instant::now());
                let outcome = run_wasm_handler(agent_ref, w, kind, index, &text).await;
                let error = outcome.as_ref().err().map(ToString::to_string);
                agent_ref.plugin_runs.record(run_key, wall, started.elapsed(), error, None);
                outcome
            }
        };
        drop(timer);
        if outcome.is_err() {
            legate_telemetry::counter("legate.watch.failures", labels.clone(), 1.0);
        }
        match outcome {
            Ok(out) if out.trim().is_empty() => tracing::debug!(watch = kind, index, "watch handler ran"),
            Ok(out) => tracing::info!(watch = kind, index, output = %out.trim_end(), "watch handler output"),
            Err(e) => tracing::error!(watch = kind, index, error = %e, "watch handler failed"),
        }
        ControlFlow::Continue(())
    })
    .await;
    tracing::info!(watch = kind, "watch stopped");
}
