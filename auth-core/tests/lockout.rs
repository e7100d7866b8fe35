//! The account-wide lock: every password check charged before it runs, kept in storage
//! per username (existing or not), with growing backoff.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::api::{ClientInfo, LoginRequest};
use auth_core::{Auth, AuthApi, AuthError, LockoutPolicy, ThrottlePolicy};
use auth_storage::memory::MemoryStorage;
use auth_storage::{
    ListUsers, LoginAttempts, Reservation, ReserveLogin, RotateOutcome, RotateRefresh, Session,
    SettleLogin, Storage, User, UserPage,
};
use common::*;
use tokio::sync::Notify;

const WRONG: &str = "wrong password";

fn policy() -> LockoutPolicy {
    LockoutPolicy {
        max_failures: 3,
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(600),
        forget_after: Duration::from_secs(3600),
    }
}

fn locked_harness() -> Harness {
    harness_with(|c| c.lockout = policy())
}

fn retry_after(r: Result<auth_core::api::LoginResponse, AuthError>) -> Duration {
    match r {
        Err(e @ AuthError::Locked { .. }) => {
            assert_eq!(e.code(), "locked");
            e.retry_after().expect("locked has retry_after")
        }
        other => panic!("expected locked, got {other:?}"),
    }
}

async fn attempts(h: &Harness, key: &str) -> Option<LoginAttempts> {
    h.storage.get_login_attempts(key).await.unwrap()
}

async fn failures(h: &Harness, key: &str) -> u32 {
    attempts(h, key).await.map_or(0, |a| a.failures)
}

#[tokio::test]
async fn three_failures_lock_even_the_right_password() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;

    for i in 1..=3 {
        assert_eq!(
            err_code(h.login("alice", WRONG).await),
            "invalid_credentials",
            "attempt {i}"
        );
        assert_eq!(failures(&h, "alice").await, i);
    }
    let rec = attempts(&h, "alice").await.unwrap();
    assert_eq!(rec.locked_until_ms, h.now_ms() + 30_000);

    assert_eq!(
        retry_after(h.login("alice", PASSWORD).await),
        Duration::from_secs(30)
    );
    h.advance(Duration::from_secs(10));
    assert_eq!(
        retry_after(h.login("alice", PASSWORD).await),
        Duration::from_secs(20)
    );
    // The lock is in storage: another Auth over the same storage sees it.
    let other = h.sibling(|c| c.lockout = policy());
    assert_eq!(err_code(login(&other, "alice", PASSWORD).await), "locked");
    // Attempts while locked are not counted.
    assert_eq!(failures(&h, "alice").await, 3);

    // Just before expiry: still locked.
    h.advance(Duration::from_millis(19_999));
    assert_eq!(
        retry_after(h.login("alice", PASSWORD).await),
        Duration::from_millis(1)
    );

    // Past it: the right password works and resets the count.
    h.advance(Duration::from_millis(1));
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(attempts(&h, "alice").await, None);

    // With the count reset, the next lock again needs three failures and lasts 30 s.
    for _ in 0..2 {
        assert_eq!(
            err_code(h.login("alice", WRONG).await),
            "invalid_credentials"
        );
    }
    h.login_ok("alice", PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(
            err_code(h.login("alice", WRONG).await),
            "invalid_credentials"
        );
    }
    assert_eq!(
        retry_after(h.login("alice", PASSWORD).await),
        Duration::from_secs(30)
    );
}

