//! `authctl` end to end: the real binary against an in-process backend
//! (`auth_backend::serve` on an ephemeral port).

mod common;

use serde_json::Value;
use std::path::PathBuf;

use common::*;

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("authctl-e2e-{}-{name}", std::process::id()))
}

/// `login --json`, returning (access token, refresh token, session id).
fn login(ep: &str, name: &str) -> (String, String, String) {
    let v = ok(ctl(ep, &["--json", "login", name], &format!("{PW}\n"))).json();
    let t = &v["tokens"];
    (
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
        t["session_id"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn register_login_verify_sessions_logout_health() {
    let b = backend();
    let ep = b.endpoint();

    // register: password on stdin.
    let out = ok(ctl(&ep, &["register", "alice"], &format!("{PW}\n")));
    assert!(
        out.stdout.starts_with("registered alice (user "),
        "{}",
        out.stdout
    );
    let v = ok(ctl(&ep, &["register", "bob", "--json"], PW)).json();
    assert_eq!(v["user"]["username"], "bob");

    // login: human output shows the tokens; JSON output parses.
    let out = ok(ctl(&ep, &["login", "alice"], &format!("{PW}\n")));
    assert!(
        out.stdout.starts_with("logged in as alice"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("access token:   ey"), "{}", out.stdout);
    assert!(out.stdout.contains("refresh token:"), "{}", out.stdout);
    let (access, refresh, sid) = login(&ep, "alice");
    assert!(!out.stdout.contains(&access));

    // verify, from argv and from stdin.
    let out = ok(ctl(&ep, &["verify", &access], ""));
    assert!(
        out.stdout.starts_with("valid token for alice"),
        "{}",
        out.stdout
    );
    let v = ok(ctl(&ep, &["--json", "verify", "-"], &format!("{access}\n"))).json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["username"], "alice");
    assert_eq!(v["session_id"], sid.as_str());

    // sessions: two logins, the caller's marked.
    let v = ok(ctl(
        &ep,
        &["sessions", "--access-token", &access, "--json"],
        "",
    ))
    .json();
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], sid.as_str());
    assert!(
        current[0]["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("authctl/")
    );
    let out = ok(ctl(&ep, &["sessions", "--access-token", &access], ""));
    assert!(out.stdout.starts_with("alice (user "), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("* {sid}")), "{}", out.stdout);

    // refresh rotates the pair.
    let v = ok(ctl(&ep, &["--json", "refresh", &refresh], "")).json();
    let refresh2 = v["tokens"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(v["tokens"]["session_id"], sid.as_str());

    // logout by refresh token ends the session: verify now fails with exit 1.
    let out = ok(ctl(&ep, &["logout", "--refresh-token", &refresh2], ""));
    assert_eq!(out.stdout, "logged out\n");
    let out = ctl(&ep, &["verify", &access], "");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("[session_ended]"), "{}", out.stderr);

    // logout by access token (from stdin), JSON output.
    let (access2, _, _) = login(&ep, "alice");
    let v = ok(ctl(
        &ep,
        &["--json", "logout", "--access-token", "-"],
        &access2,
    ))
    .json();
    assert_eq!(v["logged_out"], true);
    let v = ctl(&ep, &["--json", "verify", &access2], "");
    assert_eq!(v.code, 1);
    assert_eq!(v.json()["error"]["code"], "session_ended");

    // health.
    let out = ok(ctl(&ep, &["health"], ""));
    assert_eq!(out.stdout, format!("http://{ep}: serving\n"));
    let v = ok(ctl(&ep, &["health", "--json"], "")).json();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["endpoints"][0]["serving"], true);
}

