//! CSRF protection for the HTML forms: tokens bound to the session, plus an origin
//! check.
//!
//! **Tokens.** Every form carries a hidden `csrf` field whose value is an HMAC-SHA-256,
//! under a server key ([`CsrfKey`](crate::CsrfKey)), of
//! - the session id, for a signed-in visitor: only a page rendered for *this* session
//!   can hold it, so a token from another session (another browser, another account,
//!   or this browser before it signed in) is refused;
//! - a random pre-session id, for an anonymous visitor (the log-in and sign-up forms):
//!   the id lives in its own `HttpOnly`, `SameSite=Strict` cookie (`pre_session`,
//!   `__Host-pre_session` when cookies are secure), made when a form is first shown
//!   and ended at login and logout.
//!
//! The token is recomputed from the request's own cookies and compared in constant
//! time. A cookie alone authorises nothing: there is no token cookie to plant, and the
//! session cookies cannot be forged. Signing in and signing out change what the token
//! is derived from, so tokens rotate at both.
//!
//! **Planted pre-session cookies.** Whoever can set a cookie for the site (a sibling
//! subdomain, a man in the middle of plain HTTP) could plant a pre-session id whose
//! token they know and post a login form with their own credentials (login CSRF).
//! With secure cookies the `__Host-` prefix stops that: browsers accept such cookies
//! only from this exact origin over HTTPS. In every mode, [`cross_origin`] also
//! refuses form posts that the browser marks as coming from elsewhere
//! (`Sec-Fetch-Site`, else `Origin`).
//!
//! The JSON API needs none of this: it takes `application/json` bodies (which a
//! cross-site form cannot send) and bearer tokens rather than cookies.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::config::{CsrfKey, PublicUrl};
use crate::session::{Browser, SameSite, SetCookies, SignedIn, Visitor};

/// Name of the hidden form field.
pub(crate) const FIELD: &str = "csrf";
/// Random bytes per pre-session id.
const ID_BYTES: usize = 32;
/// How long the pre-session cookie lives: a form left open for longer needs a reload.
const PRE_SESSION_MAX_AGE_SECS: i64 = 12 * 3600;
/// Separates the two kinds of token (and this use of the key from any other).
const SESSION_LABEL: &[u8] = b"auth-web csrf v1\0session\0";
const ANONYMOUS_LABEL: &[u8] = b"auth-web csrf v1\0pre-session\0";