#[tokio::test]
async fn backoff_doubles_on_each_relock_up_to_the_cap() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    for _ in 0..3 {
        let _ = h.login("alice", WRONG).await;
    }
    let mut expected = Duration::from_secs(30);
    for round in 0..7 {
        assert_eq!(
            retry_after(h.login("alice", WRONG).await),
            expected,
            "round {round}"
        );
        assert_eq!(failures(&h, "alice").await, 3 + round);
        // Let the lock run out; the next wrong password relocks for twice as long.
        h.advance(expected);
        assert_eq!(
            err_code(h.login("alice", WRONG).await),
            "invalid_credentials",
            "round {round}"
        );
        expected = (expected * 2).min(Duration::from_secs(600));
    }
    // 30, 60, 120, 240, 480, then capped at 600.
    assert_eq!(expected, Duration::from_secs(600));
    assert_eq!(
        retry_after(h.login("alice", PASSWORD).await),
        Duration::from_secs(600)
    );
    h.advance(Duration::from_secs(600));
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(failures(&h, "alice").await, 0);
}

#[tokio::test]
async fn failures_are_forgotten_after_a_quiet_hour() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    for _ in 0..2 {
        let _ = h.login("alice", WRONG).await;
    }
    h.advance(Duration::from_secs(3600));
    // Two more failures do not lock: the earlier two were forgotten.
    for _ in 0..2 {
        assert_eq!(
            err_code(h.login("alice", WRONG).await),
            "invalid_credentials"
        );
    }
    assert_eq!(failures(&h, "alice").await, 2);
    // And the sweeper removes quiet records.
    h.advance(Duration::from_secs(3600));
    h.auth.sweep_expired().await.unwrap();
    assert_eq!(attempts(&h, "alice").await, None);
}

#[tokio::test]
async fn an_unknown_name_locks_exactly_like_a_real_account() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    let mut real = Vec::new();
    let mut ghost = Vec::new();
    for _ in 0..5 {
        real.push(h.login("alice", WRONG).await.unwrap_err());
        ghost.push(h.login("nobody-here", WRONG).await.unwrap_err());
    }
    assert_eq!(real, ghost, "same errors, same retry-after");
    assert_eq!(real[2], AuthError::InvalidCredentials);
    assert_eq!(real[3].code(), "locked");
    assert_eq!(
        attempts(&h, "alice")
            .await
            .map(|a| (a.failures, a.locked_until_ms)),
        attempts(&h, "nobody-here")
            .await
            .map(|a| (a.failures, a.locked_until_ms)),
        "the same accounting in storage"
    );
}

#[tokio::test]
async fn fifty_rapid_wrong_passwords_are_locked_after_the_threshold() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    for i in 1..=50 {
        let code = err_code(h.login("alice", &format!("guess number {i}")).await);
        let expected = if i <= 3 {
            "invalid_credentials"
        } else {
            "locked"
        };
        assert_eq!(code, expected, "attempt {i}");
    }
    let rec = attempts(&h, "alice").await.unwrap();
    assert_eq!(rec.failures, 3);
    assert_eq!(rec.locked_until_ms, T0_MS + 30_000);

    h.advance(Duration::from_secs(31));
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(failures(&h, "alice").await, 0);
}

#[tokio::test]
async fn lockout_is_per_account() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    h.register("bob", PASSWORD).await;
    for _ in 0..3 {
        let _ = h.login("alice", WRONG).await;
    }
    assert_eq!(err_code(h.login("alice", PASSWORD).await), "locked");
    h.login_ok("bob", PASSWORD).await;
    assert_eq!(attempts(&h, "bob").await, None);
}

#[tokio::test]
async fn zero_max_failures_disables_lockout_and_its_writes() {
    let h = harness_with(|c| {
        c.lockout = LockoutPolicy {
            max_failures: 0,
            ..policy()
        }
    });
    h.register("alice", PASSWORD).await;
    for _ in 0..10 {
        assert_eq!(
            err_code(h.login("alice", WRONG).await),
            "invalid_credentials"
        );
    }
    assert_eq!(attempts(&h, "alice").await, None, "nothing is accounted");
    h.login_ok("alice", PASSWORD).await;
}

#[tokio::test]
async fn locked_message_gives_the_wait_in_seconds() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    for _ in 0..3 {
        let _ = h.login("alice", WRONG).await;
    }
    let e = h.login("alice", PASSWORD).await.unwrap_err();
    assert!(e.to_string().contains("30s"), "{e}");
}

