//! Protecting your own axum routes: an [`AuthUser`] extractor, its optional form
//! (`Option<AuthUser>`), and a tower layer that requires a signed-in user for a whole
//! router.
//!
//! An [`Authenticator`] says how callers are checked:
//!
//! - [`Authenticator::new`] over any `Arc<dyn AuthApi>` (an embedded [`auth_core::Auth`]
//!   or a `RemoteAuth` to a cluster): the token's signature **and** its session are
//!   checked, so a logout takes effect at once. Browsers signed in on the site (its
//!   cookies) stay signed in: an expired access cookie is refreshed and the new cookies
//!   go out with your response.
//! - [`Authenticator::stateless`] over an [`auth_core::Verifier`]: public keys only,
//!   no call to the auth service. A revoked session is only noticed when its access
//!   token expires (see [`auth_core::verifier`]), and expired cookies are not refreshed.
//!
//! Callers are identified by `Authorization: Bearer <access token>`, else by the site's
//! access and refresh cookies. A bearer token that does not verify is refused (also by
//! `Option<AuthUser>`); it is never passed over for the cookies. A state-changing
//! request (not `GET`, `HEAD`, `OPTIONS`) authenticated by cookies is refused (`403
//! csrf`) when the browser marks it as coming from another origin (`Sec-Fetch-Site`,
//! else `Origin`), so other sites, sibling subdomains included, cannot make a visitor's
//! browser act on your routes; bearer tokens are not sent by browsers on their own and
//! need no such check.
//!
//! Add [`Authenticator::layer`] to the router whose handlers take [`AuthUser`] or
//! `Option<AuthUser>`, or [`Authenticator::require`] to refuse anonymous requests before
//! they reach a handler. Refusals are `401` with `WWW-Authenticate: Bearer` (RFC 6750)
//! and the JSON error body of the site's API: `unauthenticated` when no credential was
//! sent, else the core's code (`invalid_token`, `token_expired`, `session_ended`); `503`
//! when the auth service is unavailable.
//!
//! ```no_run
//! use std::sync::Arc;
//! use auth_core::{Auth, Config};
//! use auth_storage::memory::MemoryStorage;
//! use auth_web::protect::{AuthUser, Authenticator};
//! use auth_web::WebConfig;
//! use axum::{Router, routing::get};
//!
//! async fn private(user: AuthUser) -> String {
//!     format!("hello {}", user.username)
//! }
//!
//! async fn home(user: Option<AuthUser>) -> String {
//!     match user {
//!         Some(user) => format!("signed in as {}", user.username),
//!         None => "hello, stranger".into(),
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = Auth::new(Config::default(), MemoryStorage::new())?;
//! auth.start()?;
//! let api: Arc<dyn auth_core::AuthApi> = Arc::new(auth);
//! let config = WebConfig::default();
//! let authenticator = Authenticator::new(api.clone(), &config);
//!
//! let app = Router::new()
//!     .route("/", get(home))
//!     .route("/private", get(private))
//!     // Sign-up, login and account pages, with links and redirects under /auth.
//!     .nest("/auth", auth_web::router(api, config.clone()))
//!     .layer(authenticator.layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! auth_web::serve(listener, app, &config, async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use auth_core::api::VerifyRequest;
use auth_core::{AuthApi, AuthError, Verifier};
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tower::{Layer, Service};

use crate::config::WebConfig;
use crate::errors::{ApiError, WebError, is_session_error};
use crate::session::{Browser, SetCookies, Visitor, resolve_with};

/// The signed-in user of a request. `Debug` shows no token.
///
/// As an extractor it needs [`Authenticator::layer`] (or
/// [`require`](Authenticator::require)) on the router; without a signed-in user it
/// rejects the request with an [`AuthRejection`]. `Option<AuthUser>` gives `None`
/// instead when no credential was sent, and still refuses a bad bearer token (401) or
/// fails when the auth service cannot be reached (503).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthUser {
    /// The user's id (the token's `sub`).
    pub user_id: String,
    /// The username.
    pub username: String,
    /// The session the token belongs to (`sid`).
    pub session_id: String,
    /// When the access token expires (unix milliseconds).
    pub expires_at_ms: i64,
    /// The roles the token carries (its `roles` claim): the user's roles when the
    /// session opened. Revoking a role ends the user's sessions, so through the
    /// `AuthApi` (which checks the session) a revoked role is gone at once; a
    /// stateless [`Verifier`] sees it until the token expires.
    pub roles: Vec<String>,
}

