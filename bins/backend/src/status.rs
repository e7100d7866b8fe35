//! The one place where [`AuthError`] meets [`tonic::Status`], in both directions.
//!
//! Server side, every error becomes a gRPC status with the stable code in the
//! `auth-error-code` metadata, the fixed [`AuthError::public_message`] as its message
//! (internal detail is logged here, never sent), and for `locked`, `overloaded` and
//! `rate_limited` the delay in `auth-retry-after-ms`.
//! Client side, [`from_status`] rebuilds the same `AuthError`, so a front end sees
//! identical errors whether `Auth` runs in process or behind gRPC.

use std::time::Duration;

use auth_core::AuthError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key carrying [`AuthError::code`].
pub const CODE_KEY: &str = "auth-error-code";

/// Metadata on a refusal that did nothing (a stopping backend): safe to send the call
/// to another backend, whatever it is.
pub const NOT_PROCESSED_KEY: &str = "auth-not-processed";
/// Metadata key carrying the wait (lockout, overload, rate limit) in milliseconds.
pub const RETRY_AFTER_KEY: &str = "auth-retry-after-ms";

/// The gRPC code for an auth error.
pub fn grpc_code(e: &AuthError) -> Code {
    match e {
        AuthError::UserExists => Code::AlreadyExists,
        AuthError::InvalidCredentials
        | AuthError::InvalidToken
        | AuthError::TokenExpired
        | AuthError::SessionEnded
        | AuthError::RefreshTokenReused
        | AuthError::InvalidCode
        | AuthError::InvalidMfaTicket
        | AuthError::CeremonyExpired => Code::Unauthenticated,
        AuthError::MfaConflict(_) => Code::FailedPrecondition,
        AuthError::PermissionDenied(_) | AuthError::AccountDisabled => Code::PermissionDenied,
        AuthError::InvalidUsername(_)
        | AuthError::InvalidPassword(_)
        | AuthError::InvalidArgument(_) => Code::InvalidArgument,
        AuthError::Locked { .. } | AuthError::Overloaded { .. } | AuthError::RateLimited { .. } => {
            Code::ResourceExhausted
        }
        AuthError::NotFound => Code::NotFound,
        AuthError::Stopped | AuthError::Unavailable(_) => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// An auth error as a gRPC status. The message is [`AuthError::public_message`]; the
/// detail of internal errors is logged here and goes no further.
pub fn to_status(e: &AuthError) -> Status {
    if e.is_internal() {
        tracing::warn!(code = e.code(), error = %e, "request failed");
    }
    let mut status = Status::new(grpc_code(e), e.public_message());
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
    if !code.is_empty() {
        // The server sent `public_message`: for errors with a rule ("invalid username:
        // too short") the detail is what follows the prefix the variant prints again.
        let m = s.message();
        let detail = m.split_once(": ").map_or(m, |(_, d)| d).to_owned();
        let retry_after = s
            .metadata()
            .get(RETRY_AFTER_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        // The detail of internal errors stayed in the backend's log.
        return match AuthError::from_code(code, detail, retry_after) {
            AuthError::InvalidConfig(_) | AuthError::Internal(_) => {
                AuthError::Internal("reported by the backend".into())
            }
            AuthError::Stopped | AuthError::Unavailable(_) => {
                AuthError::Unavailable("reported by the backend".into())
            }
            e => e,
        };
    }
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            AuthError::Unavailable(format!("backend: {}", s.message()))
        }
        Code::InvalidArgument | Code::OutOfRange => {
            AuthError::InvalidArgument(s.message().to_owned().into())
        }
        Code::Unauthenticated => AuthError::InvalidToken,
        Code::ResourceExhausted => AuthError::InvalidArgument("request too large".into()),
        _ => AuthError::Internal(format!("backend: {:?}: {}", s.code(), s.message())),
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
            AuthError::InvalidCode,
            AuthError::InvalidMfaTicket,
            AuthError::MfaConflict("no second factor is enrolled".into()),
            AuthError::CeremonyExpired,
            AuthError::PermissionDenied("the admin role is required".into()),
            AuthError::AccountDisabled,
            AuthError::NotFound,
            AuthError::Overloaded {
                retry_after: Duration::from_millis(250),
            },
            AuthError::RateLimited {
                retry_after: Duration::from_secs(3),
            },
        ];
        for e in errors {
            let back = from_status(&to_status(&e));
            assert_eq!(back.code(), e.code());
            assert_eq!(back, e);
            assert_eq!(back.to_string(), e.to_string());
        }
        assert_eq!(
            from_status(&to_status(&AuthError::Stopped)),
            AuthError::Unavailable("reported by the backend".into())
        );
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        for e in [
            AuthError::Unavailable("forward to node 3 at 10.1.2.3:7001 failed".into()),
            AuthError::Internal("corrupt user record u-42".into()),
            AuthError::InvalidConfig("/etc/auth/key.pem: permission denied".into()),
        ] {
            let s = to_status(&e);
            assert!(
                !s.message().contains("10.1.2.3")
                    && !s.message().contains("u-42")
                    && !s.message().contains("/etc"),
                "{}",
                s.message()
            );
            let back = from_status(&s);
            assert_eq!(
                back.code(),
                if e.code() == "unavailable" {
                    "unavailable"
                } else {
                    "internal"
                }
            );
            assert!(!back.to_string().contains("10.1.2.3") && !back.to_string().contains("u-42"));
        }
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
