//! The JWKS the site publishes, checked by a JOSE library nobody here wrote (PyJWT's
//! `PyJWKClient`, against the real `auth-web` binary), and the `Verifier`'s fetching:
//! kid misses refetch, at most once per interval.
//!
//! Without Python and PyJWT (`pip install 'pyjwt[crypto]'`) the interop test prints
//! "skipped: no PyJWT" and passes; `.ci/run` installs it and sets
//! `AUTH_WEB_PYJWT_TEST=required`, which makes it mandatory.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_core::{Jwks, KeyRing, SigningKey, Verifier};
use axum::routing::get;
use common::*;

/// Verifies `argv[2]` with the key PyJWKClient picks from the JWKS at `argv[1]`, then
/// checks that a token with a changed signature is refused. Prints `ok <name> <kid>`.
const PYJWT_CHECK: &str = r#"
import sys, jwt
url, token = sys.argv[1], sys.argv[2]
client = jwt.PyJWKClient(url)
key = client.get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="auth-sdk", issuer="auth-sdk")
head, body, sig = token.split(".")
forged = head + "." + body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
try:
    jwt.decode(forged, key.key, algorithms=["EdDSA"], audience="auth-sdk", issuer="auth-sdk")
    print("forged token accepted")
    sys.exit(1)
except jwt.InvalidSignatureError:
    pass
print("ok", claims["name"], key.key_id)
"#;

/// Lists the signing keys PyJWKClient finds at `argv[1]` (an error when there are none).
const PYJWT_KEYS: &str = r#"
import sys, jwt
try:
    keys = jwt.PyJWKClient(sys.argv[1]).get_signing_keys()
    print("keys", len(keys))
except (jwt.PyJWKClientError, jwt.PyJWKSetError) as e:
    print("no keys:", e)
"#;

async fn python(script: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python finishes within 60 s")
    .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn pyjwt_available() -> bool {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .await;
    let available = probe.is_ok_and(|o| o.status.success());
    if !available && std::env::var("AUTH_WEB_PYJWT_TEST").as_deref() == Ok("required") {
        panic!("AUTH_WEB_PYJWT_TEST=required but python3 with PyJWT[crypto] is missing");
    }
    available
}

/// Starts the auth-web binary in embedded mode with `extra` flags; returns its URL.
async fn start_site(extra: &[&str]) -> (tokio::process::Child, String) {
    let mut cmd = auth_web();
    cmd.args([
        "--embedded",
        "--listen",
        "127.0.0.1:0",
        "--throttle",
        "false",
    ])
    .args(extra);
    let mut child = cmd.spawn().expect("auth-web starts");
    let (addr, _drain) = listening_address(&mut child, "listening", Duration::from_secs(30)).await;
    (child, format!("http://{addr}"))
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens_from_our_jwks_and_finds_no_hs256_key() {
    if !pyjwt_available().await {
        println!("skipped: no PyJWT");
        return;
    }
    // EdDSA is the binary's default in embedded mode.
    let (_site, url) = start_site(&[]).await;
    let v = Visitor::new(&url);
    let login = v
        .api_signup("/api/v1", "pyjwt", "correct horse battery")
        .await;
    let token = login["access_token"].as_str().expect("token");
    let jwks_url = format!("{url}/.well-known/jwks.json");
    let jwks: Jwks = reqwest::get(&jwks_url).await.unwrap().json().await.unwrap();
    assert_eq!(jwks.keys.len(), 1);

    let (ok, out) = python(PYJWT_CHECK, &[&jwks_url, token]).await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("ok pyjwt {}", jwks.keys[0].kid));

    // HS256: the secret is never published, so a JOSE client finds nothing to use.
    let (_hs_site, hs_url) = start_site(&["--signing-alg", "hs256"]).await;
    let hs_jwks = format!("{hs_url}/.well-known/jwks.json");
    let body = reqwest::get(&hs_jwks).await.unwrap().text().await.unwrap();
    assert_eq!(body, r#"{"keys":[]}"#);
    let (ok, out) = python(PYJWT_KEYS, &[&hs_jwks]).await;
    assert!(ok && out.starts_with("no keys"), "{out}");
}

/// A JWKS endpoint whose document the test changes, counting fetches.
struct JwksServer {
    web: WebServer,
    doc: Arc<parking_lot::Mutex<Jwks>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(doc: Jwks) -> Self {
        let doc = Arc::new(parking_lot::Mutex::new(doc));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let jwks = d.lock().clone();
                async move { axum::Json(jwks) }
            }),
        );
        let web = WebServer::serve_app(app, auth_web::WebConfig::default()).await;
        Self { web, doc, fetches }
    }

    fn url(&self) -> String {
        format!("{}/jwks.json", self.web.url)
    }
}

