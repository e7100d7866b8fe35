//! CSRF tokens are bound to the session (or, before login, to the pre-session
//! cookie), rotate at login and logout, and cannot be planted: through the real server,
//! with cookie jars standing in for browsers.

mod common;

use auth_core::AuthApi;
use auth_core::api::ListSessionsRequest;
use auth_web::WebConfig;
use common::*;
use reqwest::{Response, StatusCode};

const PW: &str = "correct horse battery";

/// POSTs `fields` plus `csrf=token` to `action` with `v`'s cookies.
async fn post_with_token(
    v: &Visitor,
    action: &str,
    token: &str,
    fields: &[(&str, &str)],
) -> Response {
    let mut all = vec![("csrf", token)];
    all.extend_from_slice(fields);
    v.client
        .post(v.url(action))
        .form(&all)
        .send()
        .await
        .expect("POST")
}

async fn assert_refused(resp: Response, what: &str) {
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
    assert!(
        set_cookie(resp.headers(), "access_token").is_none(),
        "{what}: nobody signed in"
    );
    let html = resp.text().await.expect("body");
    assert!(
        html.contains("did not come from this site"),
        "{what}: {html}"
    );
}

/// Session ids of `username`'s live sessions, via a session of theirs.
async fn live_sessions(site: &Site, access_token: &str) -> Vec<String> {
    let list = site
        .auth
        .list_sessions(ListSessionsRequest {
            access_token: access_token.to_owned(),
        })
        .await
        .expect("list sessions");
    let mut ids: Vec<String> = list.sessions.into_iter().map(|s| s.id).collect();
    ids.sort();
    ids
}

