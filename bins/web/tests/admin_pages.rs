//! The admin pages over HTTP: a signed-in user without the `admin` role gets 403 on
//! every page and every action (and an anonymous visitor is sent to log in); an
//! administrator lists and searches users, locks, unlocks, signs out, grants,
//! revokes and deletes, and sees the cluster and the audit events.

mod common;

use auth_core::AuthApi;
use auth_core::api::LoginRequest;
use common::*;
use reqwest::StatusCode;

const PW: &str = "correct horse battery";

/// The id of `name`, from the admin list's link.
async fn user_id(admin: &Visitor, name: &str) -> String {
    let html = admin
        .page(&format!("/admin/users?q={name}"), StatusCode::OK)
        .await;
    let marker = "/admin/users/";
    html.match_indices(marker)
        .map(|(at, _)| &html[at + marker.len()..])
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .find(|id| id.len() == 32)
        .unwrap_or_else(|| panic!("no user link for {name} in:\n{html}"))
}

#[tokio::test]
async fn a_non_admin_gets_403_on_every_admin_page_and_action() {
    let site = Site::start().await;
    site.auth.bootstrap_admin("root", PW).await.unwrap();
    let admin = site.visitor();
    admin.login("root", PW).await;
    let alice = site.visitor();
    alice.signup("alice", PW).await;
    let alice_id = user_id(&admin, "alice").await;
    let root_id = user_id(&admin, "root").await;

    let pages = [
        "/admin/users".to_owned(),
        "/admin/users?q=root".to_owned(),
        format!("/admin/users/{root_id}"),
        "/admin/cluster".to_owned(),
        "/admin/events".to_owned(),
    ];
    for page in &pages {
        let html = alice.page(page, StatusCode::FORBIDDEN).await;
        assert!(
            !html.contains(&root_id) || page.contains(&root_id),
            "{page}"
        );
        // Anonymous: to the login page.
        let anon = site.visitor().get(page).await;
        assert_eq!(anon.status(), StatusCode::SEE_OTHER, "{page}");
        assert!(location(&anon).starts_with("/login"), "{page}");
    }
    // Every action on the admin's account, from alice's own valid CSRF token.
    for action in ["lock", "unlock", "logout", "delete", "grant", "revoke"] {
        let resp = alice
            .submit(
                "/account",
                &format!("/admin/users/{root_id}/{action}"),
                &[("role", "admin")],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{action}");
    }
    // Nothing happened: root still holds admin and can sign in; alice has no role.
    let root = site
        .auth
        .login(LoginRequest {
            username: "root".into(),
            password: PW.into(),
            client: None,
        })
        .await
        .unwrap();
    assert_eq!(root.user.unwrap().id, root_id);
    let page = admin
        .page(&format!("/admin/users/{alice_id}"), StatusCode::OK)
        .await;
    assert!(page.contains(r#"<dd id="user-roles">none</dd>"#), "{page}");
    // Each refusal is in the audit trail, as alice's.
    let events = admin.page("/admin/events", StatusCode::OK).await;
    let refused = events
        .matches(r#"<td class="kind">admin_refused</td>"#)
        .count();
    assert_eq!(refused, pages.len() + 6, "{events}");
    assert!(events.contains(&alice_id));
    // The header links the admin pages for the admin only.
    assert!(
        admin
            .page("/account", StatusCode::OK)
            .await
            .contains("admin-link")
    );
    assert!(
        !alice
            .page("/account", StatusCode::OK)
            .await
            .contains("admin-link")
    );
}

#[tokio::test]
async fn an_admin_manages_users_and_sees_cluster_and_events() {
    let site = Site::start().await;
    site.auth.bootstrap_admin("root", PW).await.unwrap();
    let admin = site.visitor();
    admin.login("root", PW).await;
    let bob = site.visitor();
    bob.signup("bob", PW).await;
    for name in ["carol", "dave"] {
        site.visitor().signup(name, PW).await;
    }

    // The list, and search.
    let all = admin.page("/admin/users", StatusCode::OK).await;
    for name in ["root", "bob", "carol", "dave"] {
        assert!(all.contains(&format!(">{name}</a>")), "{name} in {all}");
    }
    let found = admin.page("/admin/users?q=car", StatusCode::OK).await;
    assert!(found.contains(">carol</a>"));
    assert!(!found.contains(">bob</a>"));
    let none = admin.page("/admin/users?q=zzz", StatusCode::OK).await;
    assert!(none.contains("no-users"));

    // Lock bob: his session ends at once, he cannot sign in; then unlock.
    let bob_id = user_id(&admin, "bob").await;
    let detail = format!("/admin/users/{bob_id}");
    let page = admin.page(&detail, StatusCode::OK).await;
    assert!(page.contains("Sign out everywhere"));
    let resp = admin.submit(&detail, &format!("{detail}/lock"), &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), format!("{detail}?notice=user_locked"));
    let page = admin.page(&detail, StatusCode::OK).await;
    assert!(page.contains("Locked since"), "{page}");
    let back = bob.get("/account").await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER, "bob's session ended");
    let resp = bob
        .submit("/login", "/login", &[("username", "bob"), ("password", PW)])
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = admin
        .submit(&detail, &format!("{detail}/unlock"), &[])
        .await;
    assert_eq!(location(&resp), format!("{detail}?notice=user_unlocked"));
    bob.login("bob", PW).await;

    // Grant and revoke a role; force sign-out.
    let resp = admin
        .submit(&detail, &format!("{detail}/grant"), &[("role", "support")])
        .await;
    assert_eq!(location(&resp), format!("{detail}?notice=role_granted"));
    let page = admin.page(&detail, StatusCode::OK).await;
    assert!(
        page.contains(r#"<dd id="user-roles">support</dd>"#),
        "{page}"
    );
    let resp = admin
        .submit(&detail, &format!("{detail}/revoke"), &[("role", "support")])
        .await;
    assert_eq!(location(&resp), format!("{detail}?notice=role_revoked"));
    bob.login("bob", PW).await;
    let resp = admin
        .submit(&detail, &format!("{detail}/logout"), &[])
        .await;
    assert_eq!(location(&resp), format!("{detail}?notice=user_signed_out"));
    assert!(
        admin
            .page(&detail, StatusCode::OK)
            .await
            .contains("no-sessions")
    );

    // An administrator's own page offers no lock or delete.
    let root_id = user_id(&admin, "root").await;
    let own = admin
        .page(&format!("/admin/users/{root_id}"), StatusCode::OK)
        .await;
    assert!(!own.contains(r#"id="lock""#) && !own.contains(r#"id="delete""#));

    // Delete dave.
    let dave_id = user_id(&admin, "dave").await;
    let dave = format!("/admin/users/{dave_id}");
    let resp = admin.submit(&dave, &format!("{dave}/delete"), &[]).await;
    assert_eq!(location(&resp), "/admin/users?notice=user_deleted");
    admin.page(&dave, StatusCode::NOT_FOUND).await;

    // The cluster of an embedded Auth: one process, memory storage.
    let page = admin.page("/admin/cluster", StatusCode::OK).await;
    assert!(page.contains("single-process"), "{page}");

    // The events, newest first: the delete, then the sign-out, ...
    let page = admin.page("/admin/events", StatusCode::OK).await;
    let kinds: Vec<&str> = page
        .split(r#"<td class="kind">"#)
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .collect();
    assert_eq!(kinds.first(), Some(&"account_deleted"), "{kinds:?}");
    for kind in [
        "locked",
        "unlocked",
        "logout_all",
        "role_granted",
        "role_revoked",
        "registered",
        "login_succeeded",
        "login_failed",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}
