//! Dialing shared by the TCP, UDP, gRPC and H2 ping probes, with error texts in the style of
//! Go's `net` package, which Consul's check outputs carry (`dial tcp 127.0.0.1:1: connect:
//! connection refused`).

pub(super) use legate_tls::io_error;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A byte stream a probe talks over: plain TCP or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Splits `host:port` (`[v6]:port` too) into its host (without brackets) and port.
pub(super) fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or_else(|| format!("address {addr}: missing ']' in address"))?;
        let p = p.strip_prefix(':').ok_or_else(|| format!("address {addr}: missing port in address"))?;
        (h, p)
    } else {
        let (h, p) = addr.rsplit_once(':').ok_or_else(|| format!("address {addr}: missing port in address"))?;
        if h.contains(':') {
            return Err(format!("address {addr}: too many colons in address"));
        }
        (h, p)
    };
    let port = port.parse::<u16>().map_err(|_| format!("address {addr}: invalid port"))?;
    Ok((host.to_string(), port))
}

/// Resolves `host:port` to every address it names (an empty host is the local host).
pub(super) async fn resolve(network: &str, addr: &str) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = split_host_port(addr).map_err(|e| format!("dial {network}: {e}"))?;
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let looked_up = tokio::net::lookup_host((host.as_str(), port)).await;
    match looked_up {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("dial {network}: lookup {host}: no such host"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("dial {network}: lookup {host}: {}", lookup_error(&e))),
    }
}

/// A name-resolution failure as Go words it (`no such host`).
pub(super) fn lookup_error(e: &io::Error) -> String {
    let text = e.to_string();
    if text.contains("Name or service not known") || text.contains("No address associated") {
        "no such host".to_string()
    } else {
        io_error(e)
    }
}

/// Connects to `addr` (`host:port`), trying each resolved address in turn until `deadline`.
/// The error is the first address's, as Go reports it.
pub(super) async fn dial_tcp(addr: &str, deadline: Instant) -> Result<TcpStream, String> {
    let addrs = match tokio::time::timeout_at(deadline, resolve("tcp", addr)).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("dial tcp: lookup {addr}: i/o timeout")),
    };
    let mut first_err = None;
    for a in addrs {
        let res = tokio::time::timeout_at(deadline, TcpStream::connect(a)).await;
        let err = match res {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => format!("dial tcp {a}: connect: {}", io_error(&e)),
            Err(_) => format!("dial tcp {a}: i/o timeout"),
        };
        first_err.get_or_insert(err);
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(first_err.unwrap_or_else(|| format!("dial tcp {addr}: i/o timeout")))
}

/// How an HTTP/2 check speaks TLS: `on` (`grpc_use_tls`, `h2ping_use_tls`), the check's
/// `tls_server_name` and `tls_skip_verify`, and the agent's CA and certificate when
/// `enable_agent_tls_for_checks` is on.
pub(super) struct H2Tls<'a> {
    pub on: bool,
    pub server_name: Option<&'a str>,
    pub skip_verify: bool,
    pub agent: Option<&'a legate_tls::CheckTls>,
}

/// An HTTP/2 client connection: prior-knowledge h2c, or TLS offering ALPN `h2` when `tls.on`.
/// The connection task runs until the returned [`H2`] is dropped.
pub(super) async fn dial_h2(addr: &str, tls: H2Tls<'_>, deadline: Instant) -> Result<H2, String> {
    let tcp = dial_tcp(addr, deadline).await?;
    let io: Box<dyn Io> = if tls.on {
        let host = split_host_port(addr).map(|(h, _)| h).unwrap_or_default();
        let tls = legate_tls::handshake(tcp, &host, tls.server_name, tls.skip_verify, &[b"h2"], tls.agent)
            .await
            .map_err(|e| e.to_string())?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("tls: server did not negotiate HTTP/2 (ALPN h2)".into());
        }
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (send, mut conn) = h2::client::handshake(io).await.map_err(|e| format!("http2: {e}"))?;
    let ping = conn.ping_pong();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2 { send, ping, task })
}

/// A client connection from [`dial_h2`]: its request handle and PING handle.
pub(super) struct H2 {
    pub(super) send: h2::client::SendRequest<bytes::Bytes>,
    pub(super) ping: Option<h2::PingPong>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("127.0.0.1:80").unwrap(), ("127.0.0.1".into(), 80));
        assert_eq!(split_host_port("[::1]:8080").unwrap(), ("::1".into(), 8080));
        assert_eq!(split_host_port("localhost:1").unwrap(), ("localhost".into(), 1));
        assert_eq!(split_host_port(":53").unwrap(), ("".into(), 53));
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("host:http").is_err());
    }

    #[test]
    fn io_errors_read_like_go() {
        assert_eq!(io_error(&io::Error::from(io::ErrorKind::ConnectionRefused)), "connection refused");
        assert_eq!(io_error(&io::Error::from_raw_os_error(libc::ENETUNREACH)), "network is unreachable");
    }

    #[tokio::test]
    async fn resolves_names_to_addresses() {
        let addrs = resolve("tcp", "localhost:9").await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.port() == 9 && a.ip().is_loopback()), "{addrs:?}");
        let e = resolve("tcp", "nohost.invalid:9").await.unwrap_err();
        assert!(e.starts_with("dial tcp: lookup nohost.invalid: "), "{e}");
    }
}
