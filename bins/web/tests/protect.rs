//! `auth_web::protect` in someone else's axum app: the extractor, its optional form,
//! the require layer, the site mounted under `/auth`, and the stateless verifier fed
//! from the site's JWKS URL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth_core::{AuthApi, KeyRing, SigningKey, Verifier};
use auth_web::WebConfig;
use auth_web::protect::{Admin, AuthUser, Authenticator, RequireRole};
use axum::Router;
use axum::routing::get;
use common::*;
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

const PASSWORD: &str = "correct horse battery";

async fn private(user: AuthUser) -> String {
    format!("private:{}", user.username)
}

async fn admin_only(RequireRole(user, ..): RequireRole<Admin>) -> String {
    format!("admin:{}", user.username)
}

async fn maybe(user: Option<AuthUser>) -> String {
    match user {
        Some(user) => format!("hello:{}", user.username),
        None => "hello:stranger".into(),
    }
}

/// An app with public, optional and private routes, a router under `require`, and the
/// site at `/auth`; tokens signed with Ed25519 so that the JWKS is not empty.
struct App {
    web: WebServer,
    auth: auth_core::Auth<auth_storage::memory::MemoryStorage>,
    clock: Arc<auth_core::ManualClock>,
}

impl App {
    async fn start(stateless: Option<Verifier>) -> App {
        let clock = Arc::new(auth_core::ManualClock::starting_now());
        let mut config = test_config(&clock);
        config.keys = Some(KeyRing::new(SigningKey::generate_ed25519()));
        let auth = auth_core::Auth::new(config, auth_storage::memory::MemoryStorage::new())
            .expect("config");
        auth.start().expect("start");
        let api: Arc<dyn AuthApi> = Arc::new(auth.clone());
        let web = WebConfig {
            throttle: None,
            max_connections_per_address: 0,
            ..WebConfig::default()
        };
        let authenticator = match stateless {
            Some(verifier) => Authenticator::stateless(verifier, &web),
            None => Authenticator::new(api.clone(), &web),
        };
        let required = Router::new()
            .route("/api/whoami", get(private))
            .layer(authenticator.require());
        let app = Router::new()
            .route("/public", get(|| async { "public" }))
            .route("/maybe", get(maybe))
            .route("/private", get(private).post(private))
            .route("/admin", get(admin_only))
            .merge(required)
            .nest("/auth", auth_web::router(api, web.clone()))
            .layer(authenticator.layer());
        App {
            web: WebServer::serve_app(app, web).await,
            auth,
            clock,
        }
    }

    fn visitor(&self) -> Visitor {
        Visitor::new(&self.web.url)
    }

    /// Registers `name` over the JSON API under /auth and returns an access token.
    async fn token(&self, name: &str) -> String {
        let login = self
            .visitor()
            .api_signup("/auth/api/v1", name, PASSWORD)
            .await;
        login["access_token"].as_str().expect("token").to_owned()
    }
}

async fn get_with(v: &Visitor, path: &str, bearer: &str) -> reqwest::Response {
    v.client
        .get(v.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("GET")
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn a_route_can_require_a_role() {
    let app = App::start(None).await;
    let v = app.visitor();
    assert_eq!(v.get("/admin").await.status(), StatusCode::UNAUTHORIZED);
    let user = app.token("rita").await;
    let resp = get_with(&v, "/admin", &user).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(resp).await, "permission_denied");
    app.auth
        .bootstrap_admin("boss", PASSWORD)
        .await
        .expect("bootstrap");
    let login: serde_json::Value = v
        .api_post(
            "/auth/api/v1/login",
            serde_json::json!({"username": "boss", "password": PASSWORD}),
        )
        .await
        .json()
        .await
        .expect("login JSON");
    let admin = login["access_token"].as_str().expect("token").to_owned();
    let resp = get_with(&v, "/admin", &admin).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "admin:boss");
}

#[tokio::test]
async fn anonymous_callers_get_a_typed_401_with_a_bearer_challenge() {
    let app = App::start(None).await;
    let v = app.visitor();
    assert_eq!(v.page("/public", StatusCode::OK).await, "public");
    assert_eq!(v.page("/maybe", StatusCode::OK).await, "hello:stranger");
    for path in ["/private", "/api/whoami"] {
        let resp = v.get(path).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(challenge(&resp).starts_with("Bearer"), "{path}");
        assert_eq!(error_code(resp).await, "unauthenticated", "{path}");
    }
}

