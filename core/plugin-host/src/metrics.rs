//! The plugin host's metrics (`legate.plugin.*`), labelled by plugin: the name a definition
//! gives (`http_json`), or a path's file name without `.wasm`.

use std::path::Path;
use std::time::Instant;

/// The `plugin` label of a definition's `plugin` value or a loaded file's path; a registry
/// reference (`registry:<name>[@<version>]`) is labelled by its name.
pub(crate) fn label(plugin: &str) -> String {
    if let Some(rest) = plugin.strip_prefix("registry:") {
        return rest.split('@').next().unwrap_or(rest).to_string();
    }
    let name = Path::new(plugin).file_name().map_or_else(|| plugin.into(), |n| n.to_string_lossy().into_owned());
    name.strip_suffix(".wasm").map(str::to_string).unwrap_or(name)
}

/// One finished call into a plugin: `kind` is `check`, `handler` or `validate`; `outcome`
/// `passing`, `warning`, `critical` (a check's result), `ok` (a handler's or a validation's) or
/// `error` (the plugin returned an error, or the call was killed).
pub(crate) fn call(plugin: &str, kind: &'static str, started: Instant, outcome: &'static str) {
    let p = ("plugin", label(plugin).into());
    legate_telemetry::counter("legate.plugin.calls", vec![p.clone(), ("kind", kind.into())], 1.0);
    legate_telemetry::measure_since("legate.plugin.duration", vec![p.clone(), ("kind", kind.into())], started);
    legate_telemetry::counter("legate.plugin.outcome", vec![p, ("outcome", outcome.into())], 1.0);
}

/// Why a call was killed.
#[derive(Clone, Copy)]
pub(crate) enum Kill {
    Trap,
    Timeout,
    Memory,
}

pub(crate) fn killed(plugin: &str, why: Kill) {
    let name = match why {
        Kill::Trap => "legate.plugin.traps",
        Kill::Timeout => "legate.plugin.timeouts",
        Kill::Memory => "legate.plugin.memory_limit",
    };
    legate_telemetry::counter(name, vec![("plugin", label(plugin).into())], 1.0);
}

/// A host function the plugin called, by WIT interface (`http`, `net`, `kv`, `log`).
pub(crate) fn host_call(plugin: &str, interface: &'static str) {
    legate_telemetry::counter(
        "legate.plugin.host_calls",
        vec![("plugin", label(plugin).into()), ("interface", interface.into())],
        1.0,
    );
}

pub(crate) fn loaded(path: &Path, from_cache: bool, replaced: bool) {
    legate_telemetry::incr(if from_cache { "legate.plugin.cache.hit" } else { "legate.plugin.cache.miss" });
    if replaced {
        legate_telemetry::counter(
            "legate.plugin.reloads",
            vec![("plugin", label(&path.to_string_lossy()).into())],
            1.0,
        );
    }
}

/// A registry plugin fetched from the servers.
pub(crate) fn registry_fetch(name: &str, bytes: usize, started: Instant) {
    let p: legate_telemetry::Labels = vec![("plugin", name.to_string().into())];
    legate_telemetry::counter("legate.plugin.registry.fetches", p.clone(), 1.0);
    legate_telemetry::counter("legate.plugin.registry.fetch_bytes", p.clone(), bytes as f64);
    legate_telemetry::measure_since("legate.plugin.registry.fetch_time", p, started);
}

/// A registry plugin refused: `reason` is `unsigned` or `digest`.
pub(crate) fn registry_refused(name: &str, reason: &'static str) {
    legate_telemetry::counter(
        "legate.plugin.registry.refused",
        vec![("plugin", name.to_string().into()), ("reason", reason.into())],
        1.0,
    );
}

pub(crate) fn backoff(plugin: &str) {
    legate_telemetry::counter("legate.plugin.backoffs", vec![("plugin", label(plugin).into())], 1.0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels() {
        assert_eq!(super::label("http_json"), "http_json");
        assert_eq!(super::label("/var/lib/plugins/http_json.wasm"), "http_json");
        assert_eq!(super::label("registry:http_json"), "http_json");
        assert_eq!(super::label("registry:http_json@1.2.0"), "http_json");
    }
}
