//! The one place where [`AuthError`] meets [`tonic::Status`], in both directions.
//!
//! Server side, every error becomes a gRPC status with the stable code in the
//! `auth-error-code` metadata (and, for `locked`, the delay in `auth-retry-after-ms`).
//! Client side, [`from_status`] rebuilds the same `AuthError`, so a front end sees
//! identical errors whether `Auth` runs in process or behind gRPC.

use std::time::Duration;

use auth_core::AuthError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key carrying [`AuthError::code`].
pub const CODE_KEY: &str = "auth-error-code";
/// Metadata key carrying the lockout delay in milliseconds.
pub const RETRY_AFTER_KEY: &str = "auth-retry-after-ms";

/// The gRPC code for an auth error.
pub fn grpc_code(e: &AuthError) -> Code {
    match e {
        AuthError::UserExists => Code::AlreadyExists,
        AuthError::InvalidCredentials
        | AuthError::InvalidToken
        | AuthError::TokenExpired
        | AuthError::SessionEnded
        | AuthError::RefreshTokenReused => Code::Unauthenticated,
        AuthError::InvalidUsername(_)
        | AuthError::InvalidPassword(_)
        | AuthError::InvalidArgument(_) => Code::InvalidArgument,
        AuthError::Locked { .. } => Code::ResourceExhausted,
        AuthError::NotFound => Code::NotFound,
        AuthError::Stopped | AuthError::Unavailable(_) => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// An auth error as a gRPC status (message = the error's `Display`, never a secret).
pub fn to_status(e: &AuthError) -> Status {
    let mut status = Status::new(grpc_code(e), e.to_string());
    let md = status.metadata_mut();
    md.insert(CODE_KEY, MetadataValue::from_static(e.code()));
    if let Some(d) = e.retry_after()
        && let Ok(v) = MetadataValue::try_from(d.as_millis().to_string())
    {
        md.insert(RETRY_AFTER_KEY, v);
    }
    status
}

/// Rebuilds the `AuthError` a backend sent. A status without our metadata (a proxy,
/// a transport failure) maps by its gRPC code.
pub fn from_status(s: &Status) -> AuthError {
    let code = s
        .metadata()
        .get(CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let detail = || {
        let m = s.message();
        m.split_once(": ").map_or(m, |(_, d)| d).to_owned().into()
    };
    match code {
        "invalid_username" => AuthError::InvalidUsername(detail()),
        "invalid_password" => AuthError::InvalidPassword(detail()),
        "invalid_argument" => AuthError::InvalidArgument(detail()),
        "user_exists" => AuthError::UserExists,
        "invalid_credentials" => AuthError::InvalidCredentials,
        "locked" => {
            let ms = s
                .metadata()
                .get(RETRY_AFTER_KEY)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            AuthError::Locked {
                retry_after: Duration::from_millis(ms),
            }
        }
        "invalid_token" => AuthError::InvalidToken,
        "token_expired" => AuthError::TokenExpired,
        "session_ended" => AuthError::SessionEnded,
        "refresh_token_reused" => AuthError::RefreshTokenReused,
        "not_found" => AuthError::NotFound,
        // `detail` drops the `Display` prefix the server added, so the rebuilt error
        // does not print it twice ("temporarily unavailable: temporarily unavailable: ...").
        "stopped" | "unavailable" => AuthError::Unavailable(detail().into_owned()),
        "internal" => AuthError::Internal(detail().into_owned()),
        "invalid_config" => AuthError::Internal(s.message().to_owned()),
        _ => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                AuthError::Unavailable(format!("backend: {}", s.message()))
            }
            Code::InvalidArgument | Code::OutOfRange => {
                AuthError::InvalidArgument(s.message().to_owned().into())
            }
            Code::Unauthenticated => AuthError::InvalidToken,
            Code::ResourceExhausted => AuthError::InvalidArgument("request too large".into()),
            _ => AuthError::Internal(format!("backend: {:?}: {}", s.code(), s.message())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_round_trip() {
        let errors = [
            AuthError::InvalidUsername("too short".into()),
            AuthError::InvalidPassword("too long".into()),
            AuthError::InvalidArgument("session_id is required".into()),
            AuthError::UserExists,
            AuthError::InvalidCredentials,
            AuthError::Locked {
                retry_after: Duration::from_millis(1500),
            },
            AuthError::InvalidToken,
            AuthError::TokenExpired,
            AuthError::SessionEnded,
            AuthError::RefreshTokenReused,
            AuthError::NotFound,
            AuthError::Unavailable("no quorum".into()),
        ];
        for e in errors {
            let back = from_status(&to_status(&e));
            assert_eq!(back.code(), e.code());
            assert_eq!(back, e);
            assert_eq!(back.to_string(), e.to_string());
        }
        assert_eq!(
            from_status(&to_status(&AuthError::Stopped)),
            AuthError::Unavailable("auth service stopped".into())
        );
        assert_eq!(
            from_status(&to_status(&AuthError::Internal("x: y".into()))),
            AuthError::Internal("x: y".into())
        );
    }

    #[test]
    fn grpc_codes_follow_the_documented_mapping() {
        assert_eq!(grpc_code(&AuthError::UserExists), Code::AlreadyExists);
        assert_eq!(
            grpc_code(&AuthError::InvalidCredentials),
            Code::Unauthenticated
        );
        assert_eq!(
            grpc_code(&AuthError::Locked {
                retry_after: Duration::ZERO
            }),
            Code::ResourceExhausted
        );
        assert_eq!(grpc_code(&AuthError::NotFound), Code::NotFound);
        assert_eq!(grpc_code(&AuthError::Stopped), Code::Unavailable);
        assert_eq!(grpc_code(&AuthError::Internal("x".into())), Code::Internal);
        assert_eq!(
            grpc_code(&AuthError::InvalidPassword("too short".into())),
            Code::InvalidArgument
        );
        let s = to_status(&AuthError::Locked {
            retry_after: Duration::from_secs(30),
        });
        assert_eq!(s.metadata().get(RETRY_AFTER_KEY).unwrap(), "30000");
    }

    #[test]
    fn foreign_statuses_map_by_grpc_code() {
        assert_eq!(
            from_status(&Status::unavailable("connection refused")).code(),
            "unavailable"
        );
        assert_eq!(
            from_status(&Status::deadline_exceeded("slow")).code(),
            "unavailable"
        );
        assert_eq!(from_status(&Status::unknown("?")).code(), "internal");
    }
}
