//! Property-based fuzzing of every decoder in auth-web that takes network input: cookie
//! headers, the CSRF field of forms, form bodies, JSON bodies and bearer tokens, each
//! sent through the real router (in process, with `tower::ServiceExt::oneshot`: the
//! same service a socket would reach, minus the socket) over an embedded `Auth`.
//!
//! Every target runs `PROPTEST_CASES` cases (default 10 000) from a fixed seed, so a
//! run is reproducible; a failure names the target, the seed and the smallest input
//! proptest found. `FUZZ_SEED=<64 hex digits>` explores another part of the space.
//!
//! What every answer must be: no panic, no 5xx except 503 with `Retry-After`, and on the
//! JSON API an error body `{"error":{"code":…}}` whose code is an
//! [`AuthError::CODES`] code or one of the site's own ([`SITE_CODES`]). Targets add
//! their own properties: a mutated CSRF token is always refused, a mutated bearer token
//! or cookie never stands for anyone but the fixture's own session.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use auth_core::api::{LoginRequest, LogoutRequest, RegisterRequest, VerifyRequest};
use auth_core::{Auth, AuthApi, AuthError};
use auth_storage::memory::MemoryStorage;
use auth_testing::fuzz::{Edit, edits, mutate};
use auth_web::{WebConfig, router};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// The site's own error codes, beside [`AuthError::CODES`] (see `errors.rs`).
const SITE_CODES: &[&str] = &[
    "invalid_json",
    "csrf",
    "payload_too_large",
    "unsupported_media_type",
    "not_found",
];

/// The fixed seed of every target (each target adds its number to the last byte).
const SEED: [u8; 32] = *b"auth-web fuzz seed for issue 8..";

/// The fixture user's password.
const PW: &str = "fuzzing horse battery";

// ---------------------------------------------------------------------------------
// Running a target
// ---------------------------------------------------------------------------------

/// Runs one target from [`SEED`] (see `auth_testing::fuzz::run`).
fn fuzz<S: Strategy>(
    name: &str,
    target: u8,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    auth_testing::fuzz::run(name, SEED, target, strategy, test)
}

/// Fails the case with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($msg)+)));
        }
    };
}

// ---------------------------------------------------------------------------------
// Mutations and generators
// ---------------------------------------------------------------------------------

/// `bytes` without what a header value cannot hold (controls other than tab, DEL).
fn header_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        .collect()
}

fn header_value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(&header_bytes(bytes)).expect("filtered header bytes")
}

/// Bytes a header value may hold, ASCII and not (obs-text).
fn header_text(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![6 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')],
        0..max,
    )
}

/// Text of any kind: unicode, plausible, control characters, huge.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect()),
        3 => "[a-zA-Z0-9_.@+ -]{0,40}",
        1 => prop::collection::vec(0u8..0x20, 0..20)
            .prop_map(|b| String::from_utf8(b).expect("ASCII")),
        1 => (any::<char>(), 1usize..20_000)
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// True if `needle` (non-empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

/// `bytes` percent-encoded as a form component (every byte outside `[A-Za-z0-9*-._]`).
fn form_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// The site and its fixture user
// ---------------------------------------------------------------------------------

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn is_json(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn code(&self) -> Option<String> {
        Some(self.json()?["error"]["code"].as_str()?.to_owned())
    }

    /// The value of `Set-Cookie: name=value; …`, if any.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|line| {
                let pair = line.split(';').next()?;
                let (n, v) = pair.split_once('=')?;
                (n == name).then(|| v.to_owned())
            })
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> Option<String> {
        let html = std::str::from_utf8(&self.body).ok()?;
        let marker = "name=\"csrf\" value=\"";
        let start = html.find(marker)? + marker.len();
        let len = html[start..].find('"')?;
        Some(html[start..start + len].to_owned())
    }

    /// What every answer must be: no 5xx but a 503 with `Retry-After`; errors as JSON
    /// (always, on the API) with a known code.
    fn check(&self, api: bool) -> Result<(), TestCaseError> {
        let status = self.status.as_u16();
        ensure!(
            !(500..=599).contains(&status)
                || (status == 503 && self.headers.contains_key(header::RETRY_AFTER)),
            "server error {status}: {}",
            String::from_utf8_lossy(&self.body)
        );
        if status < 400 {
            return Ok(());
        }
        ensure!(!api || self.is_json(), "API error {status} is not JSON");
        if self.is_json() {
            let code = self.code().unwrap_or_else(|| "<none>".into());
            ensure!(
                AuthError::CODES.contains(&code.as_str()) || SITE_CODES.contains(&code.as_str()),
                "unknown error code {code:?} with {status}: {}",
                String::from_utf8_lossy(&self.body)
            );
        }
        Ok(())
    }
}

/// The fixture user's live session, as a browser holds it.
#[derive(Debug, Clone, Default)]
struct Account {
    username: String,
    user_id: String,
    access: String,
    refresh: String,
    session_id: String,
    /// The CSRF token of the account page's forms.
    csrf: String,
}

