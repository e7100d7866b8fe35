//! Shared test helpers: an auth-web site on an ephemeral port (embedded core with a
//! manual clock, or any `AuthApi`), a cookie-keeping client that fills in CSRF tokens,
//! and bounded waiting.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use auth_core::{Auth, AuthApi, Config, ManualClock};
use auth_storage::memory::MemoryStorage;
use auth_web::{TlsConfig, WebConfig, router, serve, serve_tls};
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Response, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A core config for tests: cheap hashing and a clock the test moves.
pub fn test_config(clock: &Arc<ManualClock>) -> Config {
    let mut config = auth_testing::fast_config();
    config.clock = clock.clone();
    config
}

/// A started `Auth` on memory storage with a manual clock.
pub fn new_auth() -> (Auth<MemoryStorage>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_now());
    let auth = Auth::new(test_config(&clock), MemoryStorage::new()).expect("valid config");
    auth.start().expect("start");
    (auth, clock)
}

/// An auth-web server on 127.0.0.1:0, stopped (gracefully) on drop.
pub struct WebServer {
    pub url: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl WebServer {
    /// Serves the site on 127.0.0.1 with edge throttling off and connections per
    /// address unbounded (tests drive many logins, some concurrently, from one address;
    /// [`WebServer::start_throttled`] keeps both).
    pub async fn start(api: Arc<dyn AuthApi>, config: WebConfig) -> Self {
        Self::start_throttled(
            api,
            WebConfig {
                throttle: None,
                max_connections_per_address: 0,
                ..config
            },
        )
        .await
    }

    /// Serves the site on 127.0.0.1 with `config` as given.
    pub async fn start_throttled(api: Arc<dyn AuthApi>, config: WebConfig) -> Self {
        Self::serve_app(router(api.clone(), config.clone()), config).await
    }

    /// Serves any application (e.g. one that nests the site) with [`serve`].
    pub async fn serve_app(app: axum::Router, config: WebConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::serve_on(listener, app, config).await
    }

    /// Serves `app` on a listener bound already (when the port must be known before the
    /// application is built).
    pub async fn serve_on(
        listener: tokio::net::TcpListener,
        app: axum::Router,
        config: WebConfig,
    ) -> Self {
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, app, &config, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The same over HTTPS ([`serve_tls`]); `url` is `https://127.0.0.1:PORT`.
    pub async fn start_tls(api: Arc<dyn AuthApi>, config: WebConfig, tls: TlsConfig) -> Self {
        let config = WebConfig {
            throttle: None,
            ..config
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(api, config.clone());
        let task = tokio::spawn(async move {
            serve_tls(listener, app, &config, tls, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            url: format!("https://{addr}"),
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits (bounded) for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("web server stops within 10 s")
                .expect("web server task")
                .expect("web server result");
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The usual fixture: auth-web over an embedded `Auth` with a manual clock.
pub struct Site {
    pub web: WebServer,
    pub auth: Auth<MemoryStorage>,
    pub clock: Arc<ManualClock>,
}

impl Site {
    pub async fn start() -> Self {
        Self::with_config(WebConfig::default()).await
    }

    pub async fn with_config(config: WebConfig) -> Self {
        let (auth, clock) = new_auth();
        let web = WebServer::start(Arc::new(auth.clone()), config).await;
        Self { web, auth, clock }
    }

    /// A new visitor with an empty cookie jar.
    pub fn visitor(&self) -> Visitor {
        Visitor::new(&self.web.url)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.web.url)
    }
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub struct Visitor {
    pub client: reqwest::Client,
    pub base: String,
}

pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 auth-web-tests";

impl Visitor {
    pub fn new(base: &str) -> Self {
        Self::with_client(base, Self::builder())
    }

    /// A visitor whose client trusts only the CA certificate in `ca_pem` (for HTTPS).
    pub fn trusting(base: &str, ca_pem: &str) -> Self {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate");
        Self::with_client(
            base,
            Self::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca),
        )
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .timeout(Duration::from_secs(30))
    }

    fn with_client(base: &str, builder: reqwest::ClientBuilder) -> Self {
        Self {
            client: builder.build().expect("client"),
            base: base.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// GET, expecting `status`; returns the body.
    pub async fn page(&self, path: &str, status: StatusCode) -> String {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), status, "GET {path}");
        resp.text().await.expect("body")
    }

    /// The CSRF token of the form on `page`.
    pub async fn csrf(&self, page: &str) -> String {
        let html = self.page(page, StatusCode::OK).await;
        csrf_of(&html).unwrap_or_else(|| panic!("no csrf field on {page}"))
    }

    /// Posts a form to `action` as if submitted from `page` (CSRF token included).
    pub async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Response {
        let token = self.csrf(page).await;
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.client
            .post(self.url(action))
            .form(&all)
            .send()
            .await
            .expect("POST")
    }

    pub async fn signup(&self, username: &str, password: &str) {
        let resp = self
            .submit(
                "/signup",
                "/signup",
                &[("username", username), ("password", password)],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "signup {username}");
        assert_eq!(location(&resp), "/account?notice=welcome");
    }

    pub async fn login(&self, username: &str, password: &str) {
        let resp = self
            .submit(
                "/login",
                "/login",
                &[("username", username), ("password", password)],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login {username}");
        assert_eq!(location(&resp), "/account");
    }

    /// Registers `username` over the JSON API under `api` (e.g. `/api/v1`) and logs in;
    /// returns the login's JSON body (tokens, user).
    pub async fn api_signup(&self, api: &str, username: &str, password: &str) -> serde_json::Value {
        let creds = serde_json::json!({"username": username, "password": password});
        let resp = self
            .api_post(&format!("{api}/register"), creds.clone())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "register {username}");
        let resp = self.api_post(&format!("{api}/login"), creds).await;
        assert_eq!(resp.status(), StatusCode::OK, "login {username}");
        resp.json().await.expect("login JSON")
    }

    /// POSTs JSON to the API.
    pub async fn api_post(&self, path: &str, body: serde_json::Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST json")
    }
}

/// The value of the hidden `csrf` field.
pub fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

/// Session ids that have a revoke button on the account page.
pub fn revocable_sessions(html: &str) -> Vec<String> {
    html.split("action=\"/account/sessions/")
        .skip(1)
        .filter_map(|rest| rest.split_once("/revoke\"").map(|(id, _)| id.to_owned()))
        .collect()
}

/// The `Location` header.
pub fn location(resp: &Response) -> String {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Every `Set-Cookie` line.
pub fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The `Set-Cookie` line for `name`, if any.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// The value of a `Set-Cookie` line (`name=value; attributes`).
pub fn cookie_value(line: &str) -> String {
    let pair = line.split(';').next().unwrap_or("");
    pair.split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

/// Asserts the response clears both token cookies.
pub fn assert_tokens_cleared(headers: &HeaderMap) {
    for name in ["access_token", "refresh_token"] {
        let line = set_cookie(headers, name).unwrap_or_else(|| panic!("no Set-Cookie for {name}"));
        assert!(
            line.starts_with(&format!("{name}=;")) && line.contains("Max-Age=0"),
            "{line}"
        );
    }
}

/// The JSON error code of an API response.
pub async fn error_code(resp: Response) -> String {
    let body: serde_json::Value = resp.json().await.expect("json error body");
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned()
}

/// Polls `check` every 20 ms until it returns true; fails after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `auth-web` binary with a clean environment (no `AUTH_WEB_*` variables), logging
/// at `info` to a piped stderr, killed on drop.
pub fn auth_web() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth-web"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AUTH_WEB_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Waits (bounded by `limit`) for `child`'s log line containing `marker` and
/// `address=ADDR`; returns ADDR and the task that keeps draining the log (so that the
/// child never blocks on a full pipe).
pub async fn listening_address(
    child: &mut tokio::process::Child,
    marker: &str,
    limit: Duration,
) -> (String, JoinHandle<()>) {
    use tokio::io::AsyncBufReadExt as _;
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.contains(marker)
                && let Some((_, rest)) = line.split_once("address=")
            {
                return rest.split_whitespace().next().unwrap_or("").to_owned();
            }
        }
        panic!("auth-web exited before listening");
    })
    .await
    .expect("auth-web listens");
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (addr, drain)
}
