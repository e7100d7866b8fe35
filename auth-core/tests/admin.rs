//! Roles and administration through `Auth`: the first administrator's bootstrap, the
//! `roles` claim, every admin operation refused to a non-admin, lock / unlock, force
//! logout, delete, role grants and revocations, user search with pagination, and the
//! bound on sessions per user.

mod common;

use auth_core::admin::ADMIN_ROLE;
use auth_core::api::*;
use auth_core::{AuthApi, AuthError};
use common::*;

const ADMIN_PASSWORD: &str = "the admin's own long password";

/// A harness with a bootstrapped administrator, signed in.
async fn with_admin() -> (Harness, TokenPair) {
    let h = harness_with(|c| c.keys = Some(fixed_keys()));
    let (user, created) = h
        .auth
        .bootstrap_admin("root", ADMIN_PASSWORD)
        .await
        .expect("bootstrap");
    assert!(created);
    assert_eq!(user.roles, vec![ADMIN_ROLE.to_owned()]);
    let tokens = h.login_ok("root", ADMIN_PASSWORD).await;
    (h, tokens)
}

fn target(token: &TokenPair, user: &str) -> AdminUserRequest {
    AdminUserRequest {
        access_token: token.access_token.clone(),
        user: user.into(),
        client: None,
    }
}

fn role(token: &TokenPair, user: &str, role: &str) -> AdminRoleRequest {
    AdminRoleRequest {
        access_token: token.access_token.clone(),
        user: user.into(),
        role: role.into(),
        client: None,
    }
}

