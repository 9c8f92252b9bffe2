//! TCP probe: passing when a connection (and, with `tcp_use_tls`, a TLS handshake) to `tcp`
//! succeeds within the timeout.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use legate_tls as tls;

use super::{net, Outcome};
use legate_config::CheckDefinition;

#[cfg(test)]
async fn probe(def: &CheckDefinition, timeout: Duration) -> Outcome {
    probe_with(def, timeout, None).await
}

/// `agent`: the agent's CA and certificate (`enable_agent_tls_for_checks`).
pub(super) async fn probe_with(def: &CheckDefinition, timeout: Duration, agent: Option<&tls::CheckTls>) -> Outcome {
    let target = def.tcp.as_deref().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let tcp = match net::dial_tcp(target, deadline).await {
        Ok(s) => s,
        Err(e) => return Outcome::critical(e),
    };
    if def.tcp_use_tls {
        let host = net::split_host_port(target).map(|(h, _)| h).unwrap_or_default();
        let hs = tls::handshake(tcp, &host, def.tls_server_name.as_deref(), def.tls_skip_verify, &[], agent);
        match tokio::time::timeout_at(deadline, hs).await {
            Ok(Ok(mut s)) => {
                let _ = s.shutdown().await;
            }
            Ok(Err(e)) => return Outcome::critical(e.to_string()),
            Err(_) => return Outcome::critical(format!("dial tcp {target}: tls handshake: i/o timeout")),
        }
    }
    Outcome::passing(format!("TCP connect {target}: Success"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use legate_tls::test_support::TestTls;
    use tokio::net::TcpListener;

    fn def(target: &str) -> CheckDefinition {
        CheckDefinition { tcp: Some(target.into()), ..Default::default() }
    }

    async fn closed_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn connect_passes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let o = probe(&def(&addr.to_string()), Duration::from_secs(5)).await;
        assert_eq!(o, Outcome::passing(format!("TCP connect {addr}: Success")));
    }

    #[tokio::test]
    async fn host_names_resolve() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let o = probe(&def(&format!("localhost:{port}")), Duration::from_secs(5)).await;
        assert_eq!(o.status, CheckStatus::Passing, "{}", o.output);
    }

    #[tokio::test]
    async fn refused_is_critical() {
        let port = closed_port().await;
        let o = probe(&def(&format!("127.0.0.1:{port}")), Duration::from_secs(5)).await;
        assert_eq!(o, Outcome::critical(format!("dial tcp 127.0.0.1:{port}: connect: connection refused")));
    }

    #[tokio::test]
    async fn bad_address_is_critical() {
        let o = probe(&def("127.0.0.1"), Duration::from_secs(5)).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.contains("missing port"), "{}", o.output);
    }

    #[tokio::test]
    async fn tls_handshake() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let tls = TestTls::new(&[]);
        let server = tls.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    if let Some(mut s) = server.accept(s).await {
                        let _ = s.shutdown().await;
                    }
                });
            }
        });

        // The test certificate is self-signed: verification fails...
        let mut d = CheckDefinition { tcp_use_tls: true, ..def(&addr.to_string()) };
        let o = probe(&d, Duration::from_secs(5)).await;
        assert_eq!(o.status, CheckStatus::Critical, "{}", o.output);
        assert!(o.output.starts_with("tls: invalid peer certificate"), "{}", o.output);

        // ...unless skipped; the SNI is the override.
        d.tls_skip_verify = true;
        d.tls_server_name = Some("legate.test".into());
        let o = probe(&d, Duration::from_secs(5)).await;
        assert_eq!(o, Outcome::passing(format!("TCP connect {addr}: Success")));
        assert_eq!(tls.sni(1).await.as_deref(), Some("legate.test"));
    }

    #[tokio::test]
    async fn tls_handshake_times_out() {
        // A server that accepts but never answers the ClientHello.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(l.accept().await.unwrap().0);
            }
        });
        let d = CheckDefinition { tcp_use_tls: true, tls_skip_verify: true, ..def(&addr.to_string()) };
        let started = std::time::Instant::now();
        let o = probe(&d, Duration::from_millis(300)).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.contains("i/o timeout"), "{}", o.output);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
