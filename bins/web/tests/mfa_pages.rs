//! Second factors on the web site, without JavaScript: the security page, TOTP
//! enrolment with its server-rendered QR code, recovery codes shown once, the login's
//! second step, and its refusals (wrong code, expired ticket, missing CSRF token).

mod common;

use std::time::Duration;

use auth_core::Clock;
use auth_core::mfa::TotpSecret;
use common::*;
use reqwest::StatusCode;

const PW: &str = "correct horse battery";

/// The text of the element with `id` (its inner HTML up to the next `<`).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let open = start + html[start..].find('>').expect("tag end") + 1;
    let end = open + html[open..].find('<').expect("text end");
    &html[open..end]
}

/// Every `<code>` of the element with `id`.
fn codes_in(html: &str, id: &str) -> Vec<String> {
    let start = html.find(&format!("id=\"{id}\"")).expect("codes list");
    let end = start + html[start..].find("</ul>").expect("list end");
    html[start..end]
        .split("<code>")
        .skip(1)
        .filter_map(|s| s.split("</code>").next())
        .map(str::to_owned)
        .collect()
}

fn code_at(site: &Site, secret: &TotpSecret, steps_ahead: u64) -> String {
    let step = u64::try_from(site.clock.now_ms() / 1000).unwrap() / 30;
    secret.code_at_step(step + steps_ahead)
}

