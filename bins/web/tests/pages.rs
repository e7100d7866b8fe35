//! Every page of auth-web over an embedded core, through a cookie-keeping HTTP
//! client: happy paths and the errors shown on forms.

mod common;

use std::time::Duration;

use auth_web::WebConfig;
use common::*;
use reqwest::StatusCode;

const PW: &str = "correct horse battery";

#[tokio::test]
async fn home_health_stylesheet_and_404() {
    let site = Site::start().await;
    let v = site.visitor();

    let resp = v.get("/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"/signup\"") && html.contains("href=\"/login\""));
    assert!(!html.contains("Signed in as"));

    let resp = v.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok");

    let resp = v.get("/static/style.css").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/css; charset=utf-8");
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert!(resp.text().await.unwrap().contains("font-family"));

    let html = v.page("/no/such/page", StatusCode::NOT_FOUND).await;
    assert!(html.contains("404"));
    let resp = v.get("/api/v1/nothing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "not_found");
}

#[tokio::test]
async fn signup_signs_in_and_shows_the_account() {
    let site = Site::start().await;
    let v = site.visitor();

    let resp = v.get("/signup").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let pre_session = set_cookie(resp.headers(), "pre_session").expect("pre-session cookie");
    assert!(pre_session.contains("HttpOnly") && pre_session.contains("SameSite=Strict"));
    assert!(pre_session.contains("Path=/") && !pre_session.contains("Secure"));
    let html = resp.text().await.unwrap();
    let token = csrf_of(&html).expect("csrf field");
    assert!(
        !pre_session.contains(&token),
        "the form token is derived from the cookie, not a copy of it"
    );

    let resp = v
        .submit(
            "/signup",
            "/signup",
            &[("username", "Alice"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account?notice=welcome");
    for name in ["access_token", "refresh_token"] {
        let line = set_cookie(resp.headers(), name).expect(name);
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
            assert!(line.contains(attr), "{line} lacks {attr}");
        }
        assert!(!line.contains("Secure"), "{line}");
    }

    let html = v.page("/account?notice=welcome", StatusCode::OK).await;
    assert!(html.contains("Welcome!"), "{html}");
    assert!(html.contains("id=\"account-username\">Alice<"));
    assert!(html.contains("Member since"));
    assert!(html.contains("UTC"));
    assert!(
        html.contains("Firefox on Linux"),
        "device from the User-Agent"
    );
    assert!(html.contains("127.0.0.1"), "peer address recorded");
    assert!(html.contains("This device"));
    assert!(html.contains("Sign out everywhere"));
    assert!(html.contains("action=\"/account/password\""));
    assert!(html.contains("action=\"/account/delete\""));
    assert!(
        revocable_sessions(&html).is_empty(),
        "no revoke button for this device"
    );

    let html = v.page("/", StatusCode::OK).await;
    assert!(
        html.contains("Signed in as <strong>Alice</strong>"),
        "{html}"
    );
    assert!(html.contains("href=\"/account\""));

    // Signed in already: the sign-up and log-in pages lead to the account.
    for path in ["/login", "/signup"] {
        let resp = v.get(path).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&resp), "/account");
    }
}

#[tokio::test]
async fn signup_problems_are_shown_on_the_form() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("taken", PW).await;
    let other = site.visitor();

    let cases = [
        (
            "a",
            PW,
            StatusCode::BAD_REQUEST,
            "Invalid username: too short",
        ),
        (
            "bad name!",
            PW,
            StatusCode::BAD_REQUEST,
            "Invalid username: only letters",
        ),
        (
            "bob",
            "short",
            StatusCode::BAD_REQUEST,
            "Invalid password: too short",
        ),
        ("TAKEN", PW, StatusCode::CONFLICT, "That username is taken"),
    ];
    for (username, password, status, message) in cases {
        let resp = other
            .submit(
                "/signup",
                "/signup",
                &[("username", username), ("password", password)],
            )
            .await;
        assert_eq!(resp.status(), status, "{username}");
        assert!(set_cookie(resp.headers(), "access_token").is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains(message), "{message} not in {html}");
        let kept = format!("value=\"{username}\"");
        assert!(html.contains(&kept), "username kept: {html}");
        assert!(csrf_of(&html).is_some(), "the form can be sent again");
    }
}