/// What a form's token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding<'a> {
    /// A live session, by its id.
    Session(&'a str),
    /// An anonymous visitor, by the id in the pre-session cookie.
    PreSession(&'a str),
}

/// The token for `binding` under `key`: 43 URL-safe characters.
pub(crate) fn token(key: &CsrfKey, binding: Binding<'_>) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, binding))
}

fn mac(key: &CsrfKey, binding: Binding<'_>) -> [u8; 32] {
    let (label, id) = match binding {
        Binding::Session(id) => (SESSION_LABEL, id),
        Binding::PreSession(id) => (ANONYMOUS_LABEL, id),
    };
    // HMAC takes keys of any length; the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.bytes()) else {
        return [0; 32];
    };
    mac.update(label);
    mac.update(id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A new random pre-session id (43 URL-safe characters).
fn new_pre_session_id() -> String {
    let mut bytes = [0u8; ID_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// True if `s` looks like an id (or token) this module made.
fn well_formed(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The visitor's pre-session id, if the cookie holds a well-formed one.
fn pre_session_id(browser: &Browser) -> Option<&str> {
    browser
        .jar
        .get(browser.names.pre_session)
        .map(|c| c.value())
        .filter(|v| well_formed(v))
}

/// The token for the forms of a page rendered for signed-in `me`.
pub(crate) fn for_session(state: &AppState, me: &SignedIn) -> String {
    token(&state.csrf_key, Binding::Session(&me.me.session_id))
}

/// The token for the forms of a page rendered for an anonymous visitor. The
/// pre-session cookie is kept if there is one (several open tabs keep working) or
/// made, and (re)set either way.
pub(crate) fn for_anonymous(
    state: &AppState,
    browser: &Browser,
    cookies: &mut SetCookies,
) -> String {
    let id = pre_session_id(browser).map_or_else(new_pre_session_id, str::to_owned);
    cookies.set(
        &browser.names,
        browser.names.pre_session,
        &id,
        PRE_SESSION_MAX_AGE_SECS,
        SameSite::Strict,
    );
    token(&state.csrf_key, Binding::PreSession(&id))
}

/// Ends the pre-session (at login and logout): tokens minted for it stop working even
/// if the browser keeps a copy of the old cookie.
pub(crate) fn end_pre_session(browser: &Browser, cookies: &mut SetCookies) {
    if browser.jar.get(browser.names.pre_session).is_some() {
        cookies.set(
            &browser.names,
            browser.names.pre_session,
            "",
            0,
            SameSite::Strict,
        );
    }
}

/// True if `submitted` is the token for this request's own session (signed in) or
/// pre-session cookie (anonymous); the comparison takes the same time wherever they
/// differ. Anonymous requests without a pre-session cookie are refused.
pub(crate) fn verify(
    state: &AppState,
    browser: &Browser,
    visitor: &Visitor,
    submitted: Option<&str>,
) -> bool {
    let Some(submitted) = submitted.filter(|s| !s.is_empty()) else {
        return false;
    };
    let binding = match visitor {
        Visitor::SignedIn(s) => Binding::Session(&s.me.session_id),
        Visitor::Anonymous => match pre_session_id(browser) {
            Some(id) => Binding::PreSession(id),
            None => return false,
        },
    };
    let expected = token(&state.csrf_key, binding);
    bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// True if the browser says this request comes from another origin: `Sec-Fetch-Site`
/// other than `same-origin` (or `none`, a user's own navigation), or, from browsers
/// that do not send it, an `Origin` other than the site's ([`WebConfig::public_url`],
/// else the `Host` header). Requests with neither header (not from a browser, or a
/// very old one) pass: the token still has to match.
///
/// [`WebConfig::public_url`]: crate::WebConfig::public_url
pub(crate) fn cross_origin(public_url: Option<&PublicUrl>, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    match public_url {
        Some(url) => !origin.eq_ignore_ascii_case(url.origin()),
        None => {
            // Without a configured URL the scheme is unknown (a proxy may terminate
            // TLS): compare the host and port with the `Host` the browser sent.
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            match (origin_host, host) {
                (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
                _ => true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CsrfKey {
        CsrfKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn tokens_depend_on_key_kind_and_id() {
        let k = key(1);
        let a = token(&k, Binding::Session("s-1"));
        assert!(well_formed(&a), "{a}");
        assert_eq!(a, token(&k, Binding::Session("s-1")), "deterministic");
        assert_ne!(a, token(&k, Binding::Session("s-2")));
        assert_ne!(a, token(&k, Binding::PreSession("s-1")));
        assert_ne!(a, token(&key(2), Binding::Session("s-1")));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, axum::http::HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn cross_origin_posts_are_recognised() {
        let site = "site.test:8080";
        let url: PublicUrl = "https://login.example.com".parse().unwrap();
        let same = [
            vec![],
            vec![("sec-fetch-site", "same-origin"), ("host", site)],
            vec![("sec-fetch-site", "none")],
            vec![("origin", "http://site.test:8080"), ("host", site)],
            vec![("origin", "https://SITE.test:8080"), ("host", site)],
        ];
        for h in same {
            assert!(!cross_origin(None, &headers(&h)), "{h:?}");
        }
        let cross = [
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://site.test:8080"),
                ("host", site),
            ],
            // A sibling subdomain is the same *site*, not the same origin.
            vec![("sec-fetch-site", "same-site"), ("host", site)],
            vec![("origin", "http://evil.test"), ("host", site)],
            vec![("origin", "http://site.test:8081"), ("host", site)],
            vec![("origin", "null"), ("host", site)],
            vec![("origin", "http://site.test:8080")],
        ];
        for h in cross {
            assert!(cross_origin(None, &headers(&h)), "{h:?}");
        }
        // With a public URL, the scheme counts and the Host header does not.
        let ok = headers(&[
            ("origin", "https://login.example.com"),
            ("host", "internal:80"),
        ]);
        assert!(!cross_origin(Some(&url), &ok));
        let plain = headers(&[
            ("origin", "http://login.example.com"),
            ("host", "login.example.com"),
        ]);
        assert!(cross_origin(Some(&url), &plain));
    }

    #[test]
    fn pre_session_ids_are_random_and_well_formed() {
        let a = new_pre_session_id();
        let b = new_pre_session_id();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}=", &a[..42])));
    }
}
