//! `authctl admin …` end to end: the real binary against an in-process backend with a
//! bootstrapped administrator. A non-admin is refused every command (exit 1,
//! `permission_denied`); the administrator lists and searches users across pages,
//! shows one with their sessions, locks, unlocks, logs out, grants and revokes roles,
//! and deletes; each takes effect at once.

mod common;

use common::*;

fn login(ep: &str, name: &str) -> String {
    let v = ok(ctl(ep, &["--json", "login", name], &format!("{PW}\n"))).json();
    v["tokens"]["access_token"].as_str().unwrap().to_owned()
}

fn admin(ep: &str, token: &str, args: &[&str]) -> Out {
    let mut all = vec!["--json", "admin", "--access-token", token];
    all.extend_from_slice(args);
    ctl(ep, &all, "")
}

#[test]
fn a_non_admin_is_refused_every_admin_command() {
    let b = admin_backend();
    let ep = b.endpoint();
    for name in ["alice", "bob"] {
        ok(ctl(&ep, &["register", name], &format!("{PW}\n")));
    }
    let alice = login(&ep, "alice");
    for args in [
        &["users"][..],
        &["show", "bob"],
        &["lock", "bob"],
        &["unlock", "bob"],
        &["logout", "bob"],
        &["delete", "bob"],
        &["grant", "bob", "admin"],
        &["revoke", "bob", "support"],
    ] {
        let out = admin(&ep, &alice, args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stdout);
        assert_eq!(out.json()["error"]["code"], "permission_denied", "{args:?}");
    }
    // bob is intact and can sign in.
    login(&ep, "bob");
}

#[test]
fn an_admin_manages_users_end_to_end() {
    let b = admin_backend();
    let ep = b.endpoint();
    for name in ["carol", "alice", "bob", "bobby"] {
        ok(ctl(&ep, &["register", name], &format!("{PW}\n")));
    }
    let root = login(&ep, "root");

    // Pages of two, followed with --all; and a search.
    let v = admin(&ep, &root, &["users", "--page-size", "2"]).json();
    assert_eq!(v["users"].as_array().unwrap().len(), 2);
    assert!(!v["next_page_token"].as_str().unwrap().is_empty());
    let v = ok(admin(&ep, &root, &["users", "--page-size", "2", "--all"])).json();
    let names: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "bobby", "carol", "root"]);
    let v = ok(admin(&ep, &root, &["users", "--query", "bob"])).json();
    assert_eq!(v["users"].as_array().unwrap().len(), 2);
    let text = ok(ctl(
        &ep,
        &["admin", "--access-token", &root, "users", "--query", "root"],
        "",
    ));
    assert!(
        text.stdout.contains("root") && text.stdout.contains("admin"),
        "{}",
        text.stdout
    );

    // show: the user's sessions.
    let alice = login(&ep, "alice");
    let v = ok(admin(&ep, &root, &["show", "alice"])).json();
    assert_eq!(v["user"]["username"], "alice");
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);

    // lock: the session ends and sign-in is refused; unlock restores it.
    let v = ok(admin(&ep, &root, &["lock", "alice"])).json();
    assert_eq!(v["sessions_ended"], 1);
    assert_eq!(v["user"]["locked"], true);
    let out = ctl(&ep, &["--json", "verify", &alice], "");
    assert_eq!(out.json()["error"]["code"], "session_ended");
    let out = ctl(&ep, &["--json", "login", "alice"], &format!("{PW}\n"));
    assert_eq!(out.json()["error"]["code"], "account_disabled");
    ok(admin(&ep, &root, &["unlock", "alice"]));
    let alice = login(&ep, "alice");

    // logout: every session of the user ends.
    let v = ok(admin(&ep, &root, &["logout", "alice"])).json();
    assert_eq!(v["sessions_ended"], 1);
    let out = ctl(&ep, &["--json", "verify", &alice], "");
    assert_eq!(out.json()["error"]["code"], "session_ended");

    // grant and revoke: the role shows in tokens from the next sign-in, and a
    // revocation ends the sessions that carried it.
    ok(admin(&ep, &root, &["grant", "bob", "support"]));
    let bob = login(&ep, "bob");
    let v = ok(ctl(&ep, &["--json", "verify", &bob], "")).json();
    assert_eq!(v["roles"], serde_json::json!(["support"]));
    let v = ok(admin(&ep, &root, &["revoke", "bob", "support"])).json();
    assert_eq!(v["sessions_ended"], 1);
    assert_eq!(v["user"]["roles"], serde_json::json!([]));

    // An admin token from stdin works too; delete then makes the name unknown.
    let v = ok(ctl(
        &ep,
        &["--json", "admin", "--access-token", "-", "delete", "carol"],
        &format!("{root}\n"),
    ))
    .json();
    assert!(v.get("user").is_none());
    let out = ctl(&ep, &["--json", "login", "carol"], &format!("{PW}\n"));
    assert_eq!(out.json()["error"]["code"], "invalid_credentials");
    let out = admin(&ep, &root, &["show", "carol"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["error"]["code"], "not_found");
    // The administrator cannot lock themselves out.
    let out = admin(&ep, &root, &["lock", "root"]);
    assert_eq!(out.json()["error"]["code"], "permission_denied");
}