impl AuthUser {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl std::fmt::Debug for AuthUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUser")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("session_id", &self.session_id)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A role a route can require with [`RequireRole`]: [`Admin`], or an application's
/// own:
///
/// ```
/// use auth_web::protect::{RequireRole, Role};
///
/// struct Billing;
/// impl Role for Billing {
///     const NAME: &'static str = "billing";
/// }
///
/// async fn invoices(RequireRole(user, ..): RequireRole<Billing>) -> String {
///     format!("invoices for {}", user.username)
/// }
/// ```
pub trait Role: Send + Sync + 'static {
    /// The role's name, as granted (`authctl admin grant USER NAME`).
    const NAME: &'static str;
}

/// The `admin` role.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl Role for Admin {
    const NAME: &'static str = auth_core::admin::ADMIN_ROLE;
}

/// An [`AuthUser`] whose token carries role `R`. Without a credential: `401` as
/// for [`AuthUser`]; signed in without the role: `403` with code
/// `permission_denied`.
pub struct RequireRole<R: Role>(pub AuthUser, pub std::marker::PhantomData<R>);

impl<R: Role> std::fmt::Debug for RequireRole<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequireRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

impl<S: Send + Sync, R: Role> FromRequestParts<S> for RequireRole<R> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthRejection> {
        let user = <AuthUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if user.has_role(R::NAME) {
            Ok(RequireRole(user, std::marker::PhantomData))
        } else {
            Err(AuthRejection::Auth(AuthError::PermissionDenied(
                format!("the {} role is required", R::NAME).into(),
            )))
        }
    }
}

/// Why a request was refused. Renders as `401` (with `WWW-Authenticate: Bearer`),
/// `503` when the auth service is unavailable, or `500` when no
/// [`Authenticator::layer`] is installed (a bug in the application).
#[derive(Debug)]
pub enum AuthRejection {
    /// No credential was sent (or the site's cookies no longer work).
    Unauthenticated,
    /// A credential was sent and refused, or checking it failed: the core's error.
    Auth(AuthError),
    /// A state-changing request (not `GET`, `HEAD` or `OPTIONS`) authenticated by the
    /// site's cookies that the browser marks as coming from another origin
    /// (`Sec-Fetch-Site`, else `Origin`): refused as cross-site request forgery.
    CrossOrigin,
    /// The router has no [`Authenticator::layer`].
    MissingLayer,
}

impl AuthRejection {
    /// The stable error code of the response body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthRejection::Unauthenticated => "unauthenticated",
            AuthRejection::Auth(e) if is_session_error(e) => session_code(e),
            AuthRejection::Auth(e) => e.code(),
            AuthRejection::CrossOrigin => "csrf",
            AuthRejection::MissingLayer => "internal",
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Unauthenticated => {
                let body = serde_json::json!({
                    "error": {"code": "unauthenticated", "message": "Sign in to continue."}
                });
                let challenge = HeaderValue::from_static("Bearer realm=\"auth-sdk\"");
                let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
                resp
            }
            // Whatever the core said about a token that is no good, the caller gets a
            // 401 with a challenge (never a 404 or 400 for a credential).
            AuthRejection::Auth(e) if is_session_error(&e) => {
                let e = match session_code(&e) {
                    "invalid_token" => AuthError::InvalidToken,
                    _ => e,
                };
                ApiError(WebError::Auth(e)).into_response()
            }
            AuthRejection::Auth(e) => ApiError(WebError::Auth(e)).into_response(),
            AuthRejection::CrossOrigin => {
                ApiError(WebError::Csrf(SetCookies::default())).into_response()
            }
            AuthRejection::MissingLayer => {
                tracing::error!("AuthUser extracted on a router without Authenticator::layer()");
                let e = AuthError::Internal("Authenticator::layer() is not installed".into());
                ApiError(WebError::Auth(e)).into_response()
            }
        }
    }
}

/// The code of a session error as the caller sees it: anything but an expired token,
/// an ended session or a reused refresh token is `invalid_token`.
fn session_code(e: &AuthError) -> &'static str {
    match e {
        AuthError::TokenExpired | AuthError::SessionEnded | AuthError::RefreshTokenReused => {
            e.code()
        }
        _ => "invalid_token",
    }
}

/// How tokens are checked.
enum Check {
    /// Through the auth service: signature and live session; cookies are refreshed.
    Api(Arc<dyn AuthApi>),
    /// From public keys only.
    Stateless(Box<Verifier>),
}

struct Inner {
    check: Check,
    config: WebConfig,
}

/// Checks who is calling: see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Authenticator(Arc<Inner>);

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let check = match self.0.check {
            Check::Api(_) => "auth service",
            Check::Stateless(_) => "stateless",
        };
        f.debug_struct("Authenticator")
            .field("check", &check)
            .finish()
    }
}

