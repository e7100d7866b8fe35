//! Prometheus metrics of the real `auth-backend` binary, scraped and parsed by a
//! parser nobody here wrote (Python `prometheus_client.parser`) after a scripted
//! workload: the counters match the workload exactly. The `/metrics` listener with a
//! bearer token refuses a scrape without it (an attack on the listener, from outside).
//! A one-node Raft cluster exports its Raft gauges and commit latency.
//!
//! Without Python and `prometheus_client` (`pip install prometheus-client`) the tests
//! print "skipped: no prometheus_client" and pass; `.ci/run` installs it and sets
//! `AUTH_METRICS_PROMETHEUS_TEST=required`, which makes them mandatory.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auth_core::AuthApi;
use auth_core::api::*;
use auth_testing::prometheus::{parser_available, scrape, wait_scrapeable};
use auth_testing::{ProcCluster, child_port};

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const PW: &str = "correct horse battery";

/// `auth-backend serve` with `args`, killed on drop.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Backend, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn auth-backend");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut line = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            line.extend_from_slice(&buf[..n]);
            if line.contains(&b'\n') {
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the backend reports its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on ADDR")
        .to_owned();
    (Backend(child), format!("http://{addr}"))
}

fn login(name: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: name.into(),
        password: password.into(),
        client: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_a_scripted_workload_exactly() {
    if !parser_available() {
        println!("skipped: no prometheus_client");
        return;
    }
    let metrics_addr = format!("127.0.0.1:{}", child_port());
    let (_backend, url) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        &metrics_addr,
        "--argon2-memory-kib",
        "64",
        "--argon2-iterations",
        "1",
        "--throttle",
        "false",
    ]);
    let api = auth_backend::RemoteAuth::new([url], Default::default()).unwrap();
    // 2 registrations, 3 failed logins (one of an unknown name), 2 good ones, a verify.
    for name in ["alice", "bob"] {
        api.register(RegisterRequest {
            username: name.into(),
            password: PW.into(),
            client: None,
        })
        .await
        .unwrap();
    }
    for (name, pw) in [
        ("alice", "wrong password 1"),
        ("bob", "wrong password 2"),
        ("nobody", PW),
    ] {
        assert!(api.login(login(name, pw)).await.is_err());
    }
    let mut token = String::new();
    for name in ["alice", "bob"] {
        token = api
            .login(login(name, PW))
            .await
            .unwrap()
            .into_tokens()
            .unwrap()
            .access_token;
    }
    api.verify(VerifyRequest {
        access_token: token,
    })
    .await
    .unwrap();

    let m = tokio::task::spawn_blocking(move || {
        wait_scrapeable(&format!("http://{metrics_addr}/metrics"), None)
    })
    .await
    .unwrap();
    assert_eq!(m.status, 200);
    let exact = [
        ("auth_registrations_total", 2.0),
        ("auth_logins_total{result=success}", 2.0),
        ("auth_logins_total{result=failure}", 3.0),
        ("auth_login_failures_total{reason=invalid_credentials}", 3.0),
        (
            "auth_audit_events_total{kind=registered,outcome=success}",
            2.0,
        ),
        (
            "auth_audit_events_total{kind=login_failed,outcome=failure}",
            3.0,
        ),
        (
            "auth_audit_events_total{kind=login_succeeded,outcome=success}",
            2.0,
        ),
        (
            "auth_grpc_requests_total{code=ok,method=/auth.v1.AuthService/Register}",
            2.0,
        ),
        (
            "auth_grpc_requests_total{code=ok,method=/auth.v1.AuthService/Login}",
            2.0,
        ),
        (
            "auth_grpc_requests_total{code=invalid_credentials,method=/auth.v1.AuthService/Login}",
            3.0,
        ),
        (
            "auth_grpc_requests_total{code=ok,method=/auth.v1.AuthService/Verify}",
            1.0,
        ),
        (
            "auth_grpc_request_duration_seconds_count{method=/auth.v1.AuthService/Login}",
            5.0,
        ),
    ];
    for (key, want) in exact {
        assert_eq!(m.get(key), want, "{key}");
    }
    // Every password check and hash waited for a slot (or not at all): 2 hashes at
    // registration, 5 checks, and the unknown name's dummy hash, made once.
    assert_eq!(m.get("auth_hash_wait_seconds_count"), 8.0);
    assert_eq!(m.get("auth_hash_queue_depth"), 0.0);
    assert!(m.get("process_resident_memory_bytes") > 0.0);
    // No username or id reached a label.
    for key in m.samples.keys() {
        for secret in ["alice", "bob", "nobody"] {
            assert!(!key.contains(secret), "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_keeps_scrapers_without_it_out() {
    if !parser_available() {
        println!("skipped: no prometheus_client");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    let token = "a-long-random-scrape-token-0123456789";
    auth_raft::tls::write_private_file(&token_file, format!("{token}\n").as_bytes()).unwrap();
    let metrics_addr = format!("127.0.0.1:{}", child_port());
    let (_backend, _) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        &metrics_addr,
        "--metrics-token-file",
        token_file.to_str().unwrap(),
    ]);
    let url = format!("http://{metrics_addr}/metrics");
    let (with, without, wrong) = tokio::task::spawn_blocking(move || {
        let with = wait_scrapeable(&url, Some(token));
        (
            with,
            scrape(&url, None),
            scrape(&url, Some("a-wrong-token-of-the-right-size")),
        )
    })
    .await
    .unwrap();
    assert_eq!(with.status, 200);
    assert!(with.get("process_resident_memory_bytes") > 0.0);
    assert_eq!(without.status, 401);
    assert_eq!(wrong.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_node_exports_its_raft_gauges() {
    if !parser_available() {
        println!("skipped: no prometheus_client");
        return;
    }
    let metrics_addr = format!("127.0.0.1:{}", child_port());
    let c = ProcCluster::start(BIN, 1, &["--metrics-listen", &metrics_addr]);
    c.leader(Duration::from_secs(30)).await;
    let api = c.node_client(0);
    api.register(RegisterRequest {
        username: "nadia".into(),
        password: PW.into(),
        client: None,
    })
    .await
    .unwrap();
    let url = format!("http://{metrics_addr}/metrics");
    let m = tokio::task::spawn_blocking(move || wait_scrapeable(&url, None))
        .await
        .unwrap();
    assert_eq!(m.get("auth_raft_is_leader"), 1.0);
    assert_eq!(m.get("auth_raft_leader_id"), 1.0);
    assert!(m.get("auth_raft_term") >= 1.0);
    let applied = m.get("auth_raft_applied_index");
    assert!(applied >= 2.0, "membership and the registration: {applied}");
    assert_eq!(m.get("auth_raft_last_log_index"), applied);
    assert!(m.get("auth_raft_commit_seconds_count") >= 1.0);
}
