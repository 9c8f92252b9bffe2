//! gRPC probe: calls `grpc.health.v1.Health/Check` on `grpc` (`host:port` or
//! `host:port/service`) over HTTP/2, plaintext or TLS (`grpc_use_tls`). SERVING is passing
//! (`gRPC check <target>: success`); any other serving status, RPC error or transport error is
//! critical. The two messages involved are tiny and encoded here by hand:
//! `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }` (UNKNOWN 0, SERVING 1, NOT_SERVING 2,
//! SERVICE_UNKNOWN 3).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{net, Outcome};
use legate_config::CheckDefinition;

const PATH: &str = "/grpc.health.v1.Health/Check";
/// The largest response message read (a health response is a few bytes).
const MAX_RESPONSE: usize = 64 * 1024;
const SERVING: u64 = 1;

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
    let target = def.grpc.as_deref().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, check(def, target, deadline, agent)).await {
        Ok(Ok(SERVING)) => Outcome::passing(format!("gRPC check {target}: success")),
        Ok(Ok(status)) => {
            Outcome::critical(format!("gRPC check {target}: failed: serving status {}", serving_status_name(status)))
        }
        Ok(Err(e)) => Outcome::critical(format!("gRPC check {target}: failed: {e}")),
        Err(_) => Outcome::critical(format!("gRPC check {target}: failed: context deadline exceeded")),
    }
}

/// Splits `host:port/service` into the address and the (possibly empty) service name.
fn split_target(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

/// Runs the RPC and returns the serving status it answered.
async fn check(
    def: &CheckDefinition,
    target: &str,
    deadline: Instant,
    agent: Option<&legate_tls::CheckTls>,
) -> Result<u64, String> {
    let (addr, service) = split_target(target);
    let tls = net::H2Tls {
        on: def.grpc_use_tls,
        server_name: def.tls_server_name.as_deref(),
        skip_verify: def.tls_skip_verify,
        agent,
    };
    let conn = net::dial_h2(addr, tls, deadline).await?;
    let mut send = conn.send.clone().ready().await.map_err(|e| format!("http2: {e}"))?;
    let scheme = if def.grpc_use_tls { "https" } else { "http" };
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("{scheme}://{addr}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", concat!("legate-health-check/", env!("CARGO_PKG_VERSION")))
        .body(())
        .map_err(|e| format!("invalid target {addr:?}: {e}"))?;
    let (response, mut stream) = send.send_request(req, false).map_err(|e| format!("http2: {e}"))?;
    stream.send_data(encode_request(service), true).map_err(|e| format!("http2: {e}"))?;

    let response = response.await.map_err(|e| format!("http2: {e}"))?;
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(format!("unexpected HTTP status code received from server: {}", parts.status.as_u16()));
    }
    // A "trailers-only" answer carries the RPC status in the headers.
    grpc_status(&parts.headers)?;
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("http2: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_RESPONSE {
            return Err("response message too large".into());
        }
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(|e| format!("http2: {e}"))?;
    match &trailers {
        Some(t) => grpc_status(t)?,
        None if !parts.headers.contains_key("grpc-status") => {
            return Err("server closed the stream without sending trailers".into())
        }
        None => {}
    }
    drop(conn);
    decode_response(&data)
}

/// Err with the RPC error when `headers` carry a non-OK `grpc-status`.
fn grpc_status(headers: &http::HeaderMap) -> Result<(), String> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code: u32 = code.to_str().ok().and_then(|c| c.parse().ok()).unwrap_or(2);
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_encoding::percent_decode(m.as_bytes()).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    Err(format!("rpc error: code = {} desc = {message}", code_name(code)))
}

/// The length-prefixed request message for `service`.
fn encode_request(service: &str) -> Bytes {
    let mut msg = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        msg.push(0x0A); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + msg.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    Bytes::from(frame)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated response message")?;
        *buf = rest;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("invalid varint in response message".into())
}