#[tokio::test]
async fn bearer_tokens_are_checked_with_the_session_so_logout_bites_at_once() {
    let app = App::start(None).await;
    let token = app.token("bea").await;
    let v = app.visitor();
    for path in ["/private", "/api/whoami"] {
        let resp = get_with(&v, path, &token).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.text().await.unwrap(), "private:bea");
    }
    assert_eq!(
        get_with(&v, "/maybe", &token).await.text().await.unwrap(),
        "hello:bea"
    );

    let forged = format!("{token}x");
    // A forged token is refused, never passed over for cookies, even where anonymous
    // callers are welcome (an API client must learn that its token is no good).
    for path in ["/private", "/maybe"] {
        let resp = get_with(&v, path, &forged).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenge = challenge(&resp);
        assert!(challenge.contains("invalid_token"), "{challenge}");
        assert_eq!(error_code(resp).await, "invalid_token");
    }

    let resp = v
        .client
        .post(v.url("/auth/api/v1/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = get_with(&v, "/api/whoami", &token).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "session_ended");
}

#[tokio::test]
async fn the_site_mounted_under_a_prefix_keeps_its_links_and_redirects_there() {
    let app = App::start(None).await;
    let v = app.visitor();
    let html = v.page("/auth/signup", StatusCode::OK).await;
    assert!(html.contains("href=\"/auth/static/style.css\""), "{html}");
    assert!(html.contains("action=\"/auth/signup\""), "{html}");
    assert!(html.contains("href=\"/auth/login\""), "{html}");
    assert!(!html.contains("href=\"/login\""), "{html}");
    // The stylesheet is served there too.
    v.page("/auth/static/style.css", StatusCode::OK).await;

    let resp = v
        .submit(
            "/auth/signup",
            "/auth/signup",
            &[("username", "pat"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/auth/account?notice=welcome");
    let html = v.page("/auth/account", StatusCode::OK).await;
    assert!(html.contains("action=\"/auth/logout\""), "{html}");
    // The app's own routes see the site's cookies.
    assert_eq!(v.page("/private", StatusCode::OK).await, "private:pat");
    assert_eq!(v.page("/maybe", StatusCode::OK).await, "hello:pat");

    // Signed-in pages send visitors to the prefixed login page once signed out.
    let resp = v.submit("/auth/account", "/auth/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(location(&resp).starts_with("/auth/"), "{}", location(&resp));
    let resp = v.get("/auth/account").await;
    assert_eq!(location(&resp), "/auth/login");
    assert_eq!(v.get("/private").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_access_cookie_is_refreshed_and_the_new_cookies_reach_the_browser() {
    let app = App::start(None).await;
    let v = app.visitor();
    v.submit(
        "/auth/signup",
        "/auth/signup",
        &[("username", "ren"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(v.page("/private", StatusCode::OK).await, "private:ren");
    // Past the access token's lifetime: the refresh cookie gets a new pair.
    app.clock.advance(Duration::from_secs(3600));
    let resp = v.get("/api/whoami").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let access = set_cookie(resp.headers(), "access_token").expect("a refreshed access cookie");
    assert!(!cookie_value(&access).is_empty(), "{access}");
    assert!(set_cookie(resp.headers(), "refresh_token").is_some());
    // The browser kept them: the next request needs no refresh.
    let resp = v.get("/private").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(set_cookie(resp.headers(), "access_token").is_none());

    // Once the session ends, stale cookies are cleared along with the 401.
    app.clock.advance(Duration::from_secs(400 * 24 * 3600));
    let resp = v.get("/private").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_tokens_cleared(resp.headers());
}

#[tokio::test]
async fn a_stateless_verifier_from_the_jwks_url_accepts_tokens_until_they_expire() {
    // The issuer: the app above, serving /auth/.well-known/jwks.json.
    let issuer = App::start(None).await;
    let jwks_url = format!("{}/auth/.well-known/jwks.json", issuer.web.url);
    let resp = reqwest::get(&jwks_url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cache = resp.headers()[reqwest::header::CACHE_CONTROL]
        .to_str()
        .unwrap();
    assert!(cache.contains("max-age"), "{cache}");
    let jwks: auth_core::Jwks = resp.json().await.unwrap();
    assert_eq!(jwks, issuer.auth.jwks());
    assert_eq!(jwks.keys.len(), 1);

    // A second service that only has the public keys, on the issuer's clock.
    let verifier = Verifier::from_url(&jwks_url)
        .await
        .expect("JWKS fetched")
        .clock(issuer.clock.clone());
    let service = App::start(Some(verifier)).await;
    let token = issuer.token("sam").await;
    let v = service.visitor();
    let resp = get_with(&v, "/api/whoami", &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "private:sam");

    // The trade-off: after logout at the issuer the token still verifies here...
    issuer
        .auth
        .logout(auth_core::api::LogoutRequest {
            access_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        get_with(&v, "/private", &token).await.status(),
        StatusCode::OK
    );
    // ...until it expires.
    issuer.clock.advance(Duration::from_secs(3600));
    let resp = get_with(&v, "/private", &token).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(resp).await, "token_expired");
}

#[tokio::test]
async fn extracting_a_user_without_the_layer_is_a_500_not_a_pass() {
    let app = Router::new().route("/private", get(private));
    let web = WebServer::serve_app(app, WebConfig::default()).await;
    let v = Visitor::new(&web.url);
    let resp = v.get("/private").await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn cookie_sessions_cannot_be_used_by_other_sites_to_change_state() {
    let app = App::start(None).await;
    let v = app.visitor();
    v.submit(
        "/auth/signup",
        "/auth/signup",
        &[("username", "cat"), ("password", PASSWORD)],
    )
    .await;
    let post = |fetch_site: &'static str| {
        v.client
            .post(v.url("/private"))
            .header("sec-fetch-site", fetch_site)
            .send()
    };
    // A form on a sibling subdomain or another site: refused, cookies or not.
    for site in ["same-site", "cross-site"] {
        let resp = post(site).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{site}");
        assert_eq!(error_code(resp).await, "csrf");
    }
    // The app's own pages (and reads from anywhere) are fine.
    let resp = post("same-origin").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = v
        .client
        .get(v.url("/private"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A bearer token is not sent by browsers on their own: no origin check needed.
    let token = app.token("dot").await;
    let resp = Visitor::new(&app.web.url)
        .client
        .post(app.web.url.clone() + "/private")
        .header("sec-fetch-site", "cross-site")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
