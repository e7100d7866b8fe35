//! Refresh-token rotation, reuse detection, the grace window, and hashed storage.

mod common;

use std::time::Duration;

use auth_core::AuthError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn refresh_rotates_the_token() {
    let h = harness();
    let (user, first) = h.signup("alice").await;
    h.advance(Duration::from_secs(60));
    let second = h.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.session_id, first.session_id);
    // Same session id prefix, new secret.
    assert!(
        second
            .refresh_token
            .starts_with(&format!("{}.", first.session_id))
    );
    let v = h.verify(&second.access_token).await.unwrap();
    assert_eq!(v.user_id, user.id);
    assert_eq!(v.session_id, first.session_id);
    assert_eq!(v.issued_at_ms, T0_MS + 60_000);
    // The idle expiry slides forward.
    assert_eq!(
        second.refresh_expires_at_ms,
        first.refresh_expires_at_ms + 60_000
    );
    // The successor rotates in turn.
    let third = h.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    h.verify(&third.access_token).await.unwrap();
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_session() {
    let h = harness();
    let (_, first) = h.signup("alice").await;
    let second = h.refresh(&first.refresh_token).await.unwrap();
    h.advance(Duration::from_secs(11));

    let e = h.refresh(&first.refresh_token).await.unwrap_err();
    assert_eq!(e, AuthError::RefreshTokenReused);
    assert_eq!(e.code(), "refresh_token_reused");

    // The whole session is gone: its access tokens and its current refresh token.
    assert!(h.stored_session(&first.session_id).await.is_none());
    assert_eq!(
        err_code(h.verify(&first.access_token).await),
        "session_ended"
    );
    assert_eq!(
        err_code(h.verify(&second.access_token).await),
        "session_ended"
    );
    assert!(h.refresh(&second.refresh_token).await.is_err());
    // Presenting the stolen token again is still an error, never a new session.
    assert!(h.refresh(&first.refresh_token).await.is_err());
}

#[tokio::test]
async fn reuse_of_an_older_token_revokes_even_inside_the_grace_window() {
    let h = harness();
    let (_, first) = h.signup("alice").await;
    let second = h.refresh(&first.refresh_token).await.unwrap();
    let third = h.refresh(&second.refresh_token).await.unwrap();
    // `first` was rotated two generations ago: only the just-rotated token has grace.
    assert_eq!(
        err_code(h.refresh(&first.refresh_token).await),
        "refresh_token_reused"
    );
    assert!(h.refresh(&third.refresh_token).await.is_err());
    assert_eq!(
        err_code(h.verify(&third.access_token).await),
        "session_ended"
    );
}

#[tokio::test]
async fn inside_the_grace_window_a_repeat_gets_the_same_successor() {
    let h = harness();
    let (_, first) = h.signup("alice").await;
    let second = h.refresh(&first.refresh_token).await.unwrap();

    h.advance(Duration::from_secs(9));
    let again = h.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(again.refresh_token, second.refresh_token);
    assert_eq!(again.session_id, second.session_id);
    h.verify(&again.access_token).await.unwrap();

    // Exactly at the end of the window it still holds.
    h.advance(Duration::from_secs(1));
    let once_more = h.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(once_more.refresh_token, second.refresh_token);

    // The successor still works and rotates normally.
    let third = h.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    h.verify(&third.access_token).await.unwrap();
}

#[tokio::test]
async fn grace_window_is_configurable() {
    let h = harness_with(|c| c.refresh_grace = Duration::from_secs(60));
    let (_, first) = h.signup("alice").await;
    let second = h.refresh(&first.refresh_token).await.unwrap();
    h.advance(Duration::from_secs(59));
    assert_eq!(
        h.refresh(&first.refresh_token).await.unwrap().refresh_token,
        second.refresh_token
    );
    h.advance(Duration::from_secs(2));
    assert_eq!(
        err_code(h.refresh(&first.refresh_token).await),
        "refresh_token_reused"
    );
}

