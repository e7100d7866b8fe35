//! Sessions: the full flow, expiry, logout, account operations, listing and revocation,
//! and the background sweeper.

mod common;

use std::time::Duration;

use auth_core::api::{
    ChangePasswordRequest, DeleteUserRequest, ListSessionsRequest, LogoutAllRequest, LogoutRequest,
    RevokeSessionRequest, SessionInfo,
};
use auth_core::{AuthApi, AuthError, SessionCheck, Storage};
use common::*;

async fn logout_access(h: &Harness, access_token: &str) -> Result<(), AuthError> {
    h.auth
        .logout(LogoutRequest {
            access_token: access_token.into(),
            refresh_token: String::new(),
            client: None,
        })
        .await
        .map(|_| ())
}

async fn logout_refresh(h: &Harness, refresh_token: &str) -> Result<(), AuthError> {
    h.auth
        .logout(LogoutRequest {
            access_token: String::new(),
            refresh_token: refresh_token.into(),
            client: None,
        })
        .await
        .map(|_| ())
}

async fn list(h: &Harness, access_token: &str) -> Result<Vec<SessionInfo>, AuthError> {
    h.auth
        .list_sessions(ListSessionsRequest {
            access_token: access_token.into(),
        })
        .await
        .map(|r| r.sessions)
}

