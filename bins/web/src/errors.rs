//! The one place where errors meet HTTP: [`AuthError`] and the site's own failures
//! (bad input, CSRF, body too large, ...) become a status code plus a JSON body for the
//! API ([`ApiError`]) or an HTML page for the site ([`PageError`]).

use std::borrow::Cow;
use std::time::Duration;

use auth_core::AuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::session::SetCookies;
use crate::templates::{self, ErrorPage};

/// Everything a request can fail with, before it is rendered for a surface.
#[derive(Debug)]
pub(crate) enum WebError {
    /// The auth operation failed.
    Auth(AuthError),
    /// A form or JSON field is missing or unusable (`invalid_argument`).
    BadRequest(Cow<'static, str>),
    /// The body is not the JSON the route expects.
    InvalidJson(String),
    /// The form's CSRF token is missing or not the visitor's, or the browser says the
    /// post comes from another origin. Carries cookies to send anyway (a token pair
    /// refreshed while finding out who the visitor is).
    Csrf(SetCookies),
    /// The body is larger than `WebConfig::max_body_bytes`.
    PayloadTooLarge,
    /// The body has the wrong `Content-Type`; the field says which one is expected.
    UnsupportedMediaType(&'static str),
    /// No such page or route.
    NotFound,
    /// The page needs a signed-in user: redirect to `/login`, applying these cookies
    /// (clearing stale ones).
    SignIn(SetCookies),
    /// A template failed to render (a bug).
    Render(askama::Error),
}

impl From<AuthError> for WebError {
    fn from(e: AuthError) -> Self {
        WebError::Auth(e)
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Render(e)
    }
}

/// The HTTP status for an auth error.
pub(crate) fn auth_status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::InvalidUsername(_)
        | AuthError::InvalidPassword(_)
        | AuthError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        AuthError::UserExists | AuthError::MfaConflict(_) => StatusCode::CONFLICT,
        AuthError::InvalidCode | AuthError::InvalidMfaTicket | AuthError::CeremonyExpired => {
            StatusCode::UNAUTHORIZED
        }
        AuthError::InvalidCredentials
        | AuthError::InvalidToken
        | AuthError::TokenExpired
        | AuthError::SessionEnded
        | AuthError::RefreshTokenReused => StatusCode::UNAUTHORIZED,
        AuthError::Locked { .. } | AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AuthError::PermissionDenied(_) | AuthError::AccountDisabled => StatusCode::FORBIDDEN,
        AuthError::NotFound => StatusCode::NOT_FOUND,
        AuthError::Stopped | AuthError::Unavailable(_) | AuthError::Overloaded { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// True for errors that mean "this token or session is no good" (as opposed to "the
/// service has a problem"): the visitor is treated as signed out.
pub(crate) fn is_session_error(e: &AuthError) -> bool {
    matches!(
        e,
        AuthError::InvalidToken
            | AuthError::TokenExpired
            | AuthError::SessionEnded
            | AuthError::RefreshTokenReused
            | AuthError::NotFound
            | AuthError::InvalidArgument(_)
    )
}

/// Whole seconds to wait, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `text` as a sentence: first letter upper case, a full stop at the end.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A message for people on the pages. Built only from fixed text and
/// [`AuthError::public_message`] (which carries the policy rule for invalid input),
/// never from the error's `Display`, which may hold internal detail.
pub(crate) fn auth_message(e: &AuthError) -> String {
    match e {
        AuthError::Locked { retry_after } => format!(
            "Too many failed attempts. Try again in {} s.",
            retry_after_secs(*retry_after).max(1)
        ),
        AuthError::RateLimited { retry_after } => format!(
            "Too many requests from your network. Try again in {} s.",
            retry_after_secs(*retry_after).max(1)
        ),
        AuthError::InvalidCredentials => "Wrong username or password.".into(),
        AuthError::UserExists => "That username is taken.".into(),
        AuthError::Stopped | AuthError::Unavailable(_) | AuthError::Overloaded { .. } => {
            "The service is temporarily unavailable. Please try again shortly.".into()
        }
        e if e.is_internal() => "Something went wrong.".into(),
        other => sentence(&other.public_message()),
    }
}

impl WebError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            WebError::Auth(e) => auth_status(e),
            WebError::BadRequest(_) | WebError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            WebError::Csrf(_) => StatusCode::FORBIDDEN,
            WebError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::SignIn(_) => StatusCode::UNAUTHORIZED,
            WebError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code (the `AuthError` code for auth errors).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            WebError::Auth(e) => e.code(),
            WebError::BadRequest(_) => "invalid_argument",
            WebError::InvalidJson(_) => "invalid_json",
            WebError::Csrf(_) => "csrf",
            WebError::PayloadTooLarge => "payload_too_large",
            WebError::UnsupportedMediaType(_) => "unsupported_media_type",
            WebError::NotFound => "not_found",
            WebError::SignIn(_) => "invalid_token",
            WebError::Render(_) => "internal",
        }
    }

