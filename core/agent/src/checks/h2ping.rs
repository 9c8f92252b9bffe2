//! H2 ping probe: opens an HTTP/2 connection to `h2ping` (prior-knowledge h2c, or TLS with ALPN
//! `h2` when `h2ping_use_tls`) and sends a PING; passing when the PONG arrives in time.

use std::time::Duration;

use tokio::time::Instant;

use super::{net, Outcome};
use legate_config::CheckDefinition;

#[cfg(test)]
async fn probe(def: &CheckDefinition, timeout: Duration) -> Outcome {
    probe_with(def, timeout, None).await
}

/// `agent`: the agent's CA and certificate (`enable_agent_tls_for_checks`).
pub(super) async fn probe_with(
    def: &CheckDefinition,
    timeout: Duration,
    agent: Option<&legate_tls::CheckTls>,
) -> Outcome {
    let target = def.h2ping.as_deref().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, ping(def, target, deadline, agent)).await {
        Ok(Ok(())) => Outcome::passing("HTTP2 ping was successful"),
        Ok(Err(e)) => Outcome::critical(format!("HTTP2 ping to {target} failed: {e}")),
        Err(_) => Outcome::critical(format!("HTTP2 ping to {target} failed: context deadline exceeded")),
    }
}

async fn ping(
    def: &CheckDefinition,
    target: &str,
    deadline: Instant,
    agent: Option<&legate_tls::CheckTls>,
) -> Result<(), String> {
    let tls = net::H2Tls {
        on: def.h2ping_use_tls,
        server_name: def.tls_server_name.as_deref(),
        skip_verify: def.tls_skip_verify,
        agent,
    };
    let mut conn = net::dial_h2(target, tls, deadline).await?;
    let mut pp = conn.ping.take().ok_or("http2: PING handle unavailable")?;
    pp.ping(h2::Ping::opaque()).await.map_err(|e| format!("http2: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::checks::CheckStatus;
    use legate_tls::test_support::TestTls;

    /// An HTTP/2 server that only keeps its connections alive (h2 answers PINGs itself).
    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S) {
        if let Ok(mut conn) = h2::server::handshake(io).await {
            while let Some(Ok(_)) = conn.accept().await {}
        }
    }

    async fn server(tls: Option<TestTls>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Some(s) = tls.accept(s).await {
                                serve(s).await
                            }
                        }
                        None => serve(s).await,
                    }
                });
            }
        });
        addr.to_string()
    }

    fn def(target: &str) -> CheckDefinition {
        CheckDefinition { h2ping: Some(target.into()), ..Default::default() }
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn h2c_ping_passes() {
        let addr = server(None).await;
        assert_eq!(probe(&def(&addr), T).await, Outcome::passing("HTTP2 ping was successful"));
    }

    #[tokio::test]
    async fn non_h2_server_is_critical() {
        // Accepts and stays silent: no SETTINGS, no PONG.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(l.accept().await.unwrap().0);
            }
        });
        let o = probe(&def(&addr), Duration::from_millis(300)).await;
        assert_eq!(o, Outcome::critical(format!("HTTP2 ping to {addr} failed: context deadline exceeded")));

        // Answers HTTP/1 garbage and closes.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
            }
        });
        let o = probe(&def(&addr), T).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.starts_with(&format!("HTTP2 ping to {addr} failed: http2: ")), "{}", o.output);
    }

    #[tokio::test]
    async fn refused_is_critical() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let o = probe(&def(&addr), T).await;
        assert_eq!(
            o,
            Outcome::critical(format!("HTTP2 ping to {addr} failed: dial tcp {addr}: connect: connection refused"))
        );
    }

    #[tokio::test]
    async fn tls_ping() {
        let tls = TestTls::new(&[b"h2"]);
        let addr = server(Some(tls.clone())).await;
        let d = CheckDefinition { h2ping_use_tls: true, tls_skip_verify: true, ..def(&addr) };
        assert_eq!(probe(&d, T).await, Outcome::passing("HTTP2 ping was successful"));

        // Without skipping verification, the self-signed certificate fails.
        let d = CheckDefinition { tls_skip_verify: false, ..d };
        let o = probe(&d, T).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.contains("tls: invalid peer certificate"), "{}", o.output);

        // A TLS server that does not offer h2 is refused.
        let tls = TestTls::new(&[b"http/1.1"]);
        let addr = server(Some(tls)).await;
        let d = CheckDefinition { h2ping_use_tls: true, tls_skip_verify: true, ..def(&addr) };
        let o = probe(&d, T).await;
        assert_eq!(o.status, CheckStatus::Critical);
        // (rustls refuses the handshake when the ALPN lists do not meet; a server without ALPN
        // would complete it and fail our own check instead.)
        assert!(o.output.starts_with(&format!("HTTP2 ping to {addr} failed: tls: ")), "{}", o.output);
    }
}