/// Every admin operation, called with `token` on `user`; the error code of each (or
/// "ok").
async fn every_admin_call(h: &Harness, token: &TokenPair, user: &str) -> Vec<&'static str> {
    let a = &h.auth;
    let code = |r: Result<(), AuthError>| match r {
        Ok(()) => "ok",
        Err(e) => e.code(),
    };
    vec![
        code(
            a.admin_list_users(AdminListUsersRequest {
                access_token: token.access_token.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        code(a.admin_get_user(target(token, user)).await.map(drop)),
        code(a.admin_lock_user(target(token, user)).await.map(drop)),
        code(a.admin_unlock_user(target(token, user)).await.map(drop)),
        code(a.admin_logout_user(target(token, user)).await.map(drop)),
        code(
            a.admin_grant_role(role(token, user, "support"))
                .await
                .map(drop),
        ),
        code(
            a.admin_revoke_role(role(token, user, "support"))
                .await
                .map(drop),
        ),
        code(a.admin_delete_user(target(token, user)).await.map(drop)),
    ]
}

#[tokio::test]
async fn bootstrap_creates_an_admin_once_and_never_hands_over_a_taken_name() {
    let h = harness();
    let (admin, created) = h
        .auth
        .bootstrap_admin("root", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert!(created);
    // Again, with the password: nothing new.
    let (again, created) = h
        .auth
        .bootstrap_admin("root", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, admin.id);
    // Someone registered "mallory" first: bootstrapping that name with another
    // password does not make the squatter an administrator.
    h.register("mallory", PASSWORD).await;
    assert_eq!(
        err_code(h.auth.bootstrap_admin("mallory", ADMIN_PASSWORD).await),
        "user_exists"
    );
    assert!(h.stored_user("rnallory").await.roles.is_empty());
    // An existing account is never promoted here, even by its owner: a restart with
    // the bootstrap settings must not undo another administrator's revocation.
    h.register("ops", PASSWORD).await;
    let (ops, created) = h.auth.bootstrap_admin("ops", PASSWORD).await.unwrap();
    assert!(!created);
    assert!(ops.roles.is_empty());
    let root = h.login_ok("root", ADMIN_PASSWORD).await;
    let admin_role = |access_token: &str| AdminRoleRequest {
        access_token: access_token.into(),
        user: "ops".into(),
        role: ADMIN_ROLE.into(),
        client: None,
    };
    h.auth
        .admin_grant_role(admin_role(&root.access_token))
        .await
        .unwrap();
    h.auth
        .admin_revoke_role(admin_role(&root.access_token))
        .await
        .unwrap();
    let (again, _) = h.auth.bootstrap_admin("ops", PASSWORD).await.unwrap();
    assert!(again.roles.is_empty(), "the revocation stands");
    // A weak password is refused by the policy like any other.
    assert_eq!(
        err_code(h.auth.bootstrap_admin("other", "short").await),
        "invalid_password"
    );
}

#[tokio::test]
async fn tokens_carry_roles_and_verify_reports_them() {
    let (h, admin) = with_admin().await;
    let v = h.verify(&admin.access_token).await.unwrap();
    assert_eq!(v.roles, vec![ADMIN_ROLE.to_owned()]);
    let (_, claims) = jwt_json(&admin.access_token);
    assert_eq!(claims["roles"], serde_json::json!(["admin"]));
    // A user without roles has no claim at all.
    let (_, user) = h.signup("alice").await;
    let (_, claims) = jwt_json(&user.access_token);
    assert!(claims.get("roles").is_none(), "{claims}");
    // A granted role appears from the next sign-in on (and in refreshed tokens).
    h.auth
        .admin_grant_role(role(&admin, "alice", "support"))
        .await
        .unwrap();
    assert!(h.verify(&user.access_token).await.unwrap().roles.is_empty());
    let next = h.login_ok("alice", PASSWORD).await;
    assert_eq!(
        h.verify(&next.access_token).await.unwrap().roles,
        vec!["support"]
    );
    let refreshed = h.refresh(&next.refresh_token).await.unwrap();
    assert_eq!(
        h.verify(&refreshed.access_token).await.unwrap().roles,
        vec!["support"]
    );
}

#[tokio::test]
async fn a_non_admin_is_denied_every_admin_operation() {
    let (h, _admin) = with_admin().await;
    let (_, user) = h.signup("alice").await;
    h.signup("bob").await;
    let codes = every_admin_call(&h, &user, "bob").await;
    assert_eq!(codes, vec!["permission_denied"; 8]);
    // Nothing happened to bob.
    let bob = h.stored_user("bob").await;
    assert!(bob.roles.is_empty() && bob.admin_locked_at_ms == 0);
    // A `roles` claim forged with the signing key (an insider, a leaked key) does
    // not help either: the stored record decides.
    let (header, mut payload) = jwt_json(&user.access_token);
    payload["roles"] = serde_json::json!(["admin"]);
    let forged = TokenPair {
        access_token: craft_jwt(&header, &payload, Some(&[0x5a; 32])),
        ..TokenPair::default()
    };
    assert_eq!(
        h.verify(&forged.access_token).await.unwrap().roles,
        vec!["admin"],
        "the forgery verifies"
    );
    assert_eq!(
        every_admin_call(&h, &forged, "bob").await,
        vec!["permission_denied"; 8]
    );
    // No token at all, or a garbage one: not even permission_denied, an auth error.
    let none = TokenPair::default();
    for code in every_admin_call(&h, &none, "bob").await {
        assert_eq!(code, "invalid_token");
    }
}

#[tokio::test]
async fn a_revoked_admin_loses_access_at_once_even_with_a_live_token() {
    let (h, root) = with_admin().await;
    let (_, before) = h.signup("second").await;
    h.auth
        .admin_grant_role(role(&root, "second", ADMIN_ROLE))
        .await
        .unwrap();
    let second = h.login_ok("second", PASSWORD).await;
    assert_eq!(
        every_admin_call(&h, &second, "nobody-here").await[0],
        "ok",
        "the new admin can list users"
    );
    let r = h
        .auth
        .admin_revoke_role(role(&root, "second", ADMIN_ROLE))
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 2, "the revoked admin's sessions end");
    for t in [&before, &second] {
        assert_eq!(err_code(h.verify(&t.access_token).await), "session_ended");
    }
    // Even if a session survived (a stateless verifier would accept the token until it
    // expires), the stored role decides: signed in again, no admin.
    let again = h.login_ok("second", PASSWORD).await;
    assert_eq!(
        every_admin_call(&h, &again, "root").await,
        vec!["permission_denied"; 8]
    );
}

#[tokio::test]
async fn lock_ends_sessions_and_refuses_sign_in_until_unlocked() {
    let (h, admin) = with_admin().await;
    let (alice, first) = h.signup("alice").await;
    let second = h.login_ok("alice", PASSWORD).await;
    let r = h
        .auth
        .admin_lock_user(target(&admin, "alice"))
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 2);
    let info = r.user.unwrap();
    assert_eq!(info.id, alice.id);
    assert_eq!(info.locked_at_ms, h.now_ms());
    for t in [&first, &second] {
        assert_eq!(err_code(h.verify(&t.access_token).await), "session_ended");
        assert_eq!(err_code(h.refresh(&t.refresh_token).await), "invalid_token");
    }
    // The right password learns that the account is locked; a wrong one learns
    // nothing more than usual.
    assert_eq!(
        err_code(h.login("alice", PASSWORD).await),
        "account_disabled"
    );
    assert_eq!(
        err_code(h.login("alice", "not the password at all").await),
        "invalid_credentials"
    );
    // Locking again is harmless and keeps the first time.
    let again = h
        .auth
        .admin_lock_user(target(&admin, &alice.id))
        .await
        .unwrap();
    assert_eq!(again.user.unwrap().locked_at_ms, info.locked_at_ms);
    let r = h
        .auth
        .admin_unlock_user(target(&admin, "alice"))
        .await
        .unwrap();
    assert_eq!(r.user.unwrap().locked_at_ms, 0);
    h.login_ok("alice", PASSWORD).await;
}

#[tokio::test]
async fn force_logout_delete_and_show_act_on_the_named_user_only() {
    let (h, admin) = with_admin().await;
    let (alice, a1) = h.signup("alice").await;
    let a2 = h.login_from("alice", "phone", "198.51.100.9").await;
    let (_, bob) = h.signup("bob").await;

    let shown = h
        .auth
        .admin_get_user(target(&admin, "Alice"))
        .await
        .unwrap();
    assert_eq!(shown.user.as_ref().unwrap().username, "alice");
    assert_eq!(shown.sessions.len(), 2);
    assert!(
        shown
            .sessions
            .iter()
            .any(|s| s.user_agent == "phone" && s.ip == "198.51.100.9")
    );
    assert!(shown.sessions.iter().all(|s| !s.current));

    let r = h
        .auth
        .admin_logout_user(target(&admin, &alice.id))
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 2);
    for t in [&a1, &a2] {
        assert_eq!(err_code(h.verify(&t.access_token).await), "session_ended");
    }
    assert!(
        h.verify(&bob.access_token).await.is_ok(),
        "bob is untouched"
    );
    // alice may sign in again after a forced logout.
    h.login_ok("alice", PASSWORD).await;

    let r = h
        .auth
        .admin_delete_user(target(&admin, "alice"))
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 1);
    assert!(r.user.is_none());
    assert_eq!(
        err_code(h.login("alice", PASSWORD).await),
        "invalid_credentials"
    );
    for call in [
        h.auth
            .admin_get_user(target(&admin, "alice"))
            .await
            .map(drop),
        h.auth
            .admin_delete_user(target(&admin, &alice.id))
            .await
            .map(drop),
        h.auth
            .admin_lock_user(target(&admin, "alice"))
            .await
            .map(drop),
    ] {
        assert_eq!(err_code(call), "not_found");
    }
    assert_eq!(
        err_code(h.auth.admin_get_user(target(&admin, "")).await),
        "invalid_argument"
    );
}

