//! Health-check probes: one run of one check definition, returning its status and output.
//!
//! Scheduling (intervals, thresholds), TTL and alias checks live elsewhere; this module only
//! knows how to probe a target once, within a timeout, the way Consul's checks do:
//!
//! | kind     | passing                                   | warning | critical                  |
//! |----------|-------------------------------------------|---------|---------------------------|
//! | http     | 2xx                                       | 429     | anything else, errors     |
//! | tcp      | connect (and TLS handshake) succeeded     |         | errors, timeout           |
//! | udp      | datagram sent, no ICMP refusal in timeout |         | send/receive errors       |
//! | script   | exit 0                                    | exit 1  | other exits, timeout      |
//! | grpc     | `grpc.health.v1` answers SERVING          |         | other statuses, errors    |
//! | h2ping   | PING answered by PONG                     |         | errors, timeout           |
//!
//! Docker and OS-service checks are not supported and always report critical.

mod grpc;
mod h2ping;
mod http;
mod net;
mod script;
mod tcp;
mod udp;

use std::time::Duration;

use legate_config::CheckDefinition;
use legate_tls::CheckTls;

pub use legate_types::check::{truncate, CheckStatus, Outcome};

fn set(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

/// What kind of probe a definition describes (Consul's check Type string: "http","tcp","udp",
/// "script","grpc","h2ping","ttl","alias","docker","os_service", "" when none).
///
/// When a definition names several targets the first in Consul's order wins: grpc, http, ttl,
/// tcp, udp, alias, docker, script, h2ping, os_service.
pub fn kind(def: &CheckDefinition) -> &'static str {
    let has_script = !def.args.is_empty() || set(&def.script);
    if set(&def.grpc) {
        "grpc"
    } else if set(&def.http) {
        "http"
    } else if def.ttl.is_some_and(|t| !t.0.is_zero()) {
        "ttl"
    } else if set(&def.tcp) {
        "tcp"
    } else if set(&def.udp) {
        "udp"
    } else if set(&def.alias_service) || set(&def.alias_node) {
        "alias"
    } else if set(&def.docker_container_id) {
        "docker"
    } else if has_script {
        "script"
    } else if set(&def.h2ping) {
        "h2ping"
    } else if set(&def.os_service) {
        "os_service"
    } else if def.wasm.as_ref().is_some_and(|w| !w.plugin.is_empty()) {
        "wasm"
    } else {
        ""
    }
}

/// Runs one probe of a non-TTL, non-alias definition with its timeout; output truncated to
/// max_output bytes (on a char boundary). `tls`: the agent's CA and certificate for HTTP, gRPC,
/// HTTP/2 and TCP+TLS probes (`enable_agent_tls_for_checks`).
pub async fn probe(def: &CheckDefinition, timeout: Duration, max_output: usize, tls: Option<&CheckTls>) -> Outcome {
    let mut out = match kind(def) {
        "http" => http::probe_with(def, timeout, max_output, tls).await,
        "tcp" => tcp::probe_with(def, timeout, tls).await,
        "udp" => udp::probe(def, timeout).await,
        "script" => script::probe(def, timeout, max_output).await,
        "grpc" => grpc::probe_with(def, timeout, tls).await,
        "h2ping" => h2ping::probe_with(def, timeout, tls).await,
        "docker" => Outcome::critical("Docker checks are not supported by Legate"),
        "os_service" => Outcome::critical("OS service checks are not supported by Legate"),
        "ttl" => Outcome::critical("TTL checks are not probed: they are updated through the API"),
        "alias" => Outcome::critical("alias checks are not probed: they mirror another check"),
        "wasm" => Outcome::critical("wasm checks run through the agent's plugin host"),
        _ => Outcome::critical("check has no target to probe"),
    };
    truncate(&mut out.output, max_output);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use legate_config::GoDuration;

    fn def() -> CheckDefinition {
        CheckDefinition::default()
    }

    #[test]
    fn status_strings_round_trip() {
        for s in [CheckStatus::Passing, CheckStatus::Warning, CheckStatus::Critical] {
            assert_eq!(s.as_str().parse::<CheckStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert!("maintenance".parse::<CheckStatus>().is_err());
        assert_eq!(serde_json::from_str::<CheckStatus>("\"warning\"").unwrap(), CheckStatus::Warning);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&def()), "");
        assert_eq!(kind(&CheckDefinition { http: Some("http://x".into()), ..def() }), "http");
        assert_eq!(kind(&CheckDefinition { http: Some(String::new()), ..def() }), "");
        assert_eq!(kind(&CheckDefinition { tcp: Some("x:1".into()), ..def() }), "tcp");
        assert_eq!(kind(&CheckDefinition { udp: Some("x:1".into()), ..def() }), "udp");
        assert_eq!(kind(&CheckDefinition { grpc: Some("x:1".into()), ..def() }), "grpc");
        assert_eq!(kind(&CheckDefinition { h2ping: Some("x:1".into()), ..def() }), "h2ping");
        assert_eq!(kind(&CheckDefinition { args: vec!["true".into()], ..def() }), "script");
        assert_eq!(kind(&CheckDefinition { script: Some("true".into()), ..def() }), "script");
        assert_eq!(
            kind(&CheckDefinition { args: vec!["true".into()], docker_container_id: Some("c1".into()), ..def() }),
            "docker"
        );
        assert_eq!(kind(&CheckDefinition { ttl: Some(GoDuration::from_secs(10)), ..def() }), "ttl");
        assert_eq!(kind(&CheckDefinition { alias_service: Some("web".into()), ..def() }), "alias");
        assert_eq!(kind(&CheckDefinition { os_service: Some("sshd".into()), ..def() }), "os_service");
        assert_eq!(kind(&CheckDefinition { grpc: Some("x:1".into()), http: Some("http://x".into()), ..def() }), "grpc");
    }

    #[tokio::test]
    async fn unsupported_kinds_are_critical() {
        let d = CheckDefinition { args: vec!["true".into()], docker_container_id: Some("c1".into()), ..def() };
        let o = probe(&d, Duration::from_secs(1), 4096, None).await;
        assert_eq!(o, Outcome::critical("Docker checks are not supported by Legate"));
        let d = CheckDefinition { os_service: Some("sshd".into()), ..def() };
        let o = probe(&d, Duration::from_secs(1), 4096, None).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.contains("not supported"), "{}", o.output);
        let o = probe(&def(), Duration::from_secs(1), 4096, None).await;
        assert_eq!(o.status, CheckStatus::Critical);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "héllo".to_string();
        truncate(&mut s, 2);
        assert_eq!(s, "h");
        let mut s = "héllo".to_string();
        truncate(&mut s, 3);
        assert_eq!(s, "hé");
        let mut s = "abc".to_string();
        truncate(&mut s, 10);
        assert_eq!(s, "abc");
    }
}
