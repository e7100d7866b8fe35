//! The behaviour suite every [`Storage`] backend must pass.
//!
//! Each public `async fn` here checks one behaviour of the [`Storage`] contract and panics
//! (with a message saying what went wrong) if the backend under test gets it wrong. The
//! functions only ever add fresh records with unique ids and usernames, so they can all run
//! against **one** shared storage instance (a replicated cluster, say), in any order and
//! in parallel.
//!
//! # Using it from a backend
//!
//! Enable the `conformance` feature in the backend's dev-dependencies and invoke
//! [`conformance_tests!`](crate::conformance_tests) in an integration test with an
//! expression that creates a fresh, empty store. It expands to one
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per behaviour, so each
//! behaviour shows up (and fails) as its own test; the expression is evaluated once per
//! test. Wrap the invocation in a module of its own if the test file has other items, as
//! the generated tests are named after the behaviours.
//!
//! ```toml
//! [dev-dependencies]
//! auth-storage = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! ```text
//! // tests/conformance.rs
//! auth_storage::conformance_tests!(my_backend::MyStorage::open_temporary());
//! ```
//!
//! The generated tests use the `tokio` this crate re-exports, so the test crate needs no
//! tokio dependency of its own, but it must depend on this crate under its own name
//! (`auth_storage`).
//!
//! A backend that is expensive to start (a Raft cluster) can instead start it once and
//! hand it to [`run_all`], which runs every behaviour in sequence against that one
//! instance; or call the individual functions itself, concurrently if it likes.
//!
//! # Ground rules the suite relies on
//!
//! - Clocks are synthetic: every timestamp the suite passes lies decades in the future
//!   (around `4_000_000_000_000` ms for most behaviours), so a background sweeper that
//!   runs on the real clock never touches the suite's sessions.
//! - [`delete_expired_sessions_sweeps_earliest_first`] needs to count exactly what a sweep
//!   removes, and a sweep is global. It therefore uses a reserved time range (sessions
//!   whose idle expiry lies in `3_000_000_000_000 ..= 3_000_086_400_000`), first clears
//!   whatever is left in that range, and is serialised by a process-wide lock. No other
//!   behaviour creates sessions expiring in or below that range. Do not run it from two
//!   processes against one store at the same time.
//! - Ids are 32 lowercase hex characters, unique per process and (via a time-derived
//!   prefix) across processes.
//!
//! [`Storage`]: crate::Storage

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use crate::{
    RETIRED_HASHES_KEPT, Reservation, ReserveLogin, RotateOutcome, RotateRefresh, Session,
    SettleLogin, Storage, StorageError, User,
};

#[doc(hidden)]
pub use tokio as __tokio;

// ---------------------------------------------------------------------------------------
// Clocks, ids and record builders.
// ---------------------------------------------------------------------------------------

/// The synthetic "now" of every behaviour except the sweeper one (year 2096).
const NOW: i64 = 4_000_000_000_000;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Start of the time range reserved for [`delete_expired_sessions_sweeps_earliest_first`].
const SWEEP_BASE: i64 = 3_000_000_000_000;
/// End (inclusive) of that range. Every other behaviour's sessions expire well above it.
const SWEEP_CEILING: i64 = SWEEP_BASE + DAY;

/// Serialises the sweeper behaviour within this process (a sweep is global).
static SWEEP_LOCK: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

/// A fresh 32-character lowercase hex id: a per-process random-ish prefix (time and
/// a randomly keyed hash) followed by a process-wide counter.
fn unique_hex() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.finish() ^ (nanos as u64)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

/// A fresh 32-byte value standing in for a SHA-256 refresh-token hash.
fn fresh_hash() -> Vec<u8> {
    unique_hex().into_bytes()
}

/// A fresh value standing in for a sealed successor token.
fn fresh_sealed() -> Vec<u8> {
    format!("sealed:{}", unique_hex()).into_bytes()
}

/// A new, not yet stored user with a unique id and username.
fn new_user() -> User {
    let tag = unique_hex();
    User {
        id: unique_hex(),
        username: format!("User-{tag}"),
        username_key: format!("user-{tag}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        created_at_ms: NOW - DAY,
        updated_at_ms: NOW - DAY,
        version: 0,
        failed_logins: 0,
        locked_until_ms: 0,
    }
}

/// Creates a fresh user and checks the store accepted it.
async fn stored_user<S: Storage>(s: &S) -> User {
    let user = new_user();
    s.create_user(user.clone())
        .await
        .unwrap_or_else(|e| panic!("create_user of a fresh user {:?} failed: {e}", user.id))
}

/// A new, not yet stored session of `user_id`, never rotated.
fn new_session(user_id: &str, created_at_ms: i64, expires_at_ms: i64) -> Session {
    Session {
        id: unique_hex(),
        user_id: user_id.to_owned(),
        refresh_hash: fresh_hash(),
        created_at_ms,
        last_used_at_ms: created_at_ms,
        expires_at_ms,
        absolute_expires_at_ms: expires_at_ms.max(created_at_ms + 30 * DAY),
        user_agent: "conformance-suite/1.0".into(),
        ip: "192.0.2.7".into(),
        ..Default::default()
    }
}

/// Creates a session and checks the store returned it unchanged.
async fn stored_session<S: Storage>(s: &S, session: Session) -> Session {
    let stored = s
        .create_session(session.clone())
        .await
        .unwrap_or_else(|e| panic!("create_session {:?} failed: {e}", session.id));
    assert_eq!(
        stored, session,
        "create_session must return the session as given"
    );
    stored
}

/// A live session (created an hour before [`NOW`], expiring an hour after it).
async fn live_session<S: Storage>(s: &S, user_id: &str) -> Session {
    stored_session(s, new_session(user_id, NOW - HOUR, NOW + HOUR)).await
}

/// A rotation request presenting `presented` for `session_id` at `now_ms`.
fn rotate_req(session_id: &str, presented: &[u8], now_ms: i64, grace_ms: i64) -> RotateRefresh {
    RotateRefresh {
        session_id: session_id.to_owned(),
        presented_hash: presented.to_vec(),
        new_hash: fresh_hash(),
        sealed_successor: fresh_sealed(),
        now_ms,
        idle_ttl_ms: 2 * HOUR,
        grace_ms,
    }
}

fn outcome_name(o: &RotateOutcome) -> &'static str {
    match o {
        RotateOutcome::Rotated(_) => "Rotated",
        RotateOutcome::Replayed(_) => "Replayed",
        RotateOutcome::Reused => "Reused",
        RotateOutcome::Expired => "Expired",
        RotateOutcome::Invalid => "Invalid",
    }
}

async fn rotate<S: Storage>(s: &S, req: RotateRefresh) -> RotateOutcome {
    s.rotate_refresh(req.clone())
        .await
        .unwrap_or_else(|e| panic!("rotate_refresh {req:?} failed with a storage error: {e}"))
}

/// Rotates and insists on [`RotateOutcome::Rotated`].
async fn expect_rotated<S: Storage>(s: &S, req: RotateRefresh, what: &str) -> Session {
    match rotate(s, req).await {
        RotateOutcome::Rotated(session) => session,
        other => panic!("{what}: expected Rotated, got {}", outcome_name(&other)),
    }
}