/// 200 concurrent wrong guesses: the lock is reserved before hashing, so at most the
/// threshold of them are checked (each check answers `invalid_credentials`; a refused
/// one answers `locked` without hashing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cost_at_most_the_threshold_in_checks() {
    let h = harness_with(|c| {
        c.lockout = policy();
        c.hash_concurrency = 2;
        c.hash_queue.max_waiting = 1000;
        c.hash_queue.max_wait = Duration::from_secs(60);
    });
    h.register("alice", PASSWORD).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let auth = h.auth.clone();
        tasks.push(tokio::spawn(async move {
            login(&auth, "alice", &format!("concurrent guess {i}")).await
        }));
    }
    let mut checked = 0;
    for t in tasks {
        match err_code(t.await.unwrap()) {
            "invalid_credentials" => checked += 1,
            "locked" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(checked <= 3 + 2, "{checked} checks for 200 guesses");
    assert_eq!(failures(&h, "alice").await, checked as u32);
    assert_eq!(err_code(h.login("alice", PASSWORD).await), "locked");
    h.advance(Duration::from_secs(30));
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(failures(&h, "alice").await, 0);
}

/// Memory storage whose `settle_login` waits until the test opens the gate, so that
/// other logins can run while a successful one is between its check and its settling.
struct GatedStorage {
    inner: MemoryStorage,
    settling: AtomicUsize,
    gate: Notify,
}

#[async_trait]
impl Storage for GatedStorage {
    async fn create_user(&self, user: User) -> auth_storage::Result<User> {
        self.inner.create_user(user).await
    }
    async fn get_user(&self, id: &str) -> auth_storage::Result<Option<User>> {
        self.inner.get_user(id).await
    }
    async fn get_user_by_username(&self, key: &str) -> auth_storage::Result<Option<User>> {
        self.inner.get_user_by_username(key).await
    }
    async fn update_user(&self, user: User) -> auth_storage::Result<User> {
        self.inner.update_user(user).await
    }
    async fn delete_user(&self, id: &str) -> auth_storage::Result<u64> {
        self.inner.delete_user(id).await
    }
    async fn list_users(&self, req: ListUsers) -> auth_storage::Result<UserPage> {
        self.inner.list_users(req).await
    }
    async fn create_session(&self, s: Session, max: u32) -> auth_storage::Result<Session> {
        self.inner.create_session(s, max).await
    }
    async fn get_session(&self, id: &str) -> auth_storage::Result<Option<Session>> {
        self.inner.get_session(id).await
    }
    async fn is_session_live(&self, id: &str, user: &str, now: i64) -> auth_storage::Result<bool> {
        self.inner.is_session_live(id, user, now).await
    }
    async fn list_user_sessions(&self, u: &str, now: i64) -> auth_storage::Result<Vec<Session>> {
        self.inner.list_user_sessions(u, now).await
    }
    async fn rotate_refresh(&self, r: RotateRefresh) -> auth_storage::Result<RotateOutcome> {
        self.inner.rotate_refresh(r).await
    }
    async fn delete_session(&self, id: &str, user: &str) -> auth_storage::Result<bool> {
        self.inner.delete_session(id, user).await
    }
    async fn delete_user_sessions(&self, u: &str, k: Option<&str>) -> auth_storage::Result<u64> {
        self.inner.delete_user_sessions(u, k).await
    }
    async fn delete_expired_sessions(&self, now: i64, n: usize) -> auth_storage::Result<u64> {
        self.inner.delete_expired_sessions(now, n).await
    }
    async fn get_login_attempts(&self, k: &str) -> auth_storage::Result<Option<LoginAttempts>> {
        self.inner.get_login_attempts(k).await
    }
    async fn reserve_login(&self, r: ReserveLogin) -> auth_storage::Result<Reservation> {
        self.inner.reserve_login(r).await
    }
    async fn settle_login(&self, r: SettleLogin) -> auth_storage::Result<()> {
        self.settling.fetch_add(1, Ordering::SeqCst);
        self.gate.notified().await;
        self.inner.settle_login(r).await
    }
    async fn put_challenge(&self, r: auth_storage::PutChallenge) -> auth_storage::Result<()> {
        self.inner.put_challenge(r).await
    }
    async fn take_challenge(
        &self,
        id: &str,
        kind: &str,
        now_ms: i64,
    ) -> auth_storage::Result<Option<auth_storage::Challenge>> {
        self.inner.take_challenge(id, kind, now_ms).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_success_never_clears_a_lock_set_meanwhile() {
    let h = locked_harness();
    let storage = Arc::new(GatedStorage {
        inner: MemoryStorage::new(),
        settling: AtomicUsize::new(0),
        gate: Notify::new(),
    });
    let mut config = base_config(&h.clock);
    config.lockout = policy();
    let auth = Auth::new(config, Arc::clone(&storage)).unwrap();
    auth.register(auth_core::api::RegisterRequest {
        username: "alice".into(),
        password: PASSWORD.into(),
        client: None,
    })
    .await
    .unwrap();
    let login_as = |password: &str| {
        let auth = auth.clone();
        let password = password.to_owned();
        async move {
            auth.login(LoginRequest {
                username: "alice".into(),
                password,
                client: None,
            })
            .await
        }
    };
    // The owner's right password: checked, now waiting to settle its charge.
    let owner = tokio::spawn(login_as(PASSWORD));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while storage.settling.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "owner never settled");
        tokio::task::yield_now().await;
    }
    // Meanwhile two wrong guesses reach the threshold (the owner's charge is the
    // first of three) and lock the account.
    for _ in 0..2 {
        assert_eq!(err_code(login_as(WRONG).await), "invalid_credentials");
    }
    assert_eq!(err_code(login_as(PASSWORD).await), "locked");
    storage.gate.notify_one();
    // The owner's login succeeds (its check was charged before the lock)...
    owner.await.unwrap().expect("the owner's login");
    // ...but the lock the guesses set stays.
    let rec = storage
        .inner
        .get_login_attempts("alice")
        .await
        .unwrap()
        .expect("record");
    assert_eq!(rec.failures, 2, "only the owner's own charge is refunded");
    assert!(rec.locked_until_ms > h.now_ms());
    assert_eq!(err_code(login_as(PASSWORD).await), "locked");
}

#[tokio::test]
async fn one_source_is_slowed_per_account_before_the_account_locks() {
    // Default policies: the (account, source) bucket admits 5 checks, the account-wide
    // lock needs 20.
    let h = harness();
    h.register("alice", PASSWORD).await;
    let from = |ip: &str, password: &str| LoginRequest {
        username: "alice".into(),
        password: password.into(),
        client: Some(ClientInfo {
            user_agent: "test".into(),
            ip: ip.into(),
        }),
    };
    for _ in 0..5 {
        let r = h.auth.login(from("203.0.113.9", WRONG)).await;
        assert_eq!(err_code(r), "invalid_credentials");
    }
    let e = h.auth.login(from("203.0.113.9", WRONG)).await.unwrap_err();
    assert_eq!(e.code(), "rate_limited");
    assert!(e.retry_after().unwrap() > Duration::ZERO);
    assert_eq!(
        failures(&h, "alice").await,
        5,
        "a throttled guess is not checked"
    );
    // The owner, from their own address, is not locked out by the guesser.
    h.auth
        .login(from("198.51.100.20", PASSWORD))
        .await
        .expect("the owner logs in");
    // Without throttling, the account-wide lock still comes, far above.
    let open = h.sibling(|c| c.throttle = ThrottlePolicy::disabled());
    let mut checked = 0;
    for _ in 0..30 {
        if err_code(open.login(from("203.0.113.9", WRONG)).await) == "invalid_credentials" {
            checked += 1;
        }
    }
    assert_eq!(checked, 20, "the default account-wide threshold");
}
