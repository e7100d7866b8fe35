//! The account's security page: second factors. TOTP enrolment (a QR code rendered
//! here as SVG, no JavaScript), its confirmation (recovery codes shown once), removal
//! and new recovery codes. Every form is CSRF-checked and needs a signed-in user; the
//! ones that remove or replace a factor need a current code as well.

use askama::Template;
use auth_core::AuthError;
use auth_core::api::{
    MfaStatusRequest, PasskeyRegisterFinishRequest, PasskeyRegisterStartRequest,
    PasskeyRemoveRequest, PasskeyRenameRequest, RegenerateRecoveryCodesRequest, TotpConfirmRequest,
    TotpDisableRequest, TotpEnrollRequest,
};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::AppState;
use crate::csrf;
use crate::errors::{ApiError, WebError, auth_message, auth_status, with_retry_after};
use crate::extract::CsrfForm;
use crate::pages::{PageResult, html, notice};
use crate::session::{Browser, SetCookies, SignedIn, require, signed_in};
use crate::templates::{Nav, format_time, redirect};

/// Longest `otpauth://` URI echoed back by the confirmation form.
const MAX_URI_BYTES: usize = 512;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/security", get(show))
        .route("/account/security/totp/enroll", post(enroll))
        .route("/account/security/totp/confirm", post(confirm))
        .route("/account/security/totp/disable", post(disable))
        .route("/account/security/recovery-codes", post(recovery_codes))
        .route("/account/security/passkeys/start", post(passkey_start))
        .route("/account/security/passkeys", post(passkey_register))
        .route(
            "/account/security/passkeys/{id}/rename",
            post(passkey_rename),
        )
        .route(
            "/account/security/passkeys/{id}/remove",
            post(passkey_remove),
        )
}

/// One registered passkey, as listed.
pub(crate) struct PasskeyRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) created: String,
    pub(crate) last_used: String,
}

/// `GET /account/security`.
#[derive(Template)]
#[template(path = "security.html")]
pub(crate) struct SecurityPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) csrf: String,
    pub(crate) totp_enabled: bool,
    pub(crate) recovery_codes_left: u32,
    pub(crate) passkeys: Vec<PasskeyRow>,
    pub(crate) error: Option<String>,
}

/// After "Set up": the QR code, the secret, and the confirmation form.
#[derive(Template)]
#[template(path = "totp_enroll.html")]
pub(crate) struct EnrollPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) csrf: String,
    /// The QR code, an inline `<svg>` we rendered (nothing user-supplied in it).
    pub(crate) qr_svg: String,
    /// The secret in groups of four, for typing in.
    pub(crate) secret: String,
    pub(crate) otpauth_uri: String,
    pub(crate) error: Option<String>,
}

/// Recovery codes, shown once.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub(crate) struct RecoveryCodesPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) codes: Vec<String>,
}