async fn get_session<S: Storage>(s: &S, id: &str) -> Option<Session> {
    s.get_session(id)
        .await
        .unwrap_or_else(|e| panic!("get_session {id:?} failed: {e}"))
}

async fn get_user<S: Storage>(s: &S, id: &str) -> Option<User> {
    s.get_user(id)
        .await
        .unwrap_or_else(|e| panic!("get_user {id:?} failed: {e}"))
}

async fn get_user_by_username<S: Storage>(s: &S, key: &str) -> Option<User> {
    s.get_user_by_username(key)
        .await
        .unwrap_or_else(|e| panic!("get_user_by_username {key:?} failed: {e}"))
}

async fn is_live<S: Storage>(s: &S, id: &str, user_id: &str, now_ms: i64) -> bool {
    s.is_session_live(id, user_id, now_ms)
        .await
        .unwrap_or_else(|e| panic!("is_session_live {id:?} failed: {e}"))
}

async fn list_ids<S: Storage>(s: &S, user_id: &str, now_ms: i64) -> Vec<String> {
    s.list_user_sessions(user_id, now_ms)
        .await
        .unwrap_or_else(|e| panic!("list_user_sessions {user_id:?} failed: {e}"))
        .into_iter()
        .map(|x| x.id)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Users.
// ---------------------------------------------------------------------------------------

/// `create_user` stores the user with `version = 1` (whatever version the caller sent),
/// keeps every other field, and returns the stored record; both lookups then find it.
pub async fn create_user_sets_version_one<S: Storage>(s: &S) {
    let mut user = new_user();
    user.version = 42;
    user.failed_logins = 2;
    user.locked_until_ms = NOW + MINUTE;
    let stored = s
        .create_user(user.clone())
        .await
        .expect("create_user of a fresh user");
    assert_eq!(stored.version, 1, "a created user must have version 1");
    assert_eq!(
        stored,
        User {
            version: 1,
            ..user.clone()
        },
        "create_user must keep every field but the version"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&stored),
        "get_user must return the created user"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&stored),
        "get_user_by_username must return the created user"
    );
}

/// A second user with an id that is taken is refused with `UserExists`, even under a
/// fresh username, and the first user is left as it was.
pub async fn create_user_rejects_duplicate_id<S: Storage>(s: &S) {
    let first = stored_user(s).await;
    let mut dup = new_user();
    dup.id = first.id.clone();
    assert_eq!(
        s.create_user(dup.clone()).await,
        Err(StorageError::UserExists),
        "create_user with a taken id must fail with UserExists"
    );
    assert_eq!(
        get_user(s, &first.id).await.as_ref(),
        Some(&first),
        "the first user must be unchanged"
    );
    assert_eq!(
        get_user_by_username(s, &dup.username_key).await,
        None,
        "the refused user's username must not have been claimed"
    );
}

/// A second user with a `username_key` that is taken is refused with `UserExists`, and
/// nothing is stored under the second id.
pub async fn create_user_rejects_duplicate_username<S: Storage>(s: &S) {
    let first = stored_user(s).await;
    let mut dup = new_user();
    dup.username_key = first.username_key.clone();
    assert_eq!(
        s.create_user(dup.clone()).await,
        Err(StorageError::UserExists),
        "create_user with a taken username_key must fail with UserExists"
    );
    assert_eq!(
        get_user(s, &dup.id).await,
        None,
        "the refused user must not be stored"
    );
    assert_eq!(
        get_user_by_username(s, &first.username_key).await.as_ref(),
        Some(&first),
        "the username must still belong to the first user"
    );
}

/// A user with an empty id is refused with `Invalid` and not stored.
pub async fn create_user_rejects_empty_id<S: Storage>(s: &S) {
    let mut user = new_user();
    user.id = String::new();
    let res = s.create_user(user.clone()).await;
    assert!(
        matches!(res, Err(StorageError::Invalid(_))),
        "create_user with an empty id must fail with Invalid, got {res:?}"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await,
        None,
        "the refused user must not be stored"
    );
}

/// `get_user` and `get_user_by_username` find an existing user and return `None` (not an
/// error) for an unknown id or username.
pub async fn get_user_found_and_missing<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "get_user of a stored user"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&user),
        "get_user_by_username of a stored user"
    );
    let unknown = new_user();
    assert_eq!(
        get_user(s, &unknown.id).await,
        None,
        "get_user of an unknown id"
    );
    assert_eq!(
        get_user_by_username(s, &unknown.username_key).await,
        None,
        "get_user_by_username of an unknown username_key"
    );
}

/// `username_taken_hint` is false for a name never created and, once a user exists,
/// becomes true (a replicated backend may answer from a lagging replica, so this waits
/// for it, with a deadline).
pub async fn username_taken_hint_follows_creation<S: Storage>(s: &S) {
    let unknown = new_user();
    assert!(
        !s.username_taken_hint(&unknown.username_key)
            .await
            .expect("hint"),
        "an unknown username looks taken"
    );
    let user = stored_user(s).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s
        .username_taken_hint(&user.username_key)
        .await
        .expect("hint")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a created username never looked taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `update_user` with the stored version replaces the record, increments the version
/// and returns what it stored; successive updates keep incrementing it.
pub async fn update_user_cas_bumps_version<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut change = user.clone();
    change.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into();
    change.failed_logins = 3;
    change.locked_until_ms = NOW + 5 * MINUTE;
    change.updated_at_ms = NOW;
    let updated = s
        .update_user(change.clone())
        .await
        .expect("update_user at the stored version");
    assert_eq!(updated.version, 2, "update_user must increment the version");
    assert_eq!(
        updated,
        User {
            version: 2,
            ..change
        },
        "update_user must store every mutable field as given"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&updated),
        "get_user must see the update"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&updated),
        "get_user_by_username must see the update"
    );

    let mut again = updated.clone();
    again.failed_logins = 0;
    let again = s
        .update_user(again)
        .await
        .expect("second update_user at the new version");
    assert_eq!(
        again.version, 3,
        "a second update must increment the version again"
    );
    assert_eq!(again.failed_logins, 0);
}

/// `update_user` with a version other than the stored one fails with `Conflict` and
/// changes nothing.
pub async fn update_user_stale_version_conflicts<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut first = user.clone();
    first.failed_logins = 1;
    let current = s
        .update_user(first)
        .await
        .expect("update_user at the stored version");

    let mut stale = user.clone(); // still version 1
    stale.failed_logins = 9;
    assert_eq!(
        s.update_user(stale).await,
        Err(StorageError::Conflict),
        "update_user with a stale version must fail with Conflict"
    );
    let mut ahead = current.clone();
    ahead.version += 5;
    ahead.failed_logins = 9;
    assert_eq!(
        s.update_user(ahead).await,
        Err(StorageError::Conflict),
        "update_user with a version ahead of the stored one must fail with Conflict"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&current),
        "a conflicting update must change nothing"
    );
}

/// `update_user` of a user that does not exist fails with `NotFound` and creates nothing.
pub async fn update_user_missing_not_found<S: Storage>(s: &S) {
    let mut ghost = new_user();
    ghost.version = 1;
    assert_eq!(
        s.update_user(ghost.clone()).await,
        Err(StorageError::NotFound),
        "update_user of an unknown user must fail with NotFound"
    );
    assert_eq!(
        get_user(s, &ghost.id).await,
        None,
        "update_user must not create a user"
    );
    assert_eq!(get_user_by_username(s, &ghost.username_key).await, None);
}