/// An anonymous visitor's pre-session cookie and the token of its forms.
#[derive(Debug, Clone, Default)]
struct Anonymous {
    pre_session: String,
    csrf: String,
}

/// The site over an embedded `Auth`, a signed-in fixture user and an anonymous visitor.
struct Site {
    rt: Runtime,
    auth: Auth<MemoryStorage>,
    app: Router,
    anon: Anonymous,
    account: RefCell<Account>,
    /// Fixture users made so far: a new one when a case locked, deleted or re-passworded
    /// the old one.
    users: Cell<u32>,
}

impl Site {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let auth = rt.block_on(async { auth_testing::fast_auth() });
        let app = router(Arc::new(auth.clone()), WebConfig::default());
        let mut site = Self {
            rt,
            auth,
            app,
            anon: Anonymous::default(),
            account: RefCell::new(Account::default()),
            users: Cell::new(0),
        };
        site.anon = site.rt.block_on(async {
            let ans = site.send(get("/login", None)).await;
            Anonymous {
                pre_session: ans.set_cookie("pre_session").expect("pre-session cookie"),
                csrf: ans.csrf().expect("csrf field on /login"),
            }
        });
        site.rt.block_on(site.renew());
        site
    }

    fn account(&self) -> Account {
        self.account.borrow().clone()
    }

    /// Runs one case: sends `call`, checks the answer with [`Answer::check`] and
    /// `check`, then brings the fixture back to a live session if the case used it up.
    fn run(
        &self,
        call: Call,
        check: impl FnOnce(&Answer) -> Result<(), TestCaseError>,
    ) -> Result<(), TestCaseError> {
        let sent = call.sent_bytes();
        let api = call.path.starts_with("/api/");
        self.rt.block_on(async {
            let ans = self.send(call.request()).await;
            let checked = ans.check(api).and_then(|()| check(&ans));
            self.settle(&sent, &ans).await;
            checked
        })
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("response body");
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Signs the fixture user in afresh (ending the old session, so the account page
    /// stays short), or a new user when the old one can no longer log in.
    async fn renew(&self) {
        let old = self.account();
        if !old.access.is_empty() {
            let req = LogoutRequest {
                access_token: old.access.clone(),
                ..LogoutRequest::default()
            };
            let _ = self.auth.logout(req).await;
        }
        let login = |username: &str| LoginRequest {
            username: username.to_owned(),
            password: PW.into(),
            client: None,
        };
        let mut username = old.username;
        let mut resp = Err(AuthError::NotFound);
        if !username.is_empty() {
            resp = self.auth.login(login(&username)).await;
        }
        // A case may have registered the next name already (a mutated username).
        for _ in 0..1_000 {
            if resp.is_ok() {
                break;
            }
            self.users.set(self.users.get() + 1);
            username = format!("fuzzer{}", self.users.get());
            let req = RegisterRequest {
                username: username.clone(),
                password: PW.into(),
                client: None,
            };
            match self.auth.register(req).await {
                Ok(_) => resp = self.auth.login(login(&username)).await,
                Err(AuthError::UserExists) => {}
                Err(e) => panic!("register fixture: {e:?}"),
            }
        }
        let resp = resp.expect("fixture login");
        let tokens = resp.tokens.expect("tokens");
        let mut account = Account {
            username,
            user_id: resp.user.expect("user").id,
            access: tokens.access_token,
            refresh: tokens.refresh_token,
            session_id: tokens.session_id,
            csrf: String::new(),
        };
        let cookie = format!(
            "access_token={}; refresh_token={}",
            account.access, account.refresh
        );
        let page = self.send(get("/account", Some(cookie.as_bytes()))).await;
        assert_eq!(page.status, StatusCode::OK, "the fixture's account page");
        account.csrf = page.csrf().expect("csrf field on /account");
        *self.account.borrow_mut() = account;
    }

    /// After a case that sent `sent` and got `ans`: keeps a token pair the site rotated
    /// for the fixture's session, and renews the fixture if the case may have spent its
    /// refresh token or ended its session.
    async fn settle(&self, sent: &[u8], ans: &Answer) {
        let account = self.account();
        let rotated = ans
            .set_cookie("access_token")
            .zip(ans.set_cookie("refresh_token"))
            .filter(|(a, r)| !a.is_empty() && !r.is_empty());
        if let Some((access, refresh)) = rotated {
            let req = VerifyRequest {
                access_token: access.clone(),
            };
            let verified = self.auth.verify(req).await;
            if verified.is_ok_and(|v| v.session_id == account.session_id) {
                let mut a = self.account.borrow_mut();
                a.access = access;
                a.refresh = refresh;
                return;
            }
        }
        let secrets = [
            &account.access,
            &account.refresh,
            &account.session_id,
            &account.csrf,
            PW,
        ];
        if !secrets.iter().any(|s| contains(sent, s)) {
            return;
        }
        let req = VerifyRequest {
            access_token: account.access.clone(),
        };
        let live = self.auth.verify(req).await.is_ok();
        if !live || contains(sent, &account.refresh) {
            self.renew().await;
        }
    }
}

fn get(path: &str, cookie: Option<&[u8]>) -> Request<Body> {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, header_value(c));
    }
    req.body(Body::empty()).expect("request")
}

