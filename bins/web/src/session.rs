//! The browser session: token cookies, and who the visitor is.
//!
//! The access token (a JWT) and the refresh token live in `HttpOnly`, `SameSite=Lax`,
//! `Path=/` cookies (`Secure` and `__Host-` prefixed when `secure_cookies` is on). A
//! page asks [`resolve`] who is signed in: the access token is verified (the core also
//! checks that the session is still live, so logout and revocation bite at once); if
//! it is missing or no longer valid, the refresh cookie is exchanged for a new pair and
//! the new cookies go out with the response. When neither works the visitor is signed
//! out and the stale cookies are cleared.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::AuthError;
use auth_core::api::{RefreshRequest, TokenPair, VerifyRequest, VerifyResponse};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponseParts, ResponseParts};
use axum_extra::extract::CookieJar;

use crate::AppState;
use crate::errors::{WebError, is_session_error};

/// Longest a token cookie is kept by the browser (the session's own expiry, checked
/// by the core, is what really ends it).
const MAX_COOKIE_AGE_SECS: i64 = 400 * 24 * 3600;

/// The cookie names in use (prefixed with `__Host-` when cookies are `Secure`).
#[derive(Debug, Clone)]
pub(crate) struct CookieNames {
    pub(crate) access: &'static str,
    pub(crate) refresh: &'static str,
    pub(crate) csrf: &'static str,
}

impl CookieNames {
    pub(crate) fn new(secure: bool) -> Self {
        if secure {
            Self {
                access: "__Host-access_token",
                refresh: "__Host-refresh_token",
                csrf: "__Host-csrf",
            }
        } else {
            Self {
                access: "access_token",
                refresh: "refresh_token",
                csrf: "csrf",
            }
        }
    }
}

/// The `SameSite` attribute of a cookie.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SameSite {
    /// Sent on top-level navigations from other sites (links), not on their forms.
    Lax,
    /// Sent only on requests from this site.
    Strict,
}

/// `Set-Cookie` headers to add to a response.
#[derive(Debug, Default)]
pub(crate) struct SetCookies(Vec<HeaderValue>);

impl SetCookies {
    /// Sets `name=value` for `max_age_secs` seconds (0 clears the cookie).
    pub(crate) fn set(
        &mut self,
        state: &AppState,
        name: &str,
        value: &str,
        max_age_secs: i64,
        same_site: SameSite,
    ) {
        let same_site = match same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        };
        let secure = if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let line = format!(
            "{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite={same_site}{secure}"
        );
        match HeaderValue::from_str(&line) {
            Ok(v) => self.0.push(v),
            // Tokens are URL-safe ASCII; anything else is a bug upstream, not worth a panic.
            Err(_) => tracing::error!(cookie = name, "unrepresentable cookie value dropped"),
        }
    }

    /// Stores a fresh token pair.
    pub(crate) fn tokens(&mut self, state: &AppState, tokens: &TokenPair) {
        let max_age = cookie_max_age(tokens.refresh_expires_at_ms);
        let names = &state.names;
        self.set(
            state,
            names.access,
            &tokens.access_token,
            max_age,
            SameSite::Lax,
        );
        self.set(
            state,
            names.refresh,
            &tokens.refresh_token,
            max_age,
            SameSite::Lax,
        );
    }

    /// Clears both token cookies.
    pub(crate) fn clear_tokens(&mut self, state: &AppState) {
        let names = &state.names;
        self.set(state, names.access, "", 0, SameSite::Lax);
        self.set(state, names.refresh, "", 0, SameSite::Lax);
    }
}

impl IntoResponseParts for SetCookies {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Infallible> {
        for v in self.0 {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        Ok(res)
    }
}

/// Seconds from now until `expires_at_ms`, within sane bounds.
fn cookie_max_age(expires_at_ms: i64) -> i64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (expires_at_ms.saturating_sub(now_ms) / 1000).clamp(60, MAX_COOKIE_AGE_SECS)
}

/// A signed-in visitor.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    /// Who, and which session.
    pub(crate) me: VerifyResponse,
    /// A valid access token for calls on their behalf.
    pub(crate) access_token: String,
}

/// Who is asking.
#[derive(Debug)]
pub(crate) enum Visitor {
    /// A valid session.
    SignedIn(SignedIn),
    /// Nobody. Token cookies that no longer work have been queued for clearing.
    Anonymous,
}

/// Works out who the visitor is from the token cookies, refreshing the access token if
/// it has expired or is missing. New or cleared cookies are added to `cookies`.
/// Fails only when the auth service itself fails (e.g. the backend is down).
pub(crate) async fn resolve(
    state: &AppState,
    jar: &CookieJar,
    cookies: &mut SetCookies,
) -> Result<Visitor, AuthError> {
    let access = jar.get(state.names.access).map(|c| c.value().to_owned());
    let refresh = jar.get(state.names.refresh).map(|c| c.value().to_owned());
    let had_cookies = access.is_some() || refresh.is_some();

    if let Some(access_token) = access.filter(|t| !t.is_empty()) {
        let req = VerifyRequest {
            access_token: access_token.clone(),
        };
        match state.api.verify(req).await {
            Ok(me) => return Ok(Visitor::SignedIn(SignedIn { me, access_token })),
            Err(e) if is_session_error(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(refresh_token) = refresh.filter(|t| !t.is_empty()) {
        match state
            .api
            .refresh(RefreshRequest {
                refresh_token,
                client: None,
            })
            .await
        {
            Ok(resp) => {
                if let Some(tokens) = resp.tokens {
                    let req = VerifyRequest {
                        access_token: tokens.access_token.clone(),
                    };
                    match state.api.verify(req).await {
                        Ok(me) => {
                            cookies.tokens(state, &tokens);
                            return Ok(Visitor::SignedIn(SignedIn {
                                me,
                                access_token: tokens.access_token,
                            }));
                        }
                        Err(e) if is_session_error(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if is_session_error(&e) || e == AuthError::InvalidCredentials => {}
            Err(e) => return Err(e),
        }
    }
    if had_cookies {
        cookies.clear_tokens(state);
    }
    Ok(Visitor::Anonymous)
}

/// Like [`resolve`], for pages that need a signed-in user: anyone else is sent to
/// `/login` (with stale cookies cleared).
pub(crate) async fn require(
    state: &AppState,
    jar: &CookieJar,
    cookies: &mut SetCookies,
) -> Result<SignedIn, WebError> {
    match resolve(state, jar, cookies).await? {
        Visitor::SignedIn(s) => Ok(s),
        Visitor::Anonymous => Err(WebError::SignIn(std::mem::take(cookies))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookies_use_the_host_prefix() {
        assert_eq!(CookieNames::new(true).access, "__Host-access_token");
        assert_eq!(CookieNames::new(true).csrf, "__Host-csrf");
        assert_eq!(CookieNames::new(false).refresh, "refresh_token");
    }

    #[test]
    fn cookie_lifetimes_are_bounded() {
        assert_eq!(cookie_max_age(0), 60);
        assert_eq!(cookie_max_age(i64::MAX), MAX_COOKIE_AGE_SECS);
    }
}
