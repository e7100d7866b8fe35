//! Request extractors that apply the site's input rules: form and JSON bodies with
//! content-type, size, UTF-8 and CSRF checks. Every bad input becomes a typed
//! [`WebError`], never a panic.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::csrf;
use crate::errors::{ApiError, PageError, WebError};
use crate::session::{Browser, SetCookies, Visitor, resolve};

/// True if the `Content-Type` is `expected` (parameters such as `charset` allowed).
fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// The whole body, within `WebConfig::max_body_bytes`.
async fn read_body(req: Request, state: &AppState) -> Result<Bytes, WebError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = u64::try_from(state.config.max_body_bytes).unwrap_or(u64::MAX);
    if declared.is_some_and(|len| len > limit) {
        return Err(WebError::PayloadTooLarge);
    }
    // `DefaultBodyLimit` (set in `router`) caps bodies without a length, too.
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::PayloadTooLarge
        } else {
            WebError::BadRequest("The request body could not be read.".into())
        }
    })
}

/// The decoded fields of an `application/x-www-form-urlencoded` body.
#[derive(Default)]
pub(crate) struct FormData(Vec<(String, String)>);

impl FormData {
    /// Decodes `a=1&b=x+y%21`. Bytes that are not UTF-8 after percent-decoding are an
    /// error, not silently replaced.
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, WebError> {
        let mut fields = Vec::new();
        for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Self(fields))
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or a message saying it is missing (`label` names it for
    /// people).
    pub(crate) fn required(&self, name: &str, label: &str) -> Result<&str, String> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("{label} is required.")),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one form component (`+` is a space); a `%` not followed by two hex
/// digits stays as it is, as browsers do.
fn decode(raw: &[u8]) -> Result<String, WebError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = raw
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .zip(raw.get(i + 2).copied().and_then(hex));
                match pair {
                    Some((hi, lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        WebError::BadRequest(Cow::Borrowed(
            "The form contains bytes that are not valid UTF-8.",
        ))
    })
}

/// A form POST that passed the CSRF checks: `application/x-www-form-urlencoded`
/// (else 415), not marked cross-origin by the browser (else 403), within the size limit
/// (else 413), valid UTF-8 (else 400), with a `csrf` field that is the token of the
/// visitor's own session or pre-session (else 403). See `csrf.rs`.
///
/// It carries who the visitor turned out to be, so handlers do not ask the auth
/// service again.
pub(crate) struct CsrfForm {
    pub(crate) form: FormData,
    pub(crate) browser: Browser,
    pub(crate) visitor: Visitor,
    /// Cookies to send back whatever the handler does: a refreshed token pair, or stale
    /// ones cleared.
    pub(crate) cookies: SetCookies,
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        if !content_type_is(req.headers(), "application/x-www-form-urlencoded") {
            return Err(WebError::UnsupportedMediaType("application/x-www-form-urlencoded").into());
        }
        let (mut parts, body) = req.into_parts();
        let browser = match Browser::from_request_parts(&mut parts, state).await {
            Ok(b) => b,
            Err(never) => match never {},
        };
        // Cheap, and before anything is asked of the auth service.
        if csrf::cross_origin(state.config.public_url.as_ref(), &parts.headers) {
            return Err(WebError::Csrf(SetCookies::default()).into());
        }
        let body = read_body(Request::from_parts(parts, body), state).await?;
        let form = FormData::parse(&body)?;
        let mut cookies = SetCookies::default();
        let visitor = resolve(state, &browser, &mut cookies).await?;
        if !csrf::verify(state, &browser, &visitor, form.get(csrf::FIELD)) {
            // A refreshed token pair must still reach the browser: its old refresh
            // token is spent.
            return Err(WebError::Csrf(cookies).into());
        }
        Ok(Self {
            form,
            browser,
            visitor,
            cookies,
        })
    }
}

/// A JSON body: `application/json` (else 415), within the size limit (else 413), that
/// parses as `T` (else 400).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(WebError::UnsupportedMediaType("application/json").into());
        }
        let body = read_body(req, state).await?;
        parse_json(&body).map(JsonBody).map_err(ApiError)
    }
}

/// Parses a JSON body; a well-formed document of the wrong shape (e.g. a missing
/// field) is `invalid_argument`, anything else `invalid_json`.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => WebError::BadRequest(e.to_string().into()),
        _ => WebError::InvalidJson(e.to_string()),
    })
}

/// A body that may be empty (then `None`); if not, it must be JSON as for [`JsonBody`].
pub(crate) struct OptionalJson<T>(pub(crate) Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = content_type_is(req.headers(), "application/json");
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let body = read_body(req, state).await?;
        if body.is_empty() && !has_type {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(WebError::UnsupportedMediaType("application/json").into());
        }
        parse_json(&body).map(|v| Self(Some(v))).map_err(ApiError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_send_them() {
        let f = FormData::parse(b"csrf=abc&username=J%C3%BCrgen+K&password=a%2Bb%&empty=&flag")
            .unwrap();
        assert_eq!(f.get("username"), Some("Jürgen K"));
        assert_eq!(f.get("password"), Some("a+b%"));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.get("missing"), None);
        assert!(f.required("empty", "Empty").is_err());
        assert_eq!(f.required("csrf", "Token"), Ok("abc"));
    }

    #[test]
    fn non_utf8_forms_are_rejected() {
        assert!(FormData::parse(b"username=%FF%FE").is_err());
        assert!(FormData::parse(b"username=\xff").is_err());
        assert!(FormData::parse(b"%C3=x").is_err());
    }

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Creds {
            username: String,
        }
        assert_eq!(
            parse_json::<Creds>(b"{}").err().map(|e| e.code()),
            Some("invalid_argument")
        );
        assert_eq!(
            parse_json::<Creds>(b"{").err().map(|e| e.code()),
            Some("invalid_json")
        );
        assert_eq!(
            parse_json::<Creds>(b"\xff").err().map(|e| e.code()),
            Some("invalid_json")
        );
    }
}
