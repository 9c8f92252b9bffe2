//! The agent's local state: the services and checks this node runs, from config files and the
//! HTTP API. It is authoritative for this node; anti-entropy (`ae.rs`) pushes it to the catalog.
//! Every change marks the record out of sync and wakes the syncer. API registrations are
//! persisted in the data dir and restored on restart, as Consul does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::checks::{self, CheckStatus};
use legate_config::{CheckDefinition, ServiceDefinition};
use legate_state::catalog::{Check, Service, ServiceAddress, Weights};

pub const NODE_MAINT_ID: &str = "_node_maintenance";
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
const DEFAULT_NODE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_SERVICE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Where a registration came from: config files are reloaded, API ones persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Config,
    Api,
}

#[derive(Clone, Debug)]
pub struct LocalService {
    pub service: Service,
    pub token: Option<String>,
    pub source: Source,
    /// The definition as registered (persisted for API registrations).
    pub definition: ServiceDefinition,
    pub in_sync: bool,
}

#[derive(Clone, Debug)]
pub struct LocalCheck {
    pub check: Check,
    pub definition: CheckDefinition,
    pub token: Option<String>,
    pub source: Source,
    pub in_sync: bool,
    /// An output-only change waits until then (`check_update_interval`).
    pub defer_until: Option<Instant>,
    /// When the check last turned critical (for `deregister_critical_service_after`).
    pub critical_since: Option<Instant>,
    /// TTL checks: when the TTL runs out.
    pub ttl_deadline: Option<Instant>,
    /// Bumped to restart the check's runner (re-registration).
    pub generation: u64,
}

/// A validation failure, answered as HTTP 400 with this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, LocalCheck>,
    /// Deleted locally, not yet removed from the catalog.
    deleted_services: BTreeMap<String, Option<String>>,
    deleted_checks: BTreeMap<String, Option<String>>,
    generation: u64,
}

pub struct LocalState {
    inner: Mutex<Inner>,
    /// Wakes anti-entropy (a partial sync) after any change.
    pub changed: Notify,
    /// Wakes check runners to re-read their definitions (registrations, TTL updates).
    pub checks_changed: tokio::sync::watch::Sender<u64>,
    persist_path: Option<PathBuf>,
    pub node_name: String,
}

/// What the data dir holds for API registrations.
#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    services: Vec<(ServiceDefinition, Option<String>)>,
    checks: Vec<(CheckDefinition, Option<String>)>,
}

fn status_from(s: Option<&str>) -> Result<String, Invalid> {
    match s.unwrap_or("critical") {
        "" => Ok("critical".into()),
        s @ ("passing" | "warning" | "critical") => Ok(s.into()),
        _ => Err(Invalid("Status for checks must 'passing', 'warning', 'critical'".into())),
    }
}

/// Checks a check definition as Consul's `CheckType.Validate` and the agent's rules.
pub fn validate_check(def: &CheckDefinition, script_allowed: bool) -> Result<(), Invalid> {
    let kind = checks::kind(def);
    let needs_interval =
        matches!(kind, "http" | "tcp" | "udp" | "script" | "grpc" | "h2ping" | "docker" | "os_service" | "wasm");
    if kind.is_empty() && def.wasm.is_some() {
        return Err(Invalid("WASM checks need wasm.plugin (a path or a plugin name)".into()));
    }
    if def.wasm.as_ref().is_some_and(|w| w.memory_mb == Some(0)) {
        return Err(Invalid("wasm.memory_mb must be > 0".into()));
    }
    if let Some(w) = def.wasm.as_ref().filter(|w| !w.plugin.is_empty()) {
        legate_plugin_host::PluginRef::parse(&w.plugin).map_err(Invalid)?;
    }
    if kind.is_empty() {
        return Err(Invalid(
            "Must provide TTL or Script/DockerContainerID/HTTP/TCP/UDP/H2PING/GRPC/AliasNode/AliasService and Interval"
                .into(),
        ));
    }
    if needs_interval && def.interval.as_ref().is_none_or(|i| i.0.is_zero()) {
        return Err(Invalid("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks".into()));
    }
    if kind == "script" && !script_allowed {
        return Err(Invalid(
            "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true"
                .into(),
        ));
    }
    if kind == "docker" {
        return Err(Invalid("Docker checks are not supported by Legate".into()));
    }
    if kind == "os_service" {
        return Err(Invalid("OS service checks are not supported by Legate".into()));
    }
    if let Some(t) = &def.timeout {
        if t.0.is_zero() && needs_interval {
            return Err(Invalid("Timeout must be > 0".into()));
        }
    }
    status_from(def.status.as_deref())?;
    Ok(())
}

