//! Names as the sinks show them: `telemetry.metrics_prefix` in front of Consul's names, the
//! host name after it for gauges unless `disable_hostname` (go-metrics' `EnableHostname`), and
//! `prefix_filter` over the result.

use std::sync::OnceLock;

use crate::catalog::is_own;
use crate::config::Telemetry;
use crate::registry::Kind;

/// The operating system's host name (go-metrics uses `os.Hostname()`, not the node name).
pub fn hostname() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if rc == 0 && end > 0 {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            "localhost".into()
        }
    })
}

/// How one agent's configuration names and filters metrics.
pub struct Naming<'a> {
    prefix: &'a str,
    hostname: Option<&'a str>,
    rules: Vec<(bool, &'a str)>,
    default: bool,
}

impl<'a> Naming<'a> {
    pub fn new(t: &'a Telemetry) -> Naming<'a> {
        let rules = t
            .prefix_filter
            .iter()
            .filter_map(|r| match r.split_at_checked(1) {
                Some(("+", p)) => Some((true, p)),
                Some(("-", p)) => Some((false, p)),
                _ => None,
            })
            .collect();
        Naming {
            prefix: t.metrics_prefix.as_str(),
            hostname: (!t.disable_hostname).then(hostname),
            rules,
            default: t.filter_default,
        }
    }

    /// The shown name of a recorded metric.
    pub fn full(&self, kind: Kind, name: &str) -> String {
        if is_own(name) {
            return name.to_string();
        }
        let mut out = String::with_capacity(self.prefix.len() + name.len() + 16);
        for part in [self.prefix, if kind == Kind::Gauge { self.hostname.unwrap_or("") } else { "" }, name] {
            if part.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
        out
    }

    /// `prefix_filter` with `filter_default`: the longest matching rule decides.
    pub fn allows(&self, full_name: &str) -> bool {
        self.rules
            .iter()
            .filter(|(_, p)| full_name.starts_with(p))
            .max_by_key(|(_, p)| p.len())
            .map_or(self.default, |(allow, _)| *allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_filter_longest_rule_wins() {
        let t = Telemetry {
            prefix_filter: vec!["-consul.raft".into(), "+consul.raft.apply".into()],
            filter_default: true,
            ..Telemetry::default()
        };
        let f = Naming::new(&t);
        assert!(f.allows("consul.kvs.apply"));
        assert!(!f.allows("consul.raft.log.appends"));
        assert!(f.allows("consul.raft.apply"));
        let t = Telemetry { filter_default: false, ..Telemetry::default() };
        assert!(!Naming::new(&t).allows("consul.kvs.apply"));
    }

    #[test]
    fn prefix_and_hostname() {
        let t = Telemetry::default();
        let n = Naming::new(&t);
        assert_eq!(n.full(Kind::Sample, "kvs.apply"), "consul.kvs.apply");
        assert_eq!(n.full(Kind::Gauge, "runtime.alloc_bytes"), format!("consul.{}.runtime.alloc_bytes", hostname()));
        assert_eq!(n.full(Kind::Counter, "legate.check.runs"), "legate.check.runs");
        let t = Telemetry { disable_hostname: true, metrics_prefix: "".into(), ..Telemetry::default() };
        assert_eq!(Naming::new(&t).full(Kind::Gauge, "runtime.alloc_bytes"), "runtime.alloc_bytes");
    }
}
