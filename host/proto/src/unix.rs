//! gRPC over unix sockets: the transport of the kubelet APIs and the node API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Open a lazily-connected channel to the gRPC server listening on `path`.
///
/// The URI is a placeholder: every connection goes to the socket.
pub async fn connect(
    path: impl AsRef<Path>,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.as_ref().to_path_buf();
    Endpoint::from_static("http://[::1]:50051")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// Like [`connect`], but the channel reconnects on use and has no call timeout
/// (for long-lived streams such as ListAndWatch).
pub fn connect_lazy(path: impl AsRef<Path>) -> Channel {
    let path: PathBuf = path.as_ref().to_path_buf();
    Endpoint::from_static("http://[::1]:50051").connect_with_connector_lazy(tower::service_fn(
        move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        },
    ))
}

/// Bind a unix listener at `path`, removing a stale socket file first, and
/// return it as a stream of connections for `tonic::transport::Server::serve_with_incoming`
/// (unbounded: servers afxdp-dp runs use [`crate::limits::Limits::bind`]).
pub fn bind(path: impl AsRef<Path>) -> std::io::Result<tokio_stream::wrappers::UnixListenerStream> {
    Ok(tokio_stream::wrappers::UnixListenerStream::new(
        bind_listener(path.as_ref())?,
    ))
}

/// Bind a unix listener at `path`, removing a stale socket file first.
pub fn bind_listener(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    tokio::net::UnixListener::bind(path)
}