/// `update_user` that changes `username_key` fails with `Invalid`: the user, its old
/// username and the version are unchanged, and the new username is not claimed.
pub async fn update_user_rejects_username_key_change<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut change = user.clone();
    change.username_key = new_user().username_key;
    let res = s.update_user(change.clone()).await;
    assert!(
        matches!(res, Err(StorageError::Invalid(_))),
        "update_user changing username_key must fail with Invalid, got {res:?}"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must be unchanged"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&user),
        "the old username must still map to the user"
    );
    assert_eq!(
        get_user_by_username(s, &change.username_key).await,
        None,
        "the new username must not be claimed"
    );
}

/// `update_user` that changes `created_at_ms` fails with `Invalid` and changes nothing.
pub async fn update_user_rejects_created_at_change<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut change = user.clone();
    change.created_at_ms += 1;
    let res = s.update_user(change).await;
    assert!(
        matches!(res, Err(StorageError::Invalid(_))),
        "update_user changing created_at_ms must fail with Invalid, got {res:?}"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must be unchanged"
    );
}

/// `delete_user` removes the user and every one of its sessions (expired ones included),
/// returns how many sessions went, and leaves other users' sessions alone.
pub async fn delete_user_removes_user_and_sessions<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let mine = [
        live_session(s, &user.id).await,
        live_session(s, &user.id).await,
        stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW - HOUR)).await,
    ];
    let theirs = live_session(s, &other.id).await;

    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(3),
        "delete_user must return how many sessions (expired included) it deleted"
    );
    assert_eq!(get_user(s, &user.id).await, None, "the user must be gone");
    assert_eq!(
        get_user_by_username(s, &user.username_key).await,
        None,
        "the username must no longer resolve"
    );
    for session in &mine {
        assert_eq!(
            get_session(s, &session.id).await,
            None,
            "the user's session {:?} must be gone",
            session.id
        );
        assert!(!is_live(s, &session.id, &user.id, NOW).await);
    }
    assert!(
        list_ids(s, &user.id, NOW).await.is_empty(),
        "no sessions may be listed"
    );
    assert_eq!(
        get_session(s, &theirs.id).await.as_ref(),
        Some(&theirs),
        "another user's session must survive"
    );
    assert_eq!(
        get_user(s, &other.id).await.as_ref(),
        Some(&other),
        "another user must survive"
    );
}

/// After `delete_user` the username is free: a new user (new id) can take it.
pub async fn delete_user_frees_username<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(0),
        "delete_user of a user without sessions"
    );
    let mut successor = new_user();
    successor.username_key = user.username_key.clone();
    successor.username = user.username.clone();
    let created = s
        .create_user(successor.clone())
        .await
        .expect("a deleted user's username must be free again");
    assert_eq!(created.version, 1);
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&created),
        "the username must now resolve to the new user"
    );
    assert_eq!(
        get_user(s, &user.id).await,
        None,
        "the deleted user must stay deleted"
    );
}

/// `delete_user` of an unknown user (or one already deleted) fails with `NotFound`.
pub async fn delete_user_missing_not_found<S: Storage>(s: &S) {
    assert_eq!(
        s.delete_user(&new_user().id).await,
        Err(StorageError::NotFound),
        "delete_user of an unknown id must fail with NotFound"
    );
    let user = stored_user(s).await;
    assert_eq!(s.delete_user(&user.id).await, Ok(0));
    assert_eq!(
        s.delete_user(&user.id).await,
        Err(StorageError::NotFound),
        "deleting a user twice must fail with NotFound the second time"
    );
}

// ---------------------------------------------------------------------------------------
// Sessions.
// ---------------------------------------------------------------------------------------

/// `create_session` for a user that does not exist fails with `NotFound` and stores
/// nothing.
pub async fn create_session_for_missing_user_not_found<S: Storage>(s: &S) {
    let ghost = new_user();
    let session = new_session(&ghost.id, NOW - HOUR, NOW + HOUR);
    assert_eq!(
        s.create_session(session.clone()).await,
        Err(StorageError::NotFound),
        "create_session for an unknown user must fail with NotFound"
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "the session must not be stored"
    );
}

/// `create_session` with an id that is taken fails with `SessionExists` (even for another
/// user) and leaves the existing session as it was.
pub async fn create_session_rejects_duplicate_id<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let first = live_session(s, &user.id).await;

    let mut dup = new_session(&user.id, NOW - MINUTE, NOW + 2 * HOUR);
    dup.id = first.id.clone();
    assert_eq!(
        s.create_session(dup.clone()).await,
        Err(StorageError::SessionExists),
        "create_session with a taken id must fail with SessionExists"
    );
    dup.user_id = other.id.clone();
    assert_eq!(
        s.create_session(dup).await,
        Err(StorageError::SessionExists),
        "create_session with a taken id for another user must fail with SessionExists"
    );
    assert_eq!(
        get_session(s, &first.id).await.as_ref(),
        Some(&first),
        "the existing session must be unchanged"
    );
    assert!(
        list_ids(s, &other.id, NOW).await.is_empty(),
        "the other user gained no session"
    );
}

/// `get_session` returns a stored session exactly as created, expired or not, and
/// `None` for an unknown id.
pub async fn get_session_found_and_missing<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let live = live_session(s, &user.id).await;
    let expired = stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW - HOUR)).await;
    assert_eq!(
        get_session(s, &live.id).await.as_ref(),
        Some(&live),
        "get_session of a session"
    );
    assert_eq!(
        get_session(s, &expired.id).await.as_ref(),
        Some(&expired),
        "get_session must return an expired (not yet swept) session too"
    );
    assert_eq!(
        get_session(s, &unique_hex()).await,
        None,
        "get_session of an unknown id"
    );
}

/// `is_session_live` is true only for an existing session of the named user whose idle
/// expiry is after `now` (a session expiring exactly at `now` is dead).
pub async fn is_session_live_cases<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let exp = session.expires_at_ms;

    assert!(
        is_live(s, &session.id, &user.id, NOW).await,
        "a live session must be live"
    );
    assert!(
        is_live(s, &session.id, &user.id, exp - 1).await,
        "a session must be live one millisecond before its expiry"
    );
    assert!(
        !is_live(s, &session.id, &user.id, exp).await,
        "a session must not be live at exactly its expiry"
    );
    assert!(
        !is_live(s, &session.id, &user.id, exp + HOUR).await,
        "a session must not be live after its expiry"
    );
    assert!(
        !is_live(s, &session.id, &other.id, NOW).await,
        "a session must not be live for a user who does not own it"
    );
    assert!(
        !is_live(s, &unique_hex(), &user.id, NOW).await,
        "an unknown session must not be live"
    );
    assert!(
        s.delete_session(&session.id, &user.id)
            .await
            .expect("delete_session"),
        "delete_session of an existing session"
    );
    assert!(
        !is_live(s, &session.id, &user.id, NOW).await,
        "a deleted session must not be live"
    );
}

