//! Datagram transports: UDP, and an in-memory network for tests (the same conformance tests
//! run on both). Sending is best effort and never blocks, like UDP: a full queue drops.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest datagram we read.
pub(crate) const MAX_DATAGRAM: usize = 64 * 1024;
/// Per-endpoint queue of the in-memory network (like a socket's receive buffer; full = drop).
const MEM_QUEUE: usize = 1024;

type Datagram = (Vec<u8>, SocketAddr);

/// An in-memory datagram network: endpoints bound on it reach each other by address.
/// Cloning shares the network.
#[derive(Clone, Default)]
pub struct MemNetwork {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Default)]
struct MemInner {
    endpoints: HashMap<SocketAddr, mpsc::Sender<Datagram>>,
    next_port: u16,
    /// Directed links that drop everything (`(from, to)`), to simulate partitions.
    cut: Vec<(SocketAddr, SocketAddr)>,
}

impl MemNetwork {
    pub fn new() -> MemNetwork {
        MemNetwork::default()
    }

    /// Drops (or restores) traffic in both directions between `a` and `b`.
    pub fn partition(&self, a: SocketAddr, b: SocketAddr, cut: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.cut.retain(|&(x, y)| !((x == a && y == b) || (x == b && y == a)));
        if cut {
            inner.cut.push((a, b));
            inner.cut.push((b, a));
        }
    }

    pub(crate) fn bind(&self, addr: SocketAddr) -> io::Result<(TransportTx, TransportRx)> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut addr = addr;
        if addr.port() == 0 {
            loop {
                inner.next_port = inner.next_port.checked_add(1).filter(|p| *p >= 20000).unwrap_or(20000);
                addr.set_port(inner.next_port);
                if inner.endpoints.get(&addr).is_none_or(|s| s.is_closed()) {
                    break;
                }
            }
        } else if inner.endpoints.get(&addr).is_some_and(|s| !s.is_closed()) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "address in use"));
        }
        let (tx, rx) = mpsc::channel(MEM_QUEUE);
        inner.endpoints.insert(addr, tx);
        Ok((TransportTx::Mem { net: self.clone(), addr }, TransportRx::Mem(rx)))
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.cut.contains(&(from, to)) {
            return;
        }
        if let Some(tx) = inner.endpoints.get(&to) {
            let _ = tx.try_send((data.to_vec(), from));
        }
    }
}

/// The sending half, shared by the runtime loop and API calls.
pub(crate) enum TransportTx {
    /// A clone of the receiving socket, used through std: tokio's `try_send_to` fails until
    /// the reactor has seen the socket writable, which would drop the first datagrams.
    Udp(std::net::UdpSocket),
    Mem {
        net: MemNetwork,
        addr: SocketAddr,
    },
}

/// The receiving half, owned by the runtime loop.
pub(crate) enum TransportRx {
    Udp(UdpSocket),
    Mem(mpsc::Receiver<Datagram>),
}

pub(crate) async fn bind_udp(addr: SocketAddr) -> io::Result<(TransportTx, TransportRx)> {
    let sock = UdpSocket::bind(addr).await?;
    let std_sock = sock.into_std()?;
    std_sock.set_nonblocking(true)?;
    let tx = std_sock.try_clone()?;
    let rx = UdpSocket::from_std(std_sock)?;
    Ok((TransportTx::Udp(tx), TransportRx::Udp(rx)))
}

impl TransportTx {
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            TransportTx::Udp(s) => s.local_addr(),
            TransportTx::Mem { addr, .. } => Ok(*addr),
        }
    }

    /// Best effort, non-blocking.
    pub(crate) fn send(&self, to: SocketAddr, data: &[u8]) {
        match self {
            TransportTx::Udp(s) => {
                if let Err(e) = s.send_to(data, to) {
                    tracing::trace!(%to, error = %e, "gossip: send dropped");
                }
            }
            TransportTx::Mem { net, addr } => net.deliver(*addr, to, data),
        }
    }
}

impl TransportRx {
    /// Cancel-safe.
    pub(crate) async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            TransportRx::Udp(s) => s.recv_from(buf).await,
            TransportRx::Mem(rx) => match rx.recv().await {
                Some((data, from)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    Ok((n, from))
                }
                None => std::future::pending().await,
            },
        }
    }
}
