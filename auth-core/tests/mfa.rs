//! Second factors through `Auth`: TOTP enrolment and confirmation, the login's second
//! step with its single-use ticket, replay, lockout, recovery codes, and the secret
//! sealed at rest. Time comes from a manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth_core::api::*;
use auth_core::mfa::{MfaKey, TotpSecret};
use auth_core::{AuthApi, AuthError, LockoutPolicy};
use auth_storage::Storage;
use common::*;

/// A signed-in user with TOTP enrolled and confirmed.
struct Enrolled {
    tokens: TokenPair,
    secret: TotpSecret,
    recovery_codes: Vec<String>,
}

/// The code of the current step for `secret` on the harness clock.
fn code_now(h: &Harness, secret: &TotpSecret) -> String {
    secret.code_at_step(step_now(h))
}

fn step_now(h: &Harness) -> u64 {
    u64::try_from(h.now_ms() / 1000).expect("positive time") / 30
}

/// Moves the clock to the start of the next 30-second step.
fn next_step(h: &Harness) {
    let into = h.now_ms().rem_euclid(30_000);
    h.advance(Duration::from_millis(
        u64::try_from(30_000 - into).expect("in range"),
    ));
}

async fn enroll(h: &Harness, access_token: &str) -> TotpEnrollResponse {
    h.auth
        .totp_enroll(TotpEnrollRequest {
            access_token: access_token.into(),
        })
        .await
        .expect("totp_enroll")
}

async fn confirm(
    h: &Harness,
    access_token: &str,
    code: &str,
) -> Result<TotpConfirmResponse, AuthError> {
    h.auth
        .totp_confirm(TotpConfirmRequest {
            access_token: access_token.into(),
            code: code.into(),
            client: None,
        })
        .await
}

async fn status(h: &Harness, access_token: &str) -> MfaStatusResponse {
    h.auth
        .mfa_status(MfaStatusRequest {
            access_token: access_token.into(),
        })
        .await
        .expect("mfa_status")
}

async fn login_mfa(h: &Harness, ticket: &str, code: &str) -> Result<LoginResponse, AuthError> {
    h.auth
        .login_mfa(LoginMfaRequest {
            mfa_ticket: ticket.into(),
            code: code.into(),
            client: None,
        })
        .await
}

/// Logs in with the password and expects the second step: returns the ticket.
async fn ticket(h: &Harness, username: &str) -> String {
    let r = h
        .login(username, PASSWORD)
        .await
        .expect("password accepted");
    assert!(r.mfa_required, "a user with TOTP needs a second factor");
    assert!(r.tokens.is_none(), "no tokens from the password alone");
    assert!(!r.mfa_ticket.is_empty());
    r.mfa_ticket
}

/// Registers `username`, logs in, enrols and confirms TOTP.
async fn enrolled(h: &Harness, username: &str) -> Enrolled {
    let (_, tokens) = h.signup(username).await;
    let started = enroll(h, &tokens.access_token).await;
    let secret = TotpSecret::from_base32(&started.secret).expect("base32 secret");
    let codes = confirm(h, &tokens.access_token, &code_now(h, &secret))
        .await
        .expect("confirm with the current code");
    Enrolled {
        tokens,
        secret,
        recovery_codes: codes.recovery_codes,
    }
}