/// `list_user_sessions` lists only that user's sessions that are live at `now`, oldest
/// (by `created_at_ms`) first, each as stored; an unknown user has none.
pub async fn list_user_sessions_live_oldest_first<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    // Created out of order on purpose.
    let middle = stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW + HOUR)).await;
    let newest = stored_session(s, new_session(&user.id, NOW - HOUR, NOW + 3 * HOUR)).await;
    let _expired = stored_session(s, new_session(&user.id, NOW - 4 * HOUR, NOW)).await;
    let oldest = stored_session(s, new_session(&user.id, NOW - 3 * HOUR, NOW + 2 * HOUR)).await;
    let _theirs = stored_session(s, new_session(&other.id, NOW - 5 * HOUR, NOW + HOUR)).await;

    let listed = s
        .list_user_sessions(&user.id, NOW)
        .await
        .expect("list_user_sessions");
    assert_eq!(
        listed,
        vec![oldest.clone(), middle.clone(), newest.clone()],
        "list_user_sessions must return the user's live sessions, oldest first, \
         without the one expiring exactly at now"
    );
    assert_eq!(
        list_ids(s, &user.id, NOW + HOUR).await,
        vec![oldest.id.clone(), newest.id.clone()],
        "sessions expired at a later now must drop out of the list"
    );
    assert!(
        list_ids(s, &new_user().id, NOW).await.is_empty(),
        "an unknown user has no sessions"
    );
}

/// Presenting the current refresh token rotates it: the new hash becomes current, the
/// old one is retired (most recent first), the successor is stored sealed, `generation`
/// goes up by one, `rotated_at_ms` is now and the idle expiry becomes `now + idle_ttl`;
/// the stored session equals the returned one and the next rotation chains on.
pub async fn rotate_refresh_rotates_current_token<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;

    let req = rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND);
    let rotated = expect_rotated(s, req.clone(), "presenting the current token").await;
    assert_eq!(
        rotated.refresh_hash, req.new_hash,
        "the new hash must be current"
    );
    assert_eq!(
        rotated.retired_refresh_hashes,
        vec![session.refresh_hash.clone()],
        "the presented hash must be retired"
    );
    assert_eq!(
        rotated.sealed_successor, req.sealed_successor,
        "the sealed successor is kept"
    );
    assert_eq!(
        rotated.generation,
        session.generation + 1,
        "generation goes up by one"
    );
    assert_eq!(
        rotated.rotated_at_ms, NOW,
        "rotated_at_ms must be the request's now"
    );
    assert_eq!(
        rotated.expires_at_ms,
        NOW + req.idle_ttl_ms,
        "the idle expiry must become now + idle_ttl when that is before the absolute expiry"
    );
    assert_eq!(rotated.id, session.id);
    assert_eq!(rotated.user_id, session.user_id);
    assert_eq!(
        rotated.created_at_ms, session.created_at_ms,
        "created_at_ms must not change"
    );
    assert_eq!(
        rotated.absolute_expires_at_ms, session.absolute_expires_at_ms,
        "the absolute expiry must never change"
    );
    assert_eq!(rotated.user_agent, session.user_agent);
    assert_eq!(rotated.ip, session.ip);
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&rotated),
        "the stored session must equal the returned one"
    );
    assert!(
        is_live(s, &session.id, &user.id, NOW + req.idle_ttl_ms - 1).await,
        "the rotated session must be live until its new idle expiry"
    );

    let req2 = rotate_req(&session.id, &req.new_hash, NOW + MINUTE, 10 * SECOND);
    let rotated2 = expect_rotated(s, req2.clone(), "presenting the successor token").await;
    assert_eq!(rotated2.refresh_hash, req2.new_hash);
    assert_eq!(
        rotated2.retired_refresh_hashes,
        vec![req.new_hash.clone(), session.refresh_hash.clone()],
        "retired hashes must be kept most recent first"
    );
    assert_eq!(rotated2.sealed_successor, req2.sealed_successor);
    assert_eq!(rotated2.generation, session.generation + 2);
    assert_eq!(rotated2.rotated_at_ms, NOW + MINUTE);
    assert_eq!(rotated2.expires_at_ms, NOW + MINUTE + req2.idle_ttl_ms);
}

/// A rotation never extends the idle expiry past the absolute expiry:
/// `expires_at = min(now + idle_ttl, absolute_expires_at)`.
pub async fn rotate_refresh_caps_expiry_at_absolute<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut session = new_session(&user.id, NOW - HOUR, NOW + 30 * MINUTE);
    session.absolute_expires_at_ms = NOW + HOUR;
    let session = stored_session(s, session).await;

    let mut req = rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND);
    req.idle_ttl_ms = DAY;
    let rotated = expect_rotated(s, req, "presenting the current token").await;
    assert_eq!(
        rotated.expires_at_ms,
        NOW + HOUR,
        "the idle expiry must be capped at the absolute expiry"
    );
    assert_eq!(
        rotated.absolute_expires_at_ms,
        NOW + HOUR,
        "the absolute expiry never moves"
    );
    assert!(
        !is_live(s, &session.id, &user.id, NOW + HOUR).await,
        "dead at the absolute expiry"
    );
}

/// Presenting the token that was just rotated away, within the grace window (inclusive),
/// yields `Replayed` with the session as the rotation left it (current hash and sealed
/// successor of that rotation), changes nothing, and does not block the successor.
pub async fn rotate_refresh_replay_within_grace<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let grace = 10 * SECOND;

    let req = rotate_req(&session.id, &session.refresh_hash, NOW, grace);
    let rotated = expect_rotated(s, req.clone(), "first rotation").await;

    for (at, what) in [
        (NOW, "at once"),
        (NOW + grace / 2, "mid-grace"),
        (NOW + grace, "at the end of grace"),
    ] {
        let replay = rotate_req(&session.id, &session.refresh_hash, at, grace);
        match rotate(s, replay.clone()).await {
            RotateOutcome::Replayed(seen) => {
                assert_eq!(
                    seen.refresh_hash, req.new_hash,
                    "Replayed ({what}) must report the successor the rotation stored"
                );
                assert_eq!(
                    seen.sealed_successor, req.sealed_successor,
                    "Replayed ({what}) must carry the sealed successor the rotation stored, \
                     not the replaying caller's"
                );
                assert_eq!(
                    seen, rotated,
                    "Replayed ({what}) must return the session unchanged"
                );
            }
            other => panic!(
                "presenting the just-rotated token {what} must be Replayed, got {}",
                outcome_name(&other)
            ),
        }
        assert_eq!(
            get_session(s, &session.id).await.as_ref(),
            Some(&rotated),
            "a replay ({what}) must not change the stored session"
        );
    }

    let next = rotate_req(&session.id, &req.new_hash, NOW + grace + SECOND, grace);
    let rotated2 = expect_rotated(s, next, "the successor after replays").await;
    assert_eq!(rotated2.generation, session.generation + 2);
}

/// Presenting the just-rotated token after the grace window is reuse: `Reused`, and the
/// whole session is deleted (its current token stops working too).
pub async fn rotate_refresh_reuse_after_grace<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let grace = 10 * SECOND;

    let req = rotate_req(&session.id, &session.refresh_hash, NOW, grace);
    expect_rotated(s, req.clone(), "first rotation").await;

    let late = rotate_req(&session.id, &session.refresh_hash, NOW + grace + 1, grace);
    let out = rotate(s, late).await;
    assert!(
        matches!(out, RotateOutcome::Reused),
        "presenting a rotated token after the grace window must be Reused, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "reuse must delete the session"
    );
    assert!(!is_live(s, &session.id, &user.id, NOW + grace + 2).await);
    let out = rotate(
        s,
        rotate_req(&session.id, &req.new_hash, NOW + grace + 2, grace),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "after reuse the successor token must be Invalid (session gone), got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "reuse keeps the user"
    );
}

