//! CSRF protection for the HTML forms: the double-submit cookie pattern.
//!
//! Every page that renders a form sets a random token in the `csrf` cookie (`HttpOnly`,
//! `SameSite=Strict`, `__Host-csrf` when cookies are `Secure`) and echoes it in a hidden
//! `csrf` field. A form POST is accepted only if the field equals the cookie, compared
//! in constant time. Another site can neither read nor set the cookie, so it cannot
//! fill in the field (and with `SameSite=Strict` the browser does not even send the
//! cookie along with a cross-site request).
//!
//! The JSON API needs none of this: it takes `application/json` bodies (which a
//! cross-site form cannot send) and bearer tokens rather than cookies.

use axum_extra::extract::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::session::{SameSite, SetCookies};

/// Name of the hidden form field.
pub(crate) const FIELD: &str = "csrf";
/// Random bytes per token.
const TOKEN_BYTES: usize = 32;
/// How long the cookie lives: a form left open for longer needs a reload.
const COOKIE_MAX_AGE_SECS: i64 = 12 * 3600;

/// A new random token (43 URL-safe characters).
fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// True if `s` looks like a token this module made.
fn well_formed(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token to put in this page's forms: the visitor's current one if it is well
/// formed (so several open tabs keep working), a new one otherwise. The cookie is
/// (re)set either way.
pub(crate) fn token_for_page(
    state: &AppState,
    jar: &CookieJar,
    cookies: &mut SetCookies,
) -> String {
    let token = jar
        .get(state.names.csrf)
        .map(|c| c.value())
        .filter(|v| well_formed(v))
        .map_or_else(new_token, str::to_owned);
    cookies.set(
        state,
        state.names.csrf,
        &token,
        COOKIE_MAX_AGE_SECS,
        SameSite::Strict,
    );
    token
}

/// True if the submitted field matches the cookie. Both must be present and non-empty;
/// the comparison takes the same time wherever they differ.
pub(crate) fn verify(state: &AppState, jar: &CookieJar, submitted: Option<&str>) -> bool {
    let Some(cookie) = jar.get(state.names.csrf) else {
        return false;
    };
    let Some(submitted) = submitted else {
        return false;
    };
    let cookie = cookie.value().as_bytes();
    !cookie.is_empty() && bool::from(cookie.ct_eq(submitted.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}=", &a[..42])));
    }
}