#[tokio::test]
async fn enrolment_is_confirmed_by_a_first_code_then_logins_need_a_second_step() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    assert!(!status(&h, &tokens.access_token).await.totp_enabled);

    let started = enroll(&h, &tokens.access_token).await;
    assert!(
        started
            .otpauth_uri
            .starts_with("otpauth://totp/auth-sdk:alice?"),
        "{}",
        started.otpauth_uri
    );
    assert!(
        started
            .otpauth_uri
            .contains(&format!("secret={}", started.secret))
    );
    let secret = TotpSecret::from_base32(&started.secret).unwrap();
    let pending = status(&h, &tokens.access_token).await;
    assert!(pending.totp_pending && !pending.totp_enabled);
    // Pending is not a factor: the password alone still logs in.
    assert!(h.login("alice", PASSWORD).await.unwrap().tokens.is_some());

    let wrong = secret.code_at_step(step_now(&h) + 5);
    assert_eq!(
        err_code(confirm(&h, &tokens.access_token, &wrong).await),
        "invalid_code"
    );
    let confirmed = confirm(&h, &tokens.access_token, &code_now(&h, &secret))
        .await
        .unwrap();
    assert_eq!(confirmed.recovery_codes.len(), 10);
    let on = status(&h, &tokens.access_token).await;
    assert!(on.totp_enabled && !on.totp_pending);
    assert_eq!(on.recovery_codes_left, 10);

    let r = h.login("alice", PASSWORD).await.unwrap();
    assert!(r.mfa_required && r.tokens.is_none());
    assert_eq!(r.mfa_methods, vec!["totp", "recovery_code"]);
    assert_eq!(r.user.as_ref().unwrap().username, "alice");
    assert!(r.clone().into_tokens().is_err());

    next_step(&h);
    let done = login_mfa(&h, &r.mfa_ticket, &code_now(&h, &secret))
        .await
        .unwrap();
    let pair = done.tokens.expect("tokens after the second step");
    let me = h.verify(&pair.access_token).await.unwrap();
    assert_eq!(me.amr, vec!["pwd", "otp"]);
    assert_eq!(me.acr, "aal2");
    let (_, claims) = jwt_json(&pair.access_token);
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(claims["acr"], "aal2");
    // A refresh keeps how the session was opened.
    let renewed = h.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(
        h.verify(&renewed.access_token).await.unwrap().amr,
        vec!["pwd", "otp"]
    );
    // The password-only session of before says so.
    let before = h.verify(&tokens.access_token).await.unwrap();
    assert_eq!(
        (before.amr, before.acr.as_str()),
        (vec!["pwd".to_owned()], "aal1")
    );
}

#[tokio::test]
async fn a_code_is_accepted_once_and_the_ticket_survives_a_wrong_one() {
    let h = harness();
    let alice = enrolled(&h, "alice").await;
    // The confirming code's step is spent: it cannot log in.
    let t = ticket(&h, "alice").await;
    assert_eq!(
        err_code(login_mfa(&h, &t, &code_now(&h, &alice.secret)).await),
        "invalid_code",
        "replay of the confirming code"
    );
    // The same ticket, the next step's code: accepted.
    next_step(&h);
    let code = code_now(&h, &alice.secret);
    login_mfa(&h, &t, &code).await.expect("a fresh code");
    assert_eq!(
        err_code(login_mfa(&h, &t, &code).await),
        "invalid_mfa_ticket",
        "a used ticket"
    );
    let t2 = ticket(&h, "alice").await;
    assert_eq!(
        err_code(login_mfa(&h, &t2, &code).await),
        "invalid_code",
        "a code replayed within its step"
    );
    // The previous step's code is within the window but before the last accepted one.
    let earlier = alice.secret.code_at_step(step_now(&h) - 1);
    assert_eq!(err_code(login_mfa(&h, &t2, &earlier).await), "invalid_code");
}