#[tokio::test]
async fn a_username_shaped_like_another_users_id_is_refused_as_ambiguous() {
    let (h, admin) = with_admin().await;
    let (victim, _) = h.signup("victim").await;
    // The attacker takes the victim's id as a username.
    h.register(&victim.id, PASSWORD).await;
    assert_eq!(
        err_code(h.auth.admin_lock_user(target(&admin, &victim.id)).await),
        "invalid_argument"
    );
    assert_eq!(h.stored_user("victirn").await.admin_locked_at_ms, 0);
    // A name that is only a name still works.
    h.auth
        .admin_lock_user(target(&admin, "victim"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_admin_cannot_lock_delete_or_demote_themselves() {
    let (h, admin) = with_admin().await;
    for r in [
        h.auth
            .admin_lock_user(target(&admin, "root"))
            .await
            .map(drop),
        h.auth
            .admin_delete_user(target(&admin, "root"))
            .await
            .map(drop),
        h.auth
            .admin_revoke_role(role(&admin, "root", ADMIN_ROLE))
            .await
            .map(drop),
    ] {
        assert_eq!(err_code(r), "permission_denied");
    }
    let root = h.stored_user("root").await;
    assert_eq!(root.roles, vec![ADMIN_ROLE.to_owned()]);
    assert_eq!(root.admin_locked_at_ms, 0);
    // Other roles of their own are theirs to change.
    h.auth
        .admin_grant_role(role(&admin, "root", "support"))
        .await
        .unwrap();
    h.auth
        .admin_revoke_role(role(&admin, "root", "support"))
        .await
        .unwrap();
    assert_eq!(
        err_code(
            h.auth
                .admin_grant_role(role(&admin, "root", "Not A Role"))
                .await
        ),
        "invalid_argument"
    );
}

#[tokio::test]
async fn user_search_pages_through_everyone_in_name_order() {
    let (h, admin) = with_admin().await;
    for name in ["dave", "carol", "erin", "bob", "alice", "bobby"] {
        h.register(name, PASSWORD).await;
    }
    let list = |query: &str, page_token: String, page_size: u32| {
        h.auth.admin_list_users(AdminListUsersRequest {
            access_token: admin.access_token.clone(),
            query: query.into(),
            page_token,
            page_size,
        })
    };
    let mut names = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = list("", token, 3).await.unwrap();
        assert!(page.users.len() <= 3);
        names.extend(page.users.into_iter().map(|u| u.username));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        names,
        vec!["alice", "bob", "bobby", "carol", "dave", "erin", "root"]
    );
    let found = list("BOB", String::new(), 0).await.unwrap();
    let found: Vec<_> = found.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(found, vec!["bob", "bobby"]);
    let alice = h.stored_user("alice").await;
    let by_id = list(&alice.id, String::new(), 0).await.unwrap();
    assert_eq!(by_id.users.len(), 1);
    assert_eq!(by_id.users[0].id, alice.id);
    assert_eq!(
        err_code(list("", "%%%".into(), 0).await),
        "invalid_argument"
    );
    assert_eq!(
        err_code(list(&"x".repeat(300), String::new(), 0).await),
        "invalid_argument"
    );
}

#[tokio::test]
async fn the_oldest_session_ends_when_a_user_opens_one_too_many() {
    let h = harness_with(|c| c.max_sessions_per_user = 3);
    let (_, first) = h.signup("alice").await;
    let mut later = Vec::new();
    for _ in 0..3 {
        h.advance(std::time::Duration::from_secs(1));
        later.push(h.login_ok("alice", PASSWORD).await);
    }
    assert_eq!(
        err_code(h.verify(&first.access_token).await),
        "session_ended",
        "the oldest went"
    );
    for t in &later {
        assert!(h.verify(&t.access_token).await.is_ok());
    }
    let listed = h
        .auth
        .list_sessions(ListSessionsRequest {
            access_token: later[2].access_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(listed.sessions.len(), 3);
}
