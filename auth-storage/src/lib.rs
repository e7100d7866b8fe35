//! The storage seam of auth-sdk.
//!
//! [`Storage`] is everything `auth-core` needs from a backend. Each method is **one atomic
//! operation**: creating a user is create-if-absent on the username, updating a user is a
//! compare-and-set on its version, and refresh-token rotation is decided entirely inside
//! the backend. Nothing in the core reads a record, changes it and writes it back across
//! two calls without a version check. That is what lets a replicated backend
//! (`auth-raft`) accept writes at any node and stay correct.
//!
//! Time never comes from the backend's clock: every method that depends on "now" takes it
//! as an argument, so a replicated state machine applies commands deterministically.
//!
//! Backends:
//! - [`memory::MemoryStorage`]: thread-safe, in process, for one process and for tests.
//! - `auth_raft::RaftStorage`: replicated over Raft (separate crate).
//!
//! Every backend must pass [`conformance`] (feature `conformance`).
//!
//! ```
//! use auth_storage::{Storage, memory::MemoryStorage};
//! # tokio_test();
//! # fn tokio_test() { let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let storage = MemoryStorage::new();
//! assert!(storage.get_user("no-such-id").await?.is_none());
//! # Ok::<(), auth_storage::StorageError>(()) }).unwrap(); }
//! ```
#![warn(missing_docs)]

use async_trait::async_trait;

pub use auth_proto::v1::{LoginAttempts, Session, User};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod memory;

/// How many retired refresh-token hashes a session remembers for reuse detection.
pub const RETIRED_HASHES_KEPT: usize = 16;

/// A storage failure. Each variant has a stable machine code ([`StorageError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A user with this username (or id) already exists.
    #[error("a user with this username already exists")]
    UserExists,
    /// A session with this id already exists.
    #[error("a session with this id already exists")]
    SessionExists,
    /// The record the operation names does not exist.
    #[error("record not found")]
    NotFound,
    /// A compare-and-set failed: the record changed since it was read.
    #[error("version conflict: the record changed since it was read")]
    Conflict,
    /// The request is malformed (e.g. an update that changes an immutable field).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// The backend cannot serve the request now (no quorum, shutting down, I/O). Safe
    /// to retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or corruption inside the backend.
    #[error("storage internal error: {0}")]
    Internal(String),
}

impl StorageError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::UserExists => "user_exists",
            StorageError::SessionExists => "session_exists",
            StorageError::NotFound => "not_found",
            StorageError::Conflict => "conflict",
            StorageError::Invalid(_) => "invalid",
            StorageError::Unavailable(_) => "unavailable",
            StorageError::Internal(_) => "internal",
        }
    }

    /// The error [`StorageError::code`] named, rebuilt with `detail` for the variants
    /// that carry text; an unknown code is [`StorageError::Internal`].
    pub fn from_code(code: &str, detail: String) -> StorageError {
        match code {
            "user_exists" => StorageError::UserExists,
            "session_exists" => StorageError::SessionExists,
            "not_found" => StorageError::NotFound,
            "conflict" => StorageError::Conflict,
            "invalid" => StorageError::Invalid(detail),
            "unavailable" => StorageError::Unavailable(detail),
            _ => StorageError::Internal(detail),
        }
    }
}

/// Shorthand for storage results.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One atomic refresh-token rotation, as decided by the backend.
///
/// The backend looks up `session_id` and compares `presented_hash` with the session's
/// hashes. All inputs that depend on the caller (the successor, the time, the lifetimes)
/// travel in the request, so applying it is deterministic.
#[derive(Clone, PartialEq, Eq)]
pub struct RotateRefresh {
    /// The session the presented token names.
    pub session_id: String,
    /// SHA-256 of the presented refresh token.
    pub presented_hash: Vec<u8>,
    /// SHA-256 of the successor token the caller generated.
    pub new_hash: Vec<u8>,
    /// The successor sealed under the presented token (see `Session::sealed_successor`).
    pub sealed_successor: Vec<u8>,
    /// The caller's clock, unix millis.
    pub now_ms: i64,
    /// Idle lifetime: the new idle expiry is `min(now + idle_ttl, absolute expiry)`.
    pub idle_ttl_ms: i64,
    /// A token rotated at most this long ago may be presented again and yields
    /// [`RotateOutcome::Replayed`] instead of revoking the session. Zero disables replay.
    pub grace_ms: i64,
}

impl std::fmt::Debug for RotateRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateRefresh")
            .field("session_id", &self.session_id)
            .field("now_ms", &self.now_ms)
            .field("idle_ttl_ms", &self.idle_ttl_ms)
            .field("grace_ms", &self.grace_ms)
            .finish_non_exhaustive()
    }
}