#[tokio::test]
async fn wrong_codes_count_towards_the_account_lockout() {
    let h = harness_with(|c| {
        c.lockout = LockoutPolicy {
            max_failures: 3,
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(600),
            forget_after: Duration::from_secs(3600),
        }
    });
    let alice = enrolled(&h, "alice").await;
    next_step(&h);
    let t = ticket(&h, "alice").await;
    for _ in 0..3 {
        assert_eq!(err_code(login_mfa(&h, &t, "000000").await), "invalid_code");
    }
    let attempts = h
        .storage
        .get_login_attempts("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempts.failures, 3);
    // Locked: the right code is refused, and so is the password.
    assert_eq!(
        err_code(login_mfa(&h, &t, &code_now(&h, &alice.secret)).await),
        "locked"
    );
    assert_eq!(err_code(h.login("alice", PASSWORD).await), "locked");
    // After the lock, the same ticket (returned after a lock) completes the login.
    h.advance(Duration::from_secs(61));
    let code = code_now(&h, &alice.secret);
    login_mfa(&h, &t, &code).await.expect("after the lock ends");
}

#[tokio::test]
async fn tickets_are_single_use_short_lived_and_limited_in_tries() {
    let h = harness_with(|c| c.mfa.ticket_attempts = 3);
    let alice = enrolled(&h, "alice").await;
    next_step(&h);

    // Expired.
    let t = ticket(&h, "alice").await;
    h.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        err_code(login_mfa(&h, &t, &code_now(&h, &alice.secret)).await),
        "invalid_mfa_ticket"
    );
    // Three wrong codes use up a ticket.
    next_step(&h);
    let t = ticket(&h, "alice").await;
    for _ in 0..3 {
        assert_eq!(err_code(login_mfa(&h, &t, "123456").await), "invalid_code");
    }
    assert_eq!(
        err_code(login_mfa(&h, &t, &code_now(&h, &alice.secret)).await),
        "invalid_mfa_ticket"
    );
    // Tickets nobody issued.
    let huge = "x".repeat(10_000);
    for junk in ["", "not-a-ticket", huge.as_str(), "\0\u{202e}"] {
        assert_eq!(
            err_code(login_mfa(&h, junk, &code_now(&h, &alice.secret)).await),
            "invalid_mfa_ticket",
            "{junk:.20?}"
        );
    }
    // Malformed codes: one typed error, never a panic.
    let long_code = "1".repeat(100_000);
    for junk in [
        "",
        "12345",
        "1234567",
        "abcdef",
        "１２３４５６",
        long_code.as_str(),
    ] {
        let t = ticket(&h, "alice").await;
        assert_eq!(
            err_code(login_mfa(&h, &t, junk).await),
            "invalid_code",
            "{junk:.20?}"
        );
    }
}

#[tokio::test]
async fn a_ticket_only_completes_with_its_own_users_factor() {
    let h = harness();
    let _alice = enrolled(&h, "alice").await;
    let bob = enrolled(&h, "bob").await;
    next_step(&h);
    let alices = ticket(&h, "alice").await;
    assert_eq!(
        err_code(login_mfa(&h, &alices, &code_now(&h, &bob.secret)).await),
        "invalid_code"
    );
    assert_eq!(
        err_code(login_mfa(&h, &alices, &bob.recovery_codes[0]).await),
        "invalid_code"
    );
    // Bob's code and recovery code are untouched by the failed tries.
    let bobs = ticket(&h, "bob").await;
    let r = login_mfa(&h, &bobs, &bob.recovery_codes[0]).await.unwrap();
    assert_eq!(r.user.unwrap().username, "bob");
}

#[tokio::test]
async fn recovery_codes_work_once_and_can_be_regenerated() {
    let h = harness();
    let alice = enrolled(&h, "alice").await;
    let code = &alice.recovery_codes[3];
    // Case and dashes do not matter.
    let typed = code.to_uppercase().replace('-', " ");
    let t = ticket(&h, "alice").await;
    let pair = login_mfa(&h, &t, &typed).await.unwrap().tokens.unwrap();
    assert_eq!(
        h.verify(&pair.access_token).await.unwrap().amr,
        vec!["pwd", "otp"]
    );
    assert_eq!(status(&h, &pair.access_token).await.recovery_codes_left, 9);
    let t = ticket(&h, "alice").await;
    assert_eq!(err_code(login_mfa(&h, &t, code).await), "invalid_code");

    // Regenerating needs a current factor.
    let regen = |code: String| {
        h.auth
            .regenerate_recovery_codes(RegenerateRecoveryCodesRequest {
                access_token: pair.access_token.clone(),
                code,
                client: None,
            })
    };
    assert_eq!(err_code(regen("000000".into()).await), "invalid_code");
    next_step(&h);
    let fresh = regen(code_now(&h, &alice.secret))
        .await
        .unwrap()
        .recovery_codes;
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|c| !alice.recovery_codes.contains(c)));
    assert_eq!(status(&h, &pair.access_token).await.recovery_codes_left, 10);
    let t = ticket(&h, "alice").await;
    assert_eq!(
        err_code(login_mfa(&h, &t, &alice.recovery_codes[0]).await),
        "invalid_code",
        "old codes are void"
    );
    login_mfa(&h, &t, &fresh[0]).await.expect("a new code");
}

