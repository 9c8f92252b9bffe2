//! Builds a [`Config`] from its layers with figment, following Consul's merge rules.
//!
//! Layers, lowest first: built-in defaults (serde defaults of the structs) < `-dev` defaults <
//! each `-config-file` / each file of each `-config-dir` (lexical order, CLI order between
//! sources) < `LEGATE_*` environment variables < command-line flags.
//!
//! Consul's merge (agent/config/merge.go): later scalars win, lists are appended, nested objects
//! merge key by key, and *maps* (`node_meta`, ...) are replaced wholesale by a later non-empty
//! one. Figment's `admerge` gives the first three; the wholesale rule is applied to the parsed
//! layers before they reach figment, by dropping a map from every earlier layer when a later
//! layer sets it. `service {}` / `check {}` singletons are folded into `services` / `checks`
//! so that every definition from every file accumulates.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::{Map as JsonMap, Value as Json};

use super::{CheckDefinition, Config, ServiceDefinition, WatchDefinition, INERT_KEYS, WHOLESALE_MAPS};

/// Environment variables with the `LEGATE_` prefix that belong to the CLI's HTTP client, not to
/// the agent's configuration.
const CLI_ENV: &[&str] = &[
    "HTTP_ADDR",
    "HTTP_TOKEN",
    "HTTP_TOKEN_FILE",
    "HTTP_AUTH",
    "HTTP_SSL",
    "HTTP_SSL_VERIFY",
    "CACERT",
    "CAPATH",
    "CLIENT_CERT",
    "CLIENT_KEY",
    "TLS_SERVER_NAME",
    "GRPC_ADDR",
];

const ENV_LAYER: &str = "environment";

/// What to load: everything that is not a file's content.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-config-file` and `-config-dir` arguments in command-line order; each may be a file or
    /// a directory.
    pub sources: Vec<PathBuf>,
    /// `-config-format`: forces the format of every file (and then loads every file of a dir).
    pub config_format: Option<String>,
    pub dev: bool,
    /// `LEGATE_*` variables (a snapshot, so reloads and tests are deterministic).
    pub env: Vec<(String, String)>,
    /// Command-line flags, already mapped onto config keys.
    pub flags: JsonMap<String, Json>,
    /// A layer beneath every source (e.g. `legate validate`'s placeholder `data_dir`).
    pub base: JsonMap<String, Json>,
}

impl LoadOptions {
    /// Takes the `LEGATE_*` variables of this process.
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().filter(|(k, _)| k.starts_with("LEGATE_")).collect();
        self
    }
}

/// A loaded and validated configuration.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// Non-fatal findings (keys accepted without effect, deprecated keys), each naming its source.
    pub warnings: Vec<String>,
    /// The files that were read, in load order.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    #[error("Error reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("Error parsing {path}{}: {reason}", line_suffix(*line))]
    Parse { path: String, line: Option<usize>, reason: String },
    #[error("{source_name}{}: {key}: {reason}", line_suffix(*line))]
    Invalid { source_name: String, line: Option<usize>, key: String, reason: String },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

impl ConfigError {
    fn invalid(layer: Option<&Layer>, key: impl Into<String>, reason: impl Into<String>) -> Self {
        let key = key.into();
        let (source_name, line) = match layer {
            Some(l) => (l.name.clone(), l.line_of(&key)),
            None => ("config".to_string(), None),
        };
        ConfigError::Invalid { source_name, line, key, reason: reason.into() }
    }
}

/// One source of configuration, parsed to JSON.
#[derive(Clone, Debug)]
struct Layer {
    name: String,
    path: Option<PathBuf>,
    text: Option<String>,
    data: JsonMap<String, Json>,
}

