//! The JSON API under `/api/v1`: register, login (and its second step), refresh,
//! logout, me, and the caller's second factors (`/api/v1/mfa/...`).
//!
//! Bodies must be `application/json` (else 415); the caller is identified by
//! `Authorization: Bearer <access token>`, never by cookies, so the API needs no CSRF
//! token. Errors are `{"error":{"code":"…","message":"…"}}` (see `errors.rs`).

use auth_core::api::{
    KeysRequest, LoginMfaRequest, LoginRequest, LoginResponse, LogoutRequest, MfaStatusRequest,
    PasskeyLoginFinishRequest, PasskeyLoginStartRequest, PasskeyRegisterFinishRequest,
    PasskeyRegisterStartRequest, PasskeyRemoveRequest, PasskeyRenameRequest, RefreshRequest,
    RegenerateRecoveryCodesRequest, RegisterRequest, TokenPair, TotpConfirmRequest,
    TotpDisableRequest, TotpEnrollRequest, UserInfo, VerifyRequest,
};
use auth_core::{AuthError, Jwks};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::client::ClientMeta;
use crate::errors::ApiError;
use crate::extract::{JsonBody, OptionalJson};

type ApiResult = Result<Response, ApiError>;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/register", post(register))
        .route("/api/v1/login", post(login))
        .route("/api/v1/login/mfa", post(login_mfa))
        .route("/api/v1/mfa", get(mfa_status))
        .route("/api/v1/mfa/totp/enroll", post(totp_enroll))
        .route("/api/v1/mfa/totp/confirm", post(totp_confirm))
        .route("/api/v1/mfa/totp/disable", post(totp_disable))
        .route("/api/v1/mfa/recovery-codes", post(recovery_codes))
        .route(
            "/api/v1/mfa/passkeys/register/start",
            post(passkey_register_start),
        )
        .route(
            "/api/v1/mfa/passkeys/register/finish",
            post(passkey_register_finish),
        )
        .route("/api/v1/mfa/passkeys/rename", post(passkey_rename))
        .route("/api/v1/mfa/passkeys/remove", post(passkey_remove))
        .route("/api/v1/login/passkey/start", post(passkey_login_start))
        .route("/api/v1/login/passkey/finish", post(passkey_login_finish))
        .route("/api/v1/refresh", post(refresh))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/.well-known/jwks.json", get(jwks))
}

/// `{"username": …, "password": …}`. No `Debug`: it holds a password.
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `{"refresh_token": …}`.
#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `{"refresh_token": …}`, optional when a bearer token is sent.
#[derive(Deserialize)]
struct LogoutBody {
    #[serde(default)]
    refresh_token: String,
}

/// `{"mfa_ticket": …, "code": …}`. No `Debug`: it holds secrets.
#[derive(Deserialize)]
struct MfaBody {
    mfa_ticket: String,
    code: String,
}

/// `{"name": …}` (optional).
#[derive(Deserialize, Default)]
struct NameBody {
    #[serde(default)]
    name: String,
}

/// `{"ceremony_id": …, "credential": {…}}`: the authenticator's answer as the browser
/// gave it (binary fields base64url), plus the MFA ticket for a login's second step.
#[derive(Deserialize)]
struct FinishBody {
    ceremony_id: String,
    credential: serde_json::Value,
    #[serde(default)]
    mfa_ticket: String,
}

/// `{"mfa_ticket": …}` (optional: passwordless without it).
#[derive(Deserialize, Default)]
struct TicketBody {
    #[serde(default)]
    mfa_ticket: String,
}

/// `{"credential_id": …, "name": …}` or `{"credential_id": …, "code": …}`.
#[derive(Deserialize)]
struct PasskeyBody {
    credential_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    code: String,
}

/// `{"code": …}`: a TOTP or recovery code. No `Debug`.
#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// A login that needs its second step: no tokens.
#[derive(Serialize)]
struct MfaRequiredJson {
    mfa_required: bool,
    mfa_ticket: String,
    mfa_methods: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserJson>,
}

#[derive(Serialize)]
struct RecoveryCodesJson {
    recovery_codes: Vec<String>,
}

#[derive(Serialize)]
struct EnrollJson {
    secret: String,
    otpauth_uri: String,
}

#[derive(Serialize)]
struct PasskeyJson {
    credential_id: String,
    name: String,
    created_at_ms: i64,
    last_used_at_ms: i64,
}

#[derive(Serialize)]
struct MfaStatusJson {
    totp_enabled: bool,
    totp_pending: bool,
    recovery_codes_left: u32,
    passkeys: Vec<PasskeyJson>,
}

#[derive(Serialize)]
struct UserJson {
    id: String,
    username: String,
    created_at_ms: i64,
}

impl From<UserInfo> for UserJson {
    fn from(u: UserInfo) -> Self {
        Self {
            id: u.id,
            username: u.username,
            created_at_ms: u.created_at_ms,
        }
    }
}

