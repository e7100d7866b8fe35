//! The attack on a second factor, against the real `auth-web` binary (embedded core,
//! default throttling and lockout): someone who knows the password guesses TOTP codes
//! as fast as the site answers. They get a handful of guesses, never a session, and
//! then not even the right code is checked.

mod common;

use std::time::Duration;

use auth_core::mfa::TotpSecret;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

async fn post(v: &Visitor, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = v.client.post(v.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn guessing_totp_codes_is_throttled_and_never_signs_in() {
    let mut cmd = auth_web();
    cmd.args(["--embedded", "--listen", "127.0.0.1:0"]);
    let mut child = cmd.spawn().expect("auth-web starts");
    let (addr, _drain) = listening_address(&mut child, "listening", Duration::from_secs(30)).await;
    let v = Visitor::new(&format!("http://{addr}"));

    // The victim turns TOTP on.
    let login = v.api_signup("/api/v1", "victim", PW).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (_, enrolled) = post(&v, "/api/v1/mfa/totp/enroll", Some(&token), json!({})).await;
    let secret = TotpSecret::from_base32(enrolled["secret"].as_str().unwrap()).unwrap();
    let (status, _) = post(
        &v,
        "/api/v1/mfa/totp/confirm",
        Some(&token),
        json!({"code": secret.code_at_step(auth_testing::totp_step_now())}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The attacker has the password and guesses codes.
    let creds = json!({"username": "victim", "password": PW});
    let mut ticket: Option<String> = None;
    let (mut checked, mut refused) = (0, 0);
    for guess in 0..40u32 {
        if ticket.is_none() {
            let (status, step) = post(&v, "/api/v1/login", None, creds.clone()).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                refused += 1;
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{step}");
            assert!(
                step.get("access_token").is_none(),
                "no tokens without the code"
            );
            ticket = step["mfa_ticket"].as_str().map(str::to_owned);
        }
        let code = format!("{:06}", (guess * 7919) % 1_000_000);
        let t = ticket.clone().unwrap();
        let (status, body) = post(
            &v,
            "/api/v1/login/mfa",
            None,
            json!({"mfa_ticket": t, "code": code}),
        )
        .await;
        assert_ne!(status, StatusCode::OK, "a guessed code signed in: {body}");
        match body["error"]["code"].as_str() {
            Some("invalid_code") => checked += 1,
            Some("invalid_mfa_ticket") => ticket = None,
            Some("rate_limited" | "locked") => refused += 1,
            other => panic!("unexpected answer {status} {other:?}"),
        }
    }
    assert!(checked <= 10, "{checked} codes were checked in a burst");
    assert!(refused > 0, "the guessing was never throttled");

    // While throttled, not even the right code is checked.
    if let Some(t) = ticket {
        let right = secret.code_at_step(auth_testing::totp_step_now() + 1);
        let (status, body) = post(
            &v,
            "/api/v1/login/mfa",
            None,
            json!({"mfa_ticket": t, "code": right}),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
}