    /// A message for people (see [`auth_message`]).
    pub(crate) fn message(&self) -> String {
        match self {
            WebError::Auth(e) => auth_message(e),
            WebError::BadRequest(m) => m.to_string(),
            WebError::InvalidJson(m) => format!("The body is not valid JSON for this route: {m}."),
            WebError::Csrf(_) => {
                "The form has expired or did not come from this site. Go back, reload the page and try again."
                    .into()
            }
            WebError::PayloadTooLarge => "The request body is too large.".into(),
            WebError::UnsupportedMediaType(expected) => {
                format!("The request body must be sent as {expected}.")
            }
            WebError::NotFound => "There is nothing here.".into(),
            WebError::SignIn(_) => "Please log in.".into(),
            WebError::Render(_) => "Something went wrong.".into(),
        }
    }

    /// For a lockout, a rate limit or an overload, how long to wait.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            WebError::Auth(e) => e.retry_after(),
            _ => None,
        }
    }

    /// Logs server-side failures (never the user's input). The detail of internal
    /// errors goes here and only here: responses carry the code and a fixed text.
    fn log(&self) {
        match self {
            WebError::Auth(e) if e.is_internal() => {
                tracing::warn!(code = e.code(), error = %e, "auth service error");
            }
            WebError::Auth(e @ (AuthError::Overloaded { .. } | AuthError::Stopped)) => {
                tracing::info!(code = e.code(), "auth service shed the request");
            }
            WebError::Render(e) => tracing::error!(error = %e, "template rendering failed"),
            _ => {}
        }
    }
}

