//! `auth_backend::app`: what the binary runs, driven in process.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_backend::app::{RunError, run, serve_until};
use auth_backend::config::{Settings, TokenSettings};
use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::api::VerifyRequest;
use auth_core::{AuthApi, HashParams};
use auth_testing::fast_auth;
use common::*;
use tokio::sync::oneshot;

const PW: &str = "correct horse battery";

fn test_config() -> Settings {
    Settings {
        listen: Some("127.0.0.1:0".into()),
        argon2: HashParams::insecure_fast().into(),
        ..Settings::default()
    }
}

#[tokio::test]
async fn run_serves_until_shutdown_then_returns_ok() {
    let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let cfg = test_config();
    let task = tokio::spawn(async move {
        run(
            &cfg,
            async move {
                let _ = stop_rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        )
        .await
    });
    let addr = tokio::time::timeout(DEADLINE, addr_rx)
        .await
        .expect("listening in time")
        .expect("address");
    assert_ne!(addr.port(), 0);

    let remote = RemoteAuth::new([addr.to_string()], RemoteOptions::default()).unwrap();
    remote.register(register_req("alice", PW)).await.unwrap();
    let t = remote
        .login(login_req("alice", PW))
        .await
        .unwrap()
        .tokens
        .unwrap();
    remote
        .verify(VerifyRequest {
            access_token: t.access_token,
        })
        .await
        .unwrap();

    stop_tx.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("run returned in time")
        .expect("task")
        .expect("clean shutdown");
    // The port is released.
    tokio::net::TcpListener::bind(addr)
        .await
        .expect("port released");
}

#[tokio::test]
async fn shutdown_gives_up_on_calls_that_never_finish() {
    let gate = Gate::default();
    let api = Counting::gated(Arc::new(fast_auth()), gate.clone());
    let cfg = Settings {
        shutdown_timeout: Some(Duration::from_millis(200)),
        ..test_config()
    };
    let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_until(
            &cfg,
            api,
            async move {
                let _ = stop_rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        )
        .await
    });
    let addr = tokio::time::timeout(DEADLINE, addr_rx)
        .await
        .unwrap()
        .unwrap();
    let remote = RemoteAuth::new([addr.to_string()], RemoteOptions::default()).unwrap();
    let stuck = tokio::spawn(async move { remote.register(register_req("bob", PW)).await });
    tokio::time::timeout(DEADLINE, gate.entered.notified())
        .await
        .expect("call arrived");

    let started = Instant::now();
    stop_tx.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("shutdown was not bounded by shutdown_timeout")
        .expect("task")
        .expect("shutdown is still a clean exit");
    assert!(started.elapsed() >= Duration::from_millis(200));
    stuck.abort();
}

#[tokio::test]
async fn run_reports_configuration_and_bind_errors() {
    let cfg = Settings {
        tokens: TokenSettings {
            signing_key_file: Some("/nonexistent/key".into()),
            signing_key_id: Some("k1".into()),
            ..TokenSettings::default()
        },
        ..test_config()
    };
    let e = run(&cfg, std::future::pending(), |_| {}).await.unwrap_err();
    assert!(matches!(e, RunError::Config(_)), "{e}");
    assert!(e.to_string().contains("/nonexistent/key"), "{e}");

    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = Settings {
        listen: Some(taken.local_addr().unwrap().to_string()),
        ..test_config()
    };
    let e = run(&cfg, std::future::pending(), |_| {}).await.unwrap_err();
    assert!(matches!(e, RunError::Bind { .. }), "{e}");
    assert!(e.to_string().starts_with("cannot listen on"), "{e}");
}
