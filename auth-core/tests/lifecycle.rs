//! start/stop and what happens to calls on a stopped `Auth`.

mod common;

use auth_core::api::*;
use auth_core::{AuthApi, AuthError, Config};
use auth_storage::memory::MemoryStorage;
use common::*;

#[tokio::test]
async fn start_is_idempotent_and_usable_before_start() {
    let h = harness();
    assert!(!h.auth.is_running());
    // Usable as soon as it is built.
    let (_, tokens) = h.signup("alice").await;
    h.auth.start().unwrap();
    assert!(h.auth.is_running());
    h.auth.start().unwrap();
    h.auth.clone().start().unwrap();
    assert!(h.auth.is_running());
    h.verify(&tokens.access_token).await.unwrap();
    h.auth.stop().await;
}

#[tokio::test]
async fn stop_is_idempotent_and_start_after_stop_fails() {
    let h = harness();
    h.auth.start().unwrap();
    h.auth.stop().await;
    assert!(!h.auth.is_running());
    h.auth.stop().await;
    assert!(!h.auth.is_running());
    let e = h.auth.start().unwrap_err();
    assert_eq!(e, AuthError::Stopped);
    assert_eq!(e.code(), "stopped");
    assert!(!h.auth.is_running());
    // Also when it was never started.
    let never = harness();
    never.auth.stop().await;
    assert_eq!(never.auth.start().unwrap_err().code(), "stopped");
}

#[test]
fn start_needs_a_runtime() {
    let auth = auth_core::Auth::new(Config::default(), MemoryStorage::new()).unwrap();
    assert_eq!(auth.start().unwrap_err().code(), "invalid_config");
    assert!(!auth.is_running());
}

#[tokio::test]
async fn every_call_after_stop_fails_with_stopped() {
    let h = harness();
    h.auth.start().unwrap();
    let (_, tokens) = h.signup("alice").await;
    let other = h.login_ok("alice", PASSWORD).await;
    // A clone shares the state.
    let clone = h.auth.clone();
    h.auth.stop().await;

    let a = &clone;
    let at = || tokens.access_token.clone();
    let results: Vec<(&str, Result<(), AuthError>)> = vec![
        (
            "register",
            a.register(RegisterRequest {
                username: "bob".into(),
                password: PASSWORD.into(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "login",
            a.login(LoginRequest {
                username: "alice".into(),
                password: PASSWORD.into(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "verify",
            a.verify(VerifyRequest { access_token: at() })
                .await
                .map(drop),
        ),
        ("verify_token", a.verify_token(&at()).await.map(drop)),
        (
            "refresh",
            a.refresh(RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "logout",
            a.logout(LogoutRequest {
                access_token: at(),
                refresh_token: String::new(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "logout by refresh token",
            a.logout(LogoutRequest {
                access_token: String::new(),
                refresh_token: tokens.refresh_token.clone(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "logout_all",
            a.logout_all(LogoutAllRequest {
                access_token: at(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "change_password",
            a.change_password(ChangePasswordRequest {
                access_token: at(),
                current_password: PASSWORD.into(),
                new_password: "a brand new password".into(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "delete_user",
            a.delete_user(DeleteUserRequest {
                access_token: at(),
                password: PASSWORD.into(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "list_sessions",
            a.list_sessions(ListSessionsRequest { access_token: at() })
                .await
                .map(drop),
        ),
        (
            "revoke_session",
            a.revoke_session(RevokeSessionRequest {
                access_token: at(),
                session_id: other.session_id.clone(),
                client: None,
            })
            .await
            .map(drop),
        ),
        ("sweep_expired", a.sweep_expired().await.map(drop)),
        // Bad input is also just "stopped".
        (
            "refresh garbage",
            a.refresh(RefreshRequest {
                refresh_token: "garbage".into(),
                client: None,
            })
            .await
            .map(drop),
        ),
        (
            "verify garbage",
            a.verify(VerifyRequest {
                access_token: "garbage".into(),
            })
            .await
            .map(drop),
        ),
    ];
    for (what, r) in results {
        assert_eq!(r, Err(AuthError::Stopped), "{what}");
    }
    // Nothing changed in storage.
    assert_eq!(h.storage.user_count(), 1);
    assert_eq!(h.storage.session_count(), 2);
    assert_eq!(AuthError::Stopped.to_string(), "auth service stopped");
}

#[tokio::test]
async fn the_api_works_through_an_arc_dyn() {
    let h = harness();
    let api: std::sync::Arc<dyn AuthApi> = std::sync::Arc::new(h.auth.clone());
    api.register(RegisterRequest {
        username: "alice".into(),
        password: PASSWORD.into(),
        client: None,
    })
    .await
    .unwrap();
    let tokens = api
        .login(LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .unwrap()
        .tokens
        .unwrap();
    api.verify(VerifyRequest {
        access_token: tokens.access_token,
    })
    .await
    .unwrap();
    h.auth.stop().await;
    assert_eq!(
        api.verify(VerifyRequest {
            access_token: "x".into()
        })
        .await
        .unwrap_err()
        .code(),
        "stopped"
    );
}

#[tokio::test]
async fn incoherent_configs_are_rejected_by_new() {
    let edits: [fn(&mut Config); 3] = [
        |c| c.issuer = String::new(),
        |c| c.sweep_interval = std::time::Duration::ZERO,
        |c| c.access_token_ttl = std::time::Duration::ZERO,
    ];
    for edit in edits {
        let mut config = Config::default();
        edit(&mut config);
        let e = auth_core::Auth::new(config, MemoryStorage::new()).unwrap_err();
        assert_eq!(e.code(), "invalid_config");
    }
}