impl Authenticator {
    /// Checks tokens through `api`: signature, expiry and that the session is still
    /// live. `config` is the site's ([`crate::router`]): it names the cookies (secure or
    /// not) and the trusted proxies whose `X-Forwarded-For` is believed when a refresh
    /// records the client's address.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use auth_core::{Auth, AuthApi, Config};
    /// use auth_storage::memory::MemoryStorage;
    /// use auth_web::{WebConfig, protect::Authenticator};
    ///
    /// let auth = Auth::new(Config::default(), MemoryStorage::new()).unwrap();
    /// let api: Arc<dyn AuthApi> = Arc::new(auth);
    /// let authenticator = Authenticator::new(api, &WebConfig::default());
    /// ```
    pub fn new(api: Arc<dyn AuthApi>, config: &WebConfig) -> Self {
        Self(Arc::new(Inner {
            check: Check::Api(api),
            config: config.clone(),
        }))
    }

    /// Checks tokens with `verifier` alone: no storage, no network call per request,
    /// and no notice of logouts until the token expires.
    ///
    /// ```
    /// use auth_core::{KeyRing, SigningKey, Verifier};
    /// use auth_web::{WebConfig, protect::Authenticator};
    ///
    /// // In practice: Verifier::from_url("https://login.example.com/.well-known/jwks.json")
    /// let jwks = KeyRing::new(SigningKey::generate_ed25519()).jwks();
    /// let verifier = Verifier::from_jwks(&jwks).unwrap();
    /// let authenticator = Authenticator::stateless(verifier, &WebConfig::default());
    /// ```
    pub fn stateless(verifier: Verifier, config: &WebConfig) -> Self {
        Self(Arc::new(Inner {
            check: Check::Stateless(Box::new(verifier)),
            config: config.clone(),
        }))
    }

    /// A layer that lets the handlers below take [`AuthUser`] or `Option<AuthUser>`,
    /// and sends the cookies of a refreshed session with their responses.
    ///
    /// ```
    /// # use auth_core::{KeyRing, SigningKey, Verifier};
    /// # use auth_web::{WebConfig, protect::Authenticator};
    /// # let verifier = Verifier::from_jwks(&KeyRing::new(SigningKey::generate_ed25519()).jwks()).unwrap();
    /// # let authenticator = Authenticator::stateless(verifier, &WebConfig::default());
    /// use auth_web::protect::AuthUser;
    /// use axum::{Router, routing::get};
    ///
    /// async fn me(user: AuthUser) -> String { user.username }
    /// async fn home(user: Option<AuthUser>) -> &'static str {
    ///     if user.is_some() { "welcome back" } else { "hello" }
    /// }
    /// let app: Router = Router::new()
    ///     .route("/", get(home))
    ///     .route("/me", get(me))
    ///     .layer(authenticator.layer());
    /// ```
    pub fn layer(&self) -> AuthLayer {
        AuthLayer {
            auth: self.clone(),
            required: false,
        }
    }