fn go_dur(d: &Option<legate_config::GoDuration>) -> String {
    d.as_ref().filter(|d| !d.0.is_zero()).map(|d| d.to_string()).unwrap_or_default()
}

/// The catalog form of a check definition; `definition` is Consul's `Definition` object.
pub fn check_record(def: &CheckDefinition, id: &str, name: &str, node: &str) -> Result<Check, Invalid> {
    use serde_json::{json, Value};
    let text = |v: &Option<String>| json!(v.clone().unwrap_or_default());
    // Consul's HealthCheckDefinition: every field is omitted when empty.
    let fields = [
        ("HTTP", text(&def.http)),
        ("TLSServerName", text(&def.tls_server_name)),
        ("TLSSkipVerify", json!(def.tls_skip_verify)),
        ("Header", json!(def.header)),
        ("Method", text(&def.method)),
        ("Body", text(&def.body)),
        ("DisableRedirects", json!(def.disable_redirects)),
        ("TCP", text(&def.tcp)),
        ("TCPUseTLS", json!(def.tcp_use_tls)),
        ("UDP", text(&def.udp)),
        ("H2PING", text(&def.h2ping)),
        ("OSService", text(&def.os_service)),
        ("H2PingUseTLS", json!(def.h2ping_use_tls)),
        ("Interval", json!(go_dur(&def.interval))),
        ("Timeout", json!(go_dur(&def.timeout))),
        ("DeregisterCriticalServiceAfter", json!(go_dur(&def.deregister_critical_service_after))),
        ("ScriptArgs", json!(def.args)),
        ("GRPC", text(&def.grpc)),
        ("GRPCUseTLS", json!(def.grpc_use_tls)),
        ("AliasNode", text(&def.alias_node)),
        ("AliasService", text(&def.alias_service)),
        ("TTL", json!(go_dur(&def.ttl))),
        ("Wasm", def.wasm.as_ref().map_or(Value::Null, |w| json!({"Plugin": w.plugin, "Args": w.args}))),
    ];
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    };
    let definition: serde_json::Map<String, Value> =
        fields.into_iter().filter(|(_, v)| !empty(v)).map(|(k, v)| (k.to_string(), v)).collect();
    Ok(Check {
        node: node.to_string(),
        check_id: id.to_string(),
        name: name.to_string(),
        status: status_from(def.status.as_deref())?,
        notes: def.notes.clone().unwrap_or_default(),
        output: String::new(),
        service_id: def.service_id.clone().unwrap_or_default(),
        service_name: String::new(),
        service_tags: Vec::new(),
        kind: checks::kind(def).to_string(),
        interval: go_dur(&def.interval),
        timeout: go_dur(&def.timeout),
        definition: Value::Object(definition).to_string(),
        create_index: 0,
        modify_index: 0,
    })
}