impl Layer {
    /// Best-effort line of a key in the source text: the first line mentioning the key's last
    /// path component as a key (`"key"` in JSON, `key =` / `key {` in HCL and TOML).
    fn line_of(&self, key: &str) -> Option<usize> {
        let text = self.text.as_ref()?;
        let last = key.rsplit('.').next()?.split('[').next()?;
        if last.is_empty() {
            return None;
        }
        let quoted = format!("\"{last}\"");
        text.lines()
            .position(|line| {
                let t = line.trim_start();
                t.contains(&quoted) || t.strip_prefix(last).is_some_and(|r| r.trim_start().starts_with(['=', '{', ':']))
            })
            .map(|i| i + 1)
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let m = Metadata::named(self.name.clone());
        match &self.path {
            Some(p) => m.source(figment::Source::File(p.clone())),
            None => m,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        figment::providers::Serialized::defaults(&self.data).data()
    }
}

/// Loads, merges and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut layers = Vec::new();
    let mut files = Vec::new();
    if !opts.base.is_empty() {
        layers.push(Layer { name: "built-in base".into(), path: None, text: None, data: opts.base.clone() });
    }
    if opts.dev {
        layers.push(Layer { name: "dev mode defaults".into(), path: None, text: None, data: dev_defaults() });
    }
    for source in &opts.sources {
        for path in expand_source(source, opts.config_format.as_deref())? {
            layers.push(read_file(&path, opts.config_format.as_deref())?);
            files.push(path);
        }
    }
    if let Some(env) = env_layer(&opts.env)? {
        layers.push(env);
    }
    if !opts.flags.is_empty() {
        layers.push(Layer { name: "command-line flags".into(), path: None, text: None, data: opts.flags.clone() });
    }

    let mut warnings = Vec::new();
    for layer in &mut layers {
        normalize(layer, &mut warnings);
    }
    apply_wholesale_maps(&mut layers);
    for layer in &layers {
        check_layer(layer)?;
    }

    let mut figment = Figment::new();
    for layer in &layers {
        figment = figment.admerge(layer.clone());
    }
    let mut config: Config = figment.extract().map_err(|e| figment_error(e, None))?;
    config.dev = opts.dev;
    finish(&mut config);
    validate(&config, &figment, &layers)?;
    Ok(Loaded { config, warnings, files })
}

/// A file argument, or a directory's `*.json`, `*.hcl`, `*.toml` files in lexical order (every
/// regular file when `-config-format` is given), not recursing.
fn expand_source(path: &Path, format: Option<&str>) -> Result<Vec<PathBuf>, ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let p = entry.path();
        // Follow symlinks (config management tools link files in), skip sub-directories.
        if std::fs::metadata(&p).map(|m| m.is_dir()).unwrap_or(true) {
            continue;
        }
        let wanted =
            format.is_some() || matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl" | "toml"));
        if wanted {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn read_file(path: &Path, format: Option<&str>) -> Result<Layer, ConfigError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: name.clone(), reason: e.to_string() })?;
    let format = match format {
        Some(f) => f.to_string(),
        None => path.extension().and_then(|e| e.to_str()).unwrap_or("").to_string(),
    };
    let data = parse_text(&name, &text, &format)?;
    Ok(Layer { name, path: Some(path.to_path_buf()), text: Some(text), data })
}

/// One source's text in `format` (json, hcl, toml) as the JSON object layering works on;
/// errors name `name` and the line when the parser gives it.
pub fn parse_text(name: &str, text: &str, format: &str) -> Result<JsonMap<String, Json>, ConfigError> {
    let parse_err = |line: Option<usize>, reason: String| ConfigError::Parse { path: name.to_string(), line, reason };
    let value: Json = match format {
        "json" => serde_json::from_str(text).map_err(|e| parse_err(Some(e.line()), e.to_string()))?,
        "hcl" => legate_hcl::from_str(text).map_err(|e| parse_err(Some(e.line), e.to_string()))?,
        "toml" => {
            let v: toml::Value = toml::from_str(text).map_err(|e| {
                let line = e.span().map(|s| text.get(..s.start).map_or(1, |t| t.lines().count().max(1)));
                parse_err(line, e.message().to_string())
            })?;
            serde_json::to_value(v).map_err(|e| parse_err(None, e.to_string()))?
        }
        other => {
            return Err(parse_err(None, format!("unknown config format \"{other}\" (expected json, hcl or toml)")))
        }
    };
    match value {
        Json::Object(m) => Ok(m),
        // An empty file is an empty config, as in Consul.
        Json::Null => Ok(JsonMap::new()),
        _ => Err(parse_err(None, "the top level must be an object".into())),
    }
}