    /// Like [`layer`](Self::layer), and refuses every request without a signed-in user
    /// with an [`AuthRejection`] before it reaches a handler.
    ///
    /// ```
    /// # use auth_core::{KeyRing, SigningKey, Verifier};
    /// # use auth_web::{WebConfig, protect::Authenticator};
    /// # let verifier = Verifier::from_jwks(&KeyRing::new(SigningKey::generate_ed25519()).jwks()).unwrap();
    /// # let authenticator = Authenticator::stateless(verifier, &WebConfig::default());
    /// use axum::{Router, routing::get};
    ///
    /// // Every route of `admin` needs a signed-in caller; the rest of the app does not.
    /// let admin = Router::new()
    ///     .route("/admin/stats", get(|| async { "42" }))
    ///     .layer(authenticator.require());
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "public" }))
    ///     .merge(admin);
    /// ```
    pub fn require(&self) -> AuthLayer {
        AuthLayer {
            auth: self.clone(),
            required: true,
        }
    }

    /// Who sent the request with these parts: `Ok(None)` for nobody (no credential, or
    /// site cookies that no longer work), an error for a bearer token that does not
    /// verify or an auth service that cannot be reached. Cookies to send back (a
    /// refreshed pair, or stale ones cleared) are added to `cookies`.
    async fn identify(
        &self,
        parts: &Parts,
        cookies: &mut SetCookies,
    ) -> Result<Option<AuthUser>, AuthRejection> {
        if let Some(token) = crate::api::bearer(&parts.headers) {
            return self
                .check_token(token)
                .await
                .map(Some)
                .map_err(AuthRejection::Auth);
        }
        let browser = Browser::from_parts(parts, &self.0.config);
        let has_cookies = browser.cookie(browser.names.access).is_some()
            || browser.cookie(browser.names.refresh).is_some();
        // Cookies ride along on requests other sites make the browser send: a request
        // that changes state must come from our own origin.
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let public_url = self.0.config.public_url.as_ref();
        if has_cookies && !safe && crate::csrf::cross_origin(public_url, &parts.headers) {
            return Err(AuthRejection::CrossOrigin);
        }
        self.user_of_cookies(&browser, cookies)
            .await
            .map_err(AuthRejection::Auth)
    }

    /// The user of the site's cookies, if they still work.
    async fn user_of_cookies(
        &self,
        browser: &Browser,
        cookies: &mut SetCookies,
    ) -> Result<Option<AuthUser>, AuthError> {
        match &self.0.check {
            Check::Api(api) => match resolve_with(&**api, browser, cookies).await? {
                Visitor::SignedIn(s) => Ok(Some(AuthUser::from(s.me))),
                Visitor::Anonymous => Ok(None),
            },
            Check::Stateless(verifier) => {
                let Some(token) = browser.cookie(browser.names.access) else {
                    return Ok(None);
                };
                match verifier.verify(&token).await {
                    Ok(claims) => Ok(Some(AuthUser::from(claims))),
                    // The site refreshes it on the next page it serves.
                    Err(e) if is_session_error(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Checks one access token.
    async fn check_token(&self, access_token: String) -> Result<AuthUser, AuthError> {
        match &self.0.check {
            Check::Api(api) => {
                let me = api.verify(VerifyRequest { access_token }).await?;
                Ok(AuthUser::from(me))
            }
            Check::Stateless(verifier) => verifier.verify(&access_token).await.map(AuthUser::from),
        }
    }
}

impl From<auth_core::api::VerifyResponse> for AuthUser {
    fn from(me: auth_core::api::VerifyResponse) -> Self {
        Self {
            user_id: me.user_id,
            username: me.username,
            session_id: me.session_id,
            expires_at_ms: me.expires_at_ms,
            roles: me.roles,
        }
    }
}

impl From<auth_core::Claims> for AuthUser {
    fn from(c: auth_core::Claims) -> Self {
        Self {
            user_id: c.sub,
            username: c.name,
            session_id: c.sid,
            expires_at_ms: c.exp.saturating_mul(1000),
            roles: c.roles,
        }
    }
}

/// What [`AuthLayer`] leaves in a request for the extractors.
#[derive(Clone)]
struct Installed {
    auth: Authenticator,
    /// Cookies to add to the response (shared with the layer, which sends them).
    cookies: Arc<Mutex<SetCookies>>,
}

/// The outcome of identifying a request, kept so that several extractors in one
/// handler ask the auth service once.
#[derive(Clone)]
struct Identified(Option<AuthUser>);

impl Installed {
    async fn identify(&self, parts: &mut Parts) -> Result<Option<AuthUser>, AuthRejection> {
        if let Some(Identified(user)) = parts.extensions.get::<Identified>() {
            return Ok(user.clone());
        }
        let mut cookies = SetCookies::default();
        let identified = self.auth.identify(parts, &mut cookies).await;
        // Cookies go out whatever the outcome (a refreshed pair, stale ones cleared).
        *self.cookies.lock() = cookies;
        let user = identified?;
        parts.extensions.insert(Identified(user.clone()));
        Ok(user)
    }

    /// The layer's state in a request's extensions.
    fn of(parts: &Parts) -> Result<Self, AuthRejection> {
        parts
            .extensions
            .get::<Installed>()
            .cloned()
            .ok_or(AuthRejection::MissingLayer)
    }

    /// Adds the queued cookies to `resp`.
    fn send_cookies(&self, resp: &mut Response) {
        let cookies = std::mem::take(&mut *self.cookies.lock());
        cookies.append_to(resp.headers_mut());
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AuthRejection> {
        Installed::of(parts)?
            .identify(parts)
            .await?
            .ok_or(AuthRejection::Unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthUser {
    type Rejection = AuthRejection;

    /// `None` when no credential was sent or the site's cookies no longer work; a
    /// bearer token that does not verify is still refused (so an API client learns to
    /// refresh it).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, AuthRejection> {
        Installed::of(parts)?.identify(parts).await
    }
}

/// The tower layer of [`Authenticator::layer`] and [`Authenticator::require`].
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Authenticator,
    required: bool,
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around a router or route.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, S::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone is the one that is not ready; take the ready one (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let installed = Installed {
            auth: self.layer.auth.clone(),
            cookies: Arc::default(),
        };
        let required = self.layer.required;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(installed.clone());
            let refused = match required {
                true => match installed.identify(&mut parts).await {
                    Ok(Some(_)) => None,
                    Ok(None) => Some(AuthRejection::Unauthenticated),
                    Err(rejection) => Some(rejection),
                },
                false => None,
            };
            let mut resp = match refused {
                Some(rejection) => rejection.into_response(),
                None => inner.call(Request::from_parts(parts, body)).await?,
            };
            installed.send_cookies(&mut resp);
            Ok(resp)
        })
    }
}
