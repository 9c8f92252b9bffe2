//! Config files and dirs that reload themselves: a notify watcher on every `-config-file` and
//! `-config-dir` (their directories, so editors' rename-into-place is seen), debounced, feeding
//! the same reload as SIGHUP and `PUT /v1/agent/reload`. On by default (`auto_reload_config`).
//! The TLS certificate, key and CA files the agent starts with are watched too, as Consul does,
//! so a rotated certificate is picked up without a signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::AgentShared;

/// Quiet time after the last change before reloading (a burst of writes is one reload).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

fn relevant(event_path: &Path, sources: &[PathBuf]) -> bool {
    sources.iter().any(|s| {
        if s.is_dir() {
            event_path.parent() == Some(s.as_path()) || event_path == s
        } else {
            event_path == s || event_path.file_name() == s.file_name() && event_path.parent() == s.parent()
        }
    })
}

/// The certificate, key and CA files of the HTTPS API and the RPC port.
fn tls_files(config: &legate_config::Config) -> Vec<PathBuf> {
    use legate_config::tls::Listener;
    let mut files = Vec::new();
    for l in [Listener::Https, Listener::InternalRpc] {
        let s = config.tls.settings(l);
        files.extend([s.ca_file, s.cert_file, s.key_file].into_iter().flatten());
    }
    files.sort();
    files.dedup();
    files
}

pub async fn watch_loop(agent: Arc<AgentShared>, shutdown: CancellationToken) {
    let mut sources: Vec<PathBuf> =
        agent.config_sources().iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
    if sources.is_empty() {
        return;
    }
    sources.extend(tls_files(&agent.config()).into_iter().map(|p| p.canonicalize().unwrap_or(p)));
    // Bounded: a full channel already means "something changed"; dropped signals lose nothing.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let filter_sources = sources.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.kind.is_access() {
                return;
            }
            if ev.paths.iter().any(|p| relevant(p, &filter_sources)) {
                let _ = tx.try_send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => return tracing::warn!(error = %e, "cannot watch config files; reload with SIGHUP"),
    };
    let mut dirs: Vec<PathBuf> = sources
        .iter()
        .map(|s| if s.is_dir() { s.clone() } else { s.parent().map(Path::to_path_buf).unwrap_or_default() })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch config dir");
        }
    }
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = rx.recv() => if r.is_none() { return },
        }
        // Debounce: wait until the writes stop.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DEBOUNCE) => break,
                _ = rx.recv() => {}
            }
        }
        if !agent.config().auto_reload_config {
            continue;
        }
        let a = agent.clone();
        match tokio::task::spawn_blocking(move || a.reload()).await {
            Ok(Ok(outcome)) => tracing::info!(
                applied = ?outcome.applied,
                requires_restart = ?outcome.requires_restart,
                "config files changed: reloaded"
            ),
            Ok(Err(e)) => {
                tracing::error!("config files changed but the new config is invalid, keeping the running one: {e}")
            }
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}