/// `LEGATE_DATACENTER=dc2`, `LEGATE_PORTS__HTTP=8501`, `LEGATE_RETRY_JOIN='["a","b"]'`: the
/// name lower-cased, `__` separating nested keys; a value that parses as JSON (numbers, booleans,
/// arrays, objects) is taken as such, anything else as a string.
fn env_layer(env: &[(String, String)]) -> Result<Option<Layer>, ConfigError> {
    let mut data = JsonMap::new();
    let mut vars: Vec<_> = env
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("LEGATE_")?, v)))
        .filter(|(k, _)| !CLI_ENV.contains(k))
        .collect();
    vars.sort();
    for (key, value) in vars {
        let path: Vec<String> = key.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::invalid(None, format!("LEGATE_{key}"), "malformed variable name"));
        }
        let parsed = match serde_json::from_str::<Json>(value) {
            Ok(v @ (Json::Bool(_) | Json::Number(_) | Json::Array(_) | Json::Object(_))) => v,
            _ => Json::String(value.clone()),
        };
        let mut cursor = &mut data;
        for part in &path[..path.len() - 1] {
            let entry = cursor.entry(part.clone()).or_insert_with(|| Json::Object(JsonMap::new()));
            if !entry.is_object() {
                *entry = Json::Object(JsonMap::new());
            }
            cursor = entry.as_object_mut().expect("just made an object");
        }
        cursor.insert(path[path.len() - 1].clone(), parsed);
    }
    if data.is_empty() {
        return Ok(None);
    }
    Ok(Some(Layer { name: ENV_LAYER.into(), path: None, text: None, data }))
}

