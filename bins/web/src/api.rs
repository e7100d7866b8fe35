//! The JSON API under `/api/v1`: register, login, refresh, logout, me.
//!
//! Bodies must be `application/json` (else 415); the caller is identified by
//! `Authorization: Bearer <access token>`, never by cookies, so the API needs no CSRF
//! token. Errors are `{"error":{"code":"…","message":"…"}}` (see `errors.rs`).

use auth_core::api::{
    KeysRequest, LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenPair, UserInfo,
    VerifyRequest,
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
    let tokens = resp.tokens.ok_or_else(|| missing("tokens"))?;
    Ok(Json(TokensJson::new(tokens, resp.user)).into_response())
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
    OptionalJson(body): OptionalJson<LogoutBody>,
) -> ApiResult {
    let req = LogoutRequest {
        refresh_token: body.map(|b| b.refresh_token).unwrap_or_default(),
        access_token: bearer(&headers).unwrap_or_default(),
    };
    if req.refresh_token.is_empty() && req.access_token.is_empty() {
        let e = AuthError::InvalidArgument("send a refresh_token or a bearer token".into());
        return Err(e.into());
    }
    state.api.logout(req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let access_token = bearer(&headers).ok_or(AuthError::InvalidToken)?;
    let v = state.api.verify(VerifyRequest { access_token }).await?;
    Ok(Json(MeJson {
        user_id: v.user_id,
        username: v.username,
        session_id: v.session_id,
        expires_at_ms: v.expires_at_ms,
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
