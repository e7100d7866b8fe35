//! Failed-login lockout with growing backoff, kept in storage.

mod common;

use std::time::Duration;

use auth_core::{AuthError, LockoutPolicy};
use common::*;

const WRONG: &str = "wrong password";

fn policy() -> LockoutPolicy {
    LockoutPolicy {
        max_failures: 3,
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(600),
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
        assert_eq!(h.stored_user("alice").await.failed_logins, i);
    }
    let stored = h.stored_user("alice").await;
    assert_eq!(stored.locked_until_ms, h.now_ms() + 30_000);

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
    assert_eq!(h.stored_user("alice").await.failed_logins, 3);

    // Just before expiry: still locked.
    h.advance(Duration::from_millis(19_999));
    assert_eq!(
        retry_after(h.login("alice", PASSWORD).await),
        Duration::from_millis(1)
    );

    // Past it: the right password works and resets the counter.
    h.advance(Duration::from_millis(1));
    h.login_ok("alice", PASSWORD).await;
    let stored = h.stored_user("alice").await;
    assert_eq!(stored.failed_logins, 0);
    assert_eq!(stored.locked_until_ms, 0);

    // With the counter reset, the next lock again needs three failures and lasts 30 s.
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
        let stored = h.stored_user("alice").await;
        assert_eq!(stored.failed_logins, 3 + round);
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
    assert_eq!(h.stored_user("alice").await.failed_logins, 0);
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
    let stored = h.stored_user("alice").await;
    assert_eq!(stored.failed_logins, 3);
    assert_eq!(stored.locked_until_ms, T0_MS + 30_000);

    h.advance(Duration::from_secs(31));
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(h.stored_user("alice").await.failed_logins, 0);
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
    assert_eq!(h.stored_user("bob").await.failed_logins, 0);
}

#[tokio::test]
async fn zero_max_failures_disables_lockout() {
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
    assert_eq!(h.stored_user("alice").await.locked_until_ms, 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_lock_the_account() {
    let h = locked_harness();
    h.register("alice", PASSWORD).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let auth = h.auth.clone();
        tasks.push(tokio::spawn(async move {
            login(&auth, "alice", &format!("concurrent guess {i}")).await
        }));
    }
    for t in tasks {
        let code = err_code(t.await.unwrap());
        assert!(
            code == "invalid_credentials" || code == "locked",
            "unexpected {code}"
        );
    }
    let stored = h.stored_user("alice").await;
    assert!(stored.failed_logins >= 3, "{}", stored.failed_logins);
    assert!(stored.locked_until_ms > h.now_ms());
    assert_eq!(err_code(h.login("alice", PASSWORD).await), "locked");
    // The backoff is capped, so this is always enough.
    h.advance(Duration::from_secs(600));
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(h.stored_user("alice").await.failed_logins, 0);
}