/// The catalog form of a service definition.
pub fn service_record(def: &ServiceDefinition) -> Result<Service, Invalid> {
    if def.name.is_empty() {
        return Err(Invalid("Missing service name".into()));
    }
    if def.meta.len() > 64 {
        return Err(Invalid("Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs".into()));
    }
    if let Some(k) = def.meta.keys().find(|k| k.starts_with("consul-")) {
        return Err(Invalid(format!("Invalid Service Meta: Key prefix 'consul-' is reserved for internal use: {k}")));
    }
    let w = def.weights.clone().unwrap_or_default();
    if w.passing == 0 {
        return Err(Invalid("Passing must be greater than 0".into()));
    }
    Ok(Service {
        id: def.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| def.name.clone()),
        service: def.name.clone(),
        kind: def.kind.clone().unwrap_or_default(),
        tags: def.tags.clone(),
        address: def.address.clone().unwrap_or_default(),
        tagged_addresses: def
            .tagged_addresses
            .iter()
            .map(|(k, v)| (k.clone(), ServiceAddress { address: v.address.clone(), port: v.port }))
            .collect(),
        meta: def.meta.clone(),
        port: def.port.unwrap_or(0),
        socket_path: def.socket_path.clone().unwrap_or_default(),
        weights: Weights { passing: w.passing as i32, warning: w.warning as i32 },
        enable_tag_override: def.enable_tag_override,
        create_index: 0,
        modify_index: 0,
    })
}

/// A service's embedded checks with their IDs and names filled in: `service:<id>` for a single
/// check, `service:<id>:<n>` (from 1) for several; name `Service '<name>' check`.
pub fn embedded_checks(def: &ServiceDefinition, service_id: &str) -> Vec<CheckDefinition> {
    let all: Vec<&CheckDefinition> = def.check.iter().chain(def.checks.iter()).collect();
    let many = all.len() > 1;
    all.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            if c.id.as_deref().is_none_or(str::is_empty) {
                c.id = Some(if many {
                    format!("service:{service_id}:{}", i + 1)
                } else {
                    format!("service:{service_id}")
                });
            }
            if c.name.as_deref().is_none_or(str::is_empty) {
                c.name = Some(format!("Service '{}' check", def.name));
            }
            c.service_id = Some(service_id.to_string());
            c
        })
        .collect()
}

