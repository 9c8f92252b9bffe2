//! UDP probe: sends a datagram to `udp` and waits up to the timeout for an answer. An answer or
//! silence is passing (UDP services need not reply); an error, typically the ICMP "port
//! unreachable" that surfaces as "connection refused", is critical.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{net, Outcome};
use legate_config::CheckDefinition;

const PAYLOAD: &[u8] = b"legate health check";

pub(super) async fn probe(def: &CheckDefinition, timeout: Duration) -> Outcome {
    let target = def.udp.as_deref().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    match run(target, deadline).await {
        Ok(()) => Outcome::passing(format!("UDP connect {target}: Success")),
        Err(e) => Outcome::critical(e),
    }
}

async fn run(target: &str, deadline: Instant) -> Result<(), String> {
    let addrs = match tokio::time::timeout_at(deadline, net::resolve("udp", target)).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("dial udp: lookup {target}: i/o timeout")),
    };
    let remote = addrs[0];
    let local: SocketAddr =
        if remote.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = UdpSocket::bind(local).await.map_err(|e| format!("dial udp {remote}: {}", net::io_error(&e)))?;
    sock.connect(remote).await.map_err(|e| format!("dial udp {remote}: connect: {}", net::io_error(&e)))?;
    let pair = match sock.local_addr() {
        Ok(l) => format!("{l}->{remote}"),
        Err(_) => remote.to_string(),
    };
    sock.send(PAYLOAD).await.map_err(|e| format!("write udp {pair}: write: {}", net::io_error(&e)))?;
    let mut buf = [0u8; 1500];
    match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
        Ok(Ok(_)) => Ok(()),
        // No answer is what most UDP services give: the datagram went out unrefused.
        Err(_) => Ok(()),
        Ok(Err(e)) => Err(format!("read udp {pair}: recv: {}", net::io_error(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;

    fn def(target: &str) -> CheckDefinition {
        CheckDefinition { udp: Some(target.into()), ..Default::default() }
    }

    #[tokio::test]
    async fn silent_listener_passes_after_timeout() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let o = probe(&def(&addr.to_string()), Duration::from_millis(200)).await;
        assert_eq!(o, Outcome::passing(format!("UDP connect {addr}: Success")));
        // The datagram did arrive.
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], PAYLOAD);
    }

    #[tokio::test]
    async fn answering_listener_passes_quickly() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            s.send_to(&buf[..n], from).await.unwrap();
        });
        let started = std::time::Instant::now();
        let o = probe(&def(&addr.to_string()), Duration::from_secs(5)).await;
        assert_eq!(o.status, CheckStatus::Passing, "{}", o.output);
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn refused_port_is_critical() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap().port()
        };
        let o = probe(&def(&format!("127.0.0.1:{port}")), Duration::from_secs(2)).await;
        assert_eq!(o.status, CheckStatus::Critical, "{}", o.output);
        assert!(o.output.ends_with("recv: connection refused"), "{}", o.output);
        assert!(o.output.starts_with("read udp 127.0.0.1:"), "{}", o.output);
    }
}
