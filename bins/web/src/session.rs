//! The browser session: token cookies, and who the visitor is.
//!
//! The access token (a JWT) and the refresh token live in `HttpOnly`, `SameSite=Lax`,
//! `Path=/` cookies (`Secure` and `__Host-` prefixed when the site is reached over
//! HTTPS: see [`CookieNames`] and `WebConfig`). A
//! page asks [`resolve`] who is signed in: the access token is verified (the core also
//! checks that the session is still live, so logout and revocation bite at once); if
//! it is missing or no longer valid, the refresh cookie is exchanged for a new pair and
//! the new cookies go out with the response. When neither works the visitor is signed
//! out and the stale cookies are cleared.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::api::{RefreshRequest, TokenPair, VerifyRequest, VerifyResponse};
use auth_core::{AuthApi, AuthError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponseParts, ResponseParts};
use axum_extra::extract::CookieJar;

use crate::AppState;
use crate::client::ClientMeta;
use crate::config::WebConfig;
use crate::errors::{WebError, is_session_error};
use crate::tls::ServedOverTls;

/// Longest a token cookie is kept by the browser (the session's own expiry, checked
/// by the core, is what really ends it).
const MAX_COOKIE_AGE_SECS: i64 = 400 * 24 * 3600;

/// The cookie names of a request, and whether its cookies are `Secure` (then the names
/// carry the `__Host-` prefix, which browsers honour only for cookies set over HTTPS by
/// this exact origin, so a sibling subdomain or a plain-HTTP attacker cannot plant them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieNames {
    pub(crate) access: &'static str,
    pub(crate) refresh: &'static str,
    /// The anonymous visitor's id that CSRF tokens are bound to (see `csrf.rs`).
    pub(crate) pre_session: &'static str,
    /// The MFA ticket between a login's password and its second step.
    pub(crate) mfa_ticket: &'static str,
    pub(crate) secure: bool,
}

impl CookieNames {
    /// Names for plain-HTTP development.
    pub(crate) const PLAIN: CookieNames = CookieNames {
        access: "access_token",
        refresh: "refresh_token",
        pre_session: "pre_session",
        mfa_ticket: "mfa_ticket",
        secure: false,
    };
    /// Names for a site reached over HTTPS.
    pub(crate) const SECURE: CookieNames = CookieNames {
        access: "__Host-access_token",
        refresh: "__Host-refresh_token",
        pre_session: "__Host-pre_session",
        mfa_ticket: "__Host-mfa_ticket",
        secure: true,
    };
}

/// The browser behind a request: its cookies, the names they go by on this request,
/// and where it is. `Debug` shows cookie names, never their values (tokens).
#[derive(Clone)]
pub(crate) struct Browser {
    pub(crate) jar: CookieJar,
    pub(crate) names: CookieNames,
    pub(crate) client: ClientMeta,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cookies: Vec<&str> = self.jar.iter().map(|c| c.name()).collect();
        f.debug_struct("Browser")
            .field("cookies", &cookies)
            .field("names", &self.names)
            .field("client", &self.client)
            .finish()
    }
}

impl Browser {
    /// The non-empty value of cookie `name`.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .get(name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty())
    }
}

impl Browser {
    /// The browser behind a request to a site configured with `config`.
    pub(crate) fn from_parts(parts: &Parts, config: &WebConfig) -> Self {
        let over_tls = parts.extensions.get::<ServedOverTls>().is_some();
        let names = if over_tls || config.always_secure() {
            CookieNames::SECURE
        } else {
            CookieNames::PLAIN
        };
        Self {
            jar: CookieJar::from_headers(&parts.headers),
            names,
            client: ClientMeta::from_parts(parts, &config.trusted_proxies),
        }
    }
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(Self::from_parts(parts, &state.config))
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

/// `Set-Cookie` headers to add to a response. `Debug` shows only the cookie names.
#[derive(Default, Clone)]
pub(crate) struct SetCookies(Vec<HeaderValue>);

impl std::fmt::Debug for SetCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.0.iter().map(|line| {
            let line = line.as_bytes();
            let end = line.iter().position(|&b| b == b'=').unwrap_or(line.len());
            String::from_utf8_lossy(&line[..end]).into_owned()
        });
        f.debug_tuple("SetCookies")
            .field(&names.collect::<Vec<_>>())
            .finish()
    }
}