/// Presenting a token retired two or more rotations ago is reuse even inside the grace
/// window of the latest rotation: `Reused`, and the session is deleted.
pub async fn rotate_refresh_older_token_reused<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let grace = 10 * SECOND;

    let first = rotate_req(&session.id, &session.refresh_hash, NOW, grace);
    expect_rotated(s, first.clone(), "first rotation").await;
    let second = rotate_req(&session.id, &first.new_hash, NOW + SECOND, grace);
    expect_rotated(s, second, "second rotation").await;

    let out = rotate(
        s,
        rotate_req(&session.id, &session.refresh_hash, NOW + 2 * SECOND, grace),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Reused),
        "presenting a token retired two rotations ago must be Reused, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "reuse must delete the session"
    );
}

/// A token matching none of the session's hashes is `Invalid` and leaves the session
/// untouched, both before and after a rotation.
pub async fn rotate_refresh_unknown_hash_invalid<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;

    let out = rotate(s, rotate_req(&session.id, &fresh_hash(), NOW, 10 * SECOND)).await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "an unknown token must be Invalid, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&session),
        "an Invalid rotation must leave the session untouched"
    );

    let rotated = expect_rotated(
        s,
        rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND),
        "rotation with the current token after an invalid attempt",
    )
    .await;
    let out = rotate(
        s,
        rotate_req(&session.id, &fresh_hash(), NOW + SECOND, 10 * SECOND),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "an unknown token for a rotated session must be Invalid, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&rotated),
        "an Invalid rotation must leave the rotated session untouched"
    );
}

/// Rotating a session whose idle expiry is at or before `now` is `Expired`, even with the
/// current token, and deletes the session.
pub async fn rotate_refresh_expired_session<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let at = session.expires_at_ms; // expiry is inclusive: dead at exactly this instant

    let out = rotate(
        s,
        rotate_req(&session.id, &session.refresh_hash, at, 10 * SECOND),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Expired),
        "rotating at exactly the idle expiry must be Expired, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "Expired must delete the session"
    );
    assert!(
        list_ids(s, &user.id, NOW).await.is_empty(),
        "the expired session is not listed"
    );
}

/// Rotating a session id that does not exist is `Invalid` and creates nothing.
pub async fn rotate_refresh_unknown_session_invalid<S: Storage>(s: &S) {
    let id = unique_hex();
    let out = rotate(s, rotate_req(&id, &fresh_hash(), NOW, 10 * SECOND)).await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "rotating an unknown session must be Invalid, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &id).await,
        None,
        "an Invalid rotation must create nothing"
    );
}

/// A session remembers the last [`RETIRED_HASHES_KEPT`]
/// retired hashes, most recent first; `generation` counts every rotation.
pub async fn rotate_refresh_keeps_bounded_retired_hashes<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let rounds = RETIRED_HASHES_KEPT + 4;

    let mut hashes = vec![session.refresh_hash.clone()];
    let mut last = session.clone();
    for i in 0..rounds {
        let req = rotate_req(
            &session.id,
            hashes.last().unwrap(),
            NOW + i as i64 * SECOND,
            0,
        );
        hashes.push(req.new_hash.clone());
        last = expect_rotated(s, req, &format!("rotation {i}")).await;
    }
    assert_eq!(
        last.generation,
        session.generation + rounds as u64,
        "one generation per rotation"
    );
    let mut expected: Vec<Vec<u8>> = hashes[..rounds].to_vec();
    expected.reverse();
    expected.truncate(RETIRED_HASHES_KEPT);
    assert_eq!(
        last.retired_refresh_hashes, expected,
        "the session must keep the {RETIRED_HASHES_KEPT} most recent retired hashes, \
         most recent first"
    );
    assert_eq!(
        last.refresh_hash, hashes[rounds],
        "the last successor is current"
    );
}

/// `delete_session` deletes only when the named user owns the session and returns
/// whether it deleted anything.
pub async fn delete_session_requires_owner<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let sibling = live_session(s, &user.id).await;

    assert_eq!(
        s.delete_session(&session.id, &other.id).await,
        Ok(false),
        "delete_session by a user who does not own the session must return false"
    );
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&session),
        "a refused delete_session must leave the session alone"
    );
    assert_eq!(
        s.delete_session(&session.id, &user.id).await,
        Ok(true),
        "delete_session by the owner must return true"
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "the session must be gone"
    );
    assert_eq!(
        s.delete_session(&session.id, &user.id).await,
        Ok(false),
        "deleting the same session again must return false"
    );
    assert_eq!(
        s.delete_session(&unique_hex(), &user.id).await,
        Ok(false),
        "delete_session of an unknown id must return false"
    );
    assert_eq!(
        list_ids(s, &user.id, NOW).await,
        vec![sibling.id.clone()],
        "the owner's other session must survive"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must survive"
    );
}

/// `delete_user_sessions` without `keep` deletes every session of the user (expired
/// ones included) and returns how many, leaving the user and other users' sessions.
pub async fn delete_user_sessions_all<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let mine = [
        live_session(s, &user.id).await,
        live_session(s, &user.id).await,
        stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW - HOUR)).await,
    ];
    let theirs = live_session(s, &other.id).await;

    assert_eq!(
        s.delete_user_sessions(&user.id, None).await,
        Ok(3),
        "delete_user_sessions must delete and count every session of the user"
    );
    for session in &mine {
        assert_eq!(
            get_session(s, &session.id).await,
            None,
            "session {:?} must be gone",
            session.id
        );
    }
    assert_eq!(
        get_session(s, &theirs.id).await.as_ref(),
        Some(&theirs),
        "another user's session must survive"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must survive"
    );
    assert_eq!(
        s.delete_user_sessions(&user.id, None).await,
        Ok(0),
        "a second delete_user_sessions finds nothing"
    );
    assert_eq!(
        s.delete_user_sessions(&new_user().id, None).await,
        Ok(0),
        "delete_user_sessions of an unknown user deletes nothing"
    );
}

/// `delete_user_sessions` with `keep` deletes every other session of the user and keeps
/// that one; a `keep` naming another user's session protects none of this user's and
/// does not touch the other user's.
pub async fn delete_user_sessions_keep<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let a = live_session(s, &user.id).await;
    let kept = live_session(s, &user.id).await;
    let c = live_session(s, &user.id).await;
    let theirs = live_session(s, &other.id).await;

    assert_eq!(
        s.delete_user_sessions(&user.id, Some(&kept.id)).await,
        Ok(2),
        "delete_user_sessions with keep must delete and count the others"
    );
    assert_eq!(get_session(s, &a.id).await, None);
    assert_eq!(get_session(s, &c.id).await, None);
    assert_eq!(
        get_session(s, &kept.id).await.as_ref(),
        Some(&kept),
        "the kept session must survive unchanged"
    );
    assert_eq!(
        s.delete_user_sessions(&user.id, Some(&kept.id)).await,
        Ok(0),
        "only the kept session is left"
    );
    assert_eq!(
        s.delete_user_sessions(&user.id, Some(&theirs.id)).await,
        Ok(1),
        "keep naming another user's session must not protect this user's session"
    );
    assert_eq!(get_session(s, &kept.id).await, None);
    assert_eq!(
        get_session(s, &theirs.id).await.as_ref(),
        Some(&theirs),
        "the other user's session must survive"
    );
}