impl LocalState {
    pub fn new(node_name: String, persist_path: Option<PathBuf>) -> LocalState {
        LocalState {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            checks_changed: tokio::sync::watch::channel(0).0,
            persist_path,
            node_name,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changed.notify_one();
        self.checks_changed.send_modify(|n| *n += 1);
    }

    /// Registers (or replaces) a service and its embedded checks. `replace_checks`: drop the
    /// service's other checks (`?replace-existing-checks`).
    pub fn add_service(
        &self,
        def: &ServiceDefinition,
        token: Option<String>,
        source: Source,
        script_allowed: bool,
        replace_checks: bool,
    ) -> Result<String, Invalid> {
        // The definition's own token wins over the request's (Consul).
        let token = def.token.clone().filter(|t| !t.is_empty()).or(token);
        let service = service_record(def)?;
        let id = service.id.clone();
        let embedded = embedded_checks(def, &id);
        for c in &embedded {
            validate_check(c, script_allowed)?;
        }
        let mut records = Vec::new();
        for c in &embedded {
            let cid = c.id.clone().unwrap_or_default();
            records.push((check_record(c, &cid, c.name.as_deref().unwrap_or_default(), &self.node_name)?, c.clone()));
        }
        {
            let mut g = self.lock();
            if replace_checks {
                let stale: Vec<String> = g
                    .checks
                    .iter()
                    .filter(|(cid, c)| c.check.service_id == id && !records.iter().any(|(r, _)| &r.check_id == *cid))
                    .map(|(cid, _)| cid.clone())
                    .collect();
                for cid in stale {
                    if let Some(c) = g.checks.remove(&cid) {
                        g.deleted_checks.insert(cid, c.token);
                    }
                }
            }
            g.deleted_services.remove(&id);
            let mut stored = def.clone();
            stored.check = None;
            stored.checks = embedded.clone();
            // A re-registration that changes nothing (a reload) keeps the sync state.
            let unchanged = g.services.get(&id).is_some_and(|old| {
                old.service == service && old.definition == stored && old.token == token && old.source == source
            });
            if !unchanged {
                g.services.insert(
                    id.clone(),
                    LocalService { service, token: token.clone(), source, definition: stored, in_sync: false },
                );
            }
            for (record, cdef) in records {
                insert_check(&mut g, record, cdef, token.clone(), source);
            }
        }
        if source == Source::Api {
            self.persist();
        }
        self.changed();
        Ok(id)
    }

    /// Registers (or replaces) a check. A `service_id` must name a local service.
    pub fn add_check(
        &self,
        def: &CheckDefinition,
        token: Option<String>,
        source: Source,
        script_allowed: bool,
    ) -> Result<String, Invalid> {
        validate_check(def, script_allowed)?;
        let name = def.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| Invalid("Missing check name".into()))?;
        let id = def.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| name.clone());
        let record = check_record(def, &id, &name, &self.node_name)?;
        {
            let mut g = self.lock();
            if let Some(sid) = def.service_id.as_deref().filter(|s| !s.is_empty()) {
                if !g.services.contains_key(sid) {
                    return Err(Invalid(format!("ServiceID {sid:?} does not exist")));
                }
            }
            g.deleted_checks.remove(&id);
            insert_check(&mut g, record, def.clone(), token, source);
        }
        if source == Source::Api {
            self.persist();
        }
        self.changed();
        Ok(id)
    }

    /// Removes a service and its checks; false if there is no such service.
    pub fn remove_service(&self, id: &str) -> bool {
        let source;
        {
            let mut g = self.lock();
            let Some(s) = g.services.remove(id) else { return false };
            source = s.source;
            g.deleted_services.insert(id.to_string(), s.token);
            let owned: Vec<String> =
                g.checks.iter().filter(|(_, c)| c.check.service_id == id).map(|(k, _)| k.clone()).collect();
            for cid in owned {
                // Deleting the service deletes its checks in the catalog too.
                g.checks.remove(&cid);
            }
        }
        if source == Source::Api {
            self.persist();
        }
        self.changed();
        true
    }

    pub fn remove_check(&self, id: &str) -> bool {
        let source;
        {
            let mut g = self.lock();
            let Some(c) = g.checks.remove(id) else { return false };
            source = c.source;
            g.deleted_checks.insert(id.to_string(), c.token);
        }
        if source == Source::Api {
            self.persist();
        }
        self.changed();
        true
    }

    /// Sets a check's status and output (runners, TTL endpoints). Status changes sync at once;
    /// output-only changes wait up to `defer` (Consul's `check_update_interval`).
    pub fn update_check(&self, id: &str, status: CheckStatus, output: &str, defer: Duration) -> bool {
        let mut g = self.lock();
        let Some(c) = g.checks.get_mut(id) else { return false };
        let status = status.as_str();
        if c.check.status == status && c.check.output == output {
            return true;
        }
        if c.check.status != status {
            let kind = if c.check.kind.is_empty() { "unknown" } else { c.check.kind.as_str() };
            legate_telemetry::counter(
                "legate.check.status_changes",
                vec![("type", kind.to_string().into()), ("status", status.to_string().into())],
                1.0,
            );
            c.critical_since = (status == "critical").then(Instant::now);
            c.check.status = status.to_string();
            c.check.output = output.to_string();
            c.in_sync = false;
            c.defer_until = None;
        } else {
            c.check.output = output.to_string();
            if !defer.is_zero() {
                if c.defer_until.is_none() {
                    c.defer_until = Some(Instant::now() + defer);
                }
            } else {
                c.in_sync = false;
            }
        }
        drop(g);
        self.changed.notify_one();
        true
    }

    /// Resets a TTL check's deadline and sets its status (pass/warn/fail/update endpoints).
    pub fn ttl_update(&self, id: &str, status: CheckStatus, output: &str) -> Result<(), TtlError> {
        {
            let mut g = self.lock();
            let Some(c) = g.checks.get_mut(id) else { return Err(TtlError::Unknown) };
            let Some(ttl) = c.definition.ttl.as_ref().map(|t| t.0) else { return Err(TtlError::NotTtl) };
            c.ttl_deadline = Some(Instant::now() + ttl);
        }
        self.update_check(id, status, output, Duration::ZERO);
        self.checks_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    pub fn service(&self, id: &str) -> Option<LocalService> {
        self.lock().services.get(id).cloned()
    }

    pub fn services(&self) -> Vec<LocalService> {
        self.lock().services.values().cloned().collect()
    }

    pub fn check(&self, id: &str) -> Option<LocalCheck> {
        self.lock().checks.get(id).cloned()
    }

    pub fn checks(&self) -> Vec<LocalCheck> {
        self.lock().checks.values().cloned().collect()
    }

    /// Node maintenance: a critical `_node_maintenance` check, or its removal.
    pub fn set_node_maintenance(&self, enable: bool, reason: &str) {
        if enable {
            let notes = if reason.is_empty() { DEFAULT_NODE_MAINT_REASON } else { reason };
            self.add_maintenance(NODE_MAINT_ID, "Node Maintenance Mode", notes, None);
        } else {
            self.remove_check(NODE_MAINT_ID);
        }
    }

    /// Service maintenance; false if the service is unknown.
    pub fn set_service_maintenance(&self, service_id: &str, enable: bool, reason: &str) -> bool {
        if self.service(service_id).is_none() {
            return false;
        }
        let id = format!("{SERVICE_MAINT_PREFIX}{service_id}");
        if enable {
            let notes = if reason.is_empty() { DEFAULT_SERVICE_MAINT_REASON } else { reason };
            self.add_maintenance(&id, "Service Maintenance Mode", notes, Some(service_id));
        } else {
            self.remove_check(&id);
        }
        true
    }

    fn add_maintenance(&self, id: &str, name: &str, notes: &str, service_id: Option<&str>) {
        let record = Check {
            node: self.node_name.clone(),
            check_id: id.to_string(),
            name: name.to_string(),
            status: "critical".into(),
            notes: notes.to_string(),
            service_id: service_id.unwrap_or_default().to_string(),
            kind: "maintenance".into(),
            definition: "{}".into(),
            ..Check::default()
        };
        let def = CheckDefinition {
            id: Some(id.to_string()),
            name: Some(name.to_string()),
            notes: Some(notes.to_string()),
            ..Default::default()
        };
        {
            let mut g = self.lock();
            g.deleted_checks.remove(id);
            insert_check(&mut g, record, def, None, Source::Api);
        }
        self.persist();
        self.changed();
    }

    /// Removes config-sourced registrations that a reload no longer defines.
    pub fn retain_config(&self, service_ids: &[String], check_ids: &[String]) {
        let (svcs, chks): (Vec<String>, Vec<String>) = {
            let g = self.lock();
            (
                g.services
                    .iter()
                    .filter(|(id, s)| s.source == Source::Config && !service_ids.contains(id))
                    .map(|(id, _)| id.clone())
                    .collect(),
                g.checks
                    .iter()
                    .filter(|(id, c)| {
                        c.source == Source::Config && !check_ids.contains(id) && c.check.service_id.is_empty()
                    })
                    .map(|(id, _)| id.clone())
                    .collect(),
            )
        };
        for id in svcs {
            self.remove_service(&id);
        }
        for id in chks {
            self.remove_check(&id);
        }
    }

    // ---- for anti-entropy ----

    /// Everything not in sync now: (services to register, checks to register, service IDs and
    /// check IDs to deregister with their tokens). Deferred output-only changes whose time has
    /// not come are left out.
    pub fn pending(&self) -> Pending {
        let g = self.lock();
        let now = Instant::now();
        Pending {
            services: g.services.values().filter(|s| !s.in_sync).cloned().collect(),
            checks: g
                .checks
                .values()
                .filter(|c| !c.in_sync || c.defer_until.is_some_and(|t| t <= now))
                .cloned()
                .collect(),
            deleted_services: g.deleted_services.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            deleted_checks: g.deleted_checks.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Marks records synced, unless they changed since `pending` read them.
    pub fn mark_service_synced(&self, s: &LocalService) {
        let mut g = self.lock();
        if let Some(cur) = g.services.get_mut(&s.service.id) {
            if cur.service == s.service {
                cur.in_sync = true;
            }
        }
    }

    pub fn mark_check_synced(&self, c: &LocalCheck) {
        let mut g = self.lock();
        if let Some(cur) = g.checks.get_mut(&c.check.check_id) {
            if cur.check == c.check {
                cur.in_sync = true;
                cur.defer_until = None;
            }
        }
    }

    pub fn mark_service_deleted(&self, id: &str) {
        self.lock().deleted_services.remove(id);
    }

    pub fn mark_check_deleted(&self, id: &str) {
        self.lock().deleted_checks.remove(id);
    }

    /// After a full sync found drift: resync everything.
    pub fn mark_all_dirty(&self) {
        let mut g = self.lock();
        g.services.values_mut().for_each(|s| s.in_sync = false);
        g.checks.values_mut().for_each(|c| c.in_sync = false);
    }

    pub fn mark_service_dirty(&self, id: &str) {
        if let Some(s) = self.lock().services.get_mut(id) {
            s.in_sync = false;
        }
    }

    pub fn mark_check_dirty(&self, id: &str) {
        if let Some(c) = self.lock().checks.get_mut(id) {
            c.in_sync = false;
        }
    }

    /// Adopts tags changed in the catalog for a service with `enable_tag_override`.
    pub fn override_tags(&self, id: &str, tags: Vec<String>) {
        if let Some(s) = self.lock().services.get_mut(id) {
            s.service.tags = tags;
        }
    }

    // ---- persistence ----

    fn persist(&self) {
        let Some(path) = &self.persist_path else { return };
        let data = {
            let g = self.lock();
            Persisted {
                services: g
                    .services
                    .values()
                    .filter(|s| s.source == Source::Api)
                    .map(|s| (s.definition.clone(), s.token.clone()))
                    .collect(),
                checks: g
                    .checks
                    .values()
                    .filter(|c| {
                        c.source == Source::Api && c.check.service_id.is_empty() || c.check.kind == "maintenance"
                    })
                    .map(|c| (c.definition.clone(), c.token.clone()))
                    .collect(),
            }
        };
        let text = match serde_json::to_string(&data) {
            Ok(t) => t,
            Err(e) => return tracing::error!(error = %e, "cannot encode local state"),
        };
        // Registrations carry their ACL tokens.
        if let Err(e) = legate_types::fs::write_private_blocking(path, text.as_bytes()) {
            tracing::error!(error = %e, path = %path.display(), "cannot persist local services and checks");
        }
    }

    /// Restores API registrations persisted by an earlier run. Those the config now defines
    /// (same ID) are skipped: config wins.
    pub fn restore(&self, script_allowed: bool) {
        let Some(path) = &self.persist_path else { return };
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let data: Persisted = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, path = %path.display(), "ignoring unreadable persisted state"),
        };
        for (def, token) in data.services {
            let id = def.id.clone().unwrap_or_else(|| def.name.clone());
            if self.service(&id).is_some_and(|s| s.source == Source::Config) {
                continue;
            }
            if let Err(e) = self.add_service(&def, token, Source::Api, script_allowed, false) {
                tracing::warn!(service = %id, error = %e, "dropping persisted service");
            }
        }
        for (def, token) in data.checks {
            let id = def.id.clone().unwrap_or_default();
            if id == NODE_MAINT_ID {
                self.add_maintenance(NODE_MAINT_ID, "Node Maintenance Mode", "", None);
                continue;
            }
            if let Some(sid) = id.strip_prefix(SERVICE_MAINT_PREFIX) {
                self.set_service_maintenance(sid, true, "");
                continue;
            }
            if self.check(&id).is_some_and(|c| c.source == Source::Config) {
                continue;
            }
            if let Err(e) = self.add_check(&def, token, Source::Api, script_allowed) {
                tracing::warn!(check = %id, error = %e, "dropping persisted check");
            }
        }
    }
}