impl SetCookies {
    /// Sets `name=value` for `max_age_secs` seconds (0 clears the cookie), `Secure` if
    /// `names` says so.
    pub(crate) fn set(
        &mut self,
        names: &CookieNames,
        name: &str,
        value: &str,
        max_age_secs: i64,
        same_site: SameSite,
    ) {
        let same_site = match same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        };
        let secure = if names.secure { "; Secure" } else { "" };
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
    pub(crate) fn tokens(&mut self, names: &CookieNames, tokens: &TokenPair) {
        let max_age = cookie_max_age(tokens.refresh_expires_at_ms);
        let access = &tokens.access_token;
        self.set(names, names.access, access, max_age, SameSite::Lax);
        let refresh = &tokens.refresh_token;
        self.set(names, names.refresh, refresh, max_age, SameSite::Lax);
    }

    /// Keeps a login's MFA ticket until its second step (`SameSite=Strict`: only this
    /// site's own form sends it).
    pub(crate) fn mfa_ticket(&mut self, names: &CookieNames, ticket: &str, max_age_secs: i64) {
        self.set(
            names,
            names.mfa_ticket,
            ticket,
            max_age_secs,
            SameSite::Strict,
        );
    }

    /// Clears both token cookies.
    pub(crate) fn clear_tokens(&mut self, names: &CookieNames) {
        self.set(names, names.access, "", 0, SameSite::Lax);
        self.set(names, names.refresh, "", 0, SameSite::Lax);
    }
}