/// `delete_expired_sessions` removes only sessions whose idle expiry is at or before
/// `now`, earliest first, at most `limit` per call, and returns how many; it goes by the
/// current idle expiry (as moved by a rotation).
///
/// Uses the reserved sweeper time range and a process-wide lock (see the module docs).
pub async fn delete_expired_sessions_sweeps_earliest_first<S: Storage>(s: &S) {
    let _serialised = SWEEP_LOCK.lock().await;
    // Clear leftovers in the reserved range (e.g. from an earlier run that panicked).
    s.delete_expired_sessions(SWEEP_CEILING, usize::MAX)
        .await
        .expect("delete_expired_sessions (clearing the reserved range)");

    let b = SWEEP_BASE;
    let user = stored_user(s).await;
    let mk = |expires: i64| {
        let mut x = new_session(&user.id, b - HOUR, expires);
        x.absolute_expires_at_ms = b + 2 * HOUR;
        x
    };
    // Created out of expiry order on purpose.
    let e3 = stored_session(s, mk(b + 300)).await;
    let e1 = stored_session(s, mk(b + 100)).await;
    let live = stored_session(s, mk(b + HOUR)).await;
    let moved = stored_session(s, mk(b + 150)).await;
    let e4 = stored_session(s, mk(b + 400)).await;
    let e2 = stored_session(s, mk(b + 200)).await;
    // Rotating `moved` pushes its idle expiry from b+150 to b+100+HOUR: the sweeper must
    // follow it.
    let mut req = rotate_req(&moved.id, &moved.refresh_hash, b + 100, 0);
    req.idle_ttl_ms = HOUR;
    let moved = expect_rotated(s, req, "rotating a session in the sweeper range").await;
    assert_eq!(moved.expires_at_ms, b + 100 + HOUR);

    let now = b + 400;
    let sweep = |at: i64, limit: usize| async move {
        s.delete_expired_sessions(at, limit)
            .await
            .unwrap_or_else(|e| panic!("delete_expired_sessions({at}, {limit}) failed: {e}"))
    };
    let present = |ids: Vec<String>| async move {
        let mut out = HashSet::new();
        for id in ids {
            if get_session(s, &id).await.is_some() {
                out.insert(id);
            }
        }
        out
    };
    let all: Vec<String> = [&e1, &e2, &e3, &e4, &live, &moved]
        .iter()
        .map(|x| x.id.clone())
        .collect();
    let set = |xs: &[&Session]| xs.iter().map(|x| x.id.clone()).collect::<HashSet<_>>();

    assert_eq!(
        sweep(b + 99, 10).await,
        0,
        "nothing is due before the earliest expiry"
    );
    assert_eq!(sweep(now, 0).await, 0, "a limit of 0 deletes nothing");
    assert_eq!(
        present(all.clone()).await.len(),
        6,
        "nothing may be deleted yet"
    );

    assert_eq!(sweep(now, 2).await, 2, "a sweep must honour its limit");
    assert_eq!(
        present(all.clone()).await,
        set(&[&e3, &e4, &live, &moved]),
        "the earliest-expiring sessions must go first"
    );

    assert_eq!(
        sweep(now, 10).await,
        2,
        "the rest of the due sessions (one expiring exactly at now) must go"
    );
    assert_eq!(
        present(all.clone()).await,
        set(&[&live, &moved]),
        "only sessions expiring after now (including the rotated one) may remain"
    );
    assert_eq!(sweep(now, 10).await, 0, "a repeated sweep finds nothing");

    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(2),
        "cleaning up: the two live sessions go with the user"
    );
}

// ---------------------------------------------------------------------------------------
// Concurrency.
// ---------------------------------------------------------------------------------------

/// 100 concurrent `create_user` calls with distinct ids and the same `username_key`:
/// exactly one succeeds, the other 99 get `UserExists`, and the username resolves to the
/// winner.
pub async fn concurrent_create_same_username<S: Storage>(s: &Arc<S>) {
    const TASKS: usize = 100;
    let key = new_user().username_key;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
        let mut user = new_user();
        user.username_key = key.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            (user.id.clone(), s.create_user(user).await)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for h in handles {
        let (id, res) = h.await.expect("create_user task panicked");
        match res {
            Ok(user) => winners.push(user),
            Err(StorageError::UserExists) => losers.push(id),
            Err(e) => panic!("concurrent create_user failed with {e:?}, expected UserExists"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent create_user may succeed"
    );
    assert_eq!(
        losers.len(),
        TASKS - 1,
        "every other one must get UserExists"
    );
    let winner = &winners[0];
    assert_eq!(winner.version, 1);
    assert_eq!(
        get_user_by_username(&**s, &key).await.as_ref(),
        Some(winner),
        "the username must resolve to the one winner"
    );
    for id in &losers {
        assert_eq!(
            get_user(&**s, id).await,
            None,
            "a losing user {id:?} must not be stored"
        );
    }
}

/// 20 concurrent `update_user` calls from the same read version: exactly one succeeds
/// (version 2), the other 19 get `Conflict`, and the stored user is the winner's.
pub async fn concurrent_update_user_cas<S: Storage>(s: &Arc<S>) {
    const TASKS: u32 = 20;
    let user = stored_user(&**s).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
        let mut change = user.clone();
        change.failed_logins = i + 1;
        change.updated_at_ms = NOW + i64::from(i);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            s.update_user(change).await
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        match h.await.expect("update_user task panicked") {
            Ok(u) => winners.push(u),
            Err(StorageError::Conflict) => conflicts += 1,
            Err(e) => panic!("concurrent update_user failed with {e:?}, expected Conflict"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one compare-and-set from version 1 may succeed"
    );
    assert_eq!(conflicts, TASKS - 1, "every other one must get Conflict");
    assert_eq!(winners[0].version, 2);
    assert_eq!(
        get_user(&**s, &user.id).await.as_ref(),
        Some(&winners[0]),
        "the stored user must be the winner's update"
    );
}

/// Two concurrent `rotate_refresh` calls presenting the same current token, each with
/// its own successor, inside a grace window (50 rounds, a fresh session each): one is
/// `Rotated`, the other `Replayed`, both callers end up with the same successor (current
/// hash and sealed successor), and `generation` went up by exactly one.
pub async fn concurrent_rotate_same_token<S: Storage>(s: &Arc<S>) {
    const ROUNDS: u64 = 50;
    let user = stored_user(&**s).await;
    for round in 0..ROUNDS {
        let session = live_session(&**s, &user.id).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let reqs = [0, 1].map(|_| rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND));
        let handles = reqs.clone().map(|req| {
            let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                s.rotate_refresh(req).await
            })
        });
        let mut outs = Vec::new();
        for h in handles {
            let out = h
                .await
                .expect("rotate_refresh task panicked")
                .unwrap_or_else(|e| panic!("round {round}: rotate_refresh failed: {e}"));
            outs.push(out);
        }
        let (winner, rotated, replayed) = match (&outs[0], &outs[1]) {
            (RotateOutcome::Rotated(r), RotateOutcome::Replayed(p)) => (0, r, p),
            (RotateOutcome::Replayed(p), RotateOutcome::Rotated(r)) => (1, r, p),
            (a, b) => panic!(
                "round {round}: two concurrent rotations of one token must give one Rotated and \
                 one Replayed, got {} and {}",
                outcome_name(a),
                outcome_name(b)
            ),
        };
        assert_eq!(
            rotated.refresh_hash, reqs[winner].new_hash,
            "round {round}: Rotated must make its own successor current"
        );
        assert_eq!(rotated.sealed_successor, reqs[winner].sealed_successor);
        assert_eq!(
            replayed.refresh_hash, rotated.refresh_hash,
            "round {round}: the Replayed caller must see the Rotated caller's successor"
        );
        assert_eq!(
            replayed.sealed_successor, rotated.sealed_successor,
            "round {round}: the Replayed caller must get the Rotated caller's sealed successor"
        );
        assert_eq!(
            rotated.generation,
            session.generation + 1,
            "round {round}: generation must go up by exactly one"
        );
        assert_eq!(replayed.generation, session.generation + 1);
        let stored = get_session(&**s, &session.id)
            .await
            .unwrap_or_else(|| panic!("round {round}: the session must survive"));
        assert_eq!(
            &stored, rotated,
            "round {round}: the stored session is the Rotated one"
        );
        assert_eq!(
            stored.retired_refresh_hashes,
            vec![session.refresh_hash.clone()]
        );
    }
    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(ROUNDS),
        "cleaning up: every round's session goes with the user"
    );
}

