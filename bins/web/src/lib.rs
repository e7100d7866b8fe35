//! The auth-sdk web site: server-rendered pages and a JSON API over any [`AuthApi`].
//!
//! The same [`router`] serves an [`auth_core::Auth`] embedded in the process or a
//! cluster of `auth-backend`s reached through [`auth_backend::RemoteAuth`]; both are an
//! `Arc<dyn AuthApi>`.
//!
//! **Pages** (HTML from askama templates, usable without JavaScript, one stylesheet):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | home: "Signed in as …" or links to sign up / log in |
//! | `GET, POST /signup` | create an account, then sign in and go to `/account` |
//! | `GET, POST /login` | log in |
//! | `POST /logout` | end this browser's session |
//! | `GET /account` | username, member since, active sessions, forms below |
//! | `POST /account/password` | change password (ends the other sessions) |
//! | `POST /account/sessions/{id}/revoke` | end one session |
//! | `POST /account/logout-all` | end every session |
//! | `POST /account/delete` | delete the account (password required) |
//! | `GET /healthz` | `200 ok` |
//! | `GET /static/style.css` | the stylesheet |
//!
//! Tokens live in `HttpOnly`, `SameSite=Lax` cookies, `Secure` with the `__Host-`
//! prefix whenever the site is reached over HTTPS ([`serve_tls`], an `https://`
//! [`WebConfig::public_url`], or [`WebConfig::secure_cookies`]); an expired access
//! token is refreshed transparently from the refresh cookie. Every form carries a CSRF
//! token bound to the visitor's session (or, before login, to a pre-session cookie),
//! so it rotates at login and logout and is worth nothing with another browser's
//! cookies; form posts that the browser marks as cross-origin are refused as well.
//!
//! **Client address**: the TCP peer's, or, when the peer is one of
//! [`WebConfig::trusted_proxies`], the rightmost `X-Forwarded-For` hop that is not a
//! trusted proxy. It goes to the core, with the `User-Agent`, on every register,
//! login, refresh and password change (for throttling and the session list).
//!
//! **JSON API** (`application/json` in and out, bearer tokens, no cookies):
//! `POST /api/v1/register`, `POST /api/v1/login`, `POST /api/v1/refresh`,
//! `POST /api/v1/logout`, `GET /api/v1/me`. Errors are
//! `{"error":{"code":"…","message":"…"}}` with the code from [`auth_core::AuthError`]
//! (or `invalid_json`, `csrf`, `payload_too_large`, `unsupported_media_type`,
//! `not_found`) and a matching status: 400, 401, 403, 404, 409, 413, 415, 429
//! (`locked`, `rate_limited`; with `Retry-After`), 503 when the auth service is
//! unavailable or overloaded (`overloaded` with `Retry-After`), 500. Messages are
//! [`AuthError::public_message`](auth_core::AuthError::public_message) or fixed
//! text: the detail of internal errors is logged, never sent.
//!
//! **HTTPS**: [`serve_tls`] serves the same router over TLS ([`TlsConfig`], rustls),
//! adds `Strict-Transport-Security` ([`HSTS`]) to every response and makes every
//! cookie secure. The `auth-web` binary does it with `--tls-cert` and `--tls-key`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use auth_core::{Auth, Config};
//! use auth_storage::memory::MemoryStorage;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = Auth::new(Config::default(), MemoryStorage::new())?;
//! auth.start()?;
//! let config = auth_web::WebConfig::default();
//! let app = auth_web::router(Arc::new(auth), config.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! auth_web::serve(listener, app, &config, async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod account;
mod admin;
mod api;
mod client;
mod config;
mod connections;
mod csrf;
mod edge;
mod errors;
mod extract;
mod pages;
pub mod protect;
mod security;
mod session;
mod templates;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

