//! The HTTP endpoint at `[metrics] listen`: `GET /metrics` (Prometheus text format 0.0.4) and
//! `GET /healthz` (200 `ok ...`, or 503 with one line per problem: see `health`). Anything else
//! is 404. HTTP/1.1 by hyper; each connection is served on a task of its own and must send its
//! request within [`REQUEST_DEADLINE`]. The listener is bound before the stages start (a port
//! in use is a start-up error naming `metrics.listen`) and serves until the process ends, the
//! drain phase included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::health::{health, HealthLimits};

/// A connection that has not sent its request head by then is closed.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How often the Prometheus recorder's histograms are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: cannot listen: {source}")]
pub struct ServeError {
    addr: String,
    #[source]
    source: std::io::Error,
}

/// Binds `addr` and serves on the runtime until the process ends.
pub async fn spawn(
    addr: &str,
    prometheus: PrometheusHandle,
    limits: HealthLimits,
) -> Result<SocketAddr, ServeError> {
    let err = |source| ServeError {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    tracing::info!(listen = %local, "serving /metrics and /healthz");
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let prometheus = prometheus.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let prometheus = prometheus.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &prometheus, &limits)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(REQUEST_DEADLINE)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended");
                }
            });
        }
    });
    Ok(local)
}

fn answer<B>(
    req: &Request<B>,
    prometheus: &PrometheusHandle,
    limits: &HealthLimits,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, prometheus.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => match health().check(limits) {
            Ok(summary) => text(StatusCode::OK, format!("{summary}\n")),
            Err(problems) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                problems.iter().map(|p| format!("{p}\n")).collect(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "/metrics or /healthz\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
