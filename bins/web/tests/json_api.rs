//! The JSON API of auth-web over an embedded core: every route, its response shape
//! and its error codes.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const PW: &str = "correct horse battery";

#[tokio::test]
async fn json_api_round_trip() {
    let site = Site::start().await;
    let v = site.visitor();
    let creds = json!({"username": "ivan", "password": PW});

    let resp = v.api_post("/api/v1/register", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["username"], "ivan");
    assert_eq!(body["user"]["id"].as_str().unwrap().len(), 32);
    assert!(body["user"]["created_at_ms"].as_i64().unwrap() > 0);

    let resp = v.api_post("/api/v1/register", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(resp).await, "user_exists");
    let resp = v
        .api_post("/api/v1/register", json!({"username": "x", "password": PW}))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "invalid_username");
    let resp = v
        .api_post(
            "/api/v1/register",
            json!({"username": "xavier", "password": "1"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "invalid_password");

    let resp = v
        .api_post(
            "/api/v1/login",
            json!({"username": "ivan", "password": "nope nope"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "invalid_credentials");

    let resp = v.api_post("/api/v1/login", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        set_cookies(resp.headers()).is_empty(),
        "the API sets no cookies"
    );
    let login: serde_json::Value = resp.json().await.unwrap();
    for key in ["access_token", "refresh_token", "session_id"] {
        assert!(!login[key].as_str().unwrap().is_empty(), "{key}");
    }
    assert!(login["access_expires_at_ms"].as_i64().unwrap() > 0);
    assert!(login["refresh_expires_at_ms"].as_i64().unwrap() > 0);
    assert_eq!(login["user"]["username"], "ivan");
    let access = login["access_token"].as_str().unwrap();

    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let me: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(me["username"], "ivan");
    assert_eq!(me["user_id"], body["user"]["id"]);
    assert_eq!(me["session_id"], login["session_id"]);
    assert_eq!(me["expires_at_ms"], login["access_expires_at_ms"]);

    let resp = v.get("/api/v1/me").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(resp).await, "invalid_token");
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "invalid_token");

    // Refresh rotates; the old token is refused once the grace window has passed.
    let old_refresh = login["refresh_token"].as_str().unwrap();
    let resp = v
        .api_post("/api/v1/refresh", json!({"refresh_token": old_refresh}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh: serde_json::Value = resp.json().await.unwrap();
    assert_ne!(fresh["refresh_token"], login["refresh_token"]);
    assert_eq!(fresh["session_id"], login["session_id"]);
    site.clock.advance(Duration::from_secs(11));
    let resp = v
        .api_post("/api/v1/refresh", json!({"refresh_token": old_refresh}))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "refresh_token_reused");
    let resp = v
        .api_post("/api/v1/refresh", json!({"refresh_token": "nonsense"}))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Logout by refresh token, then by bearer token.
    let login: serde_json::Value = v
        .api_post("/api/v1/login", creds.clone())
        .await
        .json()
        .await
        .unwrap();
    let resp = v
        .api_post(
            "/api/v1/logout",
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let access = login["access_token"].as_str().unwrap();
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "session_ended");

    let login: serde_json::Value = v
        .api_post("/api/v1/login", creds.clone())
        .await
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let resp = v
        .client
        .post(v.url("/api/v1/logout"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = v.client.post(v.url("/api/v1/logout")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "invalid_argument");
}

#[tokio::test]
async fn json_api_tokens_expire() {
    let site = Site::start().await;
    let v = site.visitor();
    let creds = json!({"username": "judy", "password": PW});
    assert_eq!(
        v.api_post("/api/v1/register", creds.clone()).await.status(),
        StatusCode::CREATED
    );
    let login: serde_json::Value = v
        .api_post("/api/v1/login", creds)
        .await
        .json()
        .await
        .unwrap();
    site.clock.advance(Duration::from_secs(16 * 60));
    let access = login["access_token"].as_str().unwrap();
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "token_expired");
    let resp = v
        .api_post(
            "/api/v1/refresh",
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}
