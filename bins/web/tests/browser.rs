//! One real browser: headless Chromium driven through chromedriver (fantoccini) signs
//! up, logs out, logs in, changes the password and signs out everywhere, with no
//! JavaScript of ours involved. A screenshot of the account page is saved to
//! `target/browser-screenshot.png`.
//!
//! Then passkeys, with a virtual authenticator added over the Chrome DevTools Protocol
//! (`WebAuthn.addVirtualAuthenticator`): register one on the security page, log out,
//! log in without a password, then log in with the password and the passkey as the
//! second step.
//!
//! Without `/usr/bin/chromedriver` the test prints "skipped: no chromium" and passes,
//! unless `AUTH_WEB_BROWSER_TEST=required` (as in CI), where that is a failure.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use auth_web::WebConfig;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const PW: &str = "correct horse battery";
const NEW_PW: &str = "a much better passphrase";

/// chromedriver as a child process, killed on drop, with a throw-away profile folder.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads its own process group, which the browser it started is in:
        // end them all, even if the WebDriver session was not closed.
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a process-group id we created; no memory involved.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn start_driver() -> Driver {
    let port = auth_testing::child_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let profile =
        std::env::temp_dir().join(format!("auth-web-browser-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&profile).expect("profile dir");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
    };
    let http = reqwest::Client::new();
    let status = format!("{}/status", driver.url);
    wait_until(
        Duration::from_secs(30),
        "chromedriver to be ready",
        || async {
            match http.get(&status).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        },
    )
    .await;
    driver
}

async fn open_browser(driver: &Driver) -> Client {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1200,1100".to_owned(),
        format!("--user-data-dir={}", driver.profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": args,
            "prefs": {
                "credentials_enable_service": false,
                "profile.password_manager_enabled": false,
                "profile.password_manager_leak_detection": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("WebDriver session")
}

/// Waits (bounded) until the browser is at `path_and_query`.
async fn wait_for_page(browser: &Client, path_and_query: &str) {
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(url) = browser.current_url().await {
            last = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            if last == path_and_query {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "browser at {last}, expected {path_and_query}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

async fn body_text(browser: &Client) -> String {
    browser
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

fn screenshot_path() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("browser-screenshot.png")
}

/// Whether Chromium and chromedriver are here; without them the test says it skipped
/// and passes, unless `AUTH_WEB_BROWSER_TEST=required` (as in CI), which fails it.
fn chromium_available() -> bool {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var("AUTH_WEB_BROWSER_TEST").as_deref() == Ok("required") {
        panic!("AUTH_WEB_BROWSER_TEST=required but {CHROMEDRIVER} or {CHROMIUM} is missing");
    }
    println!("skipped: no chromium");
    false
}

/// Runs `flow` against the site at `base` in a fresh browser. The flow runs in its
/// own task so that the browser is closed even if it fails.
async fn in_browser<F, Fut>(base: String, flow: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let driver = start_driver().await;
    let browser = open_browser(&driver).await;
    let outcome = tokio::spawn(flow(browser.clone(), base)).await;
    let closed = browser.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    closed.expect("close browser");
    drop(driver);
}

#[tokio::test]
async fn a_person_in_a_real_browser() {
    if !chromium_available() {
        return;
    }
    let (auth, _clock) = new_auth();
    let web = WebServer::start(Arc::new(auth.clone()), WebConfig::default()).await;
    in_browser(web.url.clone(), person).await;
    web.stop().await;
    auth.stop().await;
}

/// A Chrome DevTools Protocol command, sent through chromedriver's
/// `goog/cdp/execute` endpoint.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

#[tokio::test]
async fn passkeys_in_a_real_browser() {
    if !chromium_available() {
        return;
    }
    // WebAuthn needs a domain: the site is opened as http://localhost:PORT, which
    // browsers treat as secure, with the relying party `localhost`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let clock = Arc::new(auth_core::ManualClock::starting_now());
    let mut config = test_config(&clock);
    config.mfa.passkeys = Some(auth_web::localhost_passkeys(port));
    let auth = auth_core::Auth::new(config, auth_storage::memory::MemoryStorage::new()).unwrap();
    let web_config = WebConfig {
        throttle: None,
        max_connections_per_address: 0,
        ..WebConfig::default()
    };
    let app = auth_web::router(Arc::new(auth.clone()), web_config.clone());
    let web = WebServer::serve_on(listener, app, web_config).await;
    in_browser(format!("http://localhost:{port}"), passkey_person).await;
    web.stop().await;
}

/// Register a passkey, log in with it alone, then with the password and it.
async fn passkey_person(browser: Client, base: String) {
    let page = |path: &str| format!("{base}{path}");
    browser.goto(&page("/signup")).await.expect("signup");
    // A platform authenticator that verifies its user (as a fingerprint reader would).
    for (cmd, params) in [
        ("WebAuthn.enable", json!({})),
        (
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
        ),
    ] {
        browser
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    fill(&browser, "#username", "Pat").await;
    fill(&browser, "#password", PW).await;
    click(&browser, "form[action='/signup'] button[type=submit]").await;
    wait_for_page(&browser, "/account?notice=welcome").await;

    // Register on the security page: the first factor brings recovery codes.
    click(&browser, "#security-link").await;
    wait_for_page(&browser, "/account/security").await;
    fill(&browser, "#passkey_name", "Virtual laptop").await;
    click(&browser, "#passkey-add").await;
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#recovery-codes"))
        .await
        .expect("recovery codes after the first passkey");
    let codes = body_text(&browser).await;
    assert!(codes.contains("Your recovery codes"), "{codes}");
    browser
        .goto(&page("/account/security"))
        .await
        .expect("security");
    let text = body_text(&browser).await;
    assert!(text.contains("Virtual laptop"), "{text}");

    // Log out, then in with the passkey alone (no username, no password).
    click(&browser, "header form[action='/logout'] button").await;
    wait_for_page(&browser, "/?notice=signed_out").await;
    browser.goto(&page("/login")).await.expect("login");
    click(&browser, "#passkey-signin").await;
    wait_for_page(&browser, "/account").await;
    assert!(body_text(&browser).await.contains("Signed in as Pat"));

    // Log out, then in with the password: the passkey is asked for as the second step.
    click(&browser, "header form[action='/logout'] button").await;
    wait_for_page(&browser, "/?notice=signed_out").await;
    browser.goto(&page("/login")).await.expect("login");
    fill(&browser, "#username", "pat").await;
    fill(&browser, "#password", PW).await;
    click(&browser, "form[action='/login'] button[type=submit]").await;
    wait_for_page(&browser, "/login/mfa").await;
    click(&browser, "#passkey-verify").await;
    wait_for_page(&browser, "/account").await;
    assert!(body_text(&browser).await.contains("Signed in as Pat"));
}

/// Sign up, log out, log in, change the password, sign out everywhere.
async fn person(browser: Client, base: String) {
    let page = |path: &str| format!("{base}{path}");

    // Sign up: lands signed in on the account page.
    browser.goto(&page("/")).await.expect("home");
    click(&browser, "main a[href='/signup']").await;
    wait_for_page(&browser, "/signup").await;
    fill(&browser, "#username", "Robin").await;
    fill(&browser, "#password", PW).await;
    click(&browser, "form[action='/signup'] button[type=submit]").await;
    wait_for_page(&browser, "/account?notice=welcome").await;
    let text = body_text(&browser).await;
    assert!(text.contains("Signed in as Robin"), "{text}");
    assert!(text.contains("This device"), "{text}");

    // Log out from the header.
    click(&browser, "header form[action='/logout'] button").await;
    wait_for_page(&browser, "/?notice=signed_out").await;
    assert!(
        body_text(&browser)
            .await
            .contains("You have been signed out.")
    );
    browser.goto(&page("/account")).await.expect("account");
    wait_for_page(&browser, "/login").await;

    // Log in (a wrong password first).
    fill(&browser, "#username", "robin").await;
    fill(&browser, "#password", "not my password").await;
    click(&browser, "form[action='/login'] button[type=submit]").await;
    // Same URL before and after: wait for the re-rendered form's message instead.
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("p.error"))
        .await
        .expect("the error on the form");
    assert!(
        body_text(&browser)
            .await
            .contains("Wrong username or password.")
    );
    fill(&browser, "#password", PW).await;
    click(&browser, "form[action='/login'] button[type=submit]").await;
    wait_for_page(&browser, "/account").await;

    // Change the password.
    fill(&browser, "#current_password", PW).await;
    fill(&browser, "#new_password", NEW_PW).await;
    click(
        &browser,
        "form[action='/account/password'] button[type=submit]",
    )
    .await;
    wait_for_page(&browser, "/account?notice=password_changed").await;
    assert!(
        body_text(&browser)
            .await
            .contains("Your password has been changed.")
    );

    // A second device signs in with the new password; the page lists both sessions.
    let phone = Visitor::new(&base);
    phone.login("robin", NEW_PW).await;
    browser.refresh().await.expect("reload");
    wait_for_page(&browser, "/account?notice=password_changed").await;
    let text = body_text(&browser).await;
    assert!(
        text.contains("Chrome on Linux") && text.contains("Firefox on Linux"),
        "{text}"
    );
    let png = browser.screenshot().await.expect("screenshot");
    let path = screenshot_path();
    std::fs::write(&path, png).expect("write screenshot");
    println!("screenshot: {}", path.display());

    // Sign out everywhere: both devices are signed out.
    click(&browser, "#logout-all").await;
    wait_for_page(&browser, "/login?notice=signed_out_everywhere").await;
    assert!(
        body_text(&browser)
            .await
            .contains("signed out on every device")
    );
    browser.goto(&page("/account")).await.expect("account");
    wait_for_page(&browser, "/login").await;
    let resp = phone.get("/account").await;
    assert_eq!(resp.status(), reqwest::StatusCode::SEE_OTHER);
}

/// A 3-node cluster as an admin page would show it, for the lag chart.
#[derive(Debug)]
struct ThreeNodes;

#[async_trait::async_trait]
impl auth_core::admin::ClusterView for ThreeNodes {
    async fn cluster(&self) -> auth_core::api::AdminClusterResponse {
        use auth_core::api::{AdminClusterResponse, ClusterNodeInfo};
        let node = |id: u64, role: &str, applied: u64| ClusterNodeInfo {
            id,
            addr: format!("10.0.0.{id}:7001"),
            role: role.into(),
            term: 4,
            leader_id: 1,
            last_log_index: 120,
            applied_index: applied,
            lag: 120 - applied,
            reachable: true,
            error: String::new(),
        };
        AdminClusterResponse {
            storage: "raft".into(),
            serving_node: 1,
            cluster_id: "prod".into(),
            nodes: vec![
                node(1, "leader", 120),
                node(2, "follower", 117),
                node(3, "follower", 108),
            ],
        }
    }
}

#[tokio::test]
async fn admin_pages_in_a_real_browser() {
    if !chromium_available() {
        return;
    }
    let clock = Arc::new(auth_core::ManualClock::starting_now());
    let mut config = test_config(&clock);
    config.cluster = Some(Arc::new(ThreeNodes));
    let auth = auth_core::Auth::new(config, auth_storage::memory::MemoryStorage::new()).unwrap();
    auth.start().unwrap();
    auth.bootstrap_admin("root", PW).await.unwrap();
    let web = WebServer::start(Arc::new(auth.clone()), WebConfig::default()).await;
    for name in ["mallory", "mike"] {
        Visitor::new(&web.url).signup(name, PW).await;
    }
    in_browser(web.url.clone(), admin_person).await;
    web.stop().await;
    auth.stop().await;
}

async fn admin_person(browser: Client, base: String) {
    let page = |path: &str| format!("{base}{path}");
    browser.goto(&page("/login")).await.expect("login");
    fill(&browser, "#username", "root").await;
    fill(&browser, "#password", PW).await;
    click(&browser, "form[action='/login'] button[type=submit]").await;
    wait_for_page(&browser, "/account").await;

    // The header's Admin link, then a search.
    click(&browser, "#admin-link").await;
    wait_for_page(&browser, "/admin/users").await;
    let text = body_text(&browser).await;
    assert!(text.contains("mallory") && text.contains("mike"), "{text}");
    fill(&browser, "#q", "mall").await;
    click(&browser, "#search").await;
    wait_for_page(&browser, "/admin/users?q=mall").await;
    let text = body_text(&browser).await;
    assert!(text.contains("mallory") && !text.contains("mike"), "{text}");

    // Mallory's page: lock, and the page says so.
    click(&browser, "a.user-link").await;
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#lock"))
        .await
        .expect("the lock button");
    click(&browser, "#lock").await;
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#unlock"))
        .await
        .expect("the unlock button once locked");
    let status = browser
        .find(Locator::Css("#user-status"))
        .await
        .expect("status")
        .text()
        .await
        .expect("text");
    assert!(status.starts_with("Locked since"), "{status}");

    // The cluster page: three members and three bars, longest for the most behind.
    browser
        .goto(&page("/admin/cluster"))
        .await
        .expect("cluster");
    let rows = browser
        .find_all(Locator::Css("#members tr.member"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 3);
    let bars = browser
        .find_all(Locator::Css("#lag-chart rect.lag-bar"))
        .await
        .expect("bars");
    let mut widths = Vec::new();
    for bar in &bars {
        let w = bar.attr("width").await.expect("width").unwrap_or_default();
        widths.push(w.parse::<u64>().expect("a number"));
    }
    assert_eq!(widths, vec![0, 75, 300]);

    // The events page shows the lock, newest first.
    browser.goto(&page("/admin/events")).await.expect("events");
    let first = browser
        .find(Locator::Css("#events tr.event td.kind"))
        .await
        .expect("an event")
        .text()
        .await
        .expect("text");
    assert_eq!(first, "locked");
}