// ---------------------------------------------------------------------------------------
// Failed-login accounting.
// ---------------------------------------------------------------------------------------

/// A reservation for `key` at `now` under a policy of 3 failures, 30 s doubling to
/// 4 min, forgotten after 1 h.
fn reserve_req(key: &str, now: i64) -> ReserveLogin {
    ReserveLogin {
        username_key: key.to_owned(),
        now_ms: now,
        max_failures: 3,
        base_delay_ms: 30 * SECOND,
        max_delay_ms: 4 * MINUTE,
        forget_after_ms: HOUR,
    }
}

async fn reserve<S: Storage>(s: &S, key: &str, now: i64) -> Reservation {
    s.reserve_login(reserve_req(key, now))
        .await
        .unwrap_or_else(|e| panic!("reserve_login({key}, {now}) failed: {e}"))
}

async fn settle<S: Storage>(s: &S, key: &str, ticket: u32) {
    s.settle_login(SettleLogin {
        username_key: key.to_owned(),
        ticket,
    })
    .await
    .unwrap_or_else(|e| panic!("settle_login({key}, {ticket}) failed: {e}"));
}

/// `reserve_login` charges every granted check before it runs, locks once
/// `max_failures` are charged (for `base_delay`, doubling per later failure up to
/// `max_delay`), refuses while locked without charging, and works for names no user
/// has.
pub async fn reserve_login_charges_then_locks<S: Storage>(s: &S) {
    let key = format!("nobody-{}", unique_hex());
    assert_eq!(
        s.get_login_attempts(&key)
            .await
            .expect("get_login_attempts"),
        None
    );
    for want in 1..=2 {
        assert_eq!(
            reserve(s, &key, NOW).await,
            Reservation::Granted { ticket: want }
        );
    }
    // The third charge reaches the threshold: granted, and the lock starts now.
    assert_eq!(
        reserve(s, &key, NOW).await,
        Reservation::Granted { ticket: 3 }
    );
    let rec = s
        .get_login_attempts(&key)
        .await
        .expect("get_login_attempts")
        .expect("a record after charges");
    assert_eq!(rec.failures, 3);
    assert_eq!(rec.locked_until_ms, NOW + 30 * SECOND);
    assert_eq!(rec.expires_at_ms, NOW + HOUR);
    // Locked: refused, nothing charged.
    for at in [NOW, NOW + 29 * SECOND] {
        assert_eq!(
            reserve(s, &key, at).await,
            Reservation::Locked {
                until_ms: NOW + 30 * SECOND
            }
        );
    }
    assert_eq!(
        s.get_login_attempts(&key)
            .await
            .ok()
            .flatten()
            .map(|r| r.failures),
        Some(3),
        "a refused reservation must not charge"
    );
    // After the lock: one more check, and the lock doubles.
    let t = NOW + 30 * SECOND;
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Granted { ticket: 4 }
    );
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Locked {
            until_ms: t + MINUTE
        }
    );
    // Capped at max_delay.
    let mut t = t + MINUTE;
    for ticket in 5..=8 {
        assert_eq!(reserve(s, &key, t).await, Reservation::Granted { ticket });
        let Reservation::Locked { until_ms } = reserve(s, &key, t).await else {
            panic!("charge {ticket} must lock");
        };
        assert!(until_ms - t <= 4 * MINUTE, "lock longer than max_delay");
        t = until_ms;
    }
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Granted { ticket: 9 }
    );
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Locked {
            until_ms: t + 4 * MINUTE
        }
    );
    let empty = s.reserve_login(reserve_req("", NOW)).await;
    assert!(
        matches!(empty, Err(StorageError::Invalid(_))),
        "an empty username key must be invalid, got {empty:?}"
    );
}

/// With `max_failures = 0` nothing ever locks, but checks are still counted; a record
/// quiet for `forget_after` starts over.
pub async fn reserve_login_unlimited_and_forgetting<S: Storage>(s: &S) {
    let key = format!("free-{}", unique_hex());
    let mut req = reserve_req(&key, NOW);
    req.max_failures = 0;
    for ticket in 1..=10 {
        assert_eq!(
            s.reserve_login(req.clone()).await,
            Ok(Reservation::Granted { ticket })
        );
    }
    // Three charges lock under the normal policy...
    let key = format!("forget-{}", unique_hex());
    for _ in 0..3 {
        reserve(s, &key, NOW).await;
    }
    // ...but an hour after the last charge (and after the lock) the record is forgotten.
    assert_eq!(
        reserve(s, &key, NOW + HOUR).await,
        Reservation::Granted { ticket: 1 },
        "an expired record must start over"
    );
}

/// A success settles its own charge: with nothing charged since, the record goes (and
/// so does a lock its own charge started); otherwise only its charge is refunded and a
/// lock set meanwhile stays.
pub async fn settle_login_refunds_only_its_own_charge<S: Storage>(s: &S) {
    // Alone: the record is deleted.
    let key = format!("alone-{}", unique_hex());
    reserve(s, &key, NOW).await;
    let Reservation::Granted { ticket } = reserve(s, &key, NOW).await else {
        panic!("second charge must be granted");
    };
    settle(s, &key, ticket).await;
    assert_eq!(s.get_login_attempts(&key).await, Ok(None));

    // The success's own charge started the lock: it is lifted.
    let key = format!("own-lock-{}", unique_hex());
    reserve(s, &key, NOW).await;
    reserve(s, &key, NOW).await;
    assert_eq!(
        reserve(s, &key, NOW).await,
        Reservation::Granted { ticket: 3 }
    );
    settle(s, &key, 3).await;
    assert_eq!(
        reserve(s, &key, NOW).await,
        Reservation::Granted { ticket: 1 },
        "a success must reset the count and lift its own lock"
    );

    // Others charged while the success ran and locked the account: the lock stays.
    let key = format!("meanwhile-{}", unique_hex());
    let Reservation::Granted { ticket: mine } = reserve(s, &key, NOW).await else {
        panic!("first charge must be granted");
    };
    reserve(s, &key, NOW).await;
    reserve(s, &key, NOW).await; // the third charge locks
    settle(s, &key, mine).await;
    let rec = s
        .get_login_attempts(&key)
        .await
        .expect("get_login_attempts")
        .expect("the record must survive a success that others overtook");
    assert_eq!(rec.failures, 2, "only the success's own charge is refunded");
    assert_eq!(
        rec.locked_until_ms,
        NOW + 30 * SECOND,
        "a success must never clear a lock set meanwhile"
    );
    assert!(matches!(
        reserve(s, &key, NOW).await,
        Reservation::Locked { .. }
    ));

    // Settling a record that is gone, or was reset meanwhile, changes nothing.
    let key = format!("gone-{}", unique_hex());
    settle(s, &key, 1).await;
    assert_eq!(s.get_login_attempts(&key).await, Ok(None));
}

