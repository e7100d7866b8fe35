//! `examples/axum_app.rs` through HTTP: its public, private and JSON routes with no
//! credential, with the site's cookies and with a bearer token, over memory storage
//! and (with `--features raft`) a one-node Raft cluster.
#![cfg(feature = "web")]

#[path = "../examples/axum_app.rs"]
#[allow(dead_code)]
mod example;

use std::time::Duration;

use auth_sdk::web::WebConfig;
use auth_sdk::{Config, HashParams, KeyRing, SigningKey};
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

/// The example's app on 127.0.0.1:0, over `storage`; returns its URL, a stop signal and
/// the backend to stop afterwards.
async fn start(
    storage: example::Storage,
    dir: &std::path::Path,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<example::Backend>,
) {
    let mut config = Config::default();
    config.hash = HashParams::insecure_fast();
    config.keys = Some(KeyRing::new(SigningKey::generate_ed25519()));
    let backend = example::start_backend(storage, config, dir)
        .await
        .expect("backend");
    let web = WebConfig::default();
    let app = example::app(&backend, &web);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        auth_sdk::web::serve(listener, app, &web, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
        backend
    });
    (url, stop, server)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of the form's hidden CSRF field.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn exercise(storage: example::Storage) {
    let dir = tempfile::tempdir().unwrap();
    let (url, stop, server) = start(storage, dir.path()).await;
    let anonymous = client();
    let get = |c: &reqwest::Client, path: &str| c.get(format!("{url}{path}")).send();

    // No credential: public pages work, private ones are a 401 with a challenge.
    let home = get(&anonymous, "/").await.unwrap().text().await.unwrap();
    assert!(
        home.contains("stranger") && home.contains("href=\"/auth/signup\""),
        "{home}"
    );
    for path in ["/private", "/api/whoami"] {
        let resp = get(&anonymous, path).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(resp.headers().contains_key("www-authenticate"), "{path}");
    }

    // With the cookie: sign up on the pages under /auth.
    let browser = client();
    let form = get(&browser, "/auth/signup")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = browser
        .post(format!("{url}/auth/signup"))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/auth/account?notice=welcome");
    let private = get(&browser, "/private").await.unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    assert!(
        private
            .text()
            .await
            .unwrap()
            .contains("Private page of alice")
    );
    let home = get(&browser, "/").await.unwrap().text().await.unwrap();
    assert!(home.contains("Hello, alice"), "{home}");

    // With the bearer token from the JSON API under /auth, and no cookies.
    let creds = serde_json::json!({"username": "alice", "password": PASSWORD});
    let login: serde_json::Value = anonymous
        .post(format!("{url}/auth/api/v1/login"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("access token");
    let with_token = |method: reqwest::Method, path: &str| {
        anonymous
            .request(method, format!("{url}{path}"))
            .bearer_auth(token)
            .send()
    };
    let who = with_token(reqwest::Method::GET, "/api/whoami")
        .await
        .unwrap();
    let who: serde_json::Value = who.json().await.unwrap();
    assert_eq!(who["username"], "alice");
    // Logging that session out ends the bearer token at once.
    let resp = with_token(reqwest::Method::POST, "/auth/api/v1/logout")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = with_token(reqwest::Method::GET, "/api/whoami")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The browser's own session is another one and still works.
    assert_eq!(
        get(&browser, "/private").await.unwrap().status(),
        StatusCode::OK
    );

    let _ = stop.send(());
    let backend = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the app stops")
        .unwrap();
    backend.stop().await;
}

#[tokio::test]
async fn the_axum_app_over_memory_storage() {
    exercise(example::Storage::Memory).await;
}

#[cfg(feature = "raft")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_app_over_a_raft_node() {
    exercise(example::Storage::Raft).await;
}
