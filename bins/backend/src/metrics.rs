//! Prometheus metrics for the binaries (feature `metrics`): the recorder
//! (`metrics-exporter-prometheus`, installed once per process), the `/metrics` HTTP
//! endpoint on a listener of its own (`--metrics-listen`), process metrics
//! (`metrics-process`), and the gRPC layer that counts and times every call by method
//! and stable result code.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `auth_grpc_requests_total` | counter | `method` (`/auth.v1.AuthService/Login`; `unknown` for unimplemented ones), `code` (`ok`, an auth error code, or a gRPC status name) |
//! | `auth_grpc_request_duration_seconds` | histogram | `method` |
//!
//! and `auth_core::metrics`, `auth_raft::metrics` (with `server`) and the
//! `process_*` metrics.
//!
//! The endpoint answers `GET /metrics` only, at most [`MAX_SCRAPES`] at a time, each
//! within [`SCRAPE_TIMEOUT`]; with a bearer token configured
//! (`--metrics-token-file`), only requests that carry it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

/// Scrapes served at once; more wait (and time out).
pub const MAX_SCRAPES: usize = 4;
/// Longest a scrape may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Histogram buckets for durations, seconds: 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls return the
/// same handle) and describes every metric.
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            auth_core::metrics::describe();
            #[cfg(feature = "server")]
            auth_raft::metrics::describe();
            describe();
            metrics_process::Collector::default().describe();
            // Histogram samples collect in buckets until drained: drain them
            // regularly, scraped or not, so memory stays flat.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "auth_grpc_requests_total",
        "gRPC calls by method and result code."
    );
    metrics::describe_histogram!(
        "auth_grpc_request_duration_seconds",
        metrics::Unit::Seconds,
        "gRPC call latency (to the response headers) by method."
    );
}

/// What `/metrics` needs: the recorder, a hook run before each scrape (to set gauges
/// that are read, not pushed: Raft state), and the bearer token, if any.
#[derive(Clone)]
pub struct Endpoint {
    handle: PrometheusHandle,
    before_scrape: Arc<dyn Fn() + Send + Sync>,
    token: Option<Arc<Zeroizing<String>>>,
    process: Arc<metrics_process::Collector>,
}

impl Endpoint {
    /// An endpoint over `handle` (see [`install`]).
    pub fn new(handle: PrometheusHandle) -> Self {
        Self {
            handle,
            before_scrape: Arc::new(|| {}),
            token: None,
            process: Arc::new(metrics_process::Collector::default()),
        }
    }

    /// Runs `hook` before rendering each scrape.
    pub fn before_scrape(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.before_scrape = Arc::new(hook);
        self
    }

    /// Requires `Authorization: Bearer <token>` (compared in constant time).
    pub fn token(mut self, token: Zeroizing<String>) -> Self {
        self.token = Some(Arc::new(token));
        self
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use tower::ServiceBuilder;
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(scrape))
            .with_state(self)
            .layer(
                ServiceBuilder::new()
                    .layer(axum::error_handling::HandleErrorLayer::new(
                        |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
                    ))
                    .load_shed()
                    .concurrency_limit(MAX_SCRAPES)
                    .timeout(SCRAPE_TIMEOUT),
            );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn scrape(State(ep): State<Endpoint>, headers: HeaderMap) -> Response {
    if let Some(token) = &ep.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required\n",
            )
                .into_response();
        }
    }
    ep.process.collect();
    (ep.before_scrape)();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ep.handle.render(),
    )
        .into_response()
}

/// Counts and times every gRPC call (see the module docs). Metric handles are looked
/// up once per method and code and kept: a call pays two atomic updates.
#[derive(Clone, Default)]
pub struct GrpcMetricsLayer {
    handles: Arc<MethodHandles>,
}

impl std::fmt::Debug for GrpcMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcMetricsLayer").finish_non_exhaustive()
    }
}

/// One method's latency histogram and a counter per result code.
type Method = (metrics::Histogram, Vec<(&'static str, metrics::Counter)>);

/// Handles by method.
#[derive(Default)]
struct MethodHandles {
    by_method: parking_lot::RwLock<std::collections::HashMap<String, Method>>,
}

impl MethodHandles {
    fn record(&self, method: &str, code: &'static str, seconds: f64) {
        {
            let map = self.by_method.read();
            if let Some((h, codes)) = map.get(method)
                && let Some((_, c)) = codes.iter().find(|(k, _)| *k == code)
            {
                h.record(seconds);
                c.increment(1);
                return;
            }
        }
        let mut map = self.by_method.write();
        let (h, codes) = map.entry(method.to_owned()).or_insert_with(|| {
            (
                metrics::histogram!(
                    "auth_grpc_request_duration_seconds",
                    "method" => method.to_owned()
                ),
                Vec::new(),
            )
        });
        if !codes.iter().any(|(k, _)| *k == code) {
            codes.push((
                code,
                metrics::counter!(
                    "auth_grpc_requests_total",
                    "method" => method.to_owned(),
                    "code" => code
                ),
            ));
        }
        h.record(seconds);
        if let Some((_, c)) = codes.iter().find(|(k, _)| *k == code) {
            c.increment(1);
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            handles: Arc::clone(&self.handles),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    handles: Arc<MethodHandles>,
}

/// gRPC status names by code number.
const GRPC_CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// The `code` label of a response: the auth error's stable code when it has one,
/// else the gRPC status name, `ok` when the status comes in trailers (a success).
fn code_label(headers: &http::HeaderMap) -> &'static str {
    if let Some(code) = headers
        .get(crate::status::CODE_KEY)
        .and_then(|v| v.to_str().ok())
    {
        return auth_core::AuthError::CODES
            .iter()
            .find(|c| **c == code)
            .copied()
            .unwrap_or("other");
    }
    match headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => GRPC_CODES.get(n).copied().unwrap_or("other"),
        None => "ok",
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let fut = self.inner.call(req);
        let handles = Arc::clone(&self.handles);
        Box::pin(async move {
            let r = fut.await;
            let (code, served) = match &r {
                Ok(resp) => (
                    code_label(resp.headers()),
                    !resp
                        .headers()
                        .contains_key(crate::status::NOT_PROCESSED_KEY),
                ),
                Err(_) => ("transport_error", false),
            };
            // Only a path a service answered becomes a label: unknown methods answer
            // unimplemented, and a draining server's refusals or a broken transport
            // never reached a service.
            let method = if code == "unimplemented" || !served {
                "unknown"
            } else {
                path.as_str()
            };
            handles.record(method, code, started.elapsed().as_secs_f64());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_are_bounded() {
        let mut h = http::HeaderMap::new();
        assert_eq!(code_label(&h), "ok");
        h.insert("grpc-status", "12".parse().unwrap());
        assert_eq!(code_label(&h), "unimplemented");
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(code_label(&h), "other");
        h.insert(
            crate::status::CODE_KEY,
            "invalid_credentials".parse().unwrap(),
        );
        assert_eq!(code_label(&h), "invalid_credentials");
        h.insert(crate::status::CODE_KEY, "made-up".parse().unwrap());
        assert_eq!(code_label(&h), "other");
    }
}