/// What anti-entropy has to push.
pub struct Pending {
    pub services: Vec<LocalService>,
    pub checks: Vec<LocalCheck>,
    pub deleted_services: Vec<(String, Option<String>)>,
    pub deleted_checks: Vec<(String, Option<String>)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TtlError {
    Unknown,
    NotTtl,
}

fn insert_check(g: &mut Inner, mut record: Check, def: CheckDefinition, token: Option<String>, source: Source) {
    let token = def.token.clone().filter(|t| !t.is_empty()).or(token);
    let id = record.check_id.clone();
    // The same definition again (a config reload): keep status, schedule and sync state.
    if g.checks.get(&id).is_some_and(|old| old.definition == def && old.token == token && old.source == source) {
        return;
    }
    g.generation += 1;
    // A re-registration keeps the current status and output unless a status is given.
    if let Some(old) = g.checks.get(&id) {
        if def.status.is_none() && old.check.kind == record.kind {
            record.status = old.check.status.clone();
            record.output = old.check.output.clone();
        }
    }
    let ttl_deadline = def.ttl.as_ref().map(|t| Instant::now() + t.0);
    let critical_since = (record.status == "critical").then(Instant::now);
    g.checks.insert(
        id,
        LocalCheck {
            check: record,
            definition: def,
            token,
            source,
            in_sync: false,
            defer_until: None,
            critical_since,
            ttl_deadline,
            generation: g.generation,
        },
    );
}

pub type Shared = Arc<LocalState>;

#[cfg(test)]
mod tests {
    use super::*;
    use legate_config::GoDuration;

