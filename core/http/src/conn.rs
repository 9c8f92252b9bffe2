//! HTTP connections that end when the server stops. Hyper runs each connection as a task of
//! its own; a graceful shutdown closes idle ones, but a connection a client keeps busy (or a
//! keep-alive pool that never lets go) would live on, holding the agent and its stores. Every
//! accepted stream is wrapped so that, once the grace period is over, its next read or write
//! fails and the connection task ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct Killable<S> {
    inner: S,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Killable<S> {
    pub fn new(inner: S, kill: CancellationToken) -> Self {
        Killable { inner, killed: Box::pin(kill.cancelled_owned()) }
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
        let mut conn = Killable::new(a, kill.clone());
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
