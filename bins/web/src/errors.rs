//! The one place where errors meet HTTP: [`AuthError`] and the site's own failures
//! (bad input, CSRF, body too large, ...) become a status code plus a JSON body for the
//! API ([`ApiError`]) or an HTML page for the site ([`PageError`]).

use std::borrow::Cow;
use std::time::Duration;

use auth_core::AuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
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
    /// The form's CSRF token is missing or does not match the cookie.
    Csrf,
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
        AuthError::UserExists => StatusCode::CONFLICT,
        AuthError::InvalidCredentials
        | AuthError::InvalidToken
        | AuthError::TokenExpired
        | AuthError::SessionEnded
        | AuthError::RefreshTokenReused => StatusCode::UNAUTHORIZED,
        AuthError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
        AuthError::NotFound => StatusCode::NOT_FOUND,
        AuthError::Stopped | AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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

/// A message for people; for auth errors it is the error's text, except where that
/// would be unhelpful or reveal internals.
pub(crate) fn auth_message(e: &AuthError) -> String {
    match e {
        AuthError::Locked { retry_after } => format!(
            "Too many failed attempts. Try again in {} s.",
            retry_after_secs(*retry_after).max(1)
        ),
        AuthError::InvalidCredentials => "Wrong username or password.".into(),
        AuthError::UserExists => "That username is taken.".into(),
        AuthError::InvalidUsername(why) => format!("Invalid username: {why}."),
        AuthError::InvalidPassword(why) => format!("Invalid password: {why}."),
        AuthError::Stopped | AuthError::Unavailable(_) => {
            "The service is temporarily unavailable. Please try again shortly.".into()
        }
        AuthError::InvalidConfig(_) | AuthError::Internal(_) => "Something went wrong.".into(),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

impl WebError {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            WebError::Auth(e) => auth_status(e),
            WebError::BadRequest(_) | WebError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            WebError::Csrf => StatusCode::FORBIDDEN,
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
            WebError::Csrf => "csrf",
            WebError::PayloadTooLarge => "payload_too_large",
            WebError::UnsupportedMediaType(_) => "unsupported_media_type",
            WebError::NotFound => "not_found",
            WebError::SignIn(_) => "invalid_token",
            WebError::Render(_) => "internal",
        }
    }

    /// A message for people.
    pub(crate) fn message(&self) -> String {
        match self {
            WebError::Auth(e) => auth_message(e),
            WebError::BadRequest(m) => m.to_string(),
            WebError::InvalidJson(m) => format!("The body is not valid JSON for this route: {m}."),
            WebError::Csrf => {
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

    /// For a lockout, how long to wait.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            WebError::Auth(e) => e.retry_after(),
            _ => None,
        }
    }

    /// Logs server-side failures (never the user's input).
    fn log(&self) {
        match self {
            WebError::Auth(e) if auth_status(e).is_server_error() => {
                tracing::warn!(code = e.code(), error = %e, "auth backend error");
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
        let message = e.message();
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
        let e = self.0;
        if let WebError::SignIn(cookies) = e {
            return (cookies, Redirect::to("/login")).into_response();
        }
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
            Ok(html) => (status, Html(html)).into_response(),
            Err(err) => {
                tracing::error!(error = %err, "error page failed to render");
                (status, e.message()).into_response()
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
            (
                AuthError::Locked {
                    retry_after: Duration::from_secs(3),
                },
                429,
            ),
            (AuthError::NotFound, 404),
            (AuthError::Stopped, 503),
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

    #[test]
    fn internal_details_are_not_shown() {
        let e = WebError::Auth(AuthError::Internal("db row 42 corrupt".into()));
        assert!(!e.message().contains("42"));
        let e = WebError::Auth(AuthError::Unavailable("tcp connect error 10.0.0.1".into()));
        assert!(!e.message().contains("10.0.0.1"));
    }
}