/// The Prometheus recorder and `/metrics` endpoint (from `auth-backend`), for serving
/// this site's metrics beside it.
pub use auth_backend::metrics as prometheus;
use auth_core::AuthApi;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use crate::config::{
    CsrfKey, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, PublicUrl, TrustedProxy,
    WebConfig, localhost_passkeys,
};
pub use crate::tls::{HSTS, TlsConfig};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) api: Arc<dyn AuthApi>,
    pub(crate) config: WebConfig,
    /// `config.csrf_key`, or a random key drawn when the router was built.
    pub(crate) csrf_key: CsrfKey,
    /// Edge throttling by client address (`config.throttle`).
    pub(crate) throttle: Option<auth_core::Throttle>,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole site (pages, JSON API, health, stylesheet) over `api`.
///
/// Serve it with [`serve`], or with `axum::serve` and
/// `into_make_service_with_connect_info::<SocketAddr>()` so that sessions record the
/// client's address.
pub fn router(api: Arc<dyn AuthApi>, config: WebConfig) -> Router {
    let csrf_key = config.csrf_key.clone().unwrap_or_else(CsrfKey::random);
    let limit = config.max_body_bytes;
    let throttle = config
        .throttle
        .map(|p| auth_core::Throttle::new(&p, Arc::new(auth_core::SystemClock)));
    let state = AppState(Arc::new(Shared {
        api,
        config,
        csrf_key,
        throttle,
    }));
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    Router::new()
        .merge(pages::routes())
        .merge(account::routes())
        .merge(admin::routes())
        .merge(security::routes())
        .merge(api::routes())
        // Routes only, where the matched path is known: the label set stays the
        // site's own routes.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(RouteMetrics::default()),
            track_metrics,
        ))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::throttle,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(header(header::CACHE_CONTROL, "no-store"))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "same-origin"))
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // Outermost: every page, the edge throttle's included, knows the mount path.
        .layer(axum::middleware::from_fn(mounted))
        .with_state(state)
}

/// Counts and times each request by route template and status, through the `metrics`
/// facade (`auth_http_requests_total{route, method, status}`,
/// `auth_http_request_duration_seconds{route}`); a no-op without a recorder. The
/// metric handles are looked up once per (route, method, status) and kept, so a
/// request pays two atomic updates, not a registry lookup.
async fn track_metrics(
    axum::extract::State(handles): axum::extract::State<Arc<RouteMetrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |p| Arc::<str>::from(p.as_str()));
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let (counter, histogram) = handles.get(&route, method, resp.status().as_u16());
    counter.increment(1);
    histogram.record(started.elapsed().as_secs_f64());
    resp
}

/// A route's request counter (for one method and status) and latency histogram.
type RouteHandles = (metrics::Counter, metrics::Histogram);

