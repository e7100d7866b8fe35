//! [`AuthError`]: every way an auth operation can fail, with a stable code.

use std::borrow::Cow;
use std::time::Duration;

use auth_storage::StorageError;

/// An auth failure. [`AuthError::code`] is stable and machine-readable; the `Display`
/// message is for people and never contains a password, token or key.
///
/// Unknown user and wrong password are both [`AuthError::InvalidCredentials`], so a
/// failed login does not tell which accounts exist. Two things still do, by design:
/// registration (`user_exists`) and lockout (only a real account can be `locked`).
/// Rate-limit both at the edge if enumeration matters to you.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The username breaks the username policy; the text says which rule.
    #[error("invalid username: {0}")]
    InvalidUsername(Cow<'static, str>),
    /// The new password breaks the password policy; the text says which rule.
    #[error("invalid password: {0}")]
    InvalidPassword(Cow<'static, str>),
    /// The username is taken (case-insensitively, after Unicode normalisation).
    #[error("username is already taken")]
    UserExists,
    /// Unknown user or wrong password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins: try again after `retry_after`.
    #[error("account temporarily locked; retry in {}s", retry_after.as_millis().div_ceil(1000).max(1))]
    Locked {
        /// How long until a login may be attempted again.
        retry_after: Duration,
    },
    /// The token is malformed, forged, signed with an unknown key or algorithm, not yet
    /// valid, or meant for another issuer or audience.
    #[error("invalid token")]
    InvalidToken,
    /// The access token has expired: refresh it.
    #[error("token expired")]
    TokenExpired,
    /// The session behind the token has ended (logout, revocation, password change,
    /// expiry).
    #[error("session has ended")]
    SessionEnded,
    /// A refresh token was presented after it had been rotated: the session has been
    /// revoked as a precaution against token theft.
    #[error("refresh token reuse detected; the session has been revoked")]
    RefreshTokenReused,
    /// The named resource (e.g. a session to revoke) does not exist.
    #[error("not found")]
    NotFound,
    /// A request field is missing or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(Cow<'static, str>),
    /// The configuration is unusable; the text says why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The `Auth` has been stopped.
    #[error("auth service stopped")]
    Stopped,
    /// Storage cannot serve the request now; safe to retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupted record.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// A stable, machine-readable code (`user_exists`, `invalid_credentials`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidUsername(_) => "invalid_username",
            AuthError::InvalidPassword(_) => "invalid_password",
            AuthError::UserExists => "user_exists",
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::Locked { .. } => "locked",
            AuthError::InvalidToken => "invalid_token",
            AuthError::TokenExpired => "token_expired",
            AuthError::SessionEnded => "session_ended",
            AuthError::RefreshTokenReused => "refresh_token_reused",
            AuthError::NotFound => "not_found",
            AuthError::InvalidArgument(_) => "invalid_argument",
            AuthError::InvalidConfig(_) => "invalid_config",
            AuthError::Stopped => "stopped",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Internal(_) => "internal",
        }
    }

    /// For [`AuthError::Locked`], how long to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Locked { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// Every code [`AuthError::code`] can return, for surfaces that document them.
    pub const CODES: &'static [&'static str] = &[
        "invalid_username",
        "invalid_password",
        "user_exists",
        "invalid_credentials",
        "locked",
        "invalid_token",
        "token_expired",
        "session_ended",
        "refresh_token_reused",
        "not_found",
        "invalid_argument",
        "invalid_config",
        "stopped",
        "unavailable",
        "internal",
    ];
}

impl From<StorageError> for AuthError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::UserExists => AuthError::UserExists,
            StorageError::NotFound => AuthError::NotFound,
            StorageError::Unavailable(m) => AuthError::Unavailable(m),
            other => AuthError::Internal(other.to_string()),
        }
    }
}