#[tokio::test]
async fn disabling_totp_needs_a_current_factor() {
    let h = harness();
    let alice = enrolled(&h, "alice").await;
    let disable = |code: String| {
        h.auth.totp_disable(TotpDisableRequest {
            access_token: alice.tokens.access_token.clone(),
            code,
            client: None,
        })
    };
    assert_eq!(err_code(disable(String::new()).await), "invalid_code");
    assert_eq!(err_code(disable("999999".into()).await), "invalid_code");
    next_step(&h);
    disable(code_now(&h, &alice.secret)).await.expect("disable");
    let off = status(&h, &alice.tokens.access_token).await;
    assert!(!off.totp_enabled && !off.totp_pending);
    assert_eq!(
        off.recovery_codes_left, 0,
        "no factor left, no recovery codes"
    );
    assert!(h.login("alice", PASSWORD).await.unwrap().tokens.is_some());
    assert_eq!(err_code(disable(String::new()).await), "mfa_conflict");

    // Enrolment states are checked: confirming nothing, enrolling twice.
    assert_eq!(
        err_code(confirm(&h, &alice.tokens.access_token, "123456").await),
        "mfa_conflict"
    );
    let again = enroll(&h, &alice.tokens.access_token).await;
    // A pending enrolment is cancelled without a code.
    disable(String::new())
        .await
        .expect("cancel a pending enrolment");
    let secret = TotpSecret::from_base32(&again.secret).unwrap();
    assert_eq!(
        err_code(confirm(&h, &alice.tokens.access_token, &code_now(&h, &secret)).await),
        "mfa_conflict"
    );
    let bob = enrolled(&h, "bob").await;
    assert_eq!(
        err_code(
            h.auth
                .totp_enroll(TotpEnrollRequest {
                    access_token: bob.tokens.access_token.clone(),
                })
                .await
        ),
        "mfa_conflict"
    );
    // Every factor operation needs a live session.
    assert_eq!(
        err_code(
            h.auth
                .totp_enroll(TotpEnrollRequest {
                    access_token: "nope".into(),
                })
                .await
        ),
        "invalid_token"
    );
}

#[tokio::test]
async fn the_secret_is_sealed_at_rest_under_the_mfa_key() {
    let key = MfaKey::generate();
    let h = harness_with(|c| c.mfa.key = Some(key.clone()));
    let alice = enrolled(&h, "alice").await;
    let stored = h.stored_user("alice").await;
    let raw = alice.secret.to_base32();
    assert!(stored.totp_confirmed);
    assert!(!stored.totp_sealed.is_empty());
    assert!(!stored.totp_sealed.contains(&raw));
    assert!(!format!("{stored:?}").contains(&stored.totp_sealed));
    for code in &alice.recovery_codes {
        assert!(!stored.recovery_code_hashes.contains(code));
    }
    next_step(&h);
    // Another process with the same key completes logins; one with another key cannot
    // open the secret, and says so as an internal error, not a wrong code.
    let same = h.sibling(|c| c.mfa.key = Some(key.clone()));
    let other = h.sibling(|c| c.mfa.key = Some(MfaKey::generate()));
    let t = ticket(&h, "alice").await;
    let code = code_now(&h, &alice.secret);
    let e = other
        .login_mfa(LoginMfaRequest {
            mfa_ticket: t.clone(),
            code: code.clone(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "internal");
    let t = ticket(&h, "alice").await;
    same.login_mfa(LoginMfaRequest {
        mfa_ticket: t,
        code,
        client: None,
    })
    .await
    .expect("the same key opens it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_raced_on_two_tickets_logs_in_once() {
    let h = harness();
    let alice = enrolled(&h, "alice").await;
    next_step(&h);
    let code = code_now(&h, &alice.secret);
    let auth = Arc::new(h.auth.clone());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let t = ticket(&h, "alice").await;
        let (auth, code) = (Arc::clone(&auth), code.clone());
        tasks.push(tokio::spawn(async move {
            auth.login_mfa(LoginMfaRequest {
                mfa_ticket: t,
                code,
                client: None,
            })
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "invalid_code"),
        }
    }
    assert_eq!(ok, 1, "a TOTP code opens one session");
}

#[tokio::test]
async fn a_server_without_totp_refuses_enrolment() {
    let h = harness_with(|c| c.mfa.totp_enabled = false);
    let (_, tokens) = h.signup("alice").await;
    let e = h
        .auth
        .totp_enroll(TotpEnrollRequest {
            access_token: tokens.access_token,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mfa_conflict");
    assert!(e.to_string().contains("MFA key"), "{e}");
}
