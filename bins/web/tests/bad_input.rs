//! Bad input, one case per test: every one gets a typed answer, never a panic or a hang.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const PW: &str = "correct horse battery";

#[tokio::test]
async fn missing_form_fields_are_a_400_on_the_form() {
    let site = Site::start().await;
    let v = site.visitor();

    let resp = v
        .submit("/login", "/login", &[("username", "someone")])
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Password is required."), "{html}");
    assert!(html.contains("value=\"someone\""), "username kept");

    let resp = v.submit("/signup", "/signup", &[]).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("Username is required."));

    v.signup("mallory", PW).await;
    let resp = v
        .submit("/account", "/account/password", &[("current_password", PW)])
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("New password is required.")
    );
    let resp = v.submit("/account", "/account/delete", &[]).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("Password is required."));
    assert_eq!(site.auth.storage().user_count(), 1);

    let resp = v
        .api_post("/api/v1/login", json!({"username": "mallory"}))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password")
    );
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let site = Site::start().await;
    let v = site.visitor();
    for path in [
        "/api/v1/register",
        "/api/v1/login",
        "/api/v1/refresh",
        "/api/v1/logout",
        "/api/v1/login/mfa",
        "/api/v1/mfa/totp/confirm",
        "/api/v1/mfa/totp/disable",
        "/api/v1/mfa/recovery-codes",
    ] {
        let resp = v
            .client
            .post(v.url(path))
            .header("content-type", "text/plain")
            .body(r#"{"username":"a","password":"b"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        assert_eq!(error_code(resp).await, "unsupported_media_type");
    }
    // A form post, as a cross-site page would send it, cannot reach the JSON API.
    let resp = v
        .client
        .post(v.url("/api/v1/login"))
        .form(&[("username", "a"), ("password", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // And the forms want form encoding.
    let token = v.csrf("/login").await;
    let resp = v
        .client
        .post(v.url("/login"))
        .json(&json!({"csrf": token, "username": "a", "password": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn non_utf8_bytes_are_a_400() {
    let site = Site::start().await;
    let v = site.visitor();
    let token = v.csrf("/login").await;
    let bodies: [Vec<u8>; 2] = [
        format!("csrf={token}&username=%FF%FEadmin&password=whatever1").into_bytes(),
        [
            format!("csrf={token}&username=").as_bytes(),
            b"\xff\xfe",
            b"&password=whatever1",
        ]
        .concat(),
    ];
    for body in bodies {
        let resp = v
            .client
            .post(v.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.text().await.unwrap().contains("not valid UTF-8"));
    }
    let resp = v
        .client
        .post(v.url("/api/v1/login"))
        .header("content-type", "application/json")
        .body(b"{\"username\":\"\xff\xfe\",\"password\":\"whatever1\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "invalid_json");
    let resp = v
        .client
        .post(v.url("/api/v1/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "invalid_json");
}

#[tokio::test]
async fn a_ten_megabyte_body_is_a_413() {
    let site = Site::start().await;
    let v = site.visitor();
    let big = "a".repeat(10 * 1024 * 1024);

    let body = json!({"username": "alice", "password": big}).to_string();
    let resp = v
        .client
        .post(v.url("/api/v1/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(resp).await, "payload_too_large");

    let token = v.csrf("/login").await;
    let body = format!("csrf={token}&username=alice&password={big}");
    let resp = v
        .client
        .post(v.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Without a Content-Length (chunked), the limit still holds.
    let head = format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        site.web.addr
    );
    let answer = raw_exchange(site.web.addr, head.as_bytes(), 160, &chunk(64 * 1024)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The server is fine afterwards.
    assert_eq!(v.get("/healthz").await.status(), StatusCode::OK);
}

/// One chunk of chunked transfer encoding.
fn chunk(len: usize) -> Vec<u8> {
    let mut c = format!("{len:x}\r\n").into_bytes();
    c.extend(std::iter::repeat_n(b'a', len));
    c.extend_from_slice(b"\r\n");
    c
}

/// Sends `head`, then `piece` up to `times` times (stopping when the server stops
/// reading), and returns what the server answered.
async fn raw_exchange(
    addr: std::net::SocketAddr,
    head: &[u8],
    times: usize,
    piece: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut buf)).await;
        buf
    });
    for _ in 0..times {
        let write = tokio::time::timeout(Duration::from_secs(2), wr.write_all(piece)).await;
        if !matches!(write, Ok(Ok(()))) {
            break;
        }
    }
    let _ = wr.shutdown().await;
    String::from_utf8_lossy(&reader.await.unwrap()).into_owned()
}

#[tokio::test]
async fn missing_or_wrong_csrf_token_is_a_403() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("nina", PW).await;
    let token = v.csrf("/account").await;
    let forged = "x".repeat(43);

    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("/login", vec![("username", "nina"), ("password", PW)]),
        (
            "/login",
            vec![("csrf", &forged), ("username", "nina"), ("password", PW)],
        ),
        ("/account/logout-all", vec![("csrf", "")]),
        (
            "/account/delete",
            vec![("csrf", &token[..42]), ("password", PW)],
        ),
    ];
    for (action, fields) in cases {
        let resp = v
            .client
            .post(v.url(action))
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{action} {fields:?}");
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("did not come from this site")
        );
    }

    // The right token without the cookie (what a cross-site form would send) fails too.
    let no_cookies = reqwest::Client::new();
    let resp = no_cookies
        .post(site.url("/account/logout-all"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Nothing happened: still signed in, account still there.
    assert_eq!(v.get("/account").await.status(), StatusCode::OK);
    assert_eq!(site.auth.storage().user_count(), 1);
}

async fn assert_sent_to_login_with_cookies_cleared(site: &Site, cookie: &str) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(site.url("/account"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{cookie}");
    assert_eq!(location(&resp), "/login");
    assert_tokens_cleared(resp.headers());
    // The home page stays reachable and clears them too.
    let resp = client
        .get(site.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_tokens_cleared(resp.headers());
}

#[tokio::test]
async fn a_forged_cookie_is_sent_to_login_and_cleared() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("oscar", PW).await;
    // A token signed with some other key, a refresh token for a made-up session, junk.
    let forged_jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                      eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.\
                      c2lnbmF0dXJlLWJ5LWFuLWF0dGFja2Vy";
    let forged_refresh = format!("{}.{}", "0".repeat(32), "A".repeat(43));
    for cookie in [
        format!("access_token={forged_jwt}; refresh_token={forged_refresh}"),
        format!("access_token={forged_jwt}"),
        "access_token=%00%ff; refresh_token=..".to_owned(),
    ] {
        assert_sent_to_login_with_cookies_cleared(&site, &cookie).await;
    }
}

#[tokio::test]
async fn an_expired_cookie_is_sent_to_login_and_cleared() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("peggy", PW).await;
    let other = site.visitor();
    let resp = other
        .submit(
            "/login",
            "/login",
            &[("username", "peggy"), ("password", PW)],
        )
        .await;
    let value = |name: &str| {
        let line = set_cookie(resp.headers(), name).unwrap();
        line[name.len() + 1..].split(';').next().unwrap().to_owned()
    };
    let cookie = format!(
        "access_token={}; refresh_token={}",
        value("access_token"),
        value("refresh_token")
    );
    // Past the session's idle lifetime (30 days): neither token works any more.
    site.clock.advance(Duration::from_secs(31 * 24 * 3600));
    assert_sent_to_login_with_cookies_cleared(&site, &cookie).await;
}

#[tokio::test]
async fn a_bearer_token_of_a_deleted_user_is_a_401() {
    let site = Site::start().await;
    let v = site.visitor();
    v.signup("quinn", PW).await;
    let login: serde_json::Value = v
        .api_post(
            "/api/v1/login",
            json!({"username": "quinn", "password": PW}),
        )
        .await
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let me = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let resp = v
        .submit("/account", "/account/delete", &[("password", PW)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "session_ended");
    let resp = v
        .api_post(
            "/api/v1/refresh",
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn fifty_wrong_passwords_lock_the_account_until_the_backoff_passes() {
    let site = Site::start().await;
    let v = site.visitor();
    let creds = json!({"username": "rupert", "password": PW});
    assert_eq!(
        v.api_post("/api/v1/register", creds.clone()).await.status(),
        StatusCode::CREATED
    );

    let wrong = json!({"username": "rupert", "password": "not the password"});
    let mut statuses = Vec::new();
    let mut retry_after = 0u64;
    for _ in 0..50 {
        let resp = v.api_post("/api/v1/login", wrong.clone()).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(error_code(resp).await, "locked");
        }
    }
    // Default policy: twenty failures, then locked (refused without a password check).
    assert_eq!(statuses[..20], [401; 20]);
    assert!(statuses[20..].iter().all(|&s| s == 429), "{statuses:?}");
    assert!((1..=30).contains(&retry_after), "{retry_after}");

    // The right password is refused too while the lock holds, on the API and the form.
    let resp = v.api_post("/api/v1/login", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let resp = v
        .submit(
            "/login",
            "/login",
            &[("username", "rupert"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("Try again in 30 s."), "{html}");
    assert!(html.contains("value=\"rupert\""));

    site.clock.advance(Duration::from_secs(retry_after));
    let resp = v.api_post("/api/v1/login", creds).await;
    assert_eq!(resp.status(), StatusCode::OK);
    v.login("rupert", PW).await;
}

/// A login flood from one address is refused at the edge (the auth service behind it
/// has throttling off here, so every 429 came from the web site itself), with
/// `rate_limited`, a `Retry-After`, and on the form as well as the API, each refusal
/// held for the refusal delay first; other routes and other work are not throttled.
#[tokio::test]
async fn a_login_flood_from_one_address_is_refused_at_the_edge() {
    let (auth, _clock) = new_auth();
    let delay = std::time::Duration::from_millis(150);
    let config = auth_web::WebConfig {
        refusal_delay: delay,
        ..auth_web::WebConfig::default()
    };
    let web = WebServer::start_throttled(Arc::new(auth), config).await;
    let v = Visitor::new(&web.url);
    let wrong = json!({"username": "nobody", "password": "not the password"});
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let sent = std::time::Instant::now();
        let resp = v.api_post("/api/v1/login", wrong.clone()).await;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(sent.elapsed() >= delay, "refused without the delay");
            assert!(resp.headers().get("retry-after").is_some());
            assert_eq!(error_code(resp).await, "rate_limited");
        }
        statuses.push(status.as_u16());
    }
    // The default login bucket: 20 at once.
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert!(statuses[20..].iter().all(|&s| s == 429), "{statuses:?}");
    let form = v
        .client
        .post(format!("{}/login", web.url))
        .form(&[("username", "nobody"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::TOO_MANY_REQUESTS);
    // Reading pages is not throttled.
    let page = v
        .client
        .get(format!("{}/login", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn second_factor_routes_refuse_bad_input_with_typed_errors() {
    let site = Site::start().await;
    let v = site.visitor();
    let login = v
        .api_signup("/api/v1", "mallory", "correct horse battery")
        .await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let bearer = |path: &str, body: serde_json::Value, token: &str| {
        v.client
            .post(v.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    // No credential, or a forged one.
    let resp = v.api_post("/api/v1/mfa/totp/enroll", json!({})).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "invalid_token");
    let resp = bearer("/api/v1/mfa/totp/enroll", json!({}), "eyJ.forged.jwt")
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "invalid_token");
    // Missing fields, wrong types.
    for body in [
        json!({}),
        json!({"mfa_ticket": 7, "code": []}),
        json!([1, 2]),
    ] {
        let resp = v.api_post("/api/v1/login/mfa", body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(resp).await, "invalid_argument");
    }
    // Tickets nobody issued, huge or odd.
    for ticket in ["", "abc", &"t".repeat(5000), "../../etc/passwd\u{0}"] {
        let resp = v
            .api_post(
                "/api/v1/login/mfa",
                json!({"mfa_ticket": ticket, "code": "123456"}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{ticket:.20}");
        assert_eq!(error_code(resp).await, "invalid_mfa_ticket");
    }
    // Factor operations in the wrong state.
    let resp = bearer(
        "/api/v1/mfa/totp/confirm",
        json!({"code": "123456"}),
        &token,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(resp).await, "mfa_conflict");
    let resp = bearer(
        "/api/v1/mfa/recovery-codes",
        json!({"code": "123456"}),
        &token,
    )
    .await
    .unwrap();
    assert_eq!(error_code(resp).await, "mfa_conflict");
    // After enrolment, a malformed confirmation code is a typed 401.
    let resp = bearer("/api/v1/mfa/totp/enroll", json!({}), &token)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let enrolled: serde_json::Value = resp.json().await.unwrap();
    assert!(
        enrolled["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    for code in ["", "１２３４５６", &"9".repeat(10_000)] {
        let resp = bearer("/api/v1/mfa/totp/confirm", json!({"code": code}), &token)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(resp).await, "invalid_code");
    }
}
