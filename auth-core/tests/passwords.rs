//! Password storage, rehashing on login, and uniform failures for unknown users.

mod common;

use std::time::{Duration, Instant};

use auth_core::{AuthError, HashParams, LockoutPolicy};
use common::*;

#[tokio::test]
async fn passwords_are_stored_as_argon2id_phc_strings() {
    let h = harness();
    h.register("alice", PASSWORD).await;
    h.register("bob", PASSWORD).await;

    let alice = h.stored_user("alice").await;
    let bob = h.stored_user("bob").await;
    assert!(
        alice
            .password_hash
            .starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        alice.password_hash
    );
    assert!(!alice.password_hash.contains(PASSWORD));
    // Salted: the same password never gives the same record.
    assert_ne!(alice.password_hash, bob.password_hash);
    // Salt and hash follow the parameters.
    let parts: Vec<&str> = alice.password_hash.split('$').collect();
    assert_eq!(parts.len(), 6, "{}", alice.password_hash);
    assert!(!parts[4].is_empty() && !parts[5].is_empty());
}

#[tokio::test]
async fn login_rehashes_passwords_stored_with_older_parameters() {
    let h = harness();
    // An older deployment hashed with other parameters, over the same storage.
    let old = h.sibling(|c| {
        c.hash = HashParams {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
        }
    });
    register(&old, "alice", PASSWORD).await;
    let before = h.stored_user("alice").await;
    assert!(
        before
            .password_hash
            .starts_with("$argon2id$v=19$m=128,t=1,p=1$"),
        "{}",
        before.password_hash
    );

    // A wrong password does not rehash.
    assert_eq!(
        err_code(h.login("alice", "not the password").await),
        "invalid_credentials"
    );
    assert_eq!(
        h.stored_user("alice").await.password_hash,
        before.password_hash
    );

    h.login_ok("alice", PASSWORD).await;
    let after = h.stored_user("alice").await;
    assert!(
        after
            .password_hash
            .starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        after.password_hash
    );
    assert_ne!(after.password_hash, before.password_hash);

    // The password still works, on the new hash, and no further rehash happens.
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(
        h.stored_user("alice").await.password_hash,
        after.password_hash
    );
    assert_eq!(
        err_code(h.login("alice", "not the password").await),
        "invalid_credentials"
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_fail_alike() {
    let h = harness();
    h.register("alice", PASSWORD).await;

    let unknown = h.login("mallory", PASSWORD).await.unwrap_err();
    let wrong = h.login("alice", "wrong password!").await.unwrap_err();
    let invalid_name = h.login("not a valid name!", PASSWORD).await.unwrap_err();
    assert_eq!(unknown, AuthError::InvalidCredentials);
    assert_eq!(wrong, AuthError::InvalidCredentials);
    assert_eq!(invalid_name, AuthError::InvalidCredentials);
    for e in [&unknown, &wrong, &invalid_name] {
        assert_eq!(e.code(), "invalid_credentials");
        assert_eq!(e.to_string(), unknown.to_string());
        assert_eq!(e.retry_after(), None);
    }
}

#[tokio::test]
async fn passwords_are_compared_exactly() {
    let h = harness();
    let pw = "Pässwörd-ünïcode-✓";
    h.register("alice", pw).await;
    h.login_ok("alice", pw).await;
    for near in [
        "pässwörd-ünïcode-✓",
        "Pässwörd-ünïcode-✓ ",
        " Pässwörd-ünïcode-✓",
        "Pässwörd-ünïcode-",
    ] {
        assert_eq!(
            err_code(h.login("alice", near).await),
            "invalid_credentials",
            "{near:?}"
        );
    }
    // Usernames are case-insensitive, passwords are not.
    h.login_ok("ALICE", pw).await;
}

/// An unknown user's login must spend about as long as a wrong password's: it verifies
/// against a dummy hash. Minimums over several runs are used, since contention from
/// other tests can only make a run slower, never faster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_login_spends_a_password_hash() {
    let h = harness_with(|c| {
        c.hash = HashParams {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 1,
        };
        c.lockout = LockoutPolicy {
            max_failures: 0,
            ..LockoutPolicy::default()
        };
    });
    h.register("alice", PASSWORD).await;
    // Warm up (the dummy hash is created lazily on the first unknown-user login).
    let _ = h.login("nobody", PASSWORD).await;
    let _ = h.login("alice", "wrong password").await;

    let mut unknown = Duration::MAX;
    let mut wrong = Duration::MAX;
    for _ in 0..6 {
        let t = Instant::now();
        assert_eq!(
            err_code(h.login("nobody", "wrong password").await),
            "invalid_credentials"
        );
        unknown = unknown.min(t.elapsed());
        let t = Instant::now();
        assert_eq!(
            err_code(h.login("alice", "wrong password").await),
            "invalid_credentials"
        );
        wrong = wrong.min(t.elapsed());
    }
    assert!(
        unknown * 10 >= wrong * 3,
        "unknown-user login took {unknown:?}, wrong-password login {wrong:?}"
    );
}

#[tokio::test]
async fn auths_sharing_storage_share_accounts() {
    let h = harness();
    h.register("alice", PASSWORD).await;
    let other = h.sibling(|_| {});
    login_ok(&other, "alice", PASSWORD).await;
    assert_eq!(
        err_code(login(&other, "alice", "wrong password").await),
        "invalid_credentials"
    );
    assert_eq!(h.storage.user_count(), 1);
}