/// Route template, method, status.
type RouteKey = (Arc<str>, &'static str, u16);

/// The metric handles of [`track_metrics`], by route, method and status.
#[derive(Default)]
struct RouteMetrics {
    handles: parking_lot::RwLock<std::collections::HashMap<RouteKey, RouteHandles>>,
}

impl RouteMetrics {
    fn get(&self, route: &Arc<str>, method: &'static str, status: u16) -> RouteHandles {
        let key = (Arc::clone(route), method, status);
        if let Some(h) = self.handles.read().get(&key) {
            return h.clone();
        }
        let h = (
            metrics::counter!(
                "auth_http_requests_total",
                "route" => route.to_string(),
                "method" => method,
                "status" => status.to_string()
            ),
            metrics::histogram!("auth_http_request_duration_seconds", "route" => route.to_string()),
        );
        self.handles.write().entry(key).or_insert(h).clone()
    }
}

/// Runs a request to the site knowing where the site is mounted (`Router::nest`), so
/// that its links and redirects stay under that path.
async fn mounted(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mount = mount_path(&req);
    templates::with_mount_path(&mount, next.run(req)).await
}

/// The path prefix the site is reached under: the original request path minus the path
/// the site's router sees (so `/{tenant}/auth` nests give `/acme/auth`, not the pattern).
fn mount_path(req: &axum::extract::Request) -> String {
    // A prefix that begins `//` would make `Location: //host/...` another site's URL.
    let clean = |prefix: &str| {
        let prefix = prefix.trim_end_matches('/').replace('\\', "/");
        match prefix.trim_start_matches('/') {
            "" => String::new(),
            rest => format!("/{rest}"),
        }
    };
    let inner = req.uri().path();
    let Some(axum::extract::OriginalUri(original)) = req.extensions().get() else {
        return String::new();
    };
    let original = original.path();
    if let Some(prefix) = original.strip_suffix(inner) {
        return clean(prefix);
    }
    // `/auth` nested at `/auth` is seen inside as `/`.
    if inner == "/" {
        return clean(original);
    }
    req.extensions()
        .get::<axum::extract::NestedPath>()
        .map(|p| clean(p.as_str()))
        .unwrap_or_default()
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// lets requests in flight finish. Peer addresses are passed to the handlers (they
/// are recorded with each login session).
///
/// `config` is the one the router was built with: its
/// [`max_connections_per_address`](WebConfig::max_connections_per_address) bounds the
/// connections each client address holds open (its trusted proxies are not bounded).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: &WebConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum::serve::ListenerExt as _;
    let listener = connections::LimitedListener {
        inner: listener,
        limit: connections::ConnectionLimit::new(config),
    };
    // Small responses should leave at once, not wait on Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.inner.set_nodelay(true);
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Like [`serve`], over HTTPS: TLS handshakes (rustls, [`TlsConfig`]) on every
/// accepted connection, `Strict-Transport-Security: `[`HSTS`] on every response, and
/// `Secure`, `__Host-` prefixed cookies whatever [`WebConfig::secure_cookies`] says, so
/// that browsers send them back over HTTPS only.
///
/// Connections are bounded per client address as with [`serve`], before the TLS
/// handshake. On `shutdown` it stops accepting, lets requests in flight finish and closes idle
/// connections. Connections that fail their handshake are dropped (logged at `debug`)
/// without affecting the others. Peer addresses reach the handlers as with [`serve`].
///
/// ```no_run
/// use std::path::Path;
/// use std::sync::Arc;
/// use auth_core::{Auth, Config};
/// use auth_storage::memory::MemoryStorage;
/// use auth_web::{TlsConfig, WebConfig};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsConfig::from_files(Path::new("site.pem"), Path::new("site.key"))?;
/// let auth = Auth::new(Config::default(), MemoryStorage::new())?;
/// auth.start()?;
/// let app = auth_web::router(Arc::new(auth), WebConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// auth_web::serve_tls(listener, app, &WebConfig::default(), tls, async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
pub async fn serve_tls<F>(
    listener: TcpListener,
    router: Router,
    config: &WebConfig,
    tls: TlsConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum_server::accept::{TcpConfigAcceptor, TcpSocketConfig};
    use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

    let router = router.layer(axum::Extension(tls::ServedOverTls)).layer(
        SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, tls::hsts_value()),
    );
    // Small responses should leave at once, not wait on Nagle's algorithm.
    let tcp = TcpConfigAcceptor::new(TcpSocketConfig::new().nodelay(true));
    let limited = connections::LimitAcceptor {
        inner: tcp,
        limit: connections::ConnectionLimit::new(config),
    };
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls.server)).acceptor(limited);
    let handle = axum_server::Handle::<SocketAddr>::new();
    let on_shutdown = handle.clone();
    let trigger = tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(None);
    });
    let served = axum_server::Server::from_listener(listener)
        .acceptor(acceptor)
        .handle(handle)
        .accept_error_handler(|peer, e| {
            tracing::debug!(peer = ?peer, error = %e, "TLS connection not accepted");
        })
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    trigger.abort();
    served
}
