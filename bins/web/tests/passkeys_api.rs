//! Passkeys over the JSON API, with a software authenticator answering the options the
//! API hands out exactly as a browser would pass them on: registration, the second step
//! of a password login, renaming and removal, and typed errors for bad input.

mod common;

use std::sync::Arc;

use auth_core::Auth;
use auth_storage::memory::MemoryStorage;
use auth_web::WebConfig;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::Url;

const PW: &str = "correct horse battery";
const ORIGIN: &str = "http://localhost:8080";

async fn site() -> (WebServer, Visitor) {
    let clock = Arc::new(auth_core::ManualClock::starting_now());
    let mut config = test_config(&clock);
    config.mfa.passkeys = Some(auth_core::PasskeyConfig::new("localhost", ORIGIN));
    let auth = Auth::new(config, MemoryStorage::new()).unwrap();
    let web = WebServer::start(Arc::new(auth), WebConfig::default()).await;
    let v = Visitor::new(&web.url);
    (web, v)
}

async fn post(v: &Visitor, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = v.client.post(v.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn passkeys_over_the_json_api() {
    let (web, v) = site().await;
    let login = v.api_signup("/api/v1", "uma", PW).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let origin = Url::parse(ORIGIN).unwrap();
    let mut key = WebauthnAuthenticator::new(SoftPasskey::new(true));

    let (status, started) = post(
        &v,
        "/api/v1/mfa/passkeys/register/start",
        Some(&token),
        json!({"name": "laptop"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["options"]["publicKey"]["rp"]["id"], "localhost");
    let attestation = key
        .do_registration(
            origin.clone(),
            serde_json::from_value(started["options"].clone()).unwrap(),
        )
        .unwrap();
    let (status, done) = post(
        &v,
        "/api/v1/mfa/passkeys/register/finish",
        Some(&token),
        json!({"ceremony_id": started["ceremony_id"], "credential": attestation}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["passkey"]["name"], "laptop");
    assert_eq!(done["recovery_codes"].as_array().map(Vec::len), Some(10));
    let id = done["passkey"]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The password alone is no longer enough; the passkey completes the login.
    let (status, step) = post(
        &v,
        "/api/v1/login",
        None,
        json!({"username": "uma", "password": PW}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(step["mfa_required"], true);
    assert_eq!(step["mfa_methods"], json!(["recovery_code", "webauthn"]));
    let ticket = step["mfa_ticket"].as_str().unwrap();
    let (_, started) = post(
        &v,
        "/api/v1/login/passkey/start",
        None,
        json!({"mfa_ticket": ticket}),
    )
    .await;
    let assertion = key
        .do_authentication(
            origin,
            serde_json::from_value(started["options"].clone()).unwrap(),
        )
        .unwrap();
    let (status, tokens) = post(
        &v,
        "/api/v1/login/passkey/finish",
        None,
        json!({"ceremony_id": started["ceremony_id"], "credential": assertion, "mfa_ticket": ticket}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let strong = tokens["access_token"].as_str().unwrap().to_owned();
    let me = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(&strong)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(me["amr"], json!(["pwd", "hwk"]));
    assert_eq!(me["acr"], "aal2");

    // Rename, then remove (the last factor: a recovery code is needed).
    let (status, _) = post(
        &v,
        "/api/v1/mfa/passkeys/rename",
        Some(&strong),
        json!({"credential_id": id, "name": "old laptop"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = post(
        &v,
        "/api/v1/mfa/passkeys/remove",
        Some(&strong),
        json!({"credential_id": id}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["code"], "invalid_code");
    let code = done["recovery_codes"][0].as_str().unwrap();
    let (status, _) = post(
        &v,
        "/api/v1/mfa/passkeys/remove",
        Some(&strong),
        json!({"credential_id": id, "code": code}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    web.stop().await;
}

#[tokio::test]
async fn passkey_routes_refuse_bad_input_with_typed_errors() {
    let (web, v) = site().await;
    let login = v.api_signup("/api/v1", "vic", PW).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    // No or forged credentials.
    let (status, err) = post(&v, "/api/v1/mfa/passkeys/register/start", None, json!({})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    // Ceremonies nobody started, malformed answers.
    let cases = [
        json!({"ceremony_id": "nope", "credential": {}}),
        json!({"ceremony_id": "", "credential": "x"}),
        json!({"ceremony_id": "a".repeat(5000), "credential": []}),
    ];
    for body in &cases {
        let (status, err) = post(&v, "/api/v1/login/passkey/finish", None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:.60}");
        assert_eq!(err["error"]["code"], "ceremony_expired");
        let (_, err) = post(
            &v,
            "/api/v1/mfa/passkeys/register/finish",
            Some(&token),
            body.clone(),
        )
        .await;
        assert_eq!(err["error"]["code"], "ceremony_expired");
    }
    // A real ceremony with garbage for an answer.
    let (_, started) = post(&v, "/api/v1/login/passkey/start", None, json!({})).await;
    let (status, err) = post(
        &v,
        "/api/v1/login/passkey/finish",
        None,
        json!({"ceremony_id": started["ceremony_id"], "credential": {"id": "AAAA", "response": 7}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_argument");
    // A ticket nobody issued.
    let (status, err) = post(
        &v,
        "/api/v1/login/passkey/start",
        None,
        json!({"mfa_ticket": "forged"}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_ticket"))
    );
    // Missing fields.
    let (status, err) = post(
        &v,
        "/api/v1/login/passkey/finish",
        None,
        json!({"credential": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_argument");
    web.stop().await;
}
