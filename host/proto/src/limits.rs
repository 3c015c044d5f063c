//! Bounds on the gRPC servers afxdp-dp runs on unix sockets (the node API,
//! the device-plugin servers): a hostile or broken local client must not
//! stall other clients, exhaust descriptors, or stop a server.
//!
//! - at most [`Limits::max_connections`] open connections per socket; more
//!   are closed at accept;
//! - a connection that has not sent the HTTP/2 preface and its first frame
//!   header within [`Limits::preface_within`] is closed (silent, truncated,
//!   garbage-then-silent clients); after that, HTTP/2 keepalive pings close
//!   one that stops answering ([`Limits::keepalive`]);
//! - accept errors (descriptor exhaustion) pause accepting instead of
//!   ending the server, as tonic would;
//! - per connection, at most [`Limits::streams_per_connection`] concurrent
//!   requests; messages above [`Limits::max_message`] are refused (set on
//!   each service with `max_decoding_message_size`).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::Connected;
use tonic::transport::Server;

/// The bounds of one server socket.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub preface_within: Duration,
    pub keepalive: Duration,
    pub streams_per_connection: u32,
    pub max_message: usize,
    /// A deadline on each request handler; `None` for servers whose
    /// handlers wait on slow work by design (Allocate pulls images).
    pub request_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            preface_within: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
            streams_per_connection: 16,
            max_message: 64 * 1024,
            request_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// How long accepting pauses after an accept error (no descriptors left).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The HTTP/2 client preface (24 bytes) and the header of the SETTINGS
/// frame that must follow it (9 bytes).
const PREFACE_LEN: usize = 24 + 9;

impl Limits {
    /// A tonic server builder with these bounds.
    pub fn server(&self) -> Server {
        let builder = Server::builder()
            .http2_keepalive_interval(Some(self.keepalive))
            .http2_keepalive_timeout(Some(self.keepalive))
            .concurrency_limit_per_connection(self.streams_per_connection as usize)
            .max_concurrent_streams(Some(self.streams_per_connection));
        match self.request_timeout {
            Some(t) => builder.timeout(t),
            None => builder,
        }
    }

    /// Bind `path` (see [`crate::unix::bind`]) and accept within these
    /// bounds: the incoming stream for `serve_with_incoming`.
    pub fn bind(&self, path: impl AsRef<Path>) -> io::Result<BoundedIncoming> {
        let listener = crate::unix::bind_listener(path.as_ref())?;
        Ok(BoundedIncoming {
            listener,
            permits: Arc::new(Semaphore::new(self.max_connections)),
            preface_within: self.preface_within,
            pause: None,
        })
    }
}

/// Accepted connections within [`Limits`].
pub struct BoundedIncoming {
    listener: UnixListener,
    permits: Arc<Semaphore>,
    preface_within: Duration,
    pause: Option<Pin<Box<Sleep>>>,
}

impl tokio_stream::Stream for BoundedIncoming {
    type Item = io::Result<BoundedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, _)) => match this.permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        return Poll::Ready(Some(Ok(BoundedStream {
                            inner: stream,
                            preface: Some(Box::pin(tokio::time::sleep(this.preface_within))),
                            read: 0,
                            _permit: permit,
                        })))
                    }
                    Err(_) => {
                        tracing::warn!("connection limit reached; closing a new connection");
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, pause = ?ACCEPT_PAUSE, "accept failed; pausing");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
            }
        }
    }
}

/// One accepted connection: holds its slot of the connection limit, and
/// fails a read once the preface is overdue.
pub struct BoundedStream {
    inner: UnixStream,
    /// The preface deadline, until [`PREFACE_LEN`] bytes arrived.
    preface: Option<Pin<Box<Sleep>>>,
    read: usize,
    _permit: OwnedSemaphorePermit,
}

impl Connected for BoundedStream {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read += buf.filled().len() - before;
                if this.read >= PREFACE_LEN {
                    this.preface = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = this
                    .preface
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not send the HTTP/2 preface in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use tokio::io::AsyncReadExt;
    use tokio_stream::StreamExt;

    use super::*;

    fn limits(max_connections: usize, preface_within: Duration) -> Limits {
        Limits {
            max_connections,
            preface_within,
            ..Default::default()
        }
    }

    /// Whether the server closed `c` (a read sees EOF within 1 s).
    fn closed_by_server(c: &mut std::os::unix::net::UnixStream) -> bool {
        c.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        matches!(c.read(&mut [0u8; 8]), Ok(0))
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_accept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let mut incoming = limits(2, Duration::from_secs(60))
            .bind(&path)
            .expect("bind");
        let mut clients: Vec<_> = (0..4)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).expect("connect"))
            .collect();
        let kept = [
            incoming.next().await.expect("first").expect("accepted"),
            incoming.next().await.expect("second").expect("accepted"),
        ];
        // Accepting goes on (and closes the rest) while the server polls.
        let more = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(more.is_err(), "a third connection was handed out");
        for c in &mut clients[2..] {
            assert!(
                closed_by_server(c),
                "a connection beyond the limit stayed open"
            );
        }
        for c in &mut clients[..2] {
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let r = c.read(&mut [0u8; 8]);
            assert!(r.is_err(), "an accepted connection was closed: {r:?}");
        }
        // A slot frees when a connection closes.
        drop(kept);
        let _late = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        let again = tokio::time::timeout(Duration::from_secs(1), incoming.next()).await;
        assert!(
            matches!(again, Ok(Some(Ok(_)))),
            "no slot after closing two"
        );
    }

    #[tokio::test]
    async fn a_client_that_stops_inside_the_preface_is_timed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let mut incoming = limits(8, Duration::from_millis(200))
            .bind(&path)
            .expect("bind");
        let mut client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        client.write_all(b"PRI * HTTP/2.0\r\n").expect("write");
        let mut server = incoming.next().await.expect("one").expect("accepted");
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.expect("the partial preface");
        assert_eq!(n, 16);
        let err = server
            .read(&mut buf)
            .await
            .expect_err("the preface is overdue");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_client_past_the_preface_has_no_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let mut incoming = limits(8, Duration::from_millis(100))
            .bind(&path)
            .expect("bind");
        let mut client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        client.write_all(&[b'x'; PREFACE_LEN]).expect("write");
        let mut server = incoming.next().await.expect("one").expect("accepted");
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < PREFACE_LEN {
            got += server.read(&mut buf).await.expect("the preface");
        }
        let idle = tokio::time::timeout(Duration::from_millis(400), server.read(&mut buf)).await;
        assert!(
            idle.is_err(),
            "an idle connection past its preface was cut: {idle:?}"
        );
    }
}