/// Consul's `-dev` defaults (DevSource).
fn dev_defaults() -> JsonMap<String, Json> {
    let v = serde_json::json!({
        "server": true,
        "bootstrap": true,
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ui_config": {"enabled": true},
        "log_level": "debug",
        "enable_debug": true,
        "disable_keyring_file": true,
        "disable_anonymous_signature": true,
        "performance": {"raft_multiplier": 1},
        "gossip_lan": {"gossip_interval": "100ms", "probe_interval": "100ms", "probe_timeout": "100ms", "suspicion_mult": 3, "retransmit_mult": 2},
        "gossip_wan": {"gossip_interval": "100ms", "probe_interval": "100ms", "probe_timeout": "100ms", "suspicion_mult": 3, "retransmit_mult": 2},
    });
    match v {
        Json::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Folds singletons into lists so they accumulate across layers (HCL writes repeated blocks as
/// a list and one block as an object, so both shapes are accepted everywhere), and notes keys
/// that are accepted but have no effect.
fn normalize(layer: &mut Layer, warnings: &mut Vec<String>) {
    for (single, plural) in [("service", "services"), ("check", "checks"), ("template", "templates")] {
        let mut items = Vec::new();
        if let Some(v) = layer.data.remove(single) {
            push_items(&mut items, v);
        }
        if let Some(v) = layer.data.remove(plural) {
            push_items(&mut items, v);
        }
        if !items.is_empty() {
            layer.data.insert(plural.into(), Json::Array(items));
        }
    }
    if let Some(v) = layer.data.remove("watches") {
        let mut items = Vec::new();
        push_items(&mut items, v);
        layer.data.insert("watches".into(), Json::Array(items));
    }
    crate::deprecated::fold(&layer.name, &mut layer.data, warnings);
    crate::tls::fold_deprecated(&layer.name, &mut layer.data, warnings);
    for key in INERT_KEYS {
        if layer.data.contains_key(*key) {
            warnings.push(format!(
                "{}: config key \"{key}\" is accepted for Consul compatibility but has no effect in Legate",
                layer.name
            ));
        }
    }
    if let Some(Json::Object(limits)) = layer.data.get("limits") {
        for key in LIMITS_WITHOUT_EFFECT {
            if limits.contains_key(*key) {
                warnings.push(format!(
                    "{}: config key \"limits.{key}\" is accepted for Consul compatibility but has no effect in Legate yet",
                    layer.name
                ));
            }
        }
    }
    if let Some(Json::Object(t)) = layer.data.get("telemetry") {
        for key in t.keys().filter(|k| k.starts_with("circonus_") || TELEMETRY_WITHOUT_EFFECT.contains(&k.as_str())) {
            warnings.push(format!(
                "{}: config key \"telemetry.{key}\" is accepted for Consul compatibility but has no effect in Legate",
                layer.name
            ));
        }
    }
    if let Some(Json::Object(ui)) = layer.data.get("ui_config") {
        for key in ui.keys().filter(|k| k.starts_with("metrics_p")) {
            warnings.push(format!(
                "{}: config key \"ui_config.{key}\" is accepted for Consul compatibility but has no effect in Legate (its UI shows no service-mesh metrics)",
                layer.name
            ));
        }
    }
    for (key, instead) in [("ui", "ui_config.enabled"), ("ui_dir", "ui_config.dir")] {
        if layer.data.contains_key(key) {
            warnings.push(format!("{}: config key \"{key}\" is deprecated, use \"{instead}\"", layer.name));
        }
    }
}

/// `telemetry` keys Legate parses but does not act on (besides every `circonus_*` key: there is
/// no Circonus sink): sinks start or fail at once, and host metrics are `/v1/agent/host`'s.
const TELEMETRY_WITHOUT_EFFECT: &[&str] = &["retry_failed_connection", "enable_host_metrics"];

/// `limits` keys Legate parses but does not enforce yet (the client agents' RPC timeout,
/// request rate limits); the others are enforced.
const LIMITS_WITHOUT_EFFECT: &[&str] = &["rpc_client_timeout", "request_limits"];

fn push_items(items: &mut Vec<Json>, v: Json) {
    match v {
        Json::Array(a) => items.extend(a),
        Json::Null => {}
        other => items.push(other),
    }
}

/// A map set by a later layer replaces the same map of every earlier layer.
fn apply_wholesale_maps(layers: &mut [Layer]) {
    for i in 0..layers.len() {
        for path in WHOLESALE_MAPS {
            let set_here = get_path(&layers[i].data, path).and_then(Json::as_object).is_some_and(|m| !m.is_empty());
            if set_here {
                for earlier in &mut layers[..i] {
                    remove_path(&mut earlier.data, path);
                }
            }
        }
    }
}

fn get_path<'a>(data: &'a JsonMap<String, Json>, path: &str) -> Option<&'a Json> {
    let mut parts = path.split('.');
    let mut cur = data.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn remove_path(data: &mut JsonMap<String, Json>, path: &str) {
    match path.split_once('.') {
        None => {
            data.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Json::Object(inner)) = data.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

/// Checks one layer on its own, so that an unknown key, a wrong type or a bad definition is
/// reported against the file (and line) it came from.
fn check_layer(layer: &Layer) -> Result<(), ConfigError> {
    let config: Config = Figment::from(layer.clone()).extract().map_err(|e| figment_error(e, Some(layer)))?;
    for (i, svc) in config.services.iter().enumerate() {
        validate_service(svc).map_err(|(k, r)| ConfigError::invalid(Some(layer), format!("services[{i}]{k}"), r))?;
    }
    for (i, chk) in config.checks.iter().enumerate() {
        validate_check(chk, false).map_err(|(k, r)| ConfigError::invalid(Some(layer), format!("checks[{i}]{k}"), r))?;
    }
    for (i, w) in config.watches.iter().enumerate() {
        validate_watch(w).map_err(|(k, r)| ConfigError::invalid(Some(layer), format!("watches[{i}]{k}"), r))?;
    }
    Ok(())
}

fn figment_error(e: figment::Error, layer: Option<&Layer>) -> ConfigError {
    let mut key = e.path.join(".");
    let reason = match &e.kind {
        figment::error::Kind::UnknownField(field, _) => {
            // figment's path may or may not already end with the field.
            if e.path.last() != Some(field) {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(field);
            }
            "invalid config key".to_string()
        }
        figment::error::Kind::Message(m) => m.clone(),
        other => other.to_string(),
    };
    let key = if key.is_empty() { "(top level)".to_string() } else { key };
    let key = match layer {
        Some(l) if l.name == ENV_LAYER => format!("LEGATE_{}", key.replace('.', "__").to_ascii_uppercase()),
        _ => key,
    };
    match layer {
        Some(l) => ConfigError::invalid(Some(l), key, reason),
        None => ConfigError::Invalid {
            source_name: e.metadata.map(|m| m.name.to_string()).unwrap_or_else(|| "config".into()),
            line: None,
            key,
            reason,
        },
    }
}

/// Resolves deprecated aliases after merging.
fn finish(config: &mut Config) {
    if let Some(ui) = config.ui.take() {
        config.ui_config.enabled = config.ui_config.enabled || ui;
    }
    if let Some(dir) = config.ui_dir.take() {
        config.ui_config.dir.get_or_insert(dir);
    }
    config.datacenter = config.datacenter.to_ascii_lowercase();
    if !config.domain.ends_with('.') {
        config.domain.push('.');
    }
    if let Some(alt) = &mut config.alt_domain {
        if !alt.ends_with('.') {
            alt.push('.');
        }
    }
    // Consul ignores duplicate recursors.
    let mut seen = std::collections::HashSet::new();
    config.recursors.retain(|r| seen.insert(r.clone()));
}

/// Whole-config rules, each error naming the layer that last set the offending key.
fn validate(config: &Config, figment: &Figment, layers: &[Layer]) -> Result<(), ConfigError> {
    let err = |key: &str, reason: String| {
        let layer = figment.find_metadata(key).and_then(|m| layers.iter().find(|l| l.name == m.name.as_ref()));
        ConfigError::invalid(layer, key, reason)
    };
    if config.bootstrap && config.bootstrap_expect > 0 {
        return Err(err(
            "bootstrap_expect",
            "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive".into(),
        ));
    }
    if config.bootstrap && !config.server {
        return Err(err("bootstrap", "'bootstrap = true' is not allowed in client mode".into()));
    }
    if config.bootstrap_expect > 0 && !config.server {
        return Err(err("bootstrap_expect", "'bootstrap_expect > 0' is not allowed in client mode".into()));
    }
    if !config.dev && config.data_dir.as_ref().is_none_or(|d| d.as_os_str().is_empty()) {
        return Err(ConfigError::Invalid {
            source_name: "config".into(),
            line: None,
            key: "data_dir".into(),
            reason: "data_dir cannot be empty (set -data-dir, or run with -dev)".into(),
        });
    }
    for (i, t) in config.templates.iter().enumerate() {
        let key = format!("template[{i}]");
        legate_template::config::validate(t, false).map_err(|e| err(&key, e))?;
        // A template that does not parse fails the start (or the reload), naming file, line and column.
        legate_template::runner::compile(t).map_err(|e| err(&key, e))?;
    }
    let ui_path = config.ui_content_path();
    if ui_path == "/" || ui_path.starts_with("/v1/") {
        return Err(err(
            "ui_config.content_path",
            format!("{ui_path:?} would hide the HTTP API: the UI needs a path of its own, such as /ui/"),
        ));
    }
    if let Some(dir) = &config.ui_config.dir {
        if !dir.join("index.html").is_file() {
            return Err(err("ui_config.dir", format!("{} has no index.html (a built UI is expected)", dir.display())));
        }
    }
    if config.datacenter.is_empty()
        || !config.datacenter.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(err(
            "datacenter",
            format!(
                "datacenter {:?} must be non-empty and contain only letters, digits, '-' and '_'",
                config.datacenter
            ),
        ));
    }
    if config.sync_coordinate_interval_min.0.is_zero() {
        return Err(err("sync_coordinate_interval_min", "must be a positive duration".into()));
    }
    if !(config.sync_coordinate_rate_target.is_finite() && config.sync_coordinate_rate_target > 0.0) {
        return Err(err("sync_coordinate_rate_target", "must be a positive number of updates per second".into()));
    }
    let p = &config.ports;
    for (name, value) in [
        ("http", p.http),
        ("https", p.https),
        ("dns", p.dns),
        ("serf_lan", p.serf_lan),
        ("serf_wan", p.serf_wan),
        ("server", p.server),
        ("grpc", p.grpc),
        ("grpc_tls", p.grpc_tls),
    ] {
        if !(-1..=65535).contains(&value) {
            return Err(err(
                &format!("ports.{name}"),
                format!("invalid port {value} (must be -1 to disable, or 0-65535)"),
            ));
        }
    }
    if !matches!(
        config.log_level.to_ascii_lowercase().as_str(),
        "trace" | "debug" | "info" | "warn" | "warning" | "err" | "error"
    ) {
        return Err(err(
            "log_level",
            format!("invalid log level {:?} (trace, debug, info, warn, error)", config.log_level),
        ));
    }
    for (key, value) in [("bind_addr", &config.bind_addr)] {
        if value.parse::<std::net::IpAddr>().is_err() {
            return Err(err(key, format!("{value:?} is not an IP address (go-sockaddr templates are not supported)")));
        }
    }
    for (key, value) in [
        ("client_addr", Some(&config.client_addr)),
        ("addresses.http", config.addresses.http.as_ref()),
        ("addresses.https", config.addresses.https.as_ref()),
        ("addresses.dns", config.addresses.dns.as_ref()),
    ] {
        let Some(value) = value else { continue };
        if value.split_whitespace().next().is_none() {
            return Err(err(key, "no address given".into()));
        }
        for part in value.split_whitespace() {
            if part.parse::<std::net::IpAddr>().is_err() {
                return Err(err(
                    key,
                    format!("{part:?} is not an IP address (go-sockaddr templates are not supported)"),
                ));
            }
        }
    }
    for (key, value) in [("advertise_addr", &config.advertise_addr), ("advertise_addr_wan", &config.advertise_addr_wan)]
    {
        if let Some(v) = value {
            if v.parse::<std::net::IpAddr>().is_err() {
                return Err(err(key, format!("{v:?} is not an IP address")));
            }
        }
    }
    if let Some(id) = &config.node_id {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(err("node_id", format!("{id:?} is not a valid UUID")));
        }
    }
    if let Some(name) = &config.node_name {
        if name.is_empty() {
            return Err(err("node_name", "node_name cannot be empty".into()));
        }
    }
    validate_meta(&config.node_meta).map_err(|r| err("node_meta", r))?;
    if let Some(key) = &config.encrypt {
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(bytes) if matches!(bytes.len(), 16 | 24 | 32) => {}
            Ok(bytes) => {
                return Err(err("encrypt", format!("encryption key must be 16, 24 or 32 bytes, got {}", bytes.len())))
            }
            Err(e) => return Err(err("encrypt", format!("invalid base64 encryption key: {e}"))),
        }
    }
    if config.raft_protocol != 3 {
        return Err(err("raft_protocol", format!("raft_protocol {} is not supported (only 3)", config.raft_protocol)));
    }
    if !(2..=3).contains(&config.protocol) {
        return Err(err("protocol", format!("protocol version {} is not supported (2 or 3)", config.protocol)));
    }
    if config.max_query_time.0.is_zero() || config.default_query_time.0.is_zero() {
        return Err(err("default_query_time", "query times must be positive".into()));
    }
    if config.check_output_max_size == 0 {
        return Err(err("check_output_max_size", "check_output_max_size must be positive".into()));
    }
    if !matches!(config.acl.default_policy.as_str(), "allow" | "deny") {
        return Err(err(
            "acl.default_policy",
            format!("invalid default policy {:?} (allow or deny)", config.acl.default_policy),
        ));
    }
    if !matches!(config.acl.down_policy.as_str(), "allow" | "deny" | "extend-cache" | "async-cache") {
        return Err(err(
            "acl.down_policy",
            format!("invalid down policy {:?} (allow, deny, extend-cache or async-cache)", config.acl.down_policy),
        ));
    }
    if let Some(bad) = config.recursors.iter().find(|r| crate::parse_recursor(r).is_none()) {
        return Err(err("recursors", format!("Invalid recursor address {bad:?}: not an IP address or IP:port")));
    }
    if !matches!(config.dns_config.recursor_strategy.as_str(), "sequential" | "random") {
        return Err(err(
            "dns_config.recursor_strategy",
            format!("invalid recursor strategy {:?} (sequential or random)", config.dns_config.recursor_strategy),
        ));
    }
    if config.reconnect_timeout.0 < std::time::Duration::from_secs(8 * 3600) {
        return Err(err("reconnect_timeout", "reconnect_timeout must be >= 8h".into()));
    }
    for (name, value) in &config.http_config.response_headers {
        if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err()
        {
            return Err(err("http_config.response_headers", format!("invalid HTTP header {name:?}: {value:?}")));
        }
    }
    if let Some(bad) = config.http_config.allow_write_http_from.iter().find(|c| crate::parse_cidr(c).is_none()) {
        return Err(err("http_config.allow_write_http_from", format!("{bad:?} is not a CIDR block or an IP address")));
    }
    match &config.limits.rpc_rate {
        None => {}
        Some(Json::String(s)) if s == "inf" => {}
        Some(Json::Number(n)) if n.as_f64().is_some_and(|r| r > 0.0) => {}
        Some(other) => {
            return Err(err(
                "limits.rpc_rate",
                format!("invalid rate {other} (a positive number of requests per second, or \"inf\")"),
            ))
        }
    }
    if config.rpc_rate().is_some() && config.limits.rpc_max_burst == 0 {
        return Err(err("limits.rpc_max_burst", "rpc_max_burst must be at least 1".into()));
    }
    if !(1..=crate::MAX_PLUGIN_MAX_SIZE).contains(&config.plugins.max_size) {
        return Err(err(
            "plugins.max_size",
            format!(
                "max_size {} must be from 1 to {} bytes (64 MiB)",
                config.plugins.max_size,
                crate::MAX_PLUGIN_MAX_SIZE
            ),
        ));
    }
    for (i, key) in config.plugins.trusted_keys.iter().enumerate() {
        if let Err(why) = legate_plugin_host::signing::parse_public_key(key) {
            return Err(err("plugins.trusted_keys", format!("trusted_keys[{i}]: {why}")));
        }
    }
    validate_tls(config, &err)?;
    let mut ids = std::collections::HashSet::new();
    for svc in &config.services {
        let id = svc.id.clone().unwrap_or_else(|| svc.name.clone());
        if !ids.insert(id.clone()) {
            return Err(err("services", format!("service ID {id:?} is defined twice")));
        }
    }
    Ok(())
}

/// The `tls` block: keys in a stanza that does not take them, and the files each listener
/// would load (read now, so a missing or broken file fails the start or the reload).
fn validate_tls(config: &Config, err: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
    use crate::tls::Listener;
    if let Some((key, reason)) = config.tls.misplaced() {
        return Err(err(&key, reason));
    }
    let https = config.https_tls().map_err(|e| err(Listener::Https.key(), e.to_string()))?;
    if config.ports.https >= 0 && https.is_none() {
        return Err(err(
            "ports.https",
            "the HTTPS API needs a certificate: set tls.https (or tls.defaults) cert_file and key_file".into(),
        ));
    }
    config.rpc_tls().map_err(|e| err(Listener::InternalRpc.key(), e.to_string()))?;
    Ok(())
}

/// Consul's meta rules (node_meta and service meta).
pub fn validate_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err(format!("too many metadata pairs ({} > 64)", meta.len()));
    }
    for (k, v) in meta {
        if k.is_empty() || k.len() > 128 || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("invalid metadata key {k:?}: 1-128 characters of [A-Za-z0-9_-]"));
        }
        if k.starts_with("consul-") {
            return Err(format!("metadata key {k:?} uses the reserved prefix \"consul-\""));
        }
        if v.len() > 512 {
            return Err(format!("metadata value for key {k:?} is longer than 512 characters"));
        }
    }
    Ok(())
}

