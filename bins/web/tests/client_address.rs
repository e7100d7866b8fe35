//! The client's address and User-Agent reach the core on every call it throttles or
//! records, and `X-Forwarded-For` counts only from a trusted proxy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auth_core::api::*;
use auth_core::{Auth, AuthApi, AuthError};
use auth_storage::memory::MemoryStorage;
use auth_testing::{Hook, Intercepted};
use auth_web::WebConfig;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Mutex;

const PW: &str = "correct horse battery";

/// The core, recording the `ClientInfo` of every call that carries one.
struct Recording {
    inner: Auth<MemoryStorage>,
    seen: Mutex<Vec<(&'static str, Option<ClientInfo>)>>,
}

impl Recording {
    async fn note(&self, call: &'static str, client: &Option<ClientInfo>) {
        self.seen.lock().await.push((call, client.clone()));
    }

    /// The calls recorded so far, emptied.
    async fn take(&self) -> Vec<(&'static str, Option<ClientInfo>)> {
        std::mem::take(&mut *self.seen.lock().await)
    }
}

#[async_trait]
impl Hook for Recording {
    fn inner(&self) -> Option<&dyn AuthApi> {
        Some(&self.inner)
    }
    async fn before(
        &self,
        call: &'static str,
        client: Option<&ClientInfo>,
    ) -> Result<(), AuthError> {
        if RECORDED.contains(&call) {
            self.note(call, &client.cloned()).await;
        }
        Ok(())
    }
}

/// The calls whose client info the tests check.
const RECORDED: &[&str] = &["register", "login", "refresh", "change_password"];

struct Fixture {
    web: WebServer,
    api: Arc<Intercepted<Recording>>,
    clock: Arc<auth_core::ManualClock>,
}

async fn start(config: WebConfig) -> Fixture {
    let (inner, clock) = new_auth();
    let api = Intercepted::arc(Recording {
        inner,
        seen: Mutex::new(Vec::new()),
    });
    let web = WebServer::start(api.clone(), config).await;
    Fixture { web, api, clock }
}

fn from_here() -> Option<ClientInfo> {
    Some(ClientInfo {
        user_agent: USER_AGENT.into(),
        ip: "127.0.0.1".into(),
    })
}

#[tokio::test]
async fn every_throttled_call_carries_the_client() {
    let f = start(WebConfig::default()).await;
    let v = Visitor::new(&f.web.url);

    // Pages: sign-up (register, login), a page after the access token expired
    // (refresh), change password.
    v.signup("amy", PW).await;
    f.clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(v.get("/account").await.status(), StatusCode::OK);
    let resp = v
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", PW),
                ("new_password", "another good one"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let calls = f.api.take().await;
    let names: Vec<_> = calls.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["register", "login", "refresh", "change_password"]);
    for (call, client) in calls {
        assert_eq!(client, from_here(), "{call}");
    }

    // The JSON API: register, login, refresh.
    let creds = json!({"username": "bea", "password": PW});
    assert_eq!(
        v.api_post("/api/v1/register", creds.clone()).await.status(),
        StatusCode::CREATED
    );
    let resp = v.api_post("/api/v1/login", creds).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    let resp = v
        .api_post("/api/v1/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let calls = f.api.take().await;
    let names: Vec<_> = calls.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["register", "login", "refresh"]);
    for (call, client) in calls {
        assert_eq!(client, from_here(), "api {call}");
    }
}

/// Logs in over the API with `X-Forwarded-For: xff`; returns the address the core
/// was given and the one the session list shows.
async fn login_forwarded_for(f: &Fixture, username: &str, xff: &str) -> (String, String) {
    let v = Visitor::new(&f.web.url);
    let creds = json!({"username": username, "password": PW});
    let _ = v.api_post("/api/v1/register", creds.clone()).await;
    f.api.take().await;
    let resp = v
        .client
        .post(v.url("/api/v1/login"))
        .header("x-forwarded-for", xff)
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    let given = match f.api.take().await.as_slice() {
        [("login", Some(client))] => client.ip.clone(),
        other => panic!("one login with a client expected: {other:?}"),
    };
    let list = f
        .api
        .list_sessions(ListSessionsRequest { access_token })
        .await
        .unwrap();
    (given, list.sessions[0].ip.clone())
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let xff = "203.0.113.9";
    // No trusted proxies at all, and a list that does not hold the peer.
    for trusted in [vec![], vec!["10.0.0.0/8".parse().unwrap()]] {
        let f = start(WebConfig {
            trusted_proxies: trusted.clone(),
            ..WebConfig::default()
        })
        .await;
        let seen = login_forwarded_for(&f, "cleo", xff).await;
        let socket = ("127.0.0.1".to_owned(), "127.0.0.1".to_owned());
        assert_eq!(seen, socket, "trusted: {trusted:?}");
    }
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_rightmost_untrusted_hop() {
    let f = start(WebConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
        ..WebConfig::default()
    })
    .await;
    // "6.6.6.6" was written by the client itself; 10.0.0.2 is an inner proxy.
    let (given, listed) = login_forwarded_for(&f, "dora", "6.6.6.6, 203.0.113.9, 10.0.0.2").await;
    assert_eq!(given, "203.0.113.9");
    assert_eq!(listed, "203.0.113.9");
    // A page request from behind the proxy too: the session list shows it.
    let v = Visitor::new(&f.web.url);
    let token = v.csrf("/login").await;
    let resp = v
        .client
        .post(v.url("/login"))
        .header("x-forwarded-for", "198.51.100.4")
        .form(&[
            ("csrf", token.as_str()),
            ("username", "dora"),
            ("password", PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let html = v.page("/account", StatusCode::OK).await;
    assert!(html.contains("198.51.100.4"), "{html}");
}