#[tokio::test]
async fn login_and_logout() {
    let site = Site::start().await;
    site.visitor().signup("carol", PW).await;
    let v = site.visitor();

    let resp = v
        .submit(
            "/login",
            "/login",
            &[("username", "carol"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Wrong username or password."));
    assert!(html.contains("value=\"carol\""));

    let resp = v
        .submit(
            "/login",
            "/login",
            &[("username", "Carol"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account");
    let access = set_cookie(resp.headers(), "access_token").unwrap();
    let access = access["access_token=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(v.page("/account", StatusCode::OK).await.contains("carol"));

    let resp = v.submit("/account", "/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/?notice=signed_out");
    assert_tokens_cleared(resp.headers());
    let html = v.page("/?notice=signed_out", StatusCode::OK).await;
    assert!(html.contains("You have been signed out."));
    assert!(!html.contains("Signed in as"));
    let resp = v.get("/account").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login");

    // The old access token is useless at once, as a cookie and as a bearer token.
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = stale
        .get(site.url("/account"))
        .header("cookie", format!("access_token={access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login");
    let resp = stale
        .get(site.url("/api/v1/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "session_ended");

    // Logging out again (no cookies) is harmless.
    let resp = v.submit("/login", "/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn expired_access_token_is_refreshed_transparently() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("dave", PW).await;

    site.clock.advance(Duration::from_secs(16 * 60));
    let resp = v.get("/account").await;
    assert_eq!(resp.status(), StatusCode::OK, "the page request succeeds");
    let access = set_cookie(resp.headers(), "access_token").expect("new access cookie");
    let refresh = set_cookie(resp.headers(), "refresh_token").expect("new refresh cookie");
    assert!(!access.contains("Max-Age=0") && !refresh.contains("Max-Age=0"));
    assert!(resp.text().await.unwrap().contains("dave"));

    // The new token is used from now on: no further refresh.
    let resp = v.get("/account").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(set_cookie(resp.headers(), "access_token").is_none());

    // A missing access cookie is refreshed too.
    let refresh_value = refresh["refresh_token=".len()..].split(';').next().unwrap();
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = bare
        .get(site.url("/"))
        .header("cookie", format!("refresh_token={refresh_value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(set_cookie(resp.headers(), "access_token").is_some());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Signed in as <strong>dave</strong>")
    );
}

#[tokio::test]
async fn change_password_ends_the_other_sessions() {
    let site = Site::start().await;
    let a = site.visitor();
    a.signup("erin", PW).await;
    let b = site.visitor();
    b.login("erin", PW).await;

    let resp = a
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "not it at all"),
                ("new_password", "a brand new one"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Wrong username or password.")
    );
    let resp = a
        .submit(
            "/account",
            "/account/password",
            &[("current_password", PW), ("new_password", "short")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Invalid password: too short.")
    );

    let resp = a
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", PW),
                ("new_password", "a brand new one"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account?notice=password_changed");
    let html = a
        .page("/account?notice=password_changed", StatusCode::OK)
        .await;
    assert!(html.contains("Your password has been changed."));

    let resp = b.get("/account").await;
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "the other session ended"
    );
    assert_eq!(location(&resp), "/login");
    assert_tokens_cleared(resp.headers());

    let c = site.visitor();
    let resp = c
        .submit(
            "/login",
            "/login",
            &[("username", "erin"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    c.login("erin", "a brand new one").await;
}

#[tokio::test]
async fn revoke_another_session() {
    let site = Site::start().await;
    let a = site.visitor();
    a.signup("frank", PW).await;
    let b = site.visitor();
    b.login("frank", PW).await;

    let html = a.page("/account", StatusCode::OK).await;
    let others = revocable_sessions(&html);
    assert_eq!(others.len(), 1, "one other session: {html}");
    let path = format!("/account/sessions/{}/revoke", others[0]);
    let resp = a.submit("/account", &path, &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account?notice=session_revoked");
    assert!(revocable_sessions(&a.page("/account", StatusCode::OK).await).is_empty());

    let resp = b.get("/account").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login");

    // Revoking it again: it is gone.
    let resp = a.submit("/account", &path, &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("does not exist"));
}

#[tokio::test]
async fn sign_out_everywhere() {
    let site = Site::start().await;
    let a = site.visitor();
    a.signup("grace", PW).await;
    let b = site.visitor();
    b.login("grace", PW).await;

    let resp = a.submit("/account", "/account/logout-all", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login?notice=signed_out_everywhere");
    assert_tokens_cleared(resp.headers());
    let html = a
        .page("/login?notice=signed_out_everywhere", StatusCode::OK)
        .await;
    assert!(html.contains("signed out on every device"));
    for v in [&a, &b] {
        let resp = v.get("/account").await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&resp), "/login");
    }
}

#[tokio::test]
async fn delete_account() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("heidi", PW).await;

    let resp = v
        .submit(
            "/account",
            "/account/delete",
            &[("password", "wrong password")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Wrong username or password."));

    let resp = v
        .submit("/account", "/account/delete", &[("password", PW)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/?notice=account_deleted");
    assert_tokens_cleared(resp.headers());
    assert!(
        v.page("/?notice=account_deleted", StatusCode::OK)
            .await
            .contains("has been deleted")
    );
    let resp = v
        .submit(
            "/login",
            "/login",
            &[("username", "heidi"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(site.auth.storage().user_count(), 0);
}

#[tokio::test]
async fn secure_cookies_are_host_prefixed() {
    let config = WebConfig {
        secure_cookies: true,
        ..WebConfig::default()
    };
    let site = Site::with_config(config).await;
    // Browsers keep Secure cookies only over HTTPS, so carry them by hand here.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.get(site.url("/signup")).send().await.unwrap();
    let pre_line = set_cookie(resp.headers(), "__Host-pre_session").expect("__Host-pre_session");
    assert!(pre_line.contains("; Secure") && pre_line.contains("Path=/"));
    assert!(!pre_line.contains("Domain"));
    let pre_session = cookie_value(&pre_line);
    let token = csrf_of(&resp.text().await.unwrap()).unwrap();
    let resp = client
        .post(site.url("/signup"))
        .header("cookie", format!("__Host-pre_session={pre_session}"))
        .form(&[
            ("csrf", token.as_str()),
            ("username", "kate"),
            ("password", PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let access = set_cookie(resp.headers(), "__Host-access_token").expect("__Host-access_token");
    let refresh = set_cookie(resp.headers(), "__Host-refresh_token").expect("__Host-refresh_token");
    for line in [&access, &refresh] {
        assert!(line.contains("; Secure") && line.contains("HttpOnly") && line.contains("Path=/"));
    }
    // The unprefixed names mean nothing in secure mode.
    let token = access["__Host-access_token=".len()..]
        .split(';')
        .next()
        .unwrap();
    let resp = client
        .get(site.url("/account"))
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = client
        .get(site.url("/account"))
        .header("cookie", format!("__Host-access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