    fn http_check() -> CheckDefinition {
        CheckDefinition {
            http: Some("http://localhost:8500/".into()),
            interval: Some(GoDuration::from_secs(5)),
            ..Default::default()
        }
    }

    #[test]
    fn embedded_check_ids_follow_consul() {
        let mut def = ServiceDefinition { name: "web".into(), id: Some("jetty".into()), ..Default::default() };
        def.checks = vec![http_check()];
        let one = embedded_checks(&def, "jetty");
        assert_eq!(one[0].id.as_deref(), Some("service:jetty"));
        assert_eq!(one[0].name.as_deref(), Some("Service 'web' check"));
        def.checks.push(http_check());
        let two = embedded_checks(&def, "jetty");
        assert_eq!(
            two.iter().map(|c| c.id.clone().unwrap()).collect::<Vec<_>>(),
            ["service:jetty:1", "service:jetty:2"]
        );
    }

    #[test]
    fn validation_texts() {
        let err = validate_check(&CheckDefinition { http: Some("http://x".into()), ..Default::default() }, true);
        assert!(err.unwrap_err().0.contains("Interval must be > 0"));
        let err = validate_check(&CheckDefinition::default(), true).unwrap_err();
        assert!(err.0.starts_with("Must provide TTL"), "{err}");
        let script = CheckDefinition {
            args: vec!["true".into()],
            interval: Some(GoDuration::from_secs(1)),
            ..Default::default()
        };
        assert!(validate_check(&script, false).unwrap_err().0.starts_with("Scripts are disabled"));
        assert!(validate_check(&script, true).is_ok());
        let bad =
            CheckDefinition { ttl: Some(GoDuration::from_secs(1)), status: Some("ok".into()), ..Default::default() };
        assert!(validate_check(&bad, true).is_err());
    }

    #[test]
    fn status_changes_sync_now_output_changes_wait() {
        let l = LocalState::new("n1".into(), None);
        let ttl =
            CheckDefinition { name: Some("t".into()), ttl: Some(GoDuration::from_secs(30)), ..Default::default() };
        l.add_check(&ttl, None, Source::Api, false).unwrap();
        let c = l.pending().checks.pop().unwrap();
        l.mark_check_synced(&c);
        assert!(l.pending().checks.is_empty());
        l.update_check("t", CheckStatus::Critical, "new output", Duration::from_secs(300));
        assert!(l.pending().checks.is_empty(), "output-only change deferred");
        l.update_check("t", CheckStatus::Passing, "ok", Duration::from_secs(300));
        assert_eq!(l.pending().checks.len(), 1, "status change pending at once");
        assert_eq!(l.ttl_update("nope", CheckStatus::Passing, ""), Err(TtlError::Unknown));
    }
}