impl SetCookies {
    /// Adds the cookies to `headers`.
    pub(crate) fn append_to(self, headers: &mut axum::http::HeaderMap) {
        for v in self.0 {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

impl IntoResponseParts for SetCookies {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Infallible> {
        self.append_to(res.headers_mut());
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

/// A signed-in visitor. `Debug` leaves the access token out.
#[derive(Clone)]
pub(crate) struct SignedIn {
    /// Who, and which session.
    pub(crate) me: VerifyResponse,
    /// A valid access token for calls on their behalf.
    pub(crate) access_token: String,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("username", &self.me.username)
            .field("session_id", &self.me.session_id)
            .finish_non_exhaustive()
    }
}

/// Who is asking.
#[derive(Debug)]
pub(crate) enum Visitor {
    /// A valid session (boxed: the verified claims are large beside `Anonymous`).
    SignedIn(Box<SignedIn>),
    /// Nobody. Token cookies that no longer work have been queued for clearing.
    Anonymous,
}

/// Works out who the visitor is from the token cookies, refreshing the access token if
/// it has expired or is missing. New or cleared cookies are added to `cookies`.
/// Fails only when the auth service itself fails (e.g. the backend is down).
pub(crate) async fn resolve(
    state: &AppState,
    browser: &Browser,
    cookies: &mut SetCookies,
) -> Result<Visitor, AuthError> {
    resolve_with(&*state.api, browser, cookies).await
}

/// [`resolve`] against any auth service.
pub(crate) async fn resolve_with(
    api: &dyn AuthApi,
    browser: &Browser,
    cookies: &mut SetCookies,
) -> Result<Visitor, AuthError> {
    let names = &browser.names;
    let access = browser.cookie(names.access);
    let refresh = browser.cookie(names.refresh);
    let had_cookies =
        browser.jar.get(names.access).is_some() || browser.jar.get(names.refresh).is_some();

    if let Some(access_token) = access {
        let req = VerifyRequest {
            access_token: access_token.clone(),
        };
        match api.verify(req).await {
            Ok(me) => return Ok(Visitor::SignedIn(Box::new(SignedIn { me, access_token }))),
            Err(e) if is_session_error(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(refresh_token) = refresh {
        let req = RefreshRequest {
            refresh_token,
            client: Some(browser.client.info()),
        };
        match api.refresh(req).await {
            Ok(resp) => {
                if let Some(tokens) = resp.tokens {
                    // The old refresh token is spent: the new pair must reach the
                    // browser whatever happens next, or the session is lost to reuse
                    // detection once the grace window closes.
                    cookies.tokens(names, &tokens);
                    let req = VerifyRequest {
                        access_token: tokens.access_token.clone(),
                    };
                    match api.verify(req).await {
                        Ok(me) => {
                            return Ok(Visitor::SignedIn(Box::new(SignedIn {
                                me,
                                access_token: tokens.access_token,
                            })));
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
        cookies.clear_tokens(names);
    }
    Ok(Visitor::Anonymous)
}

/// The signed-in user of `visitor`; anyone else is sent to `/login` (with `cookies`,
/// which clear stale ones).
pub(crate) fn signed_in(visitor: Visitor, cookies: &mut SetCookies) -> Result<SignedIn, WebError> {
    match visitor {
        Visitor::SignedIn(s) => Ok(*s),
        Visitor::Anonymous => Err(WebError::SignIn(std::mem::take(cookies))),
    }
}

/// Like [`resolve`], for pages that need a signed-in user (see [`signed_in`]).
pub(crate) async fn require(
    state: &AppState,
    browser: &Browser,
    cookies: &mut SetCookies,
) -> Result<SignedIn, WebError> {
    let visitor = resolve(state, browser, cookies).await?;
    signed_in(visitor, cookies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookies_use_the_host_prefix() {
        let secure = CookieNames::SECURE;
        for name in [
            secure.access,
            secure.refresh,
            secure.pre_session,
            secure.mfa_ticket,
        ] {
            assert!(name.starts_with("__Host-"), "{name}");
        }
        assert!(secure.secure && !CookieNames::PLAIN.secure);
        assert_eq!(CookieNames::PLAIN.refresh, "refresh_token");
        let mut cookies = SetCookies::default();
        cookies.set(&secure, secure.pre_session, "x", 60, SameSite::Strict);
        cookies.set(&CookieNames::PLAIN, "pre_session", "y", 60, SameSite::Lax);
        assert_eq!(
            cookies.0[0],
            "__Host-pre_session=x; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            cookies.0[1],
            "pre_session=y; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn debug_output_holds_no_token() {
        let secret = "eyJ.secret-token.sig";
        let mut cookies = SetCookies::default();
        cookies.set(
            &CookieNames::PLAIN,
            "access_token",
            secret,
            60,
            SameSite::Lax,
        );
        let shown = format!("{cookies:?}");
        assert!(
            shown.contains("access_token") && !shown.contains(secret),
            "{shown}"
        );

        let mut headers = axum::http::HeaderMap::new();
        let cookie = format!("access_token={secret}; pre_session=abc");
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        let browser = Browser {
            jar: CookieJar::from_headers(&headers),
            names: CookieNames::PLAIN,
            client: ClientMeta::default(),
        };
        let shown = format!("{browser:?}");
        assert!(
            shown.contains("access_token") && !shown.contains(secret),
            "{shown}"
        );
        assert!(!shown.contains("abc"), "{shown}");

        let signed_in = SignedIn {
            me: VerifyResponse {
                username: "amy".into(),
                ..VerifyResponse::default()
            },
            access_token: secret.into(),
        };
        let shown = format!("{:?}", Visitor::SignedIn(Box::new(signed_in)));
        assert!(shown.contains("amy") && !shown.contains(secret), "{shown}");
    }

    #[test]
    fn cookie_lifetimes_are_bounded() {
        assert_eq!(cookie_max_age(0), 60);
        assert_eq!(cookie_max_age(i64::MAX), MAX_COOKIE_AGE_SECS);
    }
}
