//! [`AuthError`]: every way an auth operation can fail, with a stable code.

use std::borrow::Cow;
use std::time::Duration;

use auth_storage::StorageError;

/// An auth failure. [`AuthError::code`] is stable and machine-readable; the `Display`
/// message is for people and never contains a password, token or key.
///
/// Unknown user and wrong password are both [`AuthError::InvalidCredentials`], and an
/// unknown name locks exactly like a real account, so a failed login does not tell
/// which accounts exist. Registration (`user_exists`) still does, by design: throttle
/// it per source (see `Throttle`).
///
/// What reaches a client is [`AuthError::code`] and [`AuthError::public_message`];
/// the detail of [`AuthError::Unavailable`] and [`AuthError::Internal`] (node ids,
/// addresses, storage messages) is for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The username breaks the username policy; the text says which rule.
    #[error("invalid username: {0}")]
    InvalidUsername(Cow<'static, str>),
    /// The new password breaks the password policy; the text says which rule.
    #[error("invalid password: {0}")]
    InvalidPassword(Cow<'static, str>),
    /// The username is taken: the same name up to case, Unicode normalisation and
    /// look-alike characters (TR39 confusables).
    #[error("username is already taken")]
    UserExists,
    /// Unknown user or wrong password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins: try again after `retry_after`.
    #[error("account temporarily locked; retry in {}s", secs(*retry_after))]
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
    /// A second-factor code (TOTP or recovery code) is malformed, wrong or was used
    /// already; one error for all three, so a guess learns nothing.
    #[error("the code is not valid")]
    InvalidCode,
    /// The MFA ticket of a login's second step is unknown, expired, used, or belongs
    /// to another user: log in with the password again.
    #[error("the sign-in has expired or is invalid; log in again")]
    InvalidMfaTicket,
    /// A passkey ceremony is unknown, expired, used, or belongs to someone else: start
    /// it again.
    #[error("the passkey request has expired or is invalid; start again")]
    CeremonyExpired,
    /// The request does not fit the account's second factors (enrolling one that is
    /// enrolled, confirming or removing one that is not); the text says which.
    #[error("{0}")]
    MfaConflict(Cow<'static, str>),
    /// The caller is signed in but lacks the role the operation needs (an admin
    /// operation without `admin`), or an administrator tried it on their own account.
    #[error("permission denied: {0}")]
    PermissionDenied(Cow<'static, str>),
    /// An administrator locked this account: it cannot sign in or refresh until one
    /// unlocks it. Only answered to a caller who proved the password (or a factor).
    #[error("this account has been locked by an administrator")]
    AccountDisabled,
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
    /// Too many password checks are queued: this one was shed without being tried.
    /// Safe to retry after `retry_after`.
    #[error("server overloaded; retry in {}s", secs(*retry_after))]
    Overloaded {
        /// A suggested wait before retrying.
        retry_after: Duration,
    },
    /// This source sent too many requests: retry after `retry_after`.
    #[error("too many requests; retry in {}s", secs(*retry_after))]
    RateLimited {
        /// How long until the next request is admitted.
        retry_after: Duration,
    },
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
            AuthError::InvalidCode => "invalid_code",
            AuthError::InvalidMfaTicket => "invalid_mfa_ticket",
            AuthError::MfaConflict(_) => "mfa_conflict",
            AuthError::CeremonyExpired => "ceremony_expired",
            AuthError::PermissionDenied(_) => "permission_denied",
            AuthError::AccountDisabled => "account_disabled",
            AuthError::NotFound => "not_found",
            AuthError::InvalidArgument(_) => "invalid_argument",
            AuthError::InvalidConfig(_) => "invalid_config",
            AuthError::Stopped => "stopped",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Overloaded { .. } => "overloaded",
            AuthError::RateLimited { .. } => "rate_limited",
            AuthError::Internal(_) => "internal",
        }
    }

    /// The error [`AuthError::code`] named, as a client rebuilds it from a response:
    /// `detail` fills the variants that carry text, `retry_after` the ones that wait
    /// (one second when absent). An unknown code is [`AuthError::Internal`].
    pub fn from_code(code: &str, detail: String, retry_after: Option<Duration>) -> AuthError {
        let wait = retry_after.unwrap_or(Duration::from_secs(1));
        match code {
            "invalid_username" => AuthError::InvalidUsername(detail.into()),
            "invalid_password" => AuthError::InvalidPassword(detail.into()),
            "user_exists" => AuthError::UserExists,
            "invalid_credentials" => AuthError::InvalidCredentials,
            "locked" => AuthError::Locked { retry_after: wait },
            "invalid_token" => AuthError::InvalidToken,
            "token_expired" => AuthError::TokenExpired,
            "session_ended" => AuthError::SessionEnded,
            "refresh_token_reused" => AuthError::RefreshTokenReused,
            "invalid_code" => AuthError::InvalidCode,
            "invalid_mfa_ticket" => AuthError::InvalidMfaTicket,
            "mfa_conflict" => AuthError::MfaConflict(detail.into()),
            "ceremony_expired" => AuthError::CeremonyExpired,
            "permission_denied" => AuthError::PermissionDenied(detail.into()),
            "account_disabled" => AuthError::AccountDisabled,
            "not_found" => AuthError::NotFound,
            "invalid_argument" => AuthError::InvalidArgument(detail.into()),
            "invalid_config" => AuthError::InvalidConfig(detail),
            "stopped" => AuthError::Stopped,
            "unavailable" => AuthError::Unavailable(detail),
            "overloaded" => AuthError::Overloaded { retry_after: wait },
            "rate_limited" => AuthError::RateLimited { retry_after: wait },
            _ => AuthError::Internal(detail),
        }
    }

    /// For the errors that say when to come back ([`AuthError::Locked`],
    /// [`AuthError::Overloaded`], [`AuthError::RateLimited`]), how long to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Locked { retry_after }
            | AuthError::Overloaded { retry_after }
            | AuthError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The text a client may see: fixed for every variant, with the policy rule for
    /// invalid input. Never the detail of `Unavailable`, `Internal` or `InvalidConfig`,
    /// which may name nodes, addresses or files and goes to logs only.
    pub fn public_message(&self) -> Cow<'static, str> {
        match self {
            AuthError::Unavailable(_) => "temporarily unavailable".into(),
            AuthError::Internal(_) | AuthError::InvalidConfig(_) => "internal error".into(),
            other => other.to_string().into(),
        }
    }

    /// Whether the detail of this error is internal (see [`AuthError::public_message`]):
    /// surfaces log such errors where they answer them.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            AuthError::Unavailable(_) | AuthError::Internal(_) | AuthError::InvalidConfig(_)
        )
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
        "invalid_code",
        "invalid_mfa_ticket",
        "mfa_conflict",
        "ceremony_expired",
        "permission_denied",
        "account_disabled",
        "not_found",
        "invalid_argument",
        "invalid_config",
        "stopped",
        "unavailable",
        "overloaded",
        "rate_limited",
        "internal",
    ];
}