/// `uri` as a QR code: an `<svg>` element to inline (no XML declaration).
pub(crate) fn qr_svg(uri: &str) -> Result<String, WebError> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|_| WebError::BadRequest("that enrolment link cannot be shown".into()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// The secret of an `otpauth://` URI, grouped by four for reading.
fn grouped_secret(uri: &str) -> String {
    let secret = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap_or_default();
    secret
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect::<Vec<_>>()
        .join(" ")
}

fn nav(me: &SignedIn, csrf: &str) -> Nav {
    Nav {
        user: Some(me.me.username.clone()),
        csrf: csrf.to_owned(),
        ..Nav::default()
    }
}

/// Renders the security page, with `error` shown on it.
async fn render(
    state: &AppState,
    cookies: SetCookies,
    me: &SignedIn,
    notice: Option<&'static str>,
    error: Option<(AuthError, StatusCode)>,
) -> PageResult {
    let status = state
        .api
        .mfa_status(MfaStatusRequest {
            access_token: me.access_token.clone(),
        })
        .await
        .map_err(|e| session_or(e, &cookies))?;
    let csrf = csrf::for_session(state, me);
    let (message, code, wait) = match error {
        Some((e, code)) => (Some(auth_message(&e)), code, e.retry_after()),
        None => (None, StatusCode::OK, None),
    };
    let page = SecurityPage {
        title: "Security".into(),
        nav: nav(me, &csrf),
        notice,
        csrf,
        totp_enabled: status.totp_enabled,
        recovery_codes_left: status.recovery_codes_left,
        passkeys: status
            .passkeys
            .iter()
            .map(|p| PasskeyRow {
                id: p.credential_id.clone(),
                name: p.name.clone(),
                created: format_time(p.created_at_ms),
                last_used: format_time(p.last_used_at_ms),
            })
            .collect(),
        error: message,
    };
    Ok(with_retry_after(
        (cookies, html(code, &page)?).into_response(),
        wait,
    ))
}

/// A failed call: to `/login` if the session is gone, else the error as it is.
fn session_or(e: AuthError, cookies: &SetCookies) -> WebError {
    match e {
        AuthError::InvalidToken | AuthError::TokenExpired | AuthError::SessionEnded => {
            WebError::SignIn(cookies.clone())
        }
        e => e.into(),
    }
}

/// A failed form: shown on the security page when the visitor can fix it.
async fn failed(state: &AppState, cookies: SetCookies, me: &SignedIn, e: AuthError) -> PageResult {
    let status = auth_status(&e);
    if !status.is_client_error() || matches!(e, AuthError::InvalidToken | AuthError::SessionEnded) {
        return Err(session_or(e, &cookies).into());
    }
    render(state, cookies, me, None, Some((e, status))).await
}

async fn show(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    let mut cookies = SetCookies::default();
    let me = require(&state, &browser, &mut cookies).await?;
    render(&state, cookies, &me, notice(&uri), None).await
}

/// Renders the enrolment page for `uri`.
fn enroll_page(
    state: &AppState,
    cookies: SetCookies,
    me: &SignedIn,
    uri: String,
    error: Option<AuthError>,
) -> PageResult {
    let csrf = csrf::for_session(state, me);
    let status = error.as_ref().map_or(StatusCode::OK, auth_status);
    let wait = error.as_ref().and_then(AuthError::retry_after);
    let page = EnrollPage {
        title: "Set up an authenticator app".into(),
        nav: nav(me, &csrf),
        notice: None,
        csrf,
        qr_svg: qr_svg(&uri)?,
        secret: grouped_secret(&uri),
        otpauth_uri: uri,
        error: error.as_ref().map(auth_message),
    };
    Ok(with_retry_after(
        (cookies, html(status, &page)?).into_response(),
        wait,
    ))
}

async fn enroll(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let req = TotpEnrollRequest {
        access_token: me.access_token.clone(),
    };
    match state.api.totp_enroll(req).await {
        Ok(r) => enroll_page(&state, cookies, &me, r.otpauth_uri, None),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

/// The recovery codes page.
fn codes_page(
    cookies: SetCookies,
    me: &SignedIn,
    state: &AppState,
    codes: Vec<String>,
) -> PageResult {
    let csrf = csrf::for_session(state, me);
    let page = RecoveryCodesPage {
        title: "Your recovery codes".into(),
        nav: nav(me, &csrf),
        notice: None,
        codes,
    };
    Ok((cookies, html(StatusCode::OK, &page)?).into_response())
}

async fn confirm(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let code = post.form.get("code").unwrap_or_default().to_owned();
    // The URI the enrolment page showed, to show it again after a wrong code.
    let uri = post
        .form
        .get("otpauth_uri")
        .filter(|u| u.starts_with("otpauth://totp/") && u.len() <= MAX_URI_BYTES)
        .map(str::to_owned);
    let req = TotpConfirmRequest {
        access_token: me.access_token.clone(),
        code,
        client: Some(client),
    };
    match state.api.totp_confirm(req).await {
        // Recovery codes come with the first factor only.
        Ok(r) if r.recovery_codes.is_empty() => {
            Ok((cookies, redirect("/account/security?notice=totp_enabled")).into_response())
        }
        Ok(r) => codes_page(cookies, &me, &state, r.recovery_codes),
        Err(
            e @ (AuthError::InvalidCode | AuthError::Locked { .. } | AuthError::RateLimited { .. }),
        ) if uri.is_some() => enroll_page(&state, cookies, &me, uri.unwrap_or_default(), Some(e)),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

async fn disable(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let req = TotpDisableRequest {
        access_token: me.access_token.clone(),
        code: post.form.get("code").unwrap_or_default().to_owned(),
        client: Some(client),
    };
    match state.api.totp_disable(req).await {
        Ok(_) => Ok((cookies, redirect("/account/security?notice=totp_disabled")).into_response()),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

async fn recovery_codes(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let req = RegenerateRecoveryCodesRequest {
        access_token: me.access_token.clone(),
        code: post.form.get("code").unwrap_or_default().to_owned(),
        client: Some(client),
    };
    match state.api.regenerate_recovery_codes(req).await {
        Ok(r) => codes_page(cookies, &me, &state, r.recovery_codes),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

/// `POST /account/security/passkeys/start` (from the script): a registration
/// ceremony, JSON.
async fn passkey_start(
    State(state): State<AppState>,
    post: CsrfForm,
) -> Result<axum::response::Response, ApiError> {
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let req = PasskeyRegisterStartRequest {
        access_token: me.access_token.clone(),
        name: post.form.get("name").unwrap_or_default().to_owned(),
    };
    let started = state.api.passkey_register_start(req).await?;
    Ok((cookies, crate::api::ceremony_json(started)?).into_response())
}

/// `POST /account/security/passkeys`: the authenticator's answer. The first second
/// factor's recovery codes are shown once; otherwise back to the security page.
async fn passkey_register(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let credential = post.form.get("credential").unwrap_or_default();
    if credential.is_empty() {
        let e = AuthError::InvalidArgument("passkeys need JavaScript in this browser".into());
        return failed(&state, cookies, &me, e).await;
    }
    let req = PasskeyRegisterFinishRequest {
        access_token: me.access_token.clone(),
        ceremony_id: post.form.get("ceremony_id").unwrap_or_default().to_owned(),
        credential_json: credential.to_owned(),
        client: Some(client),
    };
    match state.api.passkey_register_finish(req).await {
        Ok(r) if !r.recovery_codes.is_empty() => codes_page(cookies, &me, &state, r.recovery_codes),
        Ok(_) => Ok((cookies, redirect("/account/security?notice=passkey_added")).into_response()),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

async fn passkey_rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> PageResult {
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let req = PasskeyRenameRequest {
        access_token: me.access_token.clone(),
        credential_id: id,
        name: post.form.get("name").unwrap_or_default().to_owned(),
    };
    match state.api.passkey_rename(req).await {
        Ok(_) => Ok((cookies, redirect("/account/security")).into_response()),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

async fn passkey_remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> PageResult {
    let client = post.browser.client.info();
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let req = PasskeyRemoveRequest {
        access_token: me.access_token.clone(),
        credential_id: id,
        code: post.form.get("code").unwrap_or_default().to_owned(),
        client: Some(client),
    };
    match state.api.passkey_remove(req).await {
        Ok(_) => Ok((
            cookies,
            redirect("/account/security?notice=passkey_removed"),
        )
            .into_response()),
        Err(e) => failed(&state, cookies, &me, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_inline_svg_of_the_uri() {
        let uri = "otpauth://totp/auth-sdk:alice?secret=JBSWY3DPEHPK3PXP&issuer=auth-sdk";
        let svg = qr_svg(uri).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.ends_with("</svg>"),
            "{svg:.80}"
        );
        assert!(!svg.contains("<?xml") && !svg.contains("<script") && !svg.contains("style"));
        assert_eq!(grouped_secret(uri), "JBSW Y3DP EHPK 3PXP");
        // Too much data for any QR code: a typed refusal, not a panic.
        assert!(qr_svg(&"x".repeat(10_000)).is_err());
    }
}