async fn revoke(h: &Harness, access_token: &str, session_id: &str) -> Result<(), AuthError> {
    h.auth
        .revoke_session(RevokeSessionRequest {
            access_token: access_token.into(),
            session_id: session_id.into(),
            client: None,
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn register_login_verify_refresh_logout() {
    let h = harness();
    let user = h.register("Alice", PASSWORD).await;
    assert_eq!(user.username, "Alice");
    assert_eq!(user.created_at_ms, T0_MS);
    assert_eq!(user.id.len(), 32);

    let login = h.login("alice", PASSWORD).await.unwrap();
    assert_eq!(login.user.as_ref().unwrap(), &user);
    let tokens = login.tokens.unwrap();
    assert_eq!(tokens.refresh_expires_at_ms, T0_MS + 30 * 86_400_000);

    let v = h.verify(&tokens.access_token).await.unwrap();
    assert_eq!(v.user_id, user.id);
    assert_eq!(v.username, "Alice");
    assert_eq!(v.session_id, tokens.session_id);

    let refreshed = h.refresh(&tokens.refresh_token).await.unwrap();
    let v2 = h.verify(&refreshed.access_token).await.unwrap();
    assert_eq!(
        (
            v2.user_id.as_str(),
            v2.username.as_str(),
            v2.session_id.as_str()
        ),
        (user.id.as_str(), "Alice", tokens.session_id.as_str())
    );

    logout_refresh(&h, &refreshed.refresh_token).await.unwrap();
    for access in [&tokens.access_token, &refreshed.access_token] {
        assert_eq!(err_code(h.verify(access).await), "session_ended");
    }
    assert!(h.refresh(&refreshed.refresh_token).await.is_err());
    assert_eq!(h.storage.session_count(), 0);
    // Logging out again succeeds (idempotent), with either token.
    logout_refresh(&h, &refreshed.refresh_token).await.unwrap();
    logout_access(&h, &refreshed.access_token).await.unwrap();
}

#[tokio::test]
async fn logout_by_access_token_takes_effect_at_once() {
    let h = harness();
    let (_, a) = h.signup("alice").await;
    let b = h.login_ok("alice", PASSWORD).await;
    logout_access(&h, &a.access_token).await.unwrap();
    let e = h.verify(&a.access_token).await.unwrap_err();
    assert_eq!(e, AuthError::SessionEnded);
    assert_eq!(e.code(), "session_ended");
    assert!(h.refresh(&a.refresh_token).await.is_err());
    // Only that session ended.
    h.verify(&b.access_token).await.unwrap();
    assert_eq!(h.storage.session_count(), 1);
}

#[tokio::test]
async fn logout_needs_a_token() {
    let h = harness();
    let e = h.auth.logout(LogoutRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert_eq!(
        err_code(logout_refresh(&h, "garbage").await),
        "invalid_token"
    );
    assert_eq!(
        err_code(logout_access(&h, "garbage").await),
        "invalid_token"
    );
}

#[tokio::test]
async fn logout_with_a_forged_refresh_token_for_a_real_session_fails() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    let forged = format!("{}.{}", tokens.session_id, "A".repeat(43));
    assert_eq!(err_code(logout_refresh(&h, &forged).await), "invalid_token");
    h.verify(&tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn stateless_check_keeps_verifying_logged_out_tokens() {
    let h = harness_with(|c| c.session_check = SessionCheck::Stateless);
    let (user, tokens) = h.signup("alice").await;
    logout_access(&h, &tokens.access_token).await.unwrap();
    assert_eq!(h.storage.session_count(), 0);
    let v = h.verify(&tokens.access_token).await.unwrap();
    assert_eq!(v.user_id, user.id);
    // Account operations always check the session.
    assert_eq!(
        err_code(list(&h, &tokens.access_token).await),
        "session_ended"
    );
    // Until the token expires.
    h.advance(Duration::from_secs(931));
    assert_eq!(
        err_code(h.verify(&tokens.access_token).await),
        "token_expired"
    );
}

#[tokio::test]
async fn idle_sessions_expire() {
    let h = harness_with(|c| {
        c.refresh_token_ttl = Duration::from_secs(3600);
        // Longer than the idle lifetime, so verify reports the session, not the token.
        c.access_token_ttl = Duration::from_secs(2 * 3600);
    });
    let (_, tokens) = h.signup("alice").await;
    assert_eq!(tokens.refresh_expires_at_ms, T0_MS + 3_600_000);

    // Used within the idle lifetime, the session slides forward.
    h.advance(Duration::from_secs(3599));
    let next = h.refresh(&tokens.refresh_token).await.unwrap();
    assert_eq!(next.refresh_expires_at_ms, h.now_ms() + 3_600_000);
    h.advance(Duration::from_secs(3599));
    h.verify(&next.access_token).await.unwrap();

    // Then left idle past it.
    h.advance(Duration::from_secs(1));
    assert_eq!(
        err_code(h.verify(&next.access_token).await),
        "session_ended"
    );
    assert_eq!(
        err_code(h.refresh(&next.refresh_token).await),
        "session_ended"
    );
    // The expired session was removed.
    assert!(h.stored_session(&tokens.session_id).await.is_none());
}

#[tokio::test]
async fn idle_expiry_with_default_ttls() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    h.advance(Duration::from_secs(30 * 86_400));
    assert_eq!(
        err_code(h.refresh(&tokens.refresh_token).await),
        "session_ended"
    );
    assert!(h.verify(&tokens.access_token).await.is_err());
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime() {
    let h = harness_with(|c| {
        c.refresh_token_ttl = Duration::from_secs(3600);
        c.access_token_ttl = Duration::from_secs(3600);
        c.session_max_lifetime = Duration::from_secs(3 * 3600);
    });
    let (_, first) = h.signup("alice").await;
    let absolute = T0_MS + 3 * 3_600_000;
    let mut current = first;
    // Refresh every 50 minutes, always within the idle lifetime.
    for step in 1..=3 {
        h.advance(Duration::from_secs(50 * 60));
        current = h
            .refresh(&current.refresh_token)
            .await
            .unwrap_or_else(|e| panic!("refresh {step}: {e}"));
        assert!(current.refresh_expires_at_ms <= absolute);
    }
    // At 150 minutes the idle expiry (210) is capped by the absolute one (180).
    assert_eq!(current.refresh_expires_at_ms, absolute);
    h.advance(Duration::from_secs(29 * 60));
    h.verify(&current.access_token).await.unwrap();
    h.advance(Duration::from_secs(60));
    // Past 180 minutes: over, although idle for only 30 minutes.
    assert_eq!(
        err_code(h.verify(&current.access_token).await),
        "session_ended"
    );
    assert_eq!(
        err_code(h.refresh(&current.refresh_token).await),
        "session_ended"
    );
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_caller_only() {
    let h = harness();
    let (_, a) = h.signup("alice").await;
    let b = h.login_ok("alice", PASSWORD).await;
    let c = h.login_ok("alice", PASSWORD).await;
    let (_, bob) = h.signup("bob").await;

    let r = h
        .auth
        .logout_all(LogoutAllRequest {
            access_token: b.access_token.clone(),
            client: None,
        })
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 3);
    for t in [&a, &b, &c] {
        assert_eq!(err_code(h.verify(&t.access_token).await), "session_ended");
        assert!(h.refresh(&t.refresh_token).await.is_err());
    }
    h.verify(&bob.access_token).await.unwrap();
    // The ended token cannot be used again.
    assert_eq!(
        err_code(
            h.auth
                .logout_all(LogoutAllRequest {
                    access_token: b.access_token.clone(),
                    client: None,
                })
                .await
        ),
        "session_ended"
    );
}

#[tokio::test]
async fn change_password_ends_other_sessions_and_the_old_password() {
    let h = harness();
    let (_, current) = h.signup("alice").await;
    let other1 = h.login_ok("alice", PASSWORD).await;
    let other2 = h.login_ok("alice", PASSWORD).await;
    let (_, bob) = h.signup("bob").await;
    let new_password = "a brand new password";

    // Wrong current password: nothing changes.
    let e = h
        .auth
        .change_password(ChangePasswordRequest {
            access_token: current.access_token.clone(),
            current_password: "not my password".into(),
            new_password: new_password.into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
    // A new password that breaks the policy: nothing changes.
    let e = h
        .auth
        .change_password(ChangePasswordRequest {
            access_token: current.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: "short".into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_password");
    h.verify(&other1.access_token).await.unwrap();
    h.login_ok("alice", PASSWORD).await;
    // (That login opened a fourth session.)

    let before = h.stored_user("alice").await.password_hash;
    let r = h
        .auth
        .change_password(ChangePasswordRequest {
            access_token: current.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: new_password.into(),
            client: None,
        })
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 3);
    let after = h.stored_user("alice").await.password_hash;
    assert_ne!(before, after);
    assert!(after.starts_with("$argon2id$"));

    h.verify(&current.access_token).await.unwrap();
    h.refresh(&current.refresh_token).await.unwrap();
    for t in [&other1, &other2] {
        assert_eq!(err_code(h.verify(&t.access_token).await), "session_ended");
        assert!(h.refresh(&t.refresh_token).await.is_err());
    }
    h.verify(&bob.access_token).await.unwrap();

    assert_eq!(
        err_code(h.login("alice", PASSWORD).await),
        "invalid_credentials"
    );
    h.login_ok("alice", new_password).await;
}

#[tokio::test]
async fn change_password_needs_a_live_session() {
    let h = harness_with(|c| c.session_check = SessionCheck::Stateless);
    let (_, tokens) = h.signup("alice").await;
    logout_access(&h, &tokens.access_token).await.unwrap();
    let e = h
        .auth
        .change_password(ChangePasswordRequest {
            access_token: tokens.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: "a brand new password".into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "session_ended");
    h.login_ok("alice", PASSWORD).await;
}

#[tokio::test]
async fn delete_user_removes_the_account() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    let other = h.login_ok("alice", PASSWORD).await;
    let (_, bob) = h.signup("bob").await;

    let e = h
        .auth
        .delete_user(DeleteUserRequest {
            access_token: tokens.access_token.clone(),
            password: "not my password".into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
    h.verify(&tokens.access_token).await.unwrap();

    h.auth
        .delete_user(DeleteUserRequest {
            access_token: tokens.access_token.clone(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .unwrap();
    assert!(
        h.storage
            .get_user_by_username("alice")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        err_code(h.login("alice", PASSWORD).await),
        "invalid_credentials"
    );
    for t in [&tokens, &other] {
        assert_eq!(err_code(h.verify(&t.access_token).await), "session_ended");
        assert!(h.refresh(&t.refresh_token).await.is_err());
    }
    h.verify(&bob.access_token).await.unwrap();
    assert_eq!(h.storage.user_count(), 1);
    assert_eq!(h.storage.session_count(), 1);
    // The name is free again; the new account is a different one.
    let again = h.register("alice", "another password").await;
    let v = h
        .verify(&h.login_ok("alice", "another password").await.access_token)
        .await
        .unwrap();
    assert_eq!(v.user_id, again.id);
    assert_eq!(
        err_code(h.verify(&tokens.access_token).await),
        "session_ended"
    );
}

#[tokio::test]
async fn list_sessions_shows_client_info_and_the_current_one() {
    let h = harness();
    h.register("alice", PASSWORD).await;
    let phone = h.login_from("alice", "Phone/1.0", "203.0.113.7").await;
    h.advance(Duration::from_secs(5));
    let laptop = h.login_from("alice", "Laptop/2.0", "2001:db8::1").await;
    let (_, bob) = h.signup("bob").await;

    let sessions = list(&h, &laptop.access_token).await.unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    // Oldest first.
    assert_eq!(sessions[0].id, phone.session_id);
    assert_eq!(sessions[0].user_agent, "Phone/1.0");
    assert_eq!(sessions[0].ip, "203.0.113.7");
    assert_eq!(sessions[0].created_at_ms, T0_MS);
    assert!(!sessions[0].current);
    assert_eq!(sessions[1].id, laptop.session_id);
    assert_eq!(sessions[1].user_agent, "Laptop/2.0");
    assert_eq!(sessions[1].ip, "2001:db8::1");
    assert_eq!(sessions[1].created_at_ms, T0_MS + 5000);
    assert!(sessions[1].current);

    // From the other session, the other one is current.
    let from_phone = list(&h, &phone.access_token).await.unwrap();
    assert!(from_phone[0].current && !from_phone[1].current);
    let resp = h
        .auth
        .list_sessions(ListSessionsRequest {
            access_token: phone.access_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(resp.user.unwrap().username, "alice");

    // Bob sees only his own.
    let bobs = list(&h, &bob.access_token).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, bob.session_id);
    assert_eq!(bobs[0].user_agent, "");
}

#[tokio::test]
async fn client_info_is_bounded_and_stripped_of_control_characters() {
    let h = harness();
    h.register("alice", PASSWORD).await;
    let long_agent = "é".repeat(1000);
    let t = h
        .login_from("alice", &long_agent, "10.0.0.1\r\nX-Evil: 1")
        .await;
    let s = &list(&h, &t.access_token).await.unwrap()[0];
    assert!(s.user_agent.len() <= 256, "{}", s.user_agent.len());
    assert!(s.user_agent.chars().all(|c| c == 'é'));
    assert!(!s.ip.chars().any(char::is_control), "{:?}", s.ip);
}

#[tokio::test]
async fn revoke_session_ends_one_session_of_the_caller() {
    let h = harness();
    let (_, a) = h.signup("alice").await;
    let b = h.login_ok("alice", PASSWORD).await;
    let (_, bob) = h.signup("bob").await;

    revoke(&h, &a.access_token, &b.session_id).await.unwrap();
    assert_eq!(err_code(h.verify(&b.access_token).await), "session_ended");
    assert!(h.refresh(&b.refresh_token).await.is_err());
    h.verify(&a.access_token).await.unwrap();

    // Already gone, unknown, or someone else's: not found, and nothing happens.
    let e = revoke(&h, &a.access_token, &b.session_id)
        .await
        .unwrap_err();
    assert_eq!(e, AuthError::NotFound);
    assert_eq!(e.code(), "not_found");
    assert_eq!(
        err_code(revoke(&h, &a.access_token, "0123456789abcdef0123456789abcdef").await),
        "not_found"
    );
    assert_eq!(
        err_code(revoke(&h, &a.access_token, &bob.session_id).await),
        "not_found"
    );
    h.verify(&bob.access_token).await.unwrap();
    assert_eq!(
        err_code(revoke(&h, &a.access_token, "").await),
        "invalid_argument"
    );

    // Revoking one's own session works too.
    revoke(&h, &a.access_token, &a.session_id).await.unwrap();
    assert_eq!(err_code(h.verify(&a.access_token).await), "session_ended");
}

#[tokio::test]
async fn sweep_expired_deletes_only_expired_sessions() {
    let h = harness_with(|c| c.refresh_token_ttl = Duration::from_secs(600));
    h.signup("alice").await;
    h.login_ok("alice", PASSWORD).await;
    assert_eq!(h.auth.sweep_expired().await.unwrap(), 0);
    h.advance(Duration::from_secs(300));
    let (_, live) = h.signup("bob").await;
    assert_eq!(h.storage.session_count(), 3);

    h.advance(Duration::from_secs(301));
    assert_eq!(h.auth.sweep_expired().await.unwrap(), 2);
    assert_eq!(h.storage.session_count(), 1);
    h.verify(&live.access_token).await.unwrap();
    assert_eq!(h.auth.sweep_expired().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_background_sweeper_deletes_expired_sessions() {
    let interval = Duration::from_secs(5);
    let h = harness_with(|c| {
        c.refresh_token_ttl = Duration::from_secs(600);
        c.sweep_interval = interval;
    });
    h.signup("alice").await;
    h.login_ok("alice", PASSWORD).await;
    h.advance(Duration::from_secs(300));
    let (_, live) = h.signup("bob").await;
    h.auth.start().unwrap();

    // Ticks before anything expires delete nothing.
    for _ in 0..3 {
        tokio::time::advance(interval).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(h.storage.session_count(), 3);

    // Past alice's sessions' idle expiry, the sweeper removes them within a few ticks.
    h.advance(Duration::from_secs(301));
    let mut ticks = 0;
    while h.storage.session_count() != 1 {
        ticks += 1;
        assert!(ticks <= 50, "sweeper did not run");
        tokio::time::advance(interval).await;
        tokio::task::yield_now().await;
    }
    assert!(
        h.stored_session(&live.session_id).await.is_some(),
        "the live session was kept"
    );
    h.verify(&live.access_token).await.unwrap();

    h.auth.stop().await;
    assert!(!h.auth.is_running());
}