/// Adds `Retry-After` (whole seconds, at least 1) when there is a wait.
pub(crate) fn with_retry_after(mut resp: Response, wait: Option<Duration>) -> Response {
    if let Some(d) = wait
        && let Ok(v) = HeaderValue::from_str(&retry_after_secs(d).max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// An error rendered as `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        // API clients get the same text as gRPC clients for auth errors.
        let message = match &e {
            WebError::Auth(auth) => auth.public_message().into_owned(),
            other => other.message(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: e.code(),
                message: &message,
            },
        };
        let mut resp = (e.status(), axum::Json(body)).into_response();
        if let WebError::Auth(
            AuthError::InvalidToken
            | AuthError::TokenExpired
            | AuthError::SessionEnded
            | AuthError::RefreshTokenReused,
        ) = &e
        {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        with_retry_after(resp, e.retry_after())
    }
}

/// An error rendered as an HTML page (or, for [`WebError::SignIn`], a redirect to
/// `/login`).
#[derive(Debug)]
pub(crate) struct PageError(pub(crate) WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut e = self.0;
        if let WebError::SignIn(cookies) = e {
            return (cookies, templates::redirect("/login")).into_response();
        }
        let cookies = match &mut e {
            WebError::Csrf(cookies) => std::mem::take(cookies),
            _ => SetCookies::default(),
        };
        e.log();
        let status = e.status();
        let page = ErrorPage {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            message: e.message(),
            nav: templates::Nav::default(),
            notice: None,
        };
        let resp = match askama::Template::render(&page) {
            Ok(html) => (status, cookies, Html(html)).into_response(),
            Err(err) => {
                tracing::error!(error = %err, "error page failed to render");
                (status, cookies, e.message()).into_response()
            }
        };
        with_retry_after(resp, e.retry_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_error_has_the_documented_status() {
        let cases = [
            (AuthError::InvalidUsername("too short".into()), 400),
            (AuthError::InvalidPassword("too short".into()), 400),
            (AuthError::InvalidArgument("x".into()), 400),
            (AuthError::UserExists, 409),
            (AuthError::InvalidCredentials, 401),
            (AuthError::InvalidToken, 401),
            (AuthError::TokenExpired, 401),
            (AuthError::SessionEnded, 401),
            (AuthError::RefreshTokenReused, 401),
            (AuthError::InvalidCode, 401),
            (AuthError::InvalidMfaTicket, 401),
            (AuthError::CeremonyExpired, 401),
            (AuthError::MfaConflict("x".into()), 409),
            (AuthError::PermissionDenied("x".into()), 403),
            (AuthError::AccountDisabled, 403),
            (
                AuthError::Locked {
                    retry_after: Duration::from_secs(3),
                },
                429,
            ),
            (
                AuthError::RateLimited {
                    retry_after: Duration::from_secs(3),
                },
                429,
            ),
            (AuthError::NotFound, 404),
            (AuthError::Stopped, 503),
            (
                AuthError::Overloaded {
                    retry_after: Duration::from_secs(3),
                },
                503,
            ),
            (AuthError::Unavailable("down".into()), 503),
            (AuthError::Internal("bug".into()), 500),
            (AuthError::InvalidConfig("bad".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(auth_status(&e).as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn lock_message_and_header_round_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
        let e = AuthError::Locked {
            retry_after: Duration::from_millis(29_001),
        };
        assert_eq!(
            auth_message(&e),
            "Too many failed attempts. Try again in 30 s."
        );
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "30");
    }

    async fn body_text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
    }

    /// Both surfaces, as the client sees them: (status, Retry-After, body).
    async fn rendered(e: AuthError) -> [(StatusCode, Option<String>, String); 2] {
        let mut out = Vec::new();
        for resp in [
            ApiError::from(e.clone()).into_response(),
            PageError::from(e.clone()).into_response(),
        ] {
            let status = resp.status();
            let wait = resp
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().expect("ASCII").to_owned());
            out.push((status, wait, body_text(resp).await));
        }
        out.try_into().expect("two surfaces")
    }

    #[tokio::test]
    async fn rate_limited_is_429_and_overloaded_503_with_retry_after_on_both_surfaces() {
        let limited = AuthError::RateLimited {
            retry_after: Duration::from_millis(4_200),
        };
        let [(status, wait, json), (page_status, page_wait, html)] = rendered(limited).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(page_status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(wait.as_deref(), Some("5"));
        assert_eq!(page_wait.as_deref(), Some("5"));
        let json: serde_json::Value = serde_json::from_str(&json).expect("JSON body");
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(json["error"]["message"], "too many requests; retry in 5s");
        assert!(html.contains("Try again in 5 s."), "{html}");

        let overloaded = AuthError::Overloaded {
            retry_after: Duration::from_secs(2),
        };
        let [(status, wait, json), (page_status, page_wait, html)] = rendered(overloaded).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page_status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(wait.as_deref(), Some("2"));
        assert_eq!(page_wait.as_deref(), Some("2"));
        let json: serde_json::Value = serde_json::from_str(&json).expect("JSON body");
        assert_eq!(json["error"]["code"], "overloaded");
        assert!(html.contains("temporarily unavailable"), "{html}");

        // Errors that do not wait carry no Retry-After.
        let [(_, wait, _), (_, page_wait, _)] = rendered(AuthError::Unavailable("x".into())).await;
        assert_eq!((wait, page_wait), (None, None));
    }

    #[tokio::test]
    async fn bodies_carry_the_public_message_never_the_internal_detail() {
        let secret_detail = "node 3 at 10.0.0.3:7001 said: row u-42 corrupt";
        for e in [
            AuthError::Internal(secret_detail.into()),
            AuthError::Unavailable(secret_detail.into()),
            AuthError::InvalidConfig(secret_detail.into()),
        ] {
            let code = e.code();
            let public = e.public_message().into_owned();
            let [(_, _, json), (_, _, html)] = rendered(e).await;
            for body in [&json, &html] {
                assert!(!body.contains("10.0.0.3"), "{body}");
                assert!(!body.contains("u-42"), "{body}");
            }
            let json: serde_json::Value = serde_json::from_str(&json).expect("JSON body");
            assert_eq!(json["error"]["code"], code);
            assert_eq!(json["error"]["message"], public.as_str());
        }
        // Policy errors keep their rule: it is what the user must fix.
        let e = AuthError::InvalidPassword("too short".into());
        assert_eq!(auth_message(&e), "Invalid password: too short.");
        let [(_, _, json), (_, _, html)] = rendered(e).await;
        assert!(json.contains("invalid password: too short"), "{json}");
        assert!(html.contains("Invalid password: too short."), "{html}");
    }

    #[test]
    fn internal_details_are_not_shown() {
        let e = WebError::Auth(AuthError::Internal("db row 42 corrupt".into()));
        assert!(!e.message().contains("42"));
        let e = WebError::Auth(AuthError::Unavailable("tcp connect error 10.0.0.1".into()));
        assert!(!e.message().contains("10.0.0.1"));
    }
}
