//! auth-web over HTTPS (`serve_tls`, the binary's `--tls-cert`/`--tls-key`) and
//! through auth-backends served over TLS (`RemoteAuth` with a CA file). Certificates
//! come from a CA made in the test (`auth_testing::TestCa`), written to a temporary
//! directory.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auth_backend::{ClientTls, RemoteAuth, RemoteOptions};
use auth_core::AuthApi;
use auth_core::api::ListSessionsRequest;
use auth_raft::tls::{PeerIdentity, TlsError};
use auth_testing::{GrpcServer, TestCa};
use auth_web::{HSTS, TlsConfig, WebConfig};
use common::*;
use reqwest::StatusCode;
use reqwest::header::STRICT_TRANSPORT_SECURITY;
use serde_json::json;
use tokio::io::AsyncReadExt;

const PW: &str = "correct horse battery";
const LIMIT: Duration = Duration::from_secs(30);

/// A test CA and a server certificate for 127.0.0.1/localhost, as files:
/// `ca.pem`, `site.pem`, `site.key` (mode 0600), and `other-ca.pem` from another CA.
struct Pki {
    ca: TestCa,
    other: TestCa,
}

impl Pki {
    fn new() -> Self {
        let ca = TestCa::new("auth-web test CA");
        let other = TestCa::new("another CA");
        // Node certificates are the ones issued for TLS servers.
        ca.issue_files(PeerIdentity::Node(1), "site");
        std::fs::write(ca.path("other-ca.pem"), other.cert_pem()).expect("other-ca.pem");
        Self { ca, other }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.ca.path(name)
    }

    fn site_tls(&self) -> TlsConfig {
        TlsConfig::from_files(&self.file("site.pem"), &self.file("site.key")).expect("site TLS")
    }
}

