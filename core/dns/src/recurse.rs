//! Names outside the agent's domain go to the configured `recursors`, as Consul: the client's
//! query is forwarded as is (UDP if it came over UDP, retried over TCP when the upstream
//! truncates; TCP if it came over TCP), in config order (`sequential`) or shuffled (`random`),
//! each with `recursor_timeout`. An upstream answer other than NOERROR/NXDOMAIN tries the next
//! recursor; when all fail the caller answers SERVFAIL.

use crate::error::DnsError;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use rand::seq::SliceRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use legate_config::Config;

pub use legate_config::parse_recursor;

/// The first usable upstream answer to `query` (the client's raw message), or `None`.
pub async fn recurse(cfg: &Config, query: &[u8], id: u16, tcp: bool) -> Option<Message> {
    let mut upstreams: Vec<SocketAddr> = cfg.recursors.iter().filter_map(|r| parse_recursor(r)).collect();
    if cfg.dns_config.recursor_strategy == "random" {
        upstreams.shuffle(&mut rand::thread_rng());
    }
    let timeout = cfg.dns_config.recursor_timeout.0.max(Duration::from_millis(1));
    for up in upstreams {
        let reply = match tokio::time::timeout(timeout, exchange(up, query, tcp)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::debug!(recursor = %up, error = %e, "recursor failed");
                continue;
            }
            Err(_) => {
                tracing::debug!(recursor = %up, "recursor timed out");
                continue;
            }
        };
        if reply.metadata.id != id {
            continue;
        }
        if matches!(reply.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Some(reply);
        }
        tracing::debug!(recursor = %up, rcode = %reply.metadata.response_code, "recursor answered with an error");
    }
    None
}

async fn exchange(up: SocketAddr, query: &[u8], tcp: bool) -> Result<Message, DnsError> {
    if !tcp {
        let m = exchange_udp(up, query).await?;
        if !m.metadata.truncation {
            return Ok(m);
        }
    }
    exchange_tcp(up, query).await
}

async fn exchange_udp(up: SocketAddr, query: &[u8]) -> Result<Message, DnsError> {
    let local: SocketAddr = if up.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).await?;
    Ok(Message::from_vec(&buf[..n])?)
}

async fn exchange_tcp(up: SocketAddr, query: &[u8]) -> Result<Message, DnsError> {
    let mut s = tokio::net::TcpStream::connect(up).await?;
    let len = u16::try_from(query.len()).map_err(|_| DnsError::TooLarge)?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    s.write_all(&out).await?;
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(lb) as usize];
    s.read_exact(&mut buf).await?;
    Ok(Message::from_vec(&buf)?)
}
