//! Throttling at the edge: logins, registrations and refreshes are drawn from the
//! client address's buckets ([`WebConfig::throttle`](crate::WebConfig::throttle))
//! *before* the call reaches the auth service. The service throttles too; doing it here
//! as well means a flood from one address is refused for the price of parsing its
//! request, not of a call to the backend for each refusal.
//!
//! A refusal is answered after [`WebConfig::refusal_delay`](crate::WebConfig::refusal_delay)
//! (at most its `Retry-After`), as HAProxy's tarpit does: the connection is held, idle,
//! instead of being handed straight back for the next request. An address that floods
//! over its (bounded) connections then gets one answer per connection per delay, and
//! the server's work for it drops accordingly; a person who hit the limit could not have
//! retried sooner anyway.

use auth_core::throttle::Action;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::client::ClientMeta;
use crate::errors::{ApiError, PageError};

/// The bucket a request draws from, by route.
fn action(method: &Method, path: &str) -> Option<Action> {
    if method != Method::POST {
        return None;
    }
    match path {
        "/api/v1/login" | "/login" => Some(Action::Login),
        "/api/v1/register" | "/signup" => Some(Action::Register),
        "/api/v1/refresh" => Some(Action::Refresh),
        _ => None,
    }
}

/// Refuses the request with `rate_limited` (429 + `Retry-After`) when its address's
/// bucket for the route is empty.
pub(crate) async fn throttle(
    State(state): State<AppState>,
    client: ClientMeta,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(throttle), Some(action)) =
        (&state.throttle, action(req.method(), req.uri().path()))
    {
        let ip = client.info().ip;
        if let Err(e) = throttle.check(action, Some(ip.as_str())) {
            let delay = e.retry_after().map_or(state.config.refusal_delay, |wait| {
                wait.min(state.config.refusal_delay)
            });
            tokio::time::sleep(delay).await;
            return if req.uri().path().starts_with("/api/") {
                ApiError::from(e).into_response()
            } else {
                PageError::from(e).into_response()
            };
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_costly_posts_are_throttled() {
        assert_eq!(action(&Method::POST, "/login"), Some(Action::Login));
        assert_eq!(action(&Method::POST, "/api/v1/login"), Some(Action::Login));
        assert_eq!(action(&Method::POST, "/signup"), Some(Action::Register));
        assert_eq!(
            action(&Method::POST, "/api/v1/refresh"),
            Some(Action::Refresh)
        );
        assert_eq!(action(&Method::GET, "/login"), None);
        assert_eq!(action(&Method::GET, "/api/v1/me"), None);
        assert_eq!(action(&Method::POST, "/logout"), None);
    }
}