/// A request to send, kept as bytes so that a case can tell what it sent.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header; bytes a header cannot hold are left out.
    fn header(mut self, name: header::HeaderName, value: &[u8]) -> Self {
        self.headers.append(name, header_value(value));
        self
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// A form post: `content-type` form-urlencoded.
    fn form(self, body: Vec<u8>) -> Self {
        self.header(header::CONTENT_TYPE, b"application/x-www-form-urlencoded")
            .body(body)
    }

    fn request(self) -> Request<Body> {
        let mut req = Request::builder()
            .method(self.method)
            .uri(self.path)
            .body(Body::from(self.body))
            .expect("request");
        *req.headers_mut() = self.headers;
        req
    }

    /// Everything a secret could hide in: header values and body.
    fn sent_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in self.headers.values() {
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(&self.body);
        out
    }
}

// ---------------------------------------------------------------------------------
// Target 1: cookies
// ---------------------------------------------------------------------------------

/// A cookie name: one the site reads (plain or `__Host-`), or any other.
#[derive(Debug, Clone)]
enum CookieName {
    Access,
    Refresh,
    PreSession,
    /// The secure names, which a plain-HTTP site must ignore.
    Host(&'static str),
    Other(Vec<u8>),
}

/// A cookie value: a real one (unchanged, to reach the valid paths next to garbage,
/// or mutated) or anything else.
#[derive(Debug, Clone)]
enum CookieValue {
    Access(Vec<Edit>),
    Refresh(Vec<Edit>),
    PreSession(Vec<Edit>),
    RealAccess,
    RealRefresh,
    RealPreSession,
    Bytes(Vec<u8>),
    Huge(u8, usize),
}

/// A whole `Cookie` header.
#[derive(Debug, Clone)]
enum CookieHeader {
    Pairs(Vec<(CookieName, CookieValue)>, &'static str),
    Raw(Vec<u8>),
    /// `count` cookies `c<i>=<i>`, then the real session.
    Many(usize),
}

/// Where a fuzzed cookie header goes.
#[derive(Debug, Clone, Copy)]
enum CookiePage {
    Home,
    Login,
    Account,
    /// `POST /login` with the anonymous visitor's CSRF token and wrong credentials.
    LoginPost,
}

fn cookie_name() -> impl Strategy<Value = CookieName> {
    prop_oneof![
        3 => Just(CookieName::Access),
        3 => Just(CookieName::Refresh),
        2 => Just(CookieName::PreSession),
        1 => prop::sample::select(vec![
            "__Host-access_token",
            "__Host-refresh_token",
            "__Host-pre_session",
        ])
        .prop_map(CookieName::Host),
        1 => header_text(20).prop_map(CookieName::Other),
    ]
}

fn cookie_value() -> impl Strategy<Value = CookieValue> {
    prop_oneof![
        3 => edits().prop_map(CookieValue::Access),
        3 => edits().prop_map(CookieValue::Refresh),
        2 => edits().prop_map(CookieValue::PreSession),
        1 => Just(CookieValue::RealAccess),
        1 => Just(CookieValue::RealRefresh),
        1 => Just(CookieValue::RealPreSession),
        3 => header_text(200).prop_map(CookieValue::Bytes),
        1 => (0x20u8..0x7f, 1usize..40_000).prop_map(|(b, n)| CookieValue::Huge(b, n)),
    ]
}

fn cookie_header() -> impl Strategy<Value = CookieHeader> {
    prop_oneof![
        6 => (
            prop::collection::vec((cookie_name(), cookie_value()), 0..6),
            prop::sample::select(vec!["; ", ";", " ; ", ",", ";;", "\t;"]),
        )
            .prop_map(|(pairs, sep)| CookieHeader::Pairs(pairs, sep)),
        2 => header_text(300).prop_map(CookieHeader::Raw),
        1 => (1usize..500).prop_map(CookieHeader::Many),
    ]
}

impl CookieHeader {
    fn bytes(&self, site: &Site) -> Vec<u8> {
        let account = site.account();
        match self {
            CookieHeader::Raw(raw) => raw.clone(),
            CookieHeader::Many(count) => {
                let mut s: String = (0..*count).map(|i| format!("c{i}={i}; ")).collect();
                s.push_str(&format!(
                    "access_token={}; refresh_token={}",
                    account.access, account.refresh
                ));
                s.into_bytes()
            }
            CookieHeader::Pairs(pairs, sep) => {
                let mut out = Vec::new();
                for (i, (name, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(sep.as_bytes());
                    }
                    out.extend_from_slice(match name {
                        CookieName::Access => b"access_token",
                        CookieName::Refresh => b"refresh_token",
                        CookieName::PreSession => b"pre_session",
                        CookieName::Host(n) => n.as_bytes(),
                        CookieName::Other(n) => n,
                    });
                    out.push(b'=');
                    out.extend(match value {
                        CookieValue::Access(e) => mutate(account.access.as_bytes(), e),
                        CookieValue::Refresh(e) => mutate(account.refresh.as_bytes(), e),
                        CookieValue::PreSession(e) => mutate(site.anon.pre_session.as_bytes(), e),
                        CookieValue::RealAccess => account.access.clone().into_bytes(),
                        CookieValue::RealRefresh => account.refresh.clone().into_bytes(),
                        CookieValue::RealPreSession => site.anon.pre_session.clone().into_bytes(),
                        CookieValue::Bytes(b) => b.clone(),
                        CookieValue::Huge(b, n) => vec![*b; *n],
                    });
                }
                out
            }
        }
    }
}

/// Cookie headers of every shape on the pages that read cookies. Beyond the common
/// checks: the account page is shown only to a request that carried the fixture's
/// real access or refresh token, and a form post passes the CSRF check only with the
/// real pre-session cookie.
#[test]
fn cookies() {
    let site = Site::new();
    let page = prop::sample::select(vec![
        CookiePage::Home,
        CookiePage::Login,
        CookiePage::Account,
        CookiePage::LoginPost,
    ]);
    let strategy = (
        page,
        cookie_header(),
        prop::option::weighted(0.2, cookie_header()),
    );
    fuzz("cookies", 1, strategy, |(page, first, second)| {
        let account = site.account();
        let mut call = match page {
            CookiePage::Home => Call::new(Method::GET, "/"),
            CookiePage::Login => Call::new(Method::GET, "/login"),
            CookiePage::Account => Call::new(Method::GET, "/account"),
            CookiePage::LoginPost => Call::new(Method::POST, "/login").form(
                format!(
                    "csrf={}&username=nobody&password=wrong-password",
                    site.anon.csrf
                )
                .into_bytes(),
            ),
        };
        for h in std::iter::once(&first).chain(second.as_ref()) {
            call = call.header(header::COOKIE, &h.bytes(&site));
        }
        let sent = call.sent_bytes();
        let has = |secret: &str| contains(&sent, secret);
        let real_session = has(&account.access) || has(&account.refresh);
        let real_pre_session = has(&site.anon.pre_session);
        site.run(call, |ans| {
            match page {
                CookiePage::Account if ans.status == StatusCode::OK => {
                    ensure!(real_session, "account page without the real tokens");
                }
                CookiePage::Account => ensure!(
                    ans.status == StatusCode::SEE_OTHER,
                    "account page answered {}",
                    ans.status
                ),
                CookiePage::LoginPost if ans.status != StatusCode::FORBIDDEN => ensure!(
                    real_pre_session || real_session,
                    "login form passed the CSRF check with {}",
                    ans.status
                ),
                _ => {}
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------
// Target 2: CSRF tokens
// ---------------------------------------------------------------------------------

/// A form route and who posts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormRoute {
    Login,
    Signup,
    Logout,
    Password,
    Revoke,
    LogoutAll,
    Delete,
}

impl FormRoute {
    const ALL: [FormRoute; 7] = [
        FormRoute::Login,
        FormRoute::Signup,
        FormRoute::Logout,
        FormRoute::Password,
        FormRoute::Revoke,
        FormRoute::LogoutAll,
        FormRoute::Delete,
    ];

    fn path(self, site: &Site) -> String {
        match self {
            FormRoute::Login => "/login".into(),
            FormRoute::Signup => "/signup".into(),
            FormRoute::Logout => "/logout".into(),
            FormRoute::Password => "/account/password".into(),
            FormRoute::Revoke => format!("/account/sessions/{}/revoke", site.account().session_id),
            FormRoute::LogoutAll => "/account/logout-all".into(),
            FormRoute::Delete => "/account/delete".into(),
        }
    }

    /// Whether a signed-in visitor posts it (else an anonymous one).
    fn signed_in(self) -> bool {
        !matches!(self, FormRoute::Login | FormRoute::Signup)
    }

    /// Fields that would make the action succeed.
    fn valid_fields(self, site: &Site) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self {
            FormRoute::Login => vec![
                ("username", site.account().username),
                ("password", PW.into()),
            ],
            FormRoute::Signup => vec![
                ("username", format!("new{}", site.users.get())),
                ("password", PW.into()),
            ],
            FormRoute::Password => vec![
                ("current_password", PW.into()),
                ("new_password", "another horse battery".into()),
            ],
            FormRoute::Delete => vec![("password", PW.into())],
            FormRoute::Logout | FormRoute::Revoke | FormRoute::LogoutAll => vec![],
        };
        pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
    }
}

/// The cookies of the visitor who posts `route`.
fn cookies_for(site: &Site, route: FormRoute) -> Vec<u8> {
    let a = site.account();
    if route.signed_in() {
        format!("access_token={}; refresh_token={}", a.access, a.refresh).into_bytes()
    } else {
        format!("pre_session={}", site.anon.pre_session).into_bytes()
    }
}

/// The real CSRF token of `route`'s visitor.
fn real_csrf(site: &Site, route: FormRoute) -> String {
    if route.signed_in() {
        site.account().csrf
    } else {
        site.anon.csrf.clone()
    }
}

/// What goes in the `csrf` field.
#[derive(Debug, Clone)]
enum CsrfChoice {
    Mutated(Vec<Edit>),
    /// The other visitor's real token (session token on an anonymous form and back).
    OtherBinding,
    Missing,
    Empty,
    /// A mutated token first, the real one second: only the first counts.
    MutatedThenReal(Vec<Edit>),
    /// The real token, in upper case.
    Uppercase,
}

/// A real CSRF token changed in every way, on every form, with otherwise valid fields:
/// always refused with 403 (or 400 when the change made the form non-UTF-8, 413 when
/// it made it too large), never acted on.
#[test]
fn csrf_tokens() {
    let choice = prop_oneof![
        6 => edits().prop_map(CsrfChoice::Mutated),
        1 => Just(CsrfChoice::OtherBinding),
        1 => Just(CsrfChoice::Missing),
        1 => Just(CsrfChoice::Empty),
        1 => edits().prop_map(CsrfChoice::MutatedThenReal),
        1 => Just(CsrfChoice::Uppercase),
    ];
    let site = Site::new();
    let strategy = (prop::sample::select(FormRoute::ALL.to_vec()), choice);
    fuzz("csrf_tokens", 2, strategy, |(route, choice)| {
        let real = real_csrf(&site, route);
        let other_route = if route.signed_in() {
            FormRoute::Login
        } else {
            FormRoute::Logout
        };
        let token = match &choice {
            CsrfChoice::Mutated(e) | CsrfChoice::MutatedThenReal(e) => {
                Some(mutate(real.as_bytes(), e))
            }
            CsrfChoice::OtherBinding => Some(real_csrf(&site, other_route).into_bytes()),
            CsrfChoice::Missing => None,
            CsrfChoice::Empty => Some(Vec::new()),
            CsrfChoice::Uppercase => Some(real.to_uppercase().into_bytes()),
        };
        let unchanged = token.as_deref() == Some(real.as_bytes());
        let utf8 = token
            .as_ref()
            .is_none_or(|t| std::str::from_utf8(t).is_ok());
        let mut parts = Vec::new();
        if let Some(t) = &token {
            parts.push(format!("csrf={}", form_encode(t)));
        }
        if let CsrfChoice::MutatedThenReal(_) = choice {
            parts.push(format!("csrf={real}"));
        }
        for (name, value) in route.valid_fields(&site) {
            parts.push(format!("{name}={}", form_encode(value.as_bytes())));
        }
        let body = parts.join("&").into_bytes();
        let too_large = body.len() > auth_web::DEFAULT_MAX_BODY_BYTES;
        let call = Call::new(Method::POST, route.path(&site))
            .form(body)
            .header(header::COOKIE, &cookies_for(&site, route));
        site.run(call, |ans| {
            if unchanged {
                return Ok(());
            }
            let expected = if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else if utf8 {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            ensure!(
                ans.status == expected,
                "{route:?} with a wrong token answered {}, not {expected}",
                ans.status
            );
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------
// Target 3: form bodies
// ---------------------------------------------------------------------------------

/// A `Content-Type` header.
#[derive(Debug, Clone)]
enum ContentType {
    Form,
    FormCharset,
    FormUpperCase,
    Json,
    Missing,
    Multipart,
    Other(Vec<u8>),
}

impl ContentType {
    fn bytes(&self) -> Option<Vec<u8>> {
        let fixed: &[u8] = match self {
            ContentType::Form => b"application/x-www-form-urlencoded",
            ContentType::FormCharset => b"application/x-www-form-urlencoded ; charset=UTF-8",
            ContentType::FormUpperCase => b"APPLICATION/X-WWW-FORM-URLENCODED",
            ContentType::Json => b"application/json",
            ContentType::Missing => return None,
            ContentType::Multipart => b"multipart/form-data; boundary=x",
            ContentType::Other(b) => b,
        };
        Some(fixed.to_vec())
    }
}

fn content_type(preferred: ContentType) -> impl Strategy<Value = ContentType> {
    prop_oneof![
        12 => Just(preferred),
        1 => Just(ContentType::Form),
        1 => Just(ContentType::FormCharset),
        1 => Just(ContentType::FormUpperCase),
        1 => Just(ContentType::Json),
        1 => Just(ContentType::Missing),
        1 => Just(ContentType::Multipart),
        1 => header_text(40).prop_map(ContentType::Other),
    ]
}

/// A form field's name or value.
#[derive(Debug, Clone)]
enum Component {
    /// A name the routes read.
    Known(&'static str),
    Text(String),
    /// Raw bytes, percent-encoded (non-UTF-8 included).
    Encoded(Vec<u8>),
    /// Raw bytes, not encoded at all (`&`, `=`, `%`, `+` and non-UTF-8 as they come).
    Raw(Vec<u8>),
    /// The fixture's password (so a valid delete or password change can happen).
    Password,
}

fn component() -> impl Strategy<Value = Component> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "csrf",
            "username",
            "password",
            "current_password",
            "new_password",
            "notice",
        ])
        .prop_map(Component::Known),
        3 => any_text().prop_map(Component::Text),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Component::Encoded),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Component::Raw),
        1 => Just(Component::Password),
    ]
}

impl Component {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Component::Known(n) => n.as_bytes().to_vec(),
            Component::Text(t) => form_encode(t.as_bytes()).into_bytes(),
            Component::Encoded(b) => form_encode(b).into_bytes(),
            Component::Raw(b) => b.clone(),
            Component::Password => PW.as_bytes().to_vec(),
        }
    }
}

/// A form body.
#[derive(Debug, Clone)]
enum FormBody {
    Arbitrary(Vec<u8>),
    /// The real CSRF token (or not) and fields of any kind.
    Fields(bool, Vec<(Component, Component)>),
    /// A valid body (real token, valid fields), mutated.
    Mutated(Vec<Edit>),
    /// A valid body padded past the size limit.
    Huge(usize),
}

fn form_body() -> impl Strategy<Value = FormBody> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(FormBody::Arbitrary),
        4 => (
            prop::bool::weighted(0.8),
            prop::collection::vec((component(), component()), 0..8)
        )
            .prop_map(|(csrf, fields)| FormBody::Fields(csrf, fields)),
        3 => edits().prop_map(FormBody::Mutated),
        1 => (1usize..40_000).prop_map(FormBody::Huge),
    ]
}

/// Every form route with bodies of every kind and content types right and wrong.
/// Beyond the common checks: a type other than form-urlencoded is a 415, and a body
/// over the limit a 413.
#[test]
fn form_bodies() {
    let site = Site::new();
    let strategy = (
        prop::sample::select(FormRoute::ALL.to_vec()),
        content_type(ContentType::Form),
        form_body(),
    );
    fuzz("form_bodies", 3, strategy, |(route, ctype, body)| {
        let real = real_csrf(&site, route);
        let valid = || {
            let mut parts = vec![format!("csrf={real}")];
            for (name, value) in route.valid_fields(&site) {
                parts.push(format!("{name}={}", form_encode(value.as_bytes())));
            }
            parts.join("&").into_bytes()
        };
        let bytes = match &body {
            FormBody::Arbitrary(b) => b.clone(),
            FormBody::Fields(csrf, fields) => {
                let mut out = Vec::new();
                if *csrf {
                    out.extend_from_slice(format!("csrf={real}").as_bytes());
                }
                for (name, value) in fields {
                    out.push(b'&');
                    out.extend(name.bytes());
                    out.push(b'=');
                    out.extend(value.bytes());
                }
                out
            }
            FormBody::Mutated(e) => mutate(&valid(), e),
            FormBody::Huge(extra) => {
                let mut v = valid();
                v.extend_from_slice(b"&pad=");
                v.resize(v.len() + auth_web::DEFAULT_MAX_BODY_BYTES + extra, b'a');
                v
            }
        };
        let mut call = Call::new(Method::POST, route.path(&site))
            .body(bytes)
            .header(header::COOKIE, &cookies_for(&site, route));
        if let Some(t) = ctype.bytes() {
            call = call.header(header::CONTENT_TYPE, &t);
        }
        // A type that lost its bytes to header filtering may have become a form type.
        let declared_form = call
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let too_large = call.body.len() > auth_web::DEFAULT_MAX_BODY_BYTES;
        site.run(call, |ans| {
            if !declared_form {
                ensure!(
                    ans.status == StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{ctype:?} answered {}",
                    ans.status
                );
            } else if too_large {
                ensure!(
                    ans.status == StatusCode::PAYLOAD_TOO_LARGE,
                    "a body over the limit answered {}",
                    ans.status
                );
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------
// Target 4: JSON bodies
// ---------------------------------------------------------------------------------

/// A JSON API route that takes a body.
#[derive(Debug, Clone, Copy)]
enum ApiRoute {
    Register,
    Login,
    Refresh,
    Logout,
}

impl ApiRoute {
    fn path(self) -> &'static str {
        match self {
            ApiRoute::Register => "/api/v1/register",
            ApiRoute::Login => "/api/v1/login",
            ApiRoute::Refresh => "/api/v1/refresh",
            ApiRoute::Logout => "/api/v1/logout",
        }
    }

    /// A body the route accepts.
    fn valid_body(self, site: &Site) -> serde_json::Value {
        let a = site.account();
        match self {
            ApiRoute::Register => serde_json::json!({"username": "someone", "password": PW}),
            ApiRoute::Login => serde_json::json!({"username": a.username, "password": PW}),
            ApiRoute::Refresh | ApiRoute::Logout => {
                serde_json::json!({"refresh_token": a.refresh})
            }
        }
    }
}

/// Any JSON value, with the field names the routes read among the keys.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text().prop_map(Value::String),
    ];
    let key = prop_oneof![
        3 => prop::sample::select(vec!["username", "password", "refresh_token", "access_token"])
            .prop_map(str::to_owned),
        1 => any_text(),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A JSON request body.
#[derive(Debug, Clone)]
enum JsonBody {
    Arbitrary(Vec<u8>),
    Value(serde_json::Value),
    /// The route's fields, each with a value of any type.
    WrongTypes(Vec<(&'static str, serde_json::Value)>),
    /// `depth` unclosed (or closed) brackets of one kind.
    Nested(usize, bool, bool),
    /// A valid body, mutated.
    Mutated(Vec<Edit>),
    /// A valid body with a string field padded to `len` bytes.
    Huge(usize),
    Empty,
}

fn json_body() -> impl Strategy<Value = JsonBody> {
    let field = prop::sample::select(vec!["username", "password", "refresh_token"]);
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..200).prop_map(JsonBody::Arbitrary),
        3 => json_value().prop_map(JsonBody::Value),
        3 => prop::collection::vec((field, json_value()), 0..4).prop_map(JsonBody::WrongTypes),
        1 => (1usize..20_000, any::<bool>(), any::<bool>())
            .prop_map(|(d, obj, closed)| JsonBody::Nested(d, obj, closed)),
        3 => edits().prop_map(JsonBody::Mutated),
        1 => (1usize..40_000).prop_map(JsonBody::Huge),
        1 => Just(JsonBody::Empty),
    ]
}

impl JsonBody {
    fn bytes(&self, route: ApiRoute, site: &Site) -> Vec<u8> {
        match self {
            JsonBody::Arbitrary(b) => b.clone(),
            JsonBody::Value(v) => v.to_string().into_bytes(),
            JsonBody::WrongTypes(fields) => {
                let map: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                serde_json::Value::Object(map).to_string().into_bytes()
            }
            JsonBody::Nested(depth, object, closed) => {
                let (open, close): (&[u8], &[u8]) = if *object {
                    (b"{\"username\":", b"}")
                } else {
                    (b"[", b"]")
                };
                let mut v = open.repeat(*depth);
                v.extend_from_slice(b"1");
                if *closed {
                    v.extend(close.repeat(*depth));
                }
                v
            }
            JsonBody::Mutated(e) => mutate(route.valid_body(site).to_string().as_bytes(), e),
            JsonBody::Huge(extra) => {
                let mut body = route.valid_body(site);
                let field = match route {
                    ApiRoute::Register | ApiRoute::Login => "password",
                    ApiRoute::Refresh | ApiRoute::Logout => "refresh_token",
                };
                body[field] = "x".repeat(auth_web::DEFAULT_MAX_BODY_BYTES + extra).into();
                body.to_string().into_bytes()
            }
            JsonBody::Empty => Vec::new(),
        }
    }
}

/// The JSON routes with bodies of every kind and content types right and wrong.
/// Beyond the common checks (every error JSON, with a known code): a type other than
/// JSON is a 415 (but for an empty logout without a type), a body over the limit a
/// 413 (for logout, whatever its type).
#[test]
fn json_bodies() {
    let site = Site::new();
    let route = prop::sample::select(vec![
        ApiRoute::Register,
        ApiRoute::Login,
        ApiRoute::Refresh,
        ApiRoute::Logout,
    ]);
    let strategy = (
        route,
        content_type(ContentType::Json),
        json_body(),
        prop::bool::weighted(0.2),
    );
    fuzz(
        "json_bodies",
        4,
        strategy,
        |(route, ctype, body, bearer)| {
            let bytes = body.bytes(route, &site);
            let empty = bytes.is_empty();
            let mut call = Call::new(Method::POST, route.path()).body(bytes);
            if let Some(t) = ctype.bytes() {
                call = call.header(header::CONTENT_TYPE, &t);
            }
            if bearer {
                let value = format!("Bearer {}", site.account().access);
                call = call.header(header::AUTHORIZATION, value.as_bytes());
            }
            let typed = call.headers.get(header::CONTENT_TYPE).cloned();
            let declared_json = typed
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
            let optional = matches!(route, ApiRoute::Logout) && empty && typed.is_none();
            let too_large = call.body.len() > auth_web::DEFAULT_MAX_BODY_BYTES;
            // `logout` reads its (optional) body before it looks at the type.
            let expected = match route {
                ApiRoute::Logout if too_large => Some(StatusCode::PAYLOAD_TOO_LARGE),
                _ if !declared_json && !optional => Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                _ if too_large => Some(StatusCode::PAYLOAD_TOO_LARGE),
                _ => None,
            };
            site.run(call, |ans| {
                if let Some(expected) = expected {
                    ensure!(
                        ans.status == expected,
                        "{ctype:?} answered {}, not {expected}",
                        ans.status
                    );
                }
                Ok(())
            })
        },
    );
}

// ---------------------------------------------------------------------------------
// Target 5: bearer tokens
// ---------------------------------------------------------------------------------

/// A token made from the fixture's real access token (a JWT: three base64url parts).
#[derive(Debug, Clone)]
enum TokenCase {
    Real,
    /// The token's characters edited.
    Mutated(Vec<Edit>),
    /// One part decoded, its bytes edited, encoded again (a well-formed JWT whose
    /// header, claims or signature changed).
    Part(Index, Vec<Edit>),
    /// The header replaced by `{"alg":"none"}` (or another algorithm), signature kept or
    /// dropped.
    Alg(&'static str, bool),
    /// Parts dropped, repeated or reordered.
    Parts(Vec<Index>),
    Arbitrary(Vec<u8>),
}

/// An `Authorization` header.
#[derive(Debug, Clone)]
enum Authorization {
    Missing,
    /// `<scheme><separator><token>`.
    Scheme(&'static str, &'static str, TokenCase),
    Raw(Vec<u8>),
}

fn token_case() -> impl Strategy<Value = TokenCase> {
    prop_oneof![
        1 => Just(TokenCase::Real),
        5 => edits().prop_map(TokenCase::Mutated),
        4 => (any::<Index>(), edits()).prop_map(|(i, e)| TokenCase::Part(i, e)),
        1 => (
            prop::sample::select(vec!["none", "HS256", "RS256", "ES256", "EdDSA", ""]),
            any::<bool>()
        )
            .prop_map(|(alg, sig)| TokenCase::Alg(alg, sig)),
        1 => prop::collection::vec(any::<Index>(), 0..5).prop_map(TokenCase::Parts),
        2 => header_text(400).prop_map(TokenCase::Arbitrary),
    ]
}

fn authorization() -> impl Strategy<Value = Authorization> {
    prop_oneof![
        1 => Just(Authorization::Missing),
        8 => (
            prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
            prop::sample::select(vec![" ", "  ", "\t", ""]),
            token_case(),
        )
            .prop_map(|(scheme, sep, token)| Authorization::Scheme(scheme, sep, token)),
        1 => header_text(200).prop_map(Authorization::Raw),
    ]
}

impl TokenCase {
    fn bytes(&self, real: &str) -> Vec<u8> {
        let parts: Vec<&str> = real.split('.').collect();
        match self {
            TokenCase::Real => real.as_bytes().to_vec(),
            TokenCase::Mutated(e) => mutate(real.as_bytes(), e),
            TokenCase::Part(i, e) => {
                let which = i.index(parts.len());
                let decoded = URL_SAFE_NO_PAD.decode(parts[which]).unwrap_or_default();
                let changed = URL_SAFE_NO_PAD.encode(mutate(&decoded, e));
                let mut out: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
                out[which] = changed;
                out.join(".").into_bytes()
            }
            TokenCase::Alg(alg, keep_signature) => {
                let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
                let signature = if *keep_signature { parts[2] } else { "" };
                format!("{header}.{}.{signature}", parts[1]).into_bytes()
            }
            TokenCase::Parts(picks) => picks
                .iter()
                .map(|i| parts[i.index(parts.len())])
                .collect::<Vec<_>>()
                .join(".")
                .into_bytes(),
            TokenCase::Arbitrary(b) => b.clone(),
        }
    }
}

/// `Authorization` headers of every shape on `GET /api/v1/me` and `POST
/// /api/v1/logout`. Beyond the common checks: `me` answers 200 only for the
/// fixture's own session, and otherwise 401 with a token error and
/// `WWW-Authenticate`.
#[test]
fn bearer_tokens() {
    let site = Site::new();
    let strategy = (any::<bool>(), authorization());
    fuzz("bearer_tokens", 5, strategy, |(me, auth)| {
        let account = site.account();
        let path = if me { "/api/v1/me" } else { "/api/v1/logout" };
        let method = if me { Method::GET } else { Method::POST };
        let mut call = Call::new(method, path);
        match &auth {
            Authorization::Missing => {}
            Authorization::Scheme(scheme, sep, token) => {
                let mut value = format!("{scheme}{sep}").into_bytes();
                value.extend(token.bytes(&account.access));
                call = call.header(header::AUTHORIZATION, &value);
            }
            Authorization::Raw(raw) => call = call.header(header::AUTHORIZATION, raw),
        }
        site.run(call, |ans| {
            if !me {
                return Ok(());
            }
            if ans.status == StatusCode::OK {
                let body = ans.json().unwrap_or_default();
                ensure!(
                    body["user_id"] == account.user_id.as_str()
                        && body["session_id"] == account.session_id.as_str(),
                    "a changed token stood for {body}"
                );
                return Ok(());
            }
            let code = ans.code().unwrap_or_default();
            ensure!(
                ans.status == StatusCode::UNAUTHORIZED
                    && ["invalid_token", "token_expired", "session_ended"].contains(&code.as_str())
                    && ans.headers.contains_key(header::WWW_AUTHENTICATE),
                "me answered {} {code}",
                ans.status
            );
            Ok(())
        })
    });
}
