//! The reload path: SIGHUP (and later `legate reload`, `PUT /v1/agent/reload`, the file watcher)
//! re-run the whole layering and validation; an invalid result keeps the running config. A valid
//! one is diffed against the running config: keys Consul reloads are swapped in, keys that need
//! a restart keep their running value and are reported.

use std::sync::Arc;

use serde_json::Value as Json;
use tokio::sync::watch;

use super::{load, Config, ConfigError, LoadOptions};

/// Top-level keys applied on reload (Consul's reloadable set, plus DNS config which Consul also
/// reloads in code). Everything else requires a restart, `raft_snapshot_threshold` and
/// `raft_trailing_logs` included, unlike Consul: openraft 0.9 takes them once, when Raft starts.
pub const RELOADABLE: &[&str] = &[
    "services",
    "checks",
    "watches",
    "acl",
    "log_level",
    "node_meta",
    "discard_check_output",
    "check_update_interval",
    "telemetry",
    "limits",
    "config_entries",
    "dns_config",
    "recursors",
    "http_config",
    "tls",
    "enable_agent_tls_for_checks",
    "auto_reload_config",
    "enable_script_checks",
    "enable_local_script_checks",
    "ui_config",
    "templates",
    "plugins",
];

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReloadOutcome {
    /// Dotted keys whose new value is now running.
    pub applied: Vec<String>,
    /// Dotted keys that changed in the sources but keep their running value until a restart.
    pub requires_restart: Vec<String>,
}

/// Dotted paths of the leaves that differ between two configs.
pub fn diff(old: &Config, new: &Config) -> Vec<String> {
    let a = serde_json::to_value(old).expect("config serializes");
    let b = serde_json::to_value(new).expect("config serializes");
    let mut out = Vec::new();
    diff_values("", &a, &b, &mut out);
    out
}

fn diff_values(prefix: &str, a: &Json, b: &Json, out: &mut Vec<String>) {
    match (a, b) {
        (Json::Object(ma), Json::Object(mb)) if !prefix.is_empty() || !ma.is_empty() => {
            let keys: std::collections::BTreeSet<_> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => diff_values(&path, x, y, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

fn top_level(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

/// Holds what the agent was started with, and the running config.
pub struct Reloader {
    opts: LoadOptions,
    current: watch::Sender<Arc<Config>>,
}

impl Reloader {
    pub fn new(opts: LoadOptions, current: watch::Sender<Arc<Config>>) -> Self {
        Reloader { opts, current }
    }

    /// The `-config-file` / `-config-dir` paths (what the file watcher watches).
    pub fn sources(&self) -> &[std::path::PathBuf] {
        &self.opts.sources
    }

    /// Re-reads every source. On error nothing changes and the error (naming file, line and
    /// key) is returned for the caller to log or answer with.
    pub fn reload(&self) -> Result<ReloadOutcome, ConfigError> {
        let loaded = load(&self.opts)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let running = self.current.borrow().clone();
        let changed = diff(&running, &loaded.config);
        let mut outcome = ReloadOutcome::default();
        for key in changed {
            if RELOADABLE.contains(&top_level(&key)) {
                outcome.applied.push(key);
            } else {
                outcome.requires_restart.push(key);
            }
        }
        // Build the config to run: the new values of reloadable keys on top of the running
        // config, so a restart-only key is never half-applied.
        let mut next = serde_json::to_value(&*running).expect("config serializes");
        let fresh = serde_json::to_value(&loaded.config).expect("config serializes");
        if let (Json::Object(next), Json::Object(fresh)) = (&mut next, fresh) {
            for (k, v) in fresh {
                if RELOADABLE.contains(&k.as_str()) {
                    next.insert(k, v);
                }
            }
        }
        let mut next: Config = serde_json::from_value(next).expect("merged config deserializes");
        next.dev = running.dev;
        for key in &outcome.requires_restart {
            tracing::warn!(key = %key, "config change requires restart; keeping the running value");
        }
        if outcome.applied.is_empty() {
            tracing::info!("config reloaded: no changes to apply");
        } else {
            tracing::info!(changed = ?outcome.applied, "config reloaded");
        }
        self.current.send_replace(Arc::new(next));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_changed_leaves() {
        let a = Config::default();
        let mut b = Config::default();
        b.ports.http = 9;
        b.log_level = "debug".into();
        b.node_meta.insert("rack".into(), "r1".into());
        let d = diff(&a, &b);
        assert!(d.contains(&"ports.http".to_string()), "{d:?}");
        assert!(d.contains(&"log_level".to_string()), "{d:?}");
        assert!(d.iter().any(|k| k.starts_with("node_meta")), "{d:?}");
        assert_eq!(d.len(), 3, "{d:?}");
    }

    /// openraft 0.9 takes the snapshot settings when Raft starts: a reload says so and keeps
    /// them, and `raft_snapshot_interval` is accepted with a warning.
    #[test]
    fn raft_snapshot_settings_need_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.hcl");
        std::fs::write(&file, "data_dir = \"/tmp/x\"\n").unwrap();
        let opts = LoadOptions { sources: vec![file.clone()], ..Default::default() };
        let first = load(&opts).unwrap();
        let (tx, rx) = watch::channel(Arc::new(first.config.clone()));
        let reloader = Reloader::new(opts.clone(), tx);

        std::fs::write(&file, "data_dir = \"/tmp/x\"\nraft_snapshot_threshold = 99\nraft_snapshot_interval = \"5s\"\n")
            .unwrap();
        let warnings = load(&opts).unwrap().warnings;
        let outcome = reloader.reload().unwrap();
        assert_eq!(outcome.requires_restart, vec!["raft_snapshot_interval", "raft_snapshot_threshold"]);
        assert!(outcome.applied.is_empty(), "{outcome:?}");
        assert_eq!(rx.borrow().raft_snapshot_threshold, first.config.raft_snapshot_threshold);
        assert!(
            warnings.iter().any(|w| w.contains("\"raft_snapshot_interval\"") && w.contains("no effect")),
            "{warnings:?}"
        );
    }
}
