//! The behaviour suite every [`Storage`] backend must pass.
//!
//! The behaviours live by area in `users.rs`, `sessions.rs`, `concurrency.rs`,
//! `logins.rs` and `challenges.rs`; build.rs lists every `pub async fn` there into [`BEHAVIOURS`],
//! [`run_all`] and [`conformance_tests!`](crate::conformance_tests), so a new behaviour
//! runs everywhere as soon as it is written.
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
    Challenge, ListUsers, MAX_CHALLENGE_STATE, PutChallenge, RETIRED_HASHES_KEPT, Reservation,
    ReserveLogin, RotateOutcome, RotateRefresh, Session, SettleLogin, Storage, StorageError, User,
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
        ..User::default()
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
        .create_session(session.clone(), 0)
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

mod challenges;
mod concurrency;
mod logins;
mod sessions;
mod users;

pub use challenges::*;
pub use concurrency::*;
pub use logins::*;
pub use sessions::*;
pub use users::*;

/// The names of every behaviour, in suite order (generated by build.rs).
pub const BEHAVIOURS: &[&str] =
    include!(concat!(env!("OUT_DIR"), "/conformance_behaviour_names.rs"));
// Running the suite.
// ---------------------------------------------------------------------------------------

// `run_all`: every behaviour, one after another (generated by build.rs).
include!(concat!(env!("OUT_DIR"), "/conformance_run_all.rs"));

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
    (@each [$($mode:tt)*]) => {
        // The list of behaviours is generated from `src/conformance/*.rs` by build.rs:
        // every `pub async fn` there is one, and none can be left out.
        $crate::__conformance_behaviours!([$($mode)*]);
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
}