/// Many reservations at once for one name: exactly `max_failures` are granted (tickets
/// 1..=max_failures, each once) and every other one sees the lock.
pub async fn concurrent_reserve_login_grants_at_most_threshold<S: Storage>(s: &Arc<S>) {
    const CALLERS: usize = 64;
    let key = format!("storm-{}", unique_hex());
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (s, key) = (Arc::clone(s), key.clone());
        tasks.push(tokio::spawn(async move {
            s.reserve_login(reserve_req(&key, NOW)).await
        }));
    }
    let mut tickets = Vec::new();
    let mut locked = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(Reservation::Granted { ticket }) => tickets.push(ticket),
            Ok(Reservation::Locked { until_ms }) => {
                assert_eq!(until_ms, NOW + 30 * SECOND);
                locked += 1;
            }
            Err(e) => panic!("reserve_login failed under concurrency: {e}"),
        }
    }
    tickets.sort_unstable();
    assert_eq!(
        tickets,
        vec![1, 2, 3],
        "exactly the threshold may be granted"
    );
    assert_eq!(locked, CALLERS - 3);
}

/// Failed-login records expire: `delete_expired_sessions` removes those whose expiry
/// has passed (and counts them), and leaves a record under a lock in force.
///
/// Uses the reserved sweeper time range and lock (see the module docs).
pub async fn login_attempts_expire_and_are_swept<S: Storage>(s: &S) {
    let _serialised = SWEEP_LOCK.lock().await;
    s.delete_expired_sessions(SWEEP_CEILING, usize::MAX)
        .await
        .expect("delete_expired_sessions (clearing the reserved range)");
    let b = SWEEP_BASE;
    let quiet = format!("quiet-{}", unique_hex());
    let locked = format!("locked-{}", unique_hex());
    let mut req = reserve_req(&quiet, b);
    req.forget_after_ms = MINUTE;
    s.reserve_login(req).await.expect("reserve");
    for _ in 0..3 {
        let mut req = reserve_req(&locked, b);
        req.forget_after_ms = MINUTE;
        req.base_delay_ms = 2 * HOUR;
        req.max_delay_ms = 2 * HOUR;
        s.reserve_login(req).await.expect("reserve");
    }
    assert_eq!(
        s.delete_expired_sessions(b + MINUTE - 1, usize::MAX).await,
        Ok(0),
        "nothing has expired a millisecond early"
    );
    assert_eq!(
        s.delete_expired_sessions(b + MINUTE, usize::MAX).await,
        Ok(1),
        "the quiet record expires; the locked one stays"
    );
    assert_eq!(s.get_login_attempts(&quiet).await, Ok(None));
    assert!(s.get_login_attempts(&locked).await.ok().flatten().is_some());
    assert_eq!(
        s.delete_expired_sessions(b + 2 * HOUR, usize::MAX).await,
        Ok(1),
        "the locked record goes when its lock ends"
    );
    assert_eq!(s.get_login_attempts(&locked).await, Ok(None));
}

// ---------------------------------------------------------------------------------------
// Running the suite.
// ---------------------------------------------------------------------------------------

/// Runs every behaviour of the suite, one after another, against one shared instance.
///
/// Meant for backends that are expensive to start (a replicated cluster). It panics at
/// the first behaviour that fails.
pub async fn run_all<S: Storage>(s: Arc<S>) {
    crate::conformance_tests!(@run_all s);
}

/// Generates one test per conformance behaviour for a storage backend.
///
/// The argument is an expression creating a fresh store; it is evaluated once per test
/// (and wrapped in an `Arc`). Each test is a
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` named after its
/// behaviour in [`conformance`](crate::conformance).
///
/// ```
/// // tests/conformance_memory.rs
/// auth_storage::conformance_tests!(auth_storage::memory::MemoryStorage::new());
/// # fn main() {}
/// ```
///
/// The `@`-prefixed forms are internal.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(@each [tests ($make)]);
    };
    (@run_all $s:ident) => {
        $crate::conformance_tests!(@each [run_all $s]);
    };
    (@each [$($mode:tt)*]) => {
        $crate::conformance_tests!(@apply [$($mode)*]
            create_user_sets_version_one
            create_user_rejects_duplicate_id
            create_user_rejects_duplicate_username
            create_user_rejects_empty_id
            get_user_found_and_missing
            username_taken_hint_follows_creation
            update_user_cas_bumps_version
            update_user_stale_version_conflicts
            update_user_missing_not_found
            update_user_rejects_username_key_change
            update_user_rejects_created_at_change
            delete_user_removes_user_and_sessions
            delete_user_frees_username
            delete_user_missing_not_found
            create_session_for_missing_user_not_found
            create_session_rejects_duplicate_id
            get_session_found_and_missing
            is_session_live_cases
            list_user_sessions_live_oldest_first
            rotate_refresh_rotates_current_token
            rotate_refresh_caps_expiry_at_absolute
            rotate_refresh_replay_within_grace
            rotate_refresh_reuse_after_grace
            rotate_refresh_older_token_reused
            rotate_refresh_unknown_hash_invalid
            rotate_refresh_expired_session
            rotate_refresh_unknown_session_invalid
            rotate_refresh_keeps_bounded_retired_hashes
            delete_session_requires_owner
            delete_user_sessions_all
            delete_user_sessions_keep
            delete_expired_sessions_sweeps_earliest_first
            concurrent_create_same_username
            concurrent_update_user_cas
            concurrent_rotate_same_token
            reserve_login_charges_then_locks
            reserve_login_unlimited_and_forgetting
            settle_login_refunds_only_its_own_charge
            concurrent_reserve_login_grants_at_most_threshold
            login_attempts_expire_and_are_swept
        );
    };
    (@apply [tests ($make:expr)] $($name:ident)*) => {
        $(
            #[$crate::conformance::__tokio::test(
                flavor = "multi_thread",
                worker_threads = 4,
                crate = "auth_storage::conformance::__tokio"
            )]
            async fn $name() {
                let storage = ::std::sync::Arc::new($make);
                $crate::conformance::$name(&storage).await;
            }
        )*
    };
    (@apply [run_all $s:ident] $($name:ident)*) => {
        $(
            $crate::conformance::$name(&$s).await;
        )*
    };
}