#[derive(Serialize)]
struct RegisteredJson {
    user: UserJson,
}

#[derive(Serialize)]
struct TokensJson {
    access_token: String,
    refresh_token: String,
    access_expires_at_ms: i64,
    refresh_expires_at_ms: i64,
    session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserJson>,
}

impl TokensJson {
    fn new(t: TokenPair, user: Option<UserInfo>) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            access_expires_at_ms: t.access_expires_at_ms,
            refresh_expires_at_ms: t.refresh_expires_at_ms,
            session_id: t.session_id,
            user: user.map(UserJson::from),
        }
    }
}

#[derive(Serialize)]
struct MeJson {
    user_id: String,
    username: String,
    session_id: String,
    expires_at_ms: i64,
    amr: Vec<String>,
    acr: String,
}

/// The token of `Authorization: Bearer <token>`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn missing(what: &str) -> AuthError {
    AuthError::Internal(format!("the auth service answered without {what}"))
}

async fn register(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult {
    let resp = state
        .api
        .register(RegisterRequest {
            username: body.username,
            password: body.password,
            client: Some(client.info()),
        })
        .await?;
    let user = resp.user.ok_or_else(|| missing("a user"))?;
    let body = RegisteredJson { user: user.into() };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn login(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult {
    let resp = state
        .api
        .login(LoginRequest {
            username: body.username,
            password: body.password,
            client: Some(client.info()),
        })
        .await?;
    login_reply(resp)
}

/// A login's answer: the token pair, or (200 all the same) `mfa_required` with the
/// ticket for `/api/v1/login/mfa`.
fn login_reply(resp: LoginResponse) -> ApiResult {
    if resp.mfa_required {
        return Ok(Json(MfaRequiredJson {
            mfa_required: true,
            mfa_ticket: resp.mfa_ticket,
            mfa_methods: resp.mfa_methods,
            user: resp.user.map(UserJson::from),
        })
        .into_response());
    }
    let tokens = resp.tokens.ok_or_else(|| missing("tokens"))?;
    Ok(Json(TokensJson::new(tokens, resp.user)).into_response())
}

/// The second step of a login: the ticket and a TOTP or recovery code.
async fn login_mfa(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<MfaBody>,
) -> ApiResult {
    let resp = state
        .api
        .login_mfa(LoginMfaRequest {
            mfa_ticket: body.mfa_ticket,
            code: body.code,
            client: Some(client.info()),
        })
        .await?;
    login_reply(resp)
}

/// A ceremony as JSON: `{"ceremony_id", "options"}`, the options as the browser API
/// takes them (under `publicKey`).
pub(crate) fn ceremony_json(c: auth_core::api::PasskeyCeremony) -> Result<Response, ApiError> {
    let options: serde_json::Value = serde_json::from_str(&c.options_json)
        .map_err(|_| AuthError::Internal("ceremony options are not JSON".into()))?;
    Ok(Json(serde_json::json!({
        "ceremony_id": c.ceremony_id,
        "options": options,
    }))
    .into_response())
}

/// The bearer token, or `invalid_token`.
fn caller(headers: &HeaderMap) -> Result<String, AuthError> {
    bearer(headers).ok_or(AuthError::InvalidToken)
}

async fn mfa_status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let access_token = caller(&headers)?;
    let s = state
        .api
        .mfa_status(MfaStatusRequest { access_token })
        .await?;
    Ok(Json(MfaStatusJson {
        totp_enabled: s.totp_enabled,
        totp_pending: s.totp_pending,
        recovery_codes_left: s.recovery_codes_left,
        passkeys: s
            .passkeys
            .into_iter()
            .map(|p| PasskeyJson {
                credential_id: p.credential_id,
                name: p.name,
                created_at_ms: p.created_at_ms,
                last_used_at_ms: p.last_used_at_ms,
            })
            .collect(),
    })
    .into_response())
}

/// Starts TOTP enrolment: `{"secret", "otpauth_uri"}` (the body may be empty).
async fn totp_enroll(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let access_token = caller(&headers)?;
    let r = state
        .api
        .totp_enroll(TotpEnrollRequest { access_token })
        .await?;
    Ok(Json(EnrollJson {
        secret: r.secret,
        otpauth_uri: r.otpauth_uri,
    })
    .into_response())
}

/// Confirms enrolment with a first code: `{"recovery_codes": […]}`, shown once.
async fn totp_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientMeta,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult {
    let r = state
        .api
        .totp_confirm(TotpConfirmRequest {
            access_token: caller(&headers)?,
            code: body.code,
            client: Some(client.info()),
        })
        .await?;
    Ok(Json(RecoveryCodesJson {
        recovery_codes: r.recovery_codes,
    })
    .into_response())
}

/// Removes TOTP with a current TOTP or recovery code: 204.
async fn totp_disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientMeta,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult {
    state
        .api
        .totp_disable(TotpDisableRequest {
            access_token: caller(&headers)?,
            code: body.code,
            client: Some(client.info()),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// New recovery codes, with a current TOTP or recovery code.
async fn recovery_codes(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientMeta,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult {
    let r = state
        .api
        .regenerate_recovery_codes(RegenerateRecoveryCodesRequest {
            access_token: caller(&headers)?,
            code: body.code,
            client: Some(client.info()),
        })
        .await?;
    Ok(Json(RecoveryCodesJson {
        recovery_codes: r.recovery_codes,
    })
    .into_response())
}

async fn passkey_register_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<NameBody>,
) -> ApiResult {
    let started = state
        .api
        .passkey_register_start(PasskeyRegisterStartRequest {
            access_token: caller(&headers)?,
            name: body.unwrap_or_default().name,
        })
        .await?;
    ceremony_json(started)
}

async fn passkey_register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientMeta,
    JsonBody(body): JsonBody<FinishBody>,
) -> ApiResult {
    let r = state
        .api
        .passkey_register_finish(PasskeyRegisterFinishRequest {
            access_token: caller(&headers)?,
            ceremony_id: body.ceremony_id,
            credential_json: body.credential.to_string(),
            client: Some(client.info()),
        })
        .await?;
    let p = r.passkey.ok_or_else(|| missing("the passkey"))?;
    Ok(Json(serde_json::json!({
        "passkey": PasskeyJson {
            credential_id: p.credential_id,
            name: p.name,
            created_at_ms: p.created_at_ms,
            last_used_at_ms: p.last_used_at_ms,
        },
        "recovery_codes": r.recovery_codes,
    }))
    .into_response())
}

async fn passkey_rename(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasskeyBody>,
) -> ApiResult {
    state
        .api
        .passkey_rename(PasskeyRenameRequest {
            access_token: caller(&headers)?,
            credential_id: body.credential_id,
            name: body.name,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn passkey_remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientMeta,
    JsonBody(body): JsonBody<PasskeyBody>,
) -> ApiResult {
    state
        .api
        .passkey_remove(PasskeyRemoveRequest {
            access_token: caller(&headers)?,
            credential_id: body.credential_id,
            code: body.code,
            client: Some(client.info()),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn passkey_login_start(
    State(state): State<AppState>,
    client: ClientMeta,
    OptionalJson(body): OptionalJson<TicketBody>,
) -> ApiResult {
    let started = state
        .api
        .passkey_login_start(PasskeyLoginStartRequest {
            mfa_ticket: body.unwrap_or_default().mfa_ticket,
            client: Some(client.info()),
        })
        .await?;
    ceremony_json(started)
}

async fn passkey_login_finish(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<FinishBody>,
) -> ApiResult {
    let resp = state
        .api
        .passkey_login_finish(PasskeyLoginFinishRequest {
            ceremony_id: body.ceremony_id,
            credential_json: body.credential.to_string(),
            mfa_ticket: body.mfa_ticket,
            client: Some(client.info()),
        })
        .await?;
    login_reply(resp)
}

async fn refresh(
    State(state): State<AppState>,
    client: ClientMeta,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult {
    let req = RefreshRequest {
        refresh_token: body.refresh_token,
        client: Some(client.info()),
    };
    let tokens = state
        .api
        .refresh(req)
        .await?
        .tokens
        .ok_or_else(|| missing("tokens"))?;
    Ok(Json(TokensJson::new(tokens, None)).into_response())
}

/// Ends the session of the refresh token in the body, or else of the bearer token.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientMeta,
    OptionalJson(body): OptionalJson<LogoutBody>,
) -> ApiResult {
    let req = LogoutRequest {
        refresh_token: body.map(|b| b.refresh_token).unwrap_or_default(),
        access_token: bearer(&headers).unwrap_or_default(),
        client: Some(client.info()),
    };
    if req.refresh_token.is_empty() && req.access_token.is_empty() {
        let e = AuthError::InvalidArgument("send a refresh_token or a bearer token".into());
        return Err(e.into());
    }
    state.api.logout(req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let access_token = caller(&headers)?;
    let v = state.api.verify(VerifyRequest { access_token }).await?;
    Ok(Json(MeJson {
        user_id: v.user_id,
        username: v.username,
        session_id: v.session_id,
        expires_at_ms: v.expires_at_ms,
        amr: v.amr,
        acr: v.acr,
    })
    .into_response())
}

/// The public keys that verify access tokens (RFC 7517), from the auth service's key
/// ring: `{"keys":[…]}`, empty when tokens are signed with HS256. Cacheable for five
/// minutes: verifiers also refetch when they meet an unknown `kid`.
async fn jwks(State(state): State<AppState>) -> ApiResult {
    let keys = state.api.keys(KeysRequest {}).await?;
    let cache = (header::CACHE_CONTROL, "public, max-age=300");
    Ok(([cache], Json(Jwks::from(keys))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("abc.def"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  xyz "),
        );
        assert_eq!(bearer(&h).as_deref(), Some("xyz"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