/// Errors are `(sub-key, reason)`; the caller prefixes where the definition sits.
fn validate_service(svc: &ServiceDefinition) -> Result<(), (String, String)> {
    if svc.name.is_empty() {
        return Err((".name".into(), "missing service name".into()));
    }
    validate_meta(&svc.meta).map_err(|r| (".meta".to_string(), r))?;
    let checks = svc.check.iter().chain(svc.checks.iter());
    for (i, chk) in checks.enumerate() {
        validate_check(chk, true).map_err(|(k, r)| (format!(".checks[{i}]{k}"), r))?;
    }
    Ok(())
}

fn validate_check(chk: &CheckDefinition, in_service: bool) -> Result<(), (String, String)> {
    if !in_service && chk.name.as_deref().unwrap_or("").is_empty() {
        return Err((".name".into(), "missing check name".into()));
    }
    let kinds = [
        chk.ttl.is_some(),
        chk.http.is_some(),
        chk.tcp.is_some(),
        chk.udp.is_some(),
        chk.grpc.is_some(),
        chk.h2ping.is_some(),
        !chk.args.is_empty() || chk.script.is_some(),
        chk.docker_container_id.is_some(),
        chk.alias_service.is_some() || chk.alias_node.is_some(),
        chk.os_service.is_some(),
        chk.wasm.is_some(),
    ];
    let n = kinds.iter().filter(|k| **k).count();
    if n == 0 {
        return Err((String::new(), "check type is not valid: set one of ttl, http, tcp, udp, grpc, h2ping, args, alias_service, alias_node, wasm".into()));
    }
    let needs_interval = chk.ttl.is_none() && chk.alias_service.is_none() && chk.alias_node.is_none();
    if n > 1 && chk.ttl.is_some() {
        return Err((".ttl".into(), "a TTL check cannot also have another check type".into()));
    }
    if needs_interval && chk.interval.is_none_or(|i| i.0.is_zero()) {
        return Err((".interval".into(), "interval is required for this check type".into()));
    }
    if let Some(w) = &chk.wasm {
        if w.plugin.is_empty() {
            return Err((".wasm.plugin".into(), "a wasm check needs a plugin (a path or a name)".into()));
        }
        legate_plugin_host::PluginRef::parse(&w.plugin).map_err(|why| (".wasm.plugin".to_string(), why))?;
        if w.memory_mb == Some(0) {
            return Err((".wasm.memory_mb".into(), "memory_mb must be > 0".into()));
        }
    }
    if let Some(status) = &chk.status {
        if !matches!(status.as_str(), "passing" | "warning" | "critical") {
            return Err((
                ".status".into(),
                format!("invalid initial status {status:?} (passing, warning or critical)"),
            ));
        }
    }
    if let Some(d) = chk.deregister_critical_service_after {
        if d.0 < std::time::Duration::from_secs(60) && !d.0.is_zero() {
            // Consul clamps to the 1m minimum; accept, the runner applies the floor.
        }
    }
    Ok(())
}

fn validate_watch(w: &WatchDefinition) -> Result<(), (String, String)> {
    legate_watch::WatchSpec::from_definition(w)?;
    legate_watch::handler::HandlerSpec::from_definition(w)?;
    Ok(())
}