#[tokio::test]
async fn zero_grace_disables_replay_even_in_the_same_millisecond() {
    let h = harness_with(|c| c.refresh_grace = Duration::ZERO);
    let (_, first) = h.signup("alice").await;
    let second = h.refresh(&first.refresh_token).await.unwrap();
    // The clock has not moved: with a zero window this is reuse, not a replay.
    assert_eq!(
        err_code(h.refresh(&first.refresh_token).await),
        "refresh_token_reused"
    );
    assert_eq!(
        err_code(h.refresh(&second.refresh_token).await),
        "invalid_token",
        "the session was revoked with the reuse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_get_the_same_successor() {
    let h = harness();
    h.register("alice", PASSWORD).await;
    for round in 0..20 {
        let tokens = h.login_ok("alice", PASSWORD).await;
        let (a, b) = if round % 2 == 0 {
            // Two futures in one task.
            tokio::join!(
                refresh(&h.auth, &tokens.refresh_token),
                refresh(&h.auth, &tokens.refresh_token)
            )
        } else {
            // Two tasks that may run in parallel on different workers.
            let (a1, a2) = (h.auth.clone(), h.auth.clone());
            let (t1, t2) = (tokens.refresh_token.clone(), tokens.refresh_token.clone());
            let (a, b) = tokio::join!(
                tokio::spawn(async move { refresh(&a1, &t1).await }),
                tokio::spawn(async move { refresh(&a2, &t2).await })
            );
            (a.unwrap(), b.unwrap())
        };
        let (a, b) = (a.expect("first refresh"), b.expect("second refresh"));
        assert_eq!(a.refresh_token, b.refresh_token, "round {round}");
        assert_ne!(a.refresh_token, tokens.refresh_token);
        h.verify(&a.access_token).await.unwrap();
        h.verify(&b.access_token).await.unwrap();
        // The shared successor is the live token.
        let next = h.refresh(&a.refresh_token).await.unwrap();
        h.verify(&next.access_token).await.unwrap();
    }
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_sha256() {
    let h = harness();
    let (_, first) = h.signup("alice").await;
    let second = h.refresh(&first.refresh_token).await.unwrap();

    let s = h.stored_session(&first.session_id).await.expect("session");
    let sha = |t: &str| Sha256::digest(t.as_bytes()).to_vec();
    assert_eq!(s.refresh_hash, sha(&second.refresh_token));
    assert_eq!(
        s.retired_refresh_hashes.first(),
        Some(&sha(&first.refresh_token))
    );

    for token in [&first.refresh_token, &second.refresh_token] {
        let (_, secret_b64) = token.split_once('.').expect("sid.secret");
        let secret = URL_SAFE_NO_PAD.decode(secret_b64).expect("base64url");
        assert_eq!(secret.len(), 32);
        for field in [&s.id, &s.user_id, &s.username, &s.user_agent, &s.ip] {
            assert!(!field.contains(token.as_str()), "token in {field:?}");
            assert!(!field.contains(secret_b64), "secret in {field:?}");
        }
        let mut blobs = vec![&s.refresh_hash, &s.sealed_successor];
        blobs.extend(s.retired_refresh_hashes.iter());
        for blob in blobs {
            assert!(
                !blob.windows(secret.len()).any(|w| w == secret.as_slice()),
                "raw secret stored"
            );
            assert!(
                !blob.windows(token.len()).any(|w| w == token.as_bytes()),
                "token stored"
            );
        }
        assert!(!format!("{s:?}").contains(secret_b64));
    }
}

#[tokio::test]
async fn refresh_after_logout_fails() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    logout_refresh(&h.auth, &tokens.refresh_token)
        .await
        .unwrap();
    assert_eq!(
        err_code(h.verify(&tokens.access_token).await),
        "session_ended"
    );
    assert_eq!(
        err_code(h.refresh(&tokens.refresh_token).await),
        "invalid_token"
    );
}

async fn logout_refresh(auth: &TestAuth, refresh_token: &str) -> Result<(), AuthError> {
    use auth_core::AuthApi;
    auth.logout(auth_core::api::LogoutRequest {
        access_token: String::new(),
        refresh_token: refresh_token.into(),
        client: None,
    })
    .await
    .map(|_| ())
}