/// Logs in over the JSON API (a session that is not a browser's) and returns its
/// access token, to look at the account from outside.
async fn api_session(site: &Site, username: &str) -> String {
    let resp = site
        .visitor()
        .api_post(
            "/api/v1/login",
            serde_json::json!({"username": username, "password": PW}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn another_sessions_token_does_not_authorise_a_post_with_these_cookies() {
    let site = Site::start().await;
    // The attacker's own account and session: she can read her own token.
    let mallory = site.visitor();
    mallory.signup("mallory", PW).await;
    let mallory_token = mallory.csrf("/account").await;
    // The victim, with two browsers.
    let victim = site.visitor();
    victim.signup("victor", PW).await;
    let victim_laptop = site.visitor();
    victim_laptop.login("victor", PW).await;
    let laptop_token = victim_laptop.csrf("/account").await;
    let observer = api_session(&site, "victor").await;
    let before = live_sessions(&site, &observer).await;
    assert_eq!(before.len(), 3);

    // Another user's token, and another session of the same user: both refused.
    for (token, who) in [
        (&mallory_token, "mallory's"),
        (&laptop_token, "the laptop's"),
    ] {
        for (action, fields) in [
            ("/account/logout-all", vec![]),
            ("/logout", vec![]),
            ("/account/delete", vec![("password", PW)]),
            (
                "/account/password",
                vec![("current_password", PW), ("new_password", "taken over now")],
            ),
        ] {
            let resp = post_with_token(&victim, action, token, &fields).await;
            assert_refused(resp, &format!("{who} token on {action}")).await;
        }
    }
    // Nothing happened to any of the victim's sessions.
    assert_eq!(live_sessions(&site, &observer).await, before);
    assert_eq!(victim.get("/account").await.status(), StatusCode::OK);
    assert_eq!(victim_laptop.get("/account").await.status(), StatusCode::OK);

    // The victim's own token works (so the refusals above were about the token).
    let own = victim.csrf("/account").await;
    assert_ne!(own, laptop_token, "one token per session");
    let resp = post_with_token(&victim, "/account/logout-all", &own, &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login?notice=signed_out_everywhere");
}

#[tokio::test]
async fn a_token_from_before_login_is_refused_after_it() {
    let site = Site::start().await;
    site.visitor().signup("judy", PW).await;
    let v = site.visitor();
    let before = v.csrf("/login").await;
    assert_eq!(v.csrf("/login").await, before, "stable while anonymous");

    let resp = post_with_token(
        &v,
        "/login",
        &before,
        &[("username", "judy"), ("password", PW)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account");
    let ended = set_cookie(resp.headers(), "pre_session").expect("pre-session ended");
    assert!(ended.contains("Max-Age=0"), "{ended}");

    for (action, fields) in [
        ("/account/logout-all", vec![]),
        ("/logout", vec![]),
        ("/login", vec![("username", "judy"), ("password", PW)]),
    ] {
        let resp = post_with_token(&v, action, &before, &fields).await;
        assert_refused(resp, &format!("pre-login token on {action}")).await;
    }
    assert_eq!(
        v.get("/account").await.status(),
        StatusCode::OK,
        "still signed in"
    );

    let after = v.csrf("/account").await;
    assert_ne!(after, before);
    let resp = post_with_token(&v, "/logout", &after, &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_token_rotates_at_logout() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("kim", PW).await;
    let signed_in = v.csrf("/account").await;
    assert_eq!(
        v.csrf("/").await,
        signed_in,
        "one token per session, every page"
    );

    let resp = post_with_token(&v, "/logout", &signed_in, &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_tokens_cleared(resp.headers());

    let anonymous = v.csrf("/login").await;
    assert_ne!(anonymous, signed_in);
    // The signed-in token is dead: for the log-in form and for account actions.
    let creds = [("username", "kim"), ("password", PW)];
    let resp = post_with_token(&v, "/login", &signed_in, &creds).await;
    assert_refused(resp, "session token after logout").await;
    let resp = post_with_token(&v, "/account/logout-all", &signed_in, &[]).await;
    assert_refused(resp, "session token after logout").await;

    // The new one works, and the next session has a token of its own.
    let resp = post_with_token(&v, "/login", &anonymous, &creds).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let next = v.csrf("/account").await;
    assert_ne!(next, signed_in);
    assert_ne!(next, anonymous);
}

/// A client with no cookie store: the test sets each cookie by hand, as an attacker
/// who plants cookies would.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn login_csrf_with_a_planted_token_is_refused() {
    let site = Site::start().await;
    site.visitor().signup("mallory", PW).await;
    let creds = [("username", "mallory"), ("password", PW)];
    // The attacker's own visit: a pre-session cookie and its token.
    let resp = bare_client().get(site.url("/login")).send().await.unwrap();
    let planted =
        cookie_value(&set_cookie(resp.headers(), "pre_session").expect("pre-session cookie"));
    let token = csrf_of(&resp.text().await.unwrap()).expect("token");

    let login = |cookie: Option<String>, extra: Vec<(&'static str, &'static str)>| {
        let mut req = bare_client().post(site.url("/login"));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (name, value) in extra {
            req = req.header(name, value);
        }
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(&creds);
        req.form(&fields).send()
    };

    // The victim's browser without the planted cookie: no pre-session, or its own.
    let resp = login(None, vec![]).await.unwrap();
    assert_refused(resp, "no pre-session cookie").await;
    let victim = site.visitor();
    let _ = victim.csrf("/login").await;
    let mut fields = vec![("csrf", token.as_str())];
    fields.extend_from_slice(&creds);
    let resp = victim
        .client
        .post(victim.url("/login"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_refused(resp, "the victim's own pre-session").await;
    // The old double-submit cookie means nothing now.
    let resp = login(Some(format!("csrf={token}")), vec![]).await.unwrap();
    assert_refused(resp, "planted csrf cookie").await;

    // Planted pre-session cookie (a sibling subdomain or a plain-HTTP MITM can do
    // that on a plain-HTTP site): the browser says where the form came from.
    let tossed = Some(format!("pre_session={planted}"));
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "http://sub.site.test"),
        ],
    ] {
        let resp = login(tossed.clone(), headers.clone()).await.unwrap();
        assert_refused(resp, &format!("planted pre-session with {headers:?}")).await;
    }
    // Control: the attacker's own, same-origin use of that cookie and token works, so
    // the refusals above are the checks at work.
    let own_origin = format!("http://{}", site.web.addr);
    let resp = bare_client()
        .post(site.url("/login"))
        .header("cookie", tossed.clone().unwrap())
        .header("origin", own_origin)
        .form(&[("csrf", token.as_str()), creds[0], creds[1]])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn with_secure_cookies_an_unprefixed_planted_cookie_is_ignored() {
    let site = Site::with_config(WebConfig {
        secure_cookies: true,
        ..WebConfig::default()
    })
    .await;
    site.visitor().signup("mallory", PW).await;
    let client = bare_client();
    let resp = client.get(site.url("/login")).send().await.unwrap();
    let line = set_cookie(resp.headers(), "__Host-pre_session").expect("__Host-pre_session");
    let id = cookie_value(&line);
    let token = csrf_of(&resp.text().await.unwrap()).expect("token");
    let fields = [
        ("csrf", token.as_str()),
        ("username", "mallory"),
        ("password", PW),
    ];
    // What a subdomain or a MITM can set: the name without the prefix (browsers refuse
    // `__Host-` cookies from them).
    for cookie in [format!("pre_session={id}"), format!("csrf={token}")] {
        let resp = client
            .post(site.url("/login"))
            .header("cookie", cookie.clone())
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{cookie}");
        assert!(set_cookie(resp.headers(), "__Host-access_token").is_none());
    }
    let resp = client
        .post(site.url("/login"))
        .header("cookie", format!("__Host-pre_session={id}"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "the real cookie works"
    );
}

#[tokio::test]
async fn a_cross_origin_post_is_refused_even_with_the_right_token() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("oscar", PW).await;
    let token = v.csrf("/account").await;
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let resp = v
            .client
            .post(v.url("/account/logout-all"))
            .header(name, value)
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_refused(resp, &format!("{name}: {value}")).await;
    }
    assert_eq!(
        v.get("/account").await.status(),
        StatusCode::OK,
        "still signed in"
    );
    // A browser's same-origin post passes.
    let resp = v
        .client
        .post(v.url("/account/logout-all"))
        .header("origin", format!("http://{}", site.web.addr))
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}