/// What a [`Storage::rotate_refresh`] call did.
#[derive(Debug, Clone, PartialEq)]
pub enum RotateOutcome {
    /// The presented token was current: it is now retired and the successor is current.
    Rotated(Session),
    /// The presented token was rotated within the grace window: nothing changed, and the
    /// returned session's `sealed_successor` holds the token that replaced it.
    Replayed(Session),
    /// The presented token was rotated earlier (outside the grace window, or further
    /// back): a sign of theft. The session has been deleted.
    Reused,
    /// The session has expired (idle or absolute); it has been deleted.
    Expired,
    /// No session with this id, or the token matches none of its hashes.
    Invalid,
}

/// The lock delay after `failures` charged checks under a lockout policy: zero below
/// `max_failures` (and always when `max_failures` is 0), then `base_ms` doubling per
/// further failure, capped at `max_ms`. Deterministic, so every replica agrees.
pub fn lock_delay_ms(failures: u32, max_failures: u32, base_ms: i64, max_ms: i64) -> i64 {
    if max_failures == 0 || failures < max_failures {
        return 0;
    }
    let doublings = (failures - max_failures).min(30);
    base_ms
        .max(0)
        .saturating_mul(1i64 << doublings)
        .min(max_ms.max(0))
}

/// Reserve one password check for a username key ([`Storage::reserve_login`]). The
/// lockout policy travels in the request so that applying it is deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveLogin {
    /// The normalised username (it need not belong to a user).
    pub username_key: String,
    /// The caller's clock, unix millis.
    pub now_ms: i64,
    /// Charged checks before the first lock; 0 disables locking (checks are still
    /// counted).
    pub max_failures: u32,
    /// First lock duration.
    pub base_delay_ms: i64,
    /// Longest lock duration.
    pub max_delay_ms: i64,
    /// A record with no lock in force is forgotten this long after its last charge.
    pub forget_after_ms: i64,
}

/// What [`Storage::reserve_login`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The check may run; it has been charged as a failure. `ticket` is the failure
    /// count including this charge: pass it to [`Storage::settle_login`] on success.
    Granted {
        /// The failure count right after this charge.
        ticket: u32,
    },
    /// A lock is in force until `until_ms`: the check must not run. Nothing changed.
    Locked {
        /// When the lock ends, unix millis.
        until_ms: i64,
    },
}

/// Settle a granted reservation whose check succeeded ([`Storage::settle_login`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleLogin {
    /// The username key the reservation was for.
    pub username_key: String,
    /// The ticket [`Reservation::Granted`] returned.
    pub ticket: u32,
}

/// The backend seam of auth-sdk. See the crate docs for the atomicity contract.
///
/// Every method is cancel-safe in the sense that an operation either happened entirely
/// or not at all; a caller that loses a reply may find it applied.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates `user` if neither its `id` nor its `username_key` is taken
    /// ([`StorageError::UserExists`] otherwise). The stored record gets `version = 1`
    /// and is returned.
    async fn create_user(&self, user: User) -> Result<User>;

    /// The user with this id.
    async fn get_user(&self, id: &str) -> Result<Option<User>>;

    /// The user with this `username_key` (normalised, lowercased username).
    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<User>>;

    /// Whether a username looks taken, possibly from a stale replica: a cheap early
    /// answer before expensive work (hashing a password for a registration). Never
    /// the final word: [`Storage::create_user`] decides. The default asks
    /// [`Storage::get_user_by_username`].
    async fn username_taken_hint(&self, username_key: &str) -> Result<bool> {
        Ok(self.get_user_by_username(username_key).await?.is_some())
    }

    /// Compare-and-set: replaces the stored user with `user` if the stored `version`
    /// equals `user.version` ([`StorageError::Conflict`] otherwise), then increments the
    /// version and returns the stored record. `id`, `username_key` and `created_at_ms`
    /// are immutable ([`StorageError::Invalid`]).
    async fn update_user(&self, user: User) -> Result<User>;

    /// Deletes the user and every session of theirs in one step. Returns how many
    /// sessions went with them; [`StorageError::NotFound`] if there was no such user.
    async fn delete_user(&self, id: &str) -> Result<u64>;

    /// Creates a session for an existing user ([`StorageError::NotFound`] if the user
    /// does not exist, [`StorageError::SessionExists`] if the id is taken).
    async fn create_session(&self, session: Session) -> Result<Session>;

    /// The session with this id, expired or not.
    async fn get_session(&self, id: &str) -> Result<Option<Session>>;

    /// True if the session exists, belongs to `user_id` and has not expired at `now_ms`.
    /// The hot path of token verification: it must not copy the record.
    async fn is_session_live(&self, id: &str, user_id: &str, now_ms: i64) -> Result<bool>;

    /// The sessions of a user that have not expired at `now_ms`, oldest first.
    async fn list_user_sessions(&self, user_id: &str, now_ms: i64) -> Result<Vec<Session>>;

    /// Rotates a refresh token atomically; see [`RotateOutcome`].
    async fn rotate_refresh(&self, req: RotateRefresh) -> Result<RotateOutcome>;

    /// Deletes the session if it belongs to `user_id`. Returns whether it existed.
    async fn delete_session(&self, id: &str, user_id: &str) -> Result<bool>;

    /// Deletes every session of `user_id` except `keep` (if given). Returns how many.
    async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<u64>;

    /// Deletes up to `limit` sessions whose idle expiry is at or before `now_ms`,
    /// earliest first, and up to `limit` login-attempt records that expired by then
    /// (no lock in force, nothing charged recently). Returns how many of both.
    async fn delete_expired_sessions(&self, now_ms: i64, limit: usize) -> Result<u64>;

    /// The failed-login record of a username key, if any: a read for an early answer
    /// (a lock in force) before queueing for a password check. Never the final word:
    /// [`Storage::reserve_login`] decides.
    async fn get_login_attempts(&self, username_key: &str) -> Result<Option<LoginAttempts>>;

    /// Atomically decides whether a password check for `username_key` may run and, if
    /// so, charges it as a failure before it runs:
    /// - a lock in force at `now_ms` → [`Reservation::Locked`], nothing changes;
    /// - otherwise the failure count (reset first if the record had expired) grows by
    ///   one, a lock of [`lock_delay_ms`] starts if that is not zero, the record
    ///   expires `forget_after_ms` after now (or when the lock ends, if later), and
    ///   [`Reservation::Granted`] carries the new count.
    ///
    /// So however many checks run at once, at most `max_failures` are granted before
    /// the lock, and each later one only when a lock has run out.
    async fn reserve_login(&self, req: ReserveLogin) -> Result<Reservation>;

    /// A granted check succeeded. If nothing was charged since its reservation
    /// (`failures == ticket`) the record is deleted: a success resets the count, and any
    /// lock in force was set by this very charge. Otherwise only this charge is refunded
    /// (`failures - 1`) and a lock set meanwhile stays. A record that is gone or was
    /// reset meanwhile is left alone.
    async fn settle_login(&self, req: SettleLogin) -> Result<()>;
}

