//! Prometheus metrics of the real `auth-web` binary (`--embedded --metrics-listen`),
//! scraped and parsed with Python's `prometheus_client` after a scripted workload over
//! the JSON API: requests by route template and status, and sign-ins by result, match
//! the workload exactly; no username reaches a label.
//!
//! Skipped (with a message) without `prometheus_client`, unless
//! `AUTH_METRICS_PROMETHEUS_TEST=required`.

mod common;

use std::time::Duration;

use auth_testing::prometheus::{parser_available, wait_scrapeable};
use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// Both addresses from the log: (site, metrics).
async fn addresses(child: &mut tokio::process::Child) -> (String, String) {
    use tokio::io::AsyncBufReadExt as _;
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        let (mut site, mut metrics) = (None, None);
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let addr = line
                .split_once("address=")
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned());
            if line.contains("metrics listening") {
                metrics = addr;
            } else if line.contains("auth-web listening") {
                site = addr;
            }
            if let (Some(s), Some(m)) = (&site, &metrics) {
                return (s.clone(), m.clone());
            }
        }
        panic!("auth-web exited before listening");
    })
    .await
    .expect("auth-web listens");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

#[tokio::test]
async fn the_site_counts_requests_by_route_and_sign_ins_by_result() {
    if !parser_available() {
        println!("skipped: no prometheus_client");
        return;
    }
    let mut cmd = auth_web();
    cmd.args([
        "--embedded",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--throttle",
        "false",
    ]);
    let mut child = cmd.spawn().expect("auth-web starts");
    let (site, metrics) = addresses(&mut child).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("http://{site}{path}")).json(&body).send()
    };
    let creds = json!({"username": "metric-user", "password": "correct horse battery"});
    let wrong = json!({"username": "metric-user", "password": "not the password at all"});
    assert_eq!(
        post("/api/v1/register", creds.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        post("/api/v1/login", wrong).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..2 {
        assert_eq!(
            post("/api/v1/login", creds.clone()).await.unwrap().status(),
            StatusCode::OK
        );
    }

    let url = format!("http://{metrics}/metrics");
    let m = tokio::task::spawn_blocking(move || wait_scrapeable(&url, None))
        .await
        .unwrap();
    for (key, want) in [
        (
            "auth_http_requests_total{method=POST,route=/api/v1/register,status=201}",
            1.0,
        ),
        (
            "auth_http_requests_total{method=POST,route=/api/v1/login,status=200}",
            2.0,
        ),
        (
            "auth_http_requests_total{method=POST,route=/api/v1/login,status=401}",
            1.0,
        ),
        (
            "auth_http_request_duration_seconds_count{route=/api/v1/login}",
            3.0,
        ),
        ("auth_logins_total{result=success}", 2.0),
        ("auth_logins_total{result=failure}", 1.0),
        ("auth_registrations_total", 1.0),
    ] {
        assert_eq!(m.get(key), want, "{key}");
    }
    assert!(m.get("process_resident_memory_bytes") > 0.0);
    assert!(m.samples.keys().all(|k| !k.contains("metric-user")));
}