/// Signs up `name`, enrols TOTP on the security page; returns the secret and the
/// recovery codes shown.
async fn enrol(site: &Site, v: &Visitor, name: &str) -> (TotpSecret, Vec<String>) {
    v.signup(name, PW).await;
    let page = v.page("/account", StatusCode::OK).await;
    assert!(
        page.contains("/account/security"),
        "the account page links to security"
    );
    let security = v.page("/account/security", StatusCode::OK).await;
    assert_eq!(text_of(&security, "totp-status"), "Off");
    let resp = v
        .submit("/account/security", "/account/security/totp/enroll", &[])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    // A QR code drawn on the server, inline: no image request, no script (the page's
    // only script is the passkey one, which enrolment does not use).
    let qr = &html[html.find("id=\"totp-qr\"").expect("QR block")..];
    assert!(qr.contains("<svg") && qr.contains("<path"), "{qr:.200}");
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/static/passkeys.js\" defer></script>"));
    let secret_text = text_of(&html, "totp-secret").replace(' ', "");
    let secret = TotpSecret::from_base32(&secret_text).expect("the key shown is base32");
    let uri = html
        .split("name=\"otpauth_uri\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the URI travels with the form")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(uri.starts_with("otpauth://totp/auth-sdk:"), "{uri}");
    let token = csrf_of(&html).unwrap();

    // A wrong code: the same page again, QR included, with the problem.
    let resp = v
        .client
        .post(v.url("/account/security/totp/confirm"))
        .form(&[
            ("csrf", token.as_str()),
            ("otpauth_uri", &uri),
            ("code", "000000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let again = resp.text().await.unwrap();
    assert!(
        again.contains("code is not valid") && again.contains("<svg"),
        "{again:.400}"
    );

    let code = code_at(site, &secret, 0);
    let resp = v
        .client
        .post(v.url("/account/security/totp/confirm"))
        .form(&[
            ("csrf", token.as_str()),
            ("otpauth_uri", &uri),
            ("code", &code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    let codes = codes_in(&html, "recovery-codes");
    assert_eq!(codes.len(), 10, "{html}");
    let security = v.page("/account/security", StatusCode::OK).await;
    assert_eq!(text_of(&security, "totp-status"), "On");
    assert_eq!(text_of(&security, "recovery-left"), "10");
    assert!(
        !security.contains(&codes[0]),
        "recovery codes are shown once, not on the security page"
    );
    (secret, codes)
}

/// Logs out `v` and logs in with the password: the second step's page is next.
async fn password_step(v: &Visitor, name: &str) -> reqwest::Response {
    let resp = v.submit("/account", "/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    v.submit("/login", "/login", &[("username", name), ("password", PW)])
        .await
}

#[tokio::test]
async fn totp_on_the_site_from_enrolment_to_the_second_step() {
    let site = Site::start().await;
    let v = site.visitor();
    let (secret, recovery) = enrol(&site, &v, "wendy").await;

    let resp = password_step(&v, "wendy").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login/mfa");
    let ticket_cookie = set_cookie(resp.headers(), "mfa_ticket").expect("ticket cookie");
    assert!(
        ticket_cookie.contains("HttpOnly") && ticket_cookie.contains("SameSite=Strict"),
        "{ticket_cookie}"
    );
    assert!(
        set_cookie(resp.headers(), "access_token").is_none(),
        "no session from the password alone"
    );
    assert_eq!(
        v.get("/account").await.status(),
        StatusCode::SEE_OTHER,
        "not signed in yet"
    );
    let page = v.page("/login/mfa", StatusCode::OK).await;
    assert!(page.contains("authenticator app"));

    // A wrong code stays on the form.
    let resp = v
        .submit("/login/mfa", "/login/mfa", &[("code", "123456")])
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("code is not valid"));
    // The right one signs in.
    let code = code_at(&site, &secret, 1);
    let resp = v
        .submit("/login/mfa", "/login/mfa", &[("code", &code)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/account");
    assert!(set_cookie(resp.headers(), "access_token").is_some());
    let cleared = set_cookie(resp.headers(), "mfa_ticket").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    v.page("/account", StatusCode::OK).await;

    // A recovery code works once.
    let resp = password_step(&v, "wendy").await;
    assert_eq!(location(&resp), "/login/mfa");
    let resp = v
        .submit("/login/mfa", "/login/mfa", &[("code", &recovery[0])])
        .await;
    assert_eq!(location(&resp), "/account");
    let resp = password_step(&v, "wendy").await;
    assert_eq!(location(&resp), "/login/mfa");
    let resp = v
        .submit("/login/mfa", "/login/mfa", &[("code", &recovery[0])])
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // An expired ticket starts over at the login form.
    site.clock.advance(Duration::from_secs(6 * 60));
    let code = code_at(&site, &secret, 0);
    let resp = v
        .submit("/login/mfa", "/login/mfa", &[("code", &code)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login?notice=mfa_expired");
    let page = v.page("/login?notice=mfa_expired", StatusCode::OK).await;
    assert!(page.contains("has expired"));
    // Without a ticket, the second step's page sends the visitor to /login.
    let resp = v.get("/login/mfa").await;
    assert_eq!(location(&resp), "/login");
}

#[tokio::test]
async fn the_second_step_needs_the_forms_csrf_token() {
    let site = Site::start().await;
    let v = site.visitor();
    let (secret, _) = enrol(&site, &v, "xena").await;
    let resp = password_step(&v, "xena").await;
    assert_eq!(location(&resp), "/login/mfa");
    let code = code_at(&site, &secret, 1);
    for token in ["", "forged"] {
        let resp = v
            .client
            .post(v.url("/login/mfa"))
            .form(&[("csrf", token), ("code", code.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "csrf {token:?}");
    }
    // The code was not spent by the refused posts.
    let resp = v
        .submit("/login/mfa", "/login/mfa", &[("code", &code)])
        .await;
    assert_eq!(location(&resp), "/account");
}

#[tokio::test]
async fn turning_totp_off_on_the_site_needs_a_current_code() {
    let site = Site::start().await;
    let v = site.visitor();
    let (secret, recovery) = enrol(&site, &v, "yuri").await;
    let resp = v
        .submit(
            "/account/security",
            "/account/security/totp/disable",
            &[("code", "999999")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let page = v.page("/account/security", StatusCode::OK).await;
    assert_eq!(text_of(&page, "totp-status"), "On");

    let resp = v
        .submit(
            "/account/security",
            "/account/security/recovery-codes",
            &[("code", &recovery[1])],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh = codes_in(&resp.text().await.unwrap(), "recovery-codes");
    assert_eq!(fresh.len(), 10);
    assert!(!fresh.contains(&recovery[2]));

    let code = code_at(&site, &secret, 1);
    let resp = v
        .submit(
            "/account/security",
            "/account/security/totp/disable",
            &[("code", &code)],
        )
        .await;
    assert_eq!(location(&resp), "/account/security?notice=totp_disabled");
    let page = v
        .page("/account/security?notice=totp_disabled", StatusCode::OK)
        .await;
    assert_eq!(text_of(&page, "totp-status"), "Off");
    // The password alone signs in again.
    let resp = password_step(&v, "yuri").await;
    assert_eq!(location(&resp), "/account");
}