/// A signed access token from an `Auth` with `keys`.
async fn token_signed_by(keys: &KeyRing) -> String {
    let mut config = auth_testing::fast_config();
    config.keys = Some(keys.clone());
    let auth = auth_testing::fast_auth_with(config);
    use auth_core::AuthApi as _;
    let req = |name: &str| auth_core::api::RegisterRequest {
        username: name.into(),
        password: "correct horse battery".into(),
        client: None,
    };
    auth.register(req("kim")).await.unwrap();
    let login = auth_core::api::LoginRequest {
        username: "kim".into(),
        password: "correct horse battery".into(),
        client: None,
    };
    let token = auth
        .login(login)
        .await
        .unwrap()
        .into_tokens()
        .unwrap()
        .access_token;
    auth.stop().await;
    token
}

#[tokio::test]
async fn the_verifier_refetches_on_an_unknown_kid_but_not_more_than_once_per_interval() {
    let old = KeyRing::new(SigningKey::generate_ed25519());
    let server = JwksServer::start(old.jwks()).await;
    let verifier = Verifier::from_url(&server.url()).await.expect("fetched");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    let old_token = token_signed_by(&old).await;
    assert!(verifier.verify(&old_token).await.is_ok());

    // The issuer rotates: the new key is published, tokens are signed with it.
    let new = KeyRing::new(SigningKey::generate_ed25519())
        .with_previous(old.current().clone())
        .unwrap();
    *server.doc.lock() = new.jwks();
    let new_token = token_signed_by(&new).await;
    // Within the minimum interval, a kid miss does not fetch: refused.
    assert!(verifier.verify(&new_token).await.is_err());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // With the interval over, the miss fetches once and the token verifies.
    *server.doc.lock() = old.jwks();
    let eager = Verifier::from_url(&server.url())
        .await
        .unwrap()
        .min_refetch_interval(Duration::ZERO);
    let fetched = server.fetches.load(Ordering::SeqCst);
    *server.doc.lock() = new.jwks();
    assert!(eager.verify(&new_token).await.is_ok());
    assert_eq!(server.fetches.load(Ordering::SeqCst), fetched + 1);
    // Tokens of known keys fetch nothing.
    for _ in 0..5 {
        assert!(eager.verify(&old_token).await.is_ok());
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), fetched + 1);

    // Forged kids cannot make a default verifier hammer the issuer.
    let stranger = token_signed_by(&KeyRing::new(SigningKey::generate_ed25519())).await;
    let fetched = server.fetches.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert!(verifier.verify(&stranger).await.is_err());
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), fetched);

    // A stale key set is refetched (in the background, not holding up the request);
    // with the issuer down, the cached keys keep working.
    let always_stale = Verifier::from_url(&server.url())
        .await
        .unwrap()
        .refresh_interval(Duration::ZERO)
        .min_refetch_interval(Duration::ZERO);
    let fetched = server.fetches.load(Ordering::SeqCst);
    assert!(always_stale.verify(&new_token).await.is_ok());
    // The refetch runs in the background.
    let fetches = server.fetches.clone();
    wait_until(Duration::from_secs(10), "a background refetch", || {
        let fetches = fetches.clone();
        async move { fetches.load(Ordering::SeqCst) > fetched }
    })
    .await;
    server.web.stop().await;
    assert!(always_stale.verify(&new_token).await.is_ok());
}

#[tokio::test]
async fn a_jwks_url_that_misbehaves_is_a_typed_error_not_a_hang_or_a_huge_allocation() {
    // A document with no Ed25519 key, and one far over the 64 KiB bound.
    let empty = JwksServer::start(Jwks::default()).await;
    let e = Verifier::from_url(&empty.url()).await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    // Redirects are not followed (an https URL must not end on plain http).
    let app = axum::Router::new().route(
        "/jwks.json",
        get(|| async { axum::response::Redirect::temporary("http://127.0.0.1:1/jwks.json") }),
    );
    let redirecting = WebServer::serve_app(app, auth_web::WebConfig::default()).await;
    let e = Verifier::from_url(&format!("{}/jwks.json", redirecting.url))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    let mut huge = KeyRing::new(SigningKey::generate_ed25519()).jwks();
    let key = huge.keys[0].clone();
    huge.keys = vec![key; 2_000];
    let server = JwksServer::start(huge).await;
    let e = Verifier::from_url(&server.url()).await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    // Not a JWKS at all, and a URL that is not http(s).
    let app = axum::Router::new().route("/jwks.json", get(|| async { "<html>" }));
    let web = WebServer::serve_app(app, auth_web::WebConfig::default()).await;
    let e = Verifier::from_url(&format!("{}/jwks.json", web.url))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    let e = Verifier::from_url("file:///etc/passwd").await.unwrap_err();
    assert_eq!(e.code(), "invalid_config", "{e}");
    // Nobody listening.
    let e = Verifier::from_url(&format!("http://{}/jwks.json", auth_testing::unused_addr()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
}
