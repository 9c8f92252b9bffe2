//! The log line format of `/v1/agent/monitor`: hclog's, as Consul writes it, so that tools
//! reading `consul monitor` read Legate's too. Text:
//! `2026-12-03T17:45:00.123Z [INFO]  agent.http: request finished: method=PUT url=/v1/kv/x`;
//! JSON: `{"@level":"info","@message":"...","@module":"agent.http","@timestamp":"...",...}`.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// hclog's text (`json` false) or JSON lines.
pub struct Hclog {
    pub json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs.push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

/// Consul's module names: `agent`, `agent.http`, `agent.raft`... from the event's crate.
fn module(target: &str) -> String {
    let krate = target.split("::").next().unwrap_or(target);
    match krate.strip_prefix("legate_").unwrap_or(krate) {
        "core" | "agent" | "legate" => "agent".to_string(),
        other => format!("agent.{other}"),
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// RFC 3339 in UTC with milliseconds, as hclog writes its timestamps.
fn timestamp() -> String {
    let full = legate_acl::builtin::httpdate_like(std::time::SystemTime::now());
    // 2026-12-03T17:45:00.123456789Z -> 2026-12-03T17:45:00.123Z
    match full.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{}Z", &frac[..3.min(frac.len())]),
        None => full,
    }
}

impl<S, N> FormatEvent<S, N> for Hclog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let module = module(meta.target());
        if self.json {
            let mut m = Map::new();
            m.insert("@level".into(), Value::String(level_name(meta.level()).to_ascii_lowercase()));
            m.insert("@message".into(), Value::String(f.message));
            m.insert("@module".into(), Value::String(module));
            m.insert("@timestamp".into(), Value::String(timestamp()));
            for (k, v) in f.pairs {
                m.insert(k, Value::String(v));
            }
            return writeln!(writer, "{}", Value::Object(m));
        }
        let mut line = format!(
            "{} [{}] {:<width$}{module}: {}",
            timestamp(),
            level_name(meta.level()),
            "",
            f.message,
            width = 5 - level_name(meta.level()).len()
        );
        if !f.pairs.is_empty() {
            line.push(':');
            for (k, v) in &f.pairs {
                let _ = write!(line, " {k}={v}");
            }
        }
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_consuls() {
        assert_eq!(module("legate_http"), "agent.http");
        assert_eq!(module("legate_agent::ae"), "agent");
        assert_eq!(module("legate_core::node"), "agent");
        assert_eq!(module("openraft::core"), "agent.openraft");
        assert!(timestamp().ends_with('Z') && timestamp().len() == 24, "{}", timestamp());
    }
}
