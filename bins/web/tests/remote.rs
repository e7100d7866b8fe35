//! auth-web → `RemoteAuth` → auth-backend over real gRPC: a user flow, failover between
//! two backends, the only backend stopped (503) and restarted (recovery), and a backend
//! killed in the middle of a request.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::api::*;
use auth_core::{AuthApi, AuthError};
use auth_testing::{GrpcServer, Hook, Intercepted};
use auth_web::WebConfig;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Notify;

const PW: &str = "correct horse battery";

fn remote(addrs: &[SocketAddr]) -> Arc<dyn AuthApi> {
    let endpoints: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    Arc::new(RemoteAuth::new(endpoints, RemoteOptions::default()).expect("RemoteAuth"))
}

#[tokio::test]
async fn the_site_publishes_the_backends_public_keys_from_the_keys_rpc() {
    let mut config = auth_testing::fast_config();
    let ring = auth_core::KeyRing::new(auth_core::SigningKey::generate_ed25519())
        .with_previous(auth_core::SigningKey::generate_ed25519())
        .unwrap()
        .with_previous(auth_core::SigningKey::generate_hs256())
        .unwrap();
    config.keys = Some(ring.clone());
    let backend = GrpcServer::start(auth_testing::fast_auth_with(config)).await;
    let web = WebServer::start(remote(&[backend.addr()]), WebConfig::default()).await;
    let jwks: auth_core::Jwks = Visitor::new(&web.url)
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    // Both Ed25519 keys, current first, with their ids; the HS256 secret never.
    assert_eq!(jwks, ring.jwks());
    assert_eq!(jwks.keys.len(), 2);
}

#[tokio::test]
async fn the_site_works_over_grpc() {
    let (auth, _clock) = new_auth();
    let backend = GrpcServer::start(auth.clone()).await;
    let web = WebServer::start(remote(&[backend.addr()]), WebConfig::default()).await;
    let v = Visitor::new(&web.url);

    v.signup("alice", PW).await;
    let html = v.page("/account", StatusCode::OK).await;
    assert!(html.contains("id=\"account-username\">alice<"));
    assert!(html.contains("127.0.0.1") && html.contains("Firefox on Linux"));
    let resp = v.submit("/account", "/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(v.get("/account").await.status(), StatusCode::SEE_OTHER);

    let resp = v
        .submit(
            "/login",
            "/login",
            &[("username", "alice"), ("password", "wrong pass")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    v.login("alice", PW).await;
    assert_eq!(v.get("/account").await.status(), StatusCode::OK);
    let resp = Visitor::new(&web.url)
        .submit(
            "/signup",
            "/signup",
            &[("username", "ALICE"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    let login: serde_json::Value = v
        .api_post(
            "/api/v1/login",
            json!({"username": "alice", "password": PW}),
        )
        .await
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["username"],
        "alice"
    );

    web.stop().await;
    backend.stop().await;
    auth.stop().await;
}

#[tokio::test]
async fn failover_then_outage_then_recovery() {
    let (auth, _clock) = new_auth();
    let api: Arc<dyn AuthApi> = Arc::new(auth.clone());
    let a = GrpcServer::start(api.clone()).await;
    let b = GrpcServer::start(api.clone()).await;
    let b_addr = b.addr();
    let web = WebServer::start(remote(&[a.addr(), b.addr()]), WebConfig::default()).await;
    let v = Visitor::new(&web.url);
    v.signup("bob", PW).await;
    assert_eq!(v.get("/account").await.status(), StatusCode::OK);

    // One backend gone: the site carries on through the other.
    a.stop().await;
    assert_eq!(v.get("/account").await.status(), StatusCode::OK);
    let other = Visitor::new(&web.url);
    other.login("bob", PW).await;
    let resp = v
        .api_post("/api/v1/login", json!({"username": "bob", "password": PW}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Both gone: 503, as a page and as JSON, quickly and without a panic.
    b.stop().await;
    let started = std::time::Instant::now();
    let resp = v.get("/account").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("temporarily unavailable")
    );
    let resp = v
        .api_post("/api/v1/login", json!({"username": "bob", "password": PW}))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(resp).await, "unavailable");
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    // Pages that need no backend still work.
    assert_eq!(v.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(v.get("/login").await.status(), StatusCode::OK);

    // A backend comes back on the same port: the site recovers by itself.
    let b = GrpcServer::builder().addr(b_addr).start(api.clone()).await;
    wait_until(Duration::from_secs(15), "the site to recover", || async {
        v.get("/account").await.status() == StatusCode::OK
    })
    .await;
    Visitor::new(&web.url).login("bob", PW).await;

    web.stop().await;
    b.stop().await;
    auth.stop().await;
}

/// Forwards to `inner`, except that an armed `login` signals `entered` and then never
/// answers: the backend is "busy" with it until it is killed.
struct StallLogin {
    inner: Arc<dyn AuthApi>,
    armed: AtomicBool,
    entered: Notify,
}

#[async_trait]
impl Hook for StallLogin {
    fn inner(&self) -> Option<&dyn AuthApi> {
        Some(self.inner.as_ref())
    }
    async fn before(&self, call: &'static str, _: Option<&ClientInfo>) -> Result<(), AuthError> {
        if call == "login" && self.armed.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_backend_killed_mid_request_gives_503_then_recovers() {
    let (auth, _clock) = new_auth();
    let stall = Intercepted::arc(StallLogin {
        inner: Arc::new(auth.clone()),
        armed: AtomicBool::new(false),
        entered: Notify::new(),
    });
    // On its own runtime, so that it can be killed outright (every task and socket
    // dropped at once, as when the process dies).
    let backend = GrpcServer::builder().start_on_own_runtime(std::future::ready(stall.clone()));
    let addr = backend.addr();
    let web = WebServer::start(remote(&[addr]), WebConfig::default()).await;
    let v = Visitor::new(&web.url);
    v.signup("carol", PW).await;

    // A login reaches the backend, which dies before answering.
    stall.armed.store(true, Ordering::SeqCst);
    let client = v.client.clone();
    let url = v.url("/api/v1/login");
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"username": "carol", "password": PW}))
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), stall.entered.notified())
        .await
        .expect("the login reaches the backend");
    backend.kill().await;
    let resp = tokio::time::timeout(Duration::from_secs(15), pending)
        .await
        .expect("the web answers instead of hanging")
        .expect("task")
        .expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(resp).await, "unavailable");
    let resp = v.get("/account").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Restarted on the same port: the site recovers, and the user is still signed in.
    let _backend = GrpcServer::builder()
        .addr(addr)
        .start_on_own_runtime(std::future::ready(stall.clone()));
    wait_until(Duration::from_secs(15), "the site to recover", || async {
        v.get("/account").await.status() == StatusCode::OK
    })
    .await;
    let resp = v
        .api_post(
            "/api/v1/login",
            json!({"username": "carol", "password": PW}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    web.stop().await;
    auth.stop().await;
}