#[async_trait]
impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    async fn create_user(&self, user: User) -> Result<User> {
        (**self).create_user(user).await
    }
    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        (**self).get_user(id).await
    }
    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<User>> {
        (**self).get_user_by_username(username_key).await
    }
    async fn username_taken_hint(&self, username_key: &str) -> Result<bool> {
        (**self).username_taken_hint(username_key).await
    }
    async fn update_user(&self, user: User) -> Result<User> {
        (**self).update_user(user).await
    }
    async fn delete_user(&self, id: &str) -> Result<u64> {
        (**self).delete_user(id).await
    }
    async fn create_session(&self, session: Session) -> Result<Session> {
        (**self).create_session(session).await
    }
    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        (**self).get_session(id).await
    }
    async fn is_session_live(&self, id: &str, user_id: &str, now_ms: i64) -> Result<bool> {
        (**self).is_session_live(id, user_id, now_ms).await
    }
    async fn list_user_sessions(&self, user_id: &str, now_ms: i64) -> Result<Vec<Session>> {
        (**self).list_user_sessions(user_id, now_ms).await
    }
    async fn rotate_refresh(&self, req: RotateRefresh) -> Result<RotateOutcome> {
        (**self).rotate_refresh(req).await
    }
    async fn delete_session(&self, id: &str, user_id: &str) -> Result<bool> {
        (**self).delete_session(id, user_id).await
    }
    async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        (**self).delete_user_sessions(user_id, keep).await
    }
    async fn delete_expired_sessions(&self, now_ms: i64, limit: usize) -> Result<u64> {
        (**self).delete_expired_sessions(now_ms, limit).await
    }
    async fn get_login_attempts(&self, username_key: &str) -> Result<Option<LoginAttempts>> {
        (**self).get_login_attempts(username_key).await
    }
    async fn reserve_login(&self, req: ReserveLogin) -> Result<Reservation> {
        (**self).reserve_login(req).await
    }
    async fn settle_login(&self, req: SettleLogin) -> Result<()> {
        (**self).settle_login(req).await
    }
}

#[cfg(test)]
mod error_code_tests {
    use super::StorageError;

    #[test]
    fn every_storage_error_round_trips_through_its_code() {
        for e in [
            StorageError::UserExists,
            StorageError::SessionExists,
            StorageError::NotFound,
            StorageError::Conflict,
            StorageError::Invalid("x".into()),
            StorageError::Unavailable("no quorum".into()),
            StorageError::Internal("bug".into()),
        ] {
            let detail = match &e {
                StorageError::Invalid(d)
                | StorageError::Unavailable(d)
                | StorageError::Internal(d) => d.clone(),
                _ => String::new(),
            };
            assert_eq!(StorageError::from_code(e.code(), detail), e);
        }
        assert_eq!(
            StorageError::from_code("no_such_code", "d".into()),
            StorageError::Internal("d".into())
        );
    }
}
