//! HTTP connections: at most `limits.http_max_conns_per_client` open at once from one client
//! IP (the next one is closed as soon as it is accepted, as Consul does), request headers read
//! within `limits.http_handshake_timeout` and no larger than `http_config.max_header_bytes`
//! (slow or huge headers close the connection), and ending when the server stops. Hyper runs each connection as a task of its own; a graceful shutdown closes
//! idle ones, but a connection a client keeps busy (or a keep-alive pool that never lets go)
//! would live on, holding the agent and its stores. Every accepted stream is wrapped so that,
//! once the grace period is over, its next read or write fails and the connection task ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use legate_types::per_client::Slot;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// One connection's limits, from the config when it was accepted.
pub struct Limits {
    /// The whole request head must arrive within this (slowloris).
    pub header_read: std::time::Duration,
    /// Largest request head (hyper's read buffer; it refuses less than 8 KiB).
    pub max_header_bytes: usize,
    /// HTTPS: the TLS handshake must finish within this.
    pub tls_handshake: std::time::Duration,
}

/// Go's `http.DefaultMaxHeaderBytes`, Consul's default.
const DEFAULT_MAX_HEADER_BYTES: usize = 1 << 20;

impl Limits {
    pub fn of(config: &legate_config::Config) -> Limits {
        Limits {
            header_read: config.limits.http_handshake_timeout.0,
            max_header_bytes: config
                .http_config
                .max_header_bytes
                .map_or(DEFAULT_MAX_HEADER_BYTES, |n| n as usize)
                .max(8192),
            tls_handshake: config.limits.https_handshake_timeout.0,
        }
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one connection until the client closes it or `shutdown` fires
/// (then the request in flight is finished first).
pub async fn serve_http<I, S>(io: I, service: S, limits: &Limits, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::Body>,
            Response = hyper::Response<hyper::Body>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::Http::new();
    http.http1_header_read_timeout(limits.header_read).max_buf_size(limits.max_header_bytes);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("http connection ended: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

pub struct Killable<S> {
    inner: S,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Held for as long as the connection lives.
    _slot: Option<Slot>,
}

impl<S> Killable<S> {
    pub fn new(inner: S, kill: CancellationToken, slot: Option<Slot>) -> Self {
        Killable { inner, killed: Box::pin(kill.cancelled_owned()), _slot: slot }
    }

    /// Ready (with the error to return) once killed; registers the waker otherwise, so a
    /// connection parked on a read wakes up when the server is stopped.
    fn poll_killed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::ConnectionAborted, "agent stopped")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(e) = self.poll_killed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Poll::Ready(e) = self.poll_killed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_parked_read_fails_once_killed() {
        let (a, mut b) = tokio::io::duplex(64);
        let kill = CancellationToken::new();
        let mut conn = Killable::new(a, kill.clone(), None);
        b.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        conn.read_exact(&mut buf).await.unwrap();
        let reader = tokio::spawn(async move { conn.read(&mut buf).await });
        tokio::task::yield_now().await;
        assert!(!reader.is_finished(), "nothing to read: the read is parked");
        kill.cancel();
        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