#[test]
fn login_save_writes_a_private_token_file() {
    let b = backend();
    let ep = b.endpoint();
    ok(ctl(&ep, &["register", "carol"], PW));
    let file = temp_file("carol.json");
    let _ = std::fs::remove_file(&file);
    let out = ok(ctl(
        &ep,
        &["login", "carol", "--save", file.to_str().unwrap()],
        PW,
    ));
    assert!(out.stdout.contains("tokens saved to"), "{}", out.stdout);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let access = saved["tokens"]["access_token"].as_str().unwrap();
    assert!(
        !out.stdout.contains(access),
        "tokens printed despite --save"
    );
    assert_eq!(saved["user"]["username"], "carol");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    ok(ctl(&ep, &["verify", access], ""));

    // A failed login leaves no file behind; an unusable path is a usage error.
    let bad = temp_file("never.json");
    let _ = std::fs::remove_file(&bad);
    let out = ctl(
        &ep,
        &["login", "carol", "--save", bad.to_str().unwrap()],
        "wrong password",
    );
    assert_eq!(out.code, 1);
    assert!(!bad.exists());
    let out = ctl(
        &ep,
        &["login", "carol", "--save", "/nonexistent/dir/t.json"],
        PW,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("/nonexistent/dir/t.json"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn exit_codes_are_scriptable() {
    let b = backend();
    let ep = b.endpoint();
    ok(ctl(&ep, &["register", "dave"], PW));

    // 1: auth errors, with the stable code.
    let out = ctl(&ep, &["register", "dave"], PW);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("[user_exists]"), "{}", out.stderr);
    let out = ctl(&ep, &["login", "dave"], "wrong password\n");
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: invalid username or password [invalid_credentials]\n"
    );
    let out = ctl(&ep, &["--json", "login", "dave"], "wrong password\n");
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["error"]["code"], "invalid_credentials");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let out = ctl(&ep, &["register", "x"], PW);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("[invalid_username]"), "{}", out.stderr);
    let out = ctl(&ep, &["verify", "not-a-token"], "");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("[invalid_token]"), "{}", out.stderr);

    // 2: usage errors. No password on stdin; passwords are not accepted on argv.
    let out = ctl(&ep, &["login", "dave"], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no password on stdin"),
        "{}",
        out.stderr
    );
    let out = ctl(&ep, &["login", "dave", "--password", PW], "");
    assert_eq!(out.code, 2);
    let out = ctl(&ep, &["logout"], "");
    assert_eq!(out.code, 2);
    let out = ctl(&ep, &[], "");
    assert_eq!(out.code, 2);
    let out = ctl(&ep, &["health", "--timeout", "later"], "");
    assert_eq!(out.code, 2);
    let out = ok(ctl(&ep, &["--help"], ""));
    assert!(out.stdout.contains("AUTHCTL_ENDPOINTS"), "{}", out.stdout);

    // 3: backend unreachable.
    let dead = dead_endpoint();
    let out = ctl(&dead, &["login", "dave"], PW);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("[unavailable]"), "{}", out.stderr);
    let out = ctl(&dead, &["--json", "verify", "x"], "");
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["error"]["code"], "unavailable");
    let out = ctl(&dead, &["health"], "");
    assert_eq!(out.code, 3);
    assert!(out.stdout.contains("unreachable"), "{}", out.stdout);
}

#[test]
fn endpoints_fail_over_and_health_reports_each() {
    let b = backend();
    let live = b.endpoint();
    let dead = dead_endpoint();
    let both = format!("{dead},{live}");

    // Calls fail over to the live endpoint (even register: the dead one refused the
    // connection, so the request cannot have arrived).
    ok(ctl(&both, &["register", "erin"], PW));
    let (access, _, _) = login(&both, "erin");
    ok(ctl(&both, &["verify", &access], ""));

    // health: one serving, one not → exit 3, both listed.
    let out = ctl(&both, &["--json", "health"], "");
    assert_eq!(out.code, 3);
    let v = out.json();
    assert_eq!(v["healthy"], false);
    let eps = v["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["endpoint"], format!("http://{dead}"));
    assert_eq!(eps[0]["serving"], false);
    assert_eq!(eps[0]["error"]["code"], "unavailable");
    assert_eq!(eps[1]["serving"], true);

    // The environment variable works like the flag.
    let mut cmd = command();
    cmd.args(["health"]).env("AUTHCTL_ENDPOINTS", &live);
    let out = ok(run(cmd, ""));
    assert_eq!(out.stdout, format!("http://{live}: serving\n"));
}

#[test]
fn a_stopped_backend_is_exit_code_3() {
    let b = stopped_backend();
    let out = ctl(&b.endpoint(), &["register", "frank"], PW);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("[unavailable]"), "{}", out.stderr);
}