/// The serving status in a length-prefixed `HealthCheckResponse` (UNKNOWN when absent).
fn decode_response(data: &[u8]) -> Result<u64, String> {
    if data.len() < 5 {
        return Err("server sent no response message".into());
    }
    if data[0] != 0 {
        return Err("server sent a compressed response message".into());
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let mut msg = data.get(5..5 + len).ok_or("truncated response message")?;
    let mut status = 0;
    while !msg.is_empty() {
        let key = get_varint(&mut msg)?;
        let skip = match key & 7 {
            0 => {
                let v = get_varint(&mut msg)?;
                if key >> 3 == 1 {
                    status = v;
                }
                0
            }
            1 => 8,
            2 => get_varint(&mut msg)? as usize,
            5 => 4,
            _ => return Err("invalid response message".into()),
        };
        msg = msg.get(skip..).ok_or("truncated response message")?;
    }
    Ok(status)
}

fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).map(|n| n.to_string()).unwrap_or_else(|| format!("Code({code})"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;

    use super::*;
    use crate::checks::CheckStatus;
    use legate_tls::test_support::TestTls;

    /// The service name in a length-prefixed `HealthCheckRequest` (the server's side).
    fn decode_request(data: &[u8]) -> String {
        let mut msg = &data[5..];
        let mut service = String::new();
        while !msg.is_empty() {
            let key = get_varint(&mut msg).unwrap();
            assert_eq!(key, 0x0A);
            let len = get_varint(&mut msg).unwrap() as usize;
            service = String::from_utf8(msg[..len].to_vec()).unwrap();
            msg = &msg[len..];
        }
        service
    }

    fn response_frame(status: u64) -> Bytes {
        let mut msg = vec![0x08];
        put_varint(&mut msg, status);
        let mut frame = vec![0];
        frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        frame.extend_from_slice(&msg);
        Bytes::from(frame)
    }

    /// A health server: "" and "ok" are SERVING, "bad" NOT_SERVING, "missing" a NotFound RPC
    /// error (trailers-only), "slow" never answers.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S) {
        let Ok(mut conn) = h2::server::handshake(io).await else { return };
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            tokio::spawn(async move {
                let path = req.uri().path().to_string();
                let mut body = req.into_body();
                let mut data = Vec::new();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    data.extend_from_slice(&chunk);
                }
                let service = decode_request(&data);
                let trailers_only = |code: &str, msg: &str| {
                    http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .header("grpc-status", code)
                        .header("grpc-message", msg)
                        .body(())
                        .unwrap()
                };
                if path != PATH {
                    let _ = respond.send_response(trailers_only("12", "unknown method"), true);
                    return;
                }
                let status = match service.as_str() {
                    "" | "ok" => SERVING,
                    "bad" => 2,
                    "missing" => {
                        let _ = respond.send_response(trailers_only("5", "unknown%20service"), true);
                        return;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                };
                let resp =
                    http::Response::builder().status(200).header("content-type", "application/grpc").body(()).unwrap();
                let mut send = respond.send_response(resp, false).unwrap();
                send.send_data(response_frame(status), false).unwrap();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                send.send_trailers(trailers).unwrap();
            });
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

    fn def(target: String) -> CheckDefinition {
        CheckDefinition { grpc: Some(target), ..Default::default() }
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn messages_round_trip() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&encode_request("ab")[..], &[0, 0, 0, 0, 4, 0x0A, 2, b'a', b'b']);
        assert_eq!(decode_request(&encode_request("my.Service")), "my.Service");
        let long = "s".repeat(300);
        assert_eq!(decode_request(&encode_request(&long)), long);
        assert_eq!(decode_response(&response_frame(1)).unwrap(), 1);
        assert_eq!(decode_response(&response_frame(2)).unwrap(), 2);
        // An empty message is the default status, UNKNOWN; unknown fields are skipped.
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]).unwrap(), 0);
        assert_eq!(decode_response(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]).unwrap(), 1);
        assert!(decode_response(&[0, 0, 0, 0, 3, 0x08]).is_err());
        assert!(decode_response(&[1, 0, 0, 0, 0]).is_err());
        assert_eq!(split_target("h:1/a/b"), ("h:1", "a/b"));
        assert_eq!(split_target("h:1"), ("h:1", ""));
    }

    #[tokio::test]
    async fn serving_statuses() {
        let addr = server(None).await;
        let o = probe(&def(addr.clone()), T).await;
        assert_eq!(o, Outcome::passing(format!("gRPC check {addr}: success")));

        let target = format!("{addr}/ok");
        let o = probe(&def(target.clone()), T).await;
        assert_eq!(o, Outcome::passing(format!("gRPC check {target}: success")));

        let target = format!("{addr}/bad");
        let o = probe(&def(target.clone()), T).await;
        assert_eq!(o, Outcome::critical(format!("gRPC check {target}: failed: serving status NOT_SERVING")));

        let target = format!("{addr}/missing");
        let o = probe(&def(target.clone()), T).await;
        assert_eq!(
            o,
            Outcome::critical(format!(
                "gRPC check {target}: failed: rpc error: code = NotFound desc = unknown service"
            ))
        );
    }

    #[tokio::test]
    async fn timeout_and_refused_are_critical() {
        let addr = server(None).await;
        let target = format!("{addr}/slow");
        let o = probe(&def(target.clone()), Duration::from_millis(300)).await;
        assert_eq!(o, Outcome::critical(format!("gRPC check {target}: failed: context deadline exceeded")));

        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let target = format!("127.0.0.1:{port}");
        let o = probe(&def(target.clone()), T).await;
        assert_eq!(
            o,
            Outcome::critical(format!(
                "gRPC check {target}: failed: dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn plaintext_probe_of_a_non_grpc_server_is_critical() {
        // An HTTP/1 server answers the HTTP/2 preface with garbage.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        let o = probe(&def(addr.clone()), T).await;
        assert_eq!(o.status, CheckStatus::Critical);
        assert!(o.output.starts_with(&format!("gRPC check {addr}: failed: ")), "{}", o.output);
    }

    #[tokio::test]
    async fn over_tls() {
        let tls = TestTls::new(&[b"h2"]);
        let addr = server(Some(tls.clone())).await;
        let d = CheckDefinition { grpc_use_tls: true, ..def(format!("{addr}/ok")) };
        let o = probe(&d, T).await;
        assert_eq!(o.status, CheckStatus::Critical, "{}", o.output);
        assert!(o.output.contains("tls: invalid peer certificate"), "{}", o.output);

        let d = CheckDefinition { tls_skip_verify: true, tls_server_name: Some("legate.test".into()), ..d };
        let o = probe(&d, T).await;
        assert_eq!(o, Outcome::passing(format!("gRPC check {addr}/ok: success")));
        assert_eq!(tls.sni(1).await.as_deref(), Some("legate.test"));

        // Plaintext against the TLS port fails.
        let d = CheckDefinition { grpc_use_tls: false, ..d };
        assert_eq!(probe(&d, Duration::from_secs(2)).await.status, CheckStatus::Critical);
    }
}
