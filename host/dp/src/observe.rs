//! The operators' HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `/healthz` (the daemon answers), `/readyz` (200 once the config is
//! loaded and every pool is registered with the kubelet; 503 with the
//! reason before) and `/status` (JSON: pools, devices, allocations,
//! policies; what `afxdpctl status` reads). HTTP/1.1 only, each connection
//! bounded by a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How long one connection may take (slow clients cannot pile up).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/status` answers (the agent's [`crate::agent::Agent::status`]).
pub type StatusSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

fn answer(metrics: &Metrics, status: &StatusSource, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/status" => (StatusCode::OK, status().to_string()),
        "/metrics" => (StatusCode::OK, metrics.encode()),
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        "/readyz" => match metrics.ready() {
            Ok(()) => (StatusCode::OK, "ready\n".to_string()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Bind `addr`; the bound address (port 0 picks one) and the serving task,
/// which ends when `shutdown` flips.
///
/// # Errors
/// The bind.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    status: StatusSource,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /metrics, /healthz, /readyz");
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        continue;
                    }
                },
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { return; }
                    continue;
                }
            };
            let (metrics, status) = (metrics.clone(), status.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let r = answer(&metrics, &status, req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    tracing::debug!(error = %e, "metrics connection");
                }
            });
        }
    });
    Ok((bound, task))
}