/// Whole seconds to wait, rounded up, at least one.
fn secs(d: Duration) -> u128 {
    d.as_millis().div_ceil(1000).max(1)
}

/// A response without a field the service always sets: an internal error.
impl From<auth_proto::MissingField> for AuthError {
    fn from(e: auth_proto::MissingField) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<StorageError> for AuthError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::UserExists => AuthError::UserExists,
            StorageError::NotFound => AuthError::NotFound,
            StorageError::UserLocked => AuthError::AccountDisabled,
            StorageError::Unavailable(m) => AuthError::Unavailable(m),
            other => AuthError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<AuthError> {
        let wait = Duration::from_millis(1500);
        vec![
            AuthError::InvalidUsername("too short".into()),
            AuthError::InvalidPassword("too long".into()),
            AuthError::UserExists,
            AuthError::InvalidCredentials,
            AuthError::Locked { retry_after: wait },
            AuthError::InvalidToken,
            AuthError::TokenExpired,
            AuthError::SessionEnded,
            AuthError::RefreshTokenReused,
            AuthError::InvalidCode,
            AuthError::InvalidMfaTicket,
            AuthError::MfaConflict("no second factor is enrolled".into()),
            AuthError::CeremonyExpired,
            AuthError::PermissionDenied("the admin role is required".into()),
            AuthError::AccountDisabled,
            AuthError::NotFound,
            AuthError::InvalidArgument("session_id is required".into()),
            AuthError::InvalidConfig("bad".into()),
            AuthError::Stopped,
            AuthError::Unavailable("node 3 at 10.0.0.3:7001 unreachable".into()),
            AuthError::Overloaded { retry_after: wait },
            AuthError::RateLimited { retry_after: wait },
            AuthError::Internal("corrupt record u-1".into()),
        ]
    }

    #[test]
    fn every_code_round_trips_and_is_listed() {
        let all = every_error();
        assert_eq!(all.len(), AuthError::CODES.len());
        for e in all {
            assert!(AuthError::CODES.contains(&e.code()), "{}", e.code());
            let detail = match &e {
                AuthError::InvalidUsername(d)
                | AuthError::InvalidPassword(d)
                | AuthError::InvalidArgument(d)
                | AuthError::MfaConflict(d)
                | AuthError::PermissionDenied(d) => d.to_string(),
                AuthError::InvalidConfig(d)
                | AuthError::Unavailable(d)
                | AuthError::Internal(d) => d.clone(),
                _ => String::new(),
            };
            assert_eq!(AuthError::from_code(e.code(), detail, e.retry_after()), e);
        }
        assert_eq!(
            AuthError::from_code("from_the_future", "x".into(), None).code(),
            "internal"
        );
    }

    #[test]
    fn public_messages_carry_no_internal_detail() {
        for e in every_error() {
            let m = e.public_message();
            assert!(
                !m.contains("10.0.0.3") && !m.contains("u-1") && !m.contains("bad"),
                "{m}"
            );
            assert_eq!(e.is_internal(), m != e.to_string(), "{}", e.code());
        }
        assert_eq!(
            AuthError::InvalidUsername("too short".into()).public_message(),
            "invalid username: too short"
        );
    }
}