fn hsts(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(STRICT_TRANSPORT_SECURITY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Every cookie set is `Secure`, `__Host-` prefixed; returns how many there were.
fn assert_secure_cookies(resp: &reqwest::Response) -> usize {
    let cookies = set_cookies(resp.headers());
    for c in &cookies {
        assert!(c.starts_with("__Host-"), "{c}");
        assert!(c.contains("; Secure"), "{c}");
    }
    cookies.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_is_served_over_https_with_hsts_and_secure_cookies() {
    let pki = Pki::new();
    let (auth, _clock) = new_auth();
    // The default config: serving over TLS is what makes the cookies secure.
    let config = WebConfig::default();
    assert!(!config.secure_cookies);
    let web = WebServer::start_tls(Arc::new(auth.clone()), config, pki.site_tls()).await;
    assert!(web.url.starts_with("https://127.0.0.1:"), "{}", web.url);
    let v = Visitor::trusting(&web.url, pki.ca.cert_pem());
    let creds = json!({"username": "tessa", "password": PW});

    // The JSON API: register, log in, me; HSTS on each response, errors included.
    let resp = v.api_post("/api/v1/register", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));
    let resp = v.api_post("/api/v1/login", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));
    let login: serde_json::Value = resp.json().await.expect("login json");
    let access = login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("GET me");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));
    let me: serde_json::Value = resp.json().await.expect("me json");
    assert_eq!(me["username"], "tessa");
    let resp = v
        .api_post(
            "/api/v1/login",
            json!({"username": "tessa", "password": "nope nope"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));
    let resp = v.get("/no/such/page").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));

    // The peer address still reaches the handlers: the session records it.
    let sessions = auth
        .list_sessions(ListSessionsRequest {
            access_token: access,
        })
        .await
        .expect("sessions");
    assert_eq!(sessions.sessions[0].ip, "127.0.0.1");

    // Pages: every cookie is Secure with the __Host- prefix, and the browser flow
    // works over HTTPS (the client keeps Secure cookies for https:// only).
    let resp = v.get("/signup").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));
    assert!(assert_secure_cookies(&resp) >= 1, "no pre-session cookie");
    let resp = v
        .submit(
            "/signup",
            "/signup",
            &[("username", "ursula"), ("password", PW)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // Token cookies set, pre-session cookie ended: all of them secure.
    assert!(assert_secure_cookies(&resp) >= 3, "no token cookies");
    let html = v.page("/account", StatusCode::OK).await;
    assert!(html.contains("ursula"), "{html}");

    // Clients that do not trust the CA, or speak plain HTTP, get nothing.
    let stranger = Visitor::new(&web.url);
    assert!(stranger.client.get(v.url("/healthz")).send().await.is_err());
    let wrong_ca = Visitor::trusting(&web.url, pki.other.cert_pem());
    assert!(wrong_ca.client.get(v.url("/healthz")).send().await.is_err());
    let plain = Visitor::new(&format!("http://{}", web.addr));
    assert!(
        plain
            .client
            .get(plain.url("/healthz"))
            .send()
            .await
            .is_err()
    );

    // And the site still serves the others afterwards, then stops gracefully.
    let resp = v.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    web.stop().await;
}

#[test]
fn unusable_tls_files_are_refused_naming_the_file() {
    let pki = Pki::new();
    let (cert, key) = (pki.file("site.pem"), pki.file("site.key"));

    // A key readable by others: refused, with the chmod to run.
    let open = pki.file("open.key");
    std::fs::copy(&key, &open).expect("copy key");
    set_mode(&open, 0o644);
    let e = TlsConfig::from_files(&cert, &open).unwrap_err();
    assert!(matches!(e, TlsError::Permissions { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", open.display())),
        "{msg}"
    );

    // A key of another certificate.
    pki.ca.issue_files(PeerIdentity::Node(2), "other");
    let e = TlsConfig::from_files(&cert, &pki.file("other.key")).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");

    // Not PEM, missing.
    let garbage = pki.file("garbage.pem");
    std::fs::write(&garbage, "hello").expect("write");
    let e = TlsConfig::from_files(&garbage, &key).unwrap_err();
    assert!(
        e.to_string().contains(&garbage.display().to_string()),
        "{e}"
    );
    let e = TlsConfig::from_files(&pki.file("missing.pem"), &key).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Runs `cmd` to its end (bounded): exit code and stderr.
async fn run_to_end(mut cmd: tokio::process::Command) -> (Option<i32>, String) {
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("auth-web exits within the limit")
        .expect("run auth-web");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_and_checks_its_tls_files() {
    let pki = Pki::new();
    let (cert, key) = (pki.file("site.pem"), pki.file("site.key"));

    // An open key file: refused before listening, naming the file and the fix.
    let open = pki.file("open.key");
    std::fs::copy(&key, &open).expect("copy key");
    set_mode(&open, 0o640);
    let mut cmd = auth_web();
    cmd.args(["--embedded", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&open);
    let (code, stderr) = run_to_end(cmd).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", open.display())),
        "{stderr}"
    );

    // --tls-cert and --tls-key go together; so do --backend-cert and --backend-key.
    let mut cmd = auth_web();
    cmd.args(["--embedded", "--tls-cert"]).arg(&cert);
    assert_eq!(run_to_end(cmd).await.0, Some(2));
    let mut cmd = auth_web();
    cmd.args(["--backend", "127.0.0.1:1", "--backend-cacert"])
        .arg(pki.file("ca.pem"))
        .arg("--backend-cert")
        .arg(&cert);
    assert_eq!(run_to_end(cmd).await.0, Some(2));

    // Backends over TLS: an https:// backend needs the CA; the CA file must be usable.
    let mut cmd = auth_web();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "https://127.0.0.1:1",
    ]);
    let (code, stderr) = run_to_end(cmd).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("CA certificate"), "{stderr}");
    let missing = pki.file("missing-ca.pem");
    let mut cmd = auth_web();
    cmd.args(["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"])
        .arg("--backend-cacert")
        .arg(&missing);
    let (code, stderr) = run_to_end(cmd).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");

    // Served over HTTPS: HSTS and Secure cookies without --secure-cookies.
    let mut child = auth_web()
        .args(["--embedded", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .spawn()
        .expect("spawn auth-web");
    let (addr, drain) = listening_address(&mut child, "listening (HTTPS)", LIMIT).await;

    let v = Visitor::trusting(&format!("https://{addr}"), pki.ca.cert_pem());
    let resp = v.get("/signup").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hsts(&resp).as_deref(), Some(HSTS));
    assert!(assert_secure_cookies(&resp) >= 1, "no pre-session cookie");

    // SIGTERM: a graceful stop, exit status 0.
    let pid = child.id().expect("pid") as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("auth-web stops within the limit")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let _ = tokio::time::timeout(LIMIT, drain).await;
}

fn remote(endpoint: &str, ca: &Path) -> RemoteAuth {
    let options = RemoteOptions {
        tls: Some(ClientTls::from_ca_file(ca).expect("CA file")),
        ..RemoteOptions::default()
    };
    RemoteAuth::new([endpoint], options).expect("RemoteAuth")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_site_works_through_https_backends_with_a_ca_file() {
    let pki = Pki::new();
    let (auth, _clock) = new_auth();
    let backend = GrpcServer::builder().tls(&pki.ca).start(auth).await;

    let api = remote(&backend.url(), &pki.file("ca.pem"));
    let web = WebServer::start(Arc::new(api), WebConfig::default()).await;
    let v = Visitor::new(&web.url);
    let creds = json!({"username": "vera", "password": PW});
    let resp = v.api_post("/api/v1/register", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = v.api_post("/api/v1/login", creds.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let login: serde_json::Value = resp.json().await.expect("login json");
    let access = login["access_token"].as_str().expect("access token");
    let resp = v
        .client
        .get(v.url("/api/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .expect("GET me");
    assert_eq!(resp.status(), StatusCode::OK);
    let me: serde_json::Value = resp.json().await.expect("me json");
    assert_eq!(me["username"], "vera");
    // The pages work the same way.
    v.login("vera", PW).await;
    let html = v.page("/account", StatusCode::OK).await;
    assert!(html.contains("vera"), "{html}");

    // A RemoteAuth trusting another CA cannot reach the backend: 503 unavailable.
    let foreign = remote(&backend.endpoint(), &pki.file("other-ca.pem"));
    let web2 = WebServer::start(Arc::new(foreign), WebConfig::default()).await;
    let v2 = Visitor::new(&web2.url);
    let resp = v2.api_post("/api/v1/login", creds).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(resp).await, "unavailable");

    web2.stop().await;
    web.stop().await;
    backend.stop().await;
}

/// Over HTTPS the per-address bound is applied at accept, before the TLS handshake:
/// connections that never say a word hold their places, and a further one is closed
/// without a handshake until one of them goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connections_are_bounded_per_address_before_the_handshake() {
    let pki = Pki::new();
    let (auth, _clock) = new_auth();
    let hold = Duration::from_millis(100);
    let config = WebConfig {
        max_connections_per_address: 2,
        refusal_delay: hold,
        ..WebConfig::default()
    };
    let web = WebServer::start_tls(Arc::new(auth), config, pki.site_tls()).await;
    let healthz = || async {
        // A new client each time: no pooled connection is reused.
        let v = Visitor::trusting(&web.url, pki.ca.cert_pem());
        v.client.get(v.url("/healthz")).send().await
    };

    // Two silent TCP connections, the first to arrive, take both places: each is still
    // open well after the refusal hold (a refused one is reset when the hold ends).
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::time::timeout(LIMIT, tokio::net::TcpStream::connect(web.addr))
            .await
            .expect("connect within the limit")
            .expect("connect");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(hold * 5, c.read(&mut byte)).await;
        assert!(read.is_err(), "a silent connection was refused: {read:?}");
        silent.push(c);
    }
    for _ in 0..3 {
        assert!(healthz().await.is_err(), "a third connection was served");
    }

    // One silent connection goes: HTTPS is served again.
    drop(silent.pop());
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Ok(resp) = healthz().await {
            assert_eq!(resp.status(), StatusCode::OK);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection's place was not given back"
        );
        tokio::task::yield_now().await;
    }
    web.stop().await;
}
