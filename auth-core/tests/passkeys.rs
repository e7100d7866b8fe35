//! Passkeys through `Auth`, with a software authenticator (webauthn-authenticator-rs's
//! `SoftPasskey`) producing real WebAuthn responses: registration, the second step of a
//! password login, forged and replayed assertions, ceremonies used twice, expired or
//! someone else's, renaming and removal rules. Passwordless login with a discoverable
//! credential is exercised in a real browser (auth-web's browser test).

mod common;

use std::time::Duration;

use auth_core::api::*;
use auth_core::{AuthApi, PasskeyConfig};
use common::*;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse, Url,
};

const ORIGIN: &str = "http://localhost:8080";

fn passkey_harness() -> Harness {
    harness_with(|c| c.mfa.passkeys = Some(PasskeyConfig::new("localhost", ORIGIN)))
}

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

/// A software authenticator that verifies its user.
fn authenticator() -> WebauthnAuthenticator<SoftPasskey> {
    WebauthnAuthenticator::new(SoftPasskey::new(true))
}

async fn register_start(h: &Harness, access_token: &str, name: &str) -> PasskeyCeremony {
    h.auth
        .passkey_register_start(PasskeyRegisterStartRequest {
            access_token: access_token.into(),
            name: name.into(),
        })
        .await
        .expect("passkey_register_start")
}

/// The authenticator's answer to a registration ceremony, as JSON.
fn attest(key: &mut WebauthnAuthenticator<SoftPasskey>, ceremony: &PasskeyCeremony) -> String {
    let options: CreationChallengeResponse =
        serde_json::from_str(&ceremony.options_json).expect("creation options");
    let response = key.do_registration(origin(), options).expect("register");
    serde_json::to_string(&response).unwrap()
}

/// The authenticator's answer to a login ceremony, as JSON.
fn assert_with(key: &mut WebauthnAuthenticator<SoftPasskey>, ceremony: &PasskeyCeremony) -> String {
    let options: RequestChallengeResponse =
        serde_json::from_str(&ceremony.options_json).expect("request options");
    let response = key.do_authentication(origin(), options).expect("assert");
    serde_json::to_string(&response).unwrap()
}

async fn register_finish(
    h: &Harness,
    access_token: &str,
    ceremony_id: &str,
    credential_json: String,
) -> Result<PasskeyRegisterFinishResponse, auth_core::AuthError> {
    h.auth
        .passkey_register_finish(PasskeyRegisterFinishRequest {
            access_token: access_token.into(),
            ceremony_id: ceremony_id.into(),
            credential_json,
            client: None,
        })
        .await
}

/// Signs `name` up and registers a passkey; returns the session's tokens, the
/// authenticator and the recovery codes.
async fn with_passkey(
    h: &Harness,
    name: &str,
) -> (TokenPair, WebauthnAuthenticator<SoftPasskey>, Vec<String>) {
    let (_, tokens) = h.signup(name).await;
    let mut key = authenticator();
    let c = register_start(h, &tokens.access_token, "laptop").await;
    let done = register_finish(
        h,
        &tokens.access_token,
        &c.ceremony_id,
        attest(&mut key, &c),
    )
    .await
    .expect("registration accepted");
    let info = done.passkey.unwrap();
    assert_eq!(info.name, "laptop");
    assert_eq!(
        done.recovery_codes.len(),
        10,
        "the first factor brings recovery codes"
    );
    (tokens, key, done.recovery_codes)
}

async fn login_start(h: &Harness, ticket: &str) -> Result<PasskeyCeremony, auth_core::AuthError> {
    h.auth
        .passkey_login_start(PasskeyLoginStartRequest {
            mfa_ticket: ticket.into(),
            client: None,
        })
        .await
}

async fn login_finish(
    h: &Harness,
    ceremony_id: &str,
    credential_json: String,
    ticket: &str,
) -> Result<LoginResponse, auth_core::AuthError> {
    h.auth
        .passkey_login_finish(PasskeyLoginFinishRequest {
            ceremony_id: ceremony_id.into(),
            credential_json,
            mfa_ticket: ticket.into(),
            client: None,
        })
        .await
}

#[tokio::test]
async fn a_passkey_registered_then_used_as_the_second_step() {
    let h = passkey_harness();
    let (tokens, mut key, _) = with_passkey(&h, "paula").await;
    let status = h
        .auth
        .mfa_status(MfaStatusRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(status.passkeys.len(), 1);
    assert_eq!(status.recovery_codes_left, 10);
    assert!(!status.totp_enabled);

    let step = h.login("paula", PASSWORD).await.unwrap();
    assert!(step.mfa_required && step.tokens.is_none());
    assert_eq!(step.mfa_methods, vec!["recovery_code", "webauthn"]);
    let c = login_start(&h, &step.mfa_ticket).await.unwrap();
    let options: serde_json::Value = serde_json::from_str(&c.options_json).unwrap();
    assert_eq!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{options}"
    );
    let pair = login_finish(
        &h,
        &c.ceremony_id,
        assert_with(&mut key, &c),
        &step.mfa_ticket,
    )
    .await
    .unwrap()
    .into_tokens()
    .unwrap();
    let me = h.verify(&pair.access_token).await.unwrap();
    assert_eq!(me.amr, vec!["pwd", "hwk"]);
    assert_eq!(me.acr, "aal2");
    // Ticket and ceremony are both spent.
    let e = login_finish(
        &h,
        &c.ceremony_id,
        assert_with(&mut key, &c),
        &step.mfa_ticket,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "ceremony_expired");
    assert_eq!(
        login_start(&h, &step.mfa_ticket).await.unwrap_err().code(),
        "invalid_mfa_ticket"
    );
    // The stored passkey records its use.
    let stored = h.stored_user("paula").await;
    assert!(stored.passkeys[0].last_used_at_ms > 0);
}

#[tokio::test]
async fn forged_and_replayed_assertions_are_refused() {
    let h = passkey_harness();
    let (_, mut key, _) = with_passkey(&h, "quinn").await;
    let step = h.login("quinn", PASSWORD).await.unwrap();

    // A signature with a flipped byte.
    let c = login_start(&h, &step.mfa_ticket).await.unwrap();
    let good = assert_with(&mut key, &c);
    let mut forged: PublicKeyCredential = serde_json::from_str(&good).unwrap();
    let mut sig = forged.response.signature.to_vec();
    let last = sig.len() - 1;
    sig[last] ^= 0x55;
    forged.response.signature = sig.into();
    let e = login_finish(
        &h,
        &c.ceremony_id,
        serde_json::to_string(&forged).unwrap(),
        &step.mfa_ticket,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");

    // The good assertion of that ceremony, replayed against a new one: its challenge
    // does not match.
    let c2 = login_start(&h, &step.mfa_ticket).await.unwrap();
    let e = login_finish(&h, &c2.ceremony_id, good, &step.mfa_ticket)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");

    // Another authenticator's assertion: not one of the account's passkeys.
    let mut stranger = authenticator();
    let (_, other_tokens) = h.signup("rita").await;
    let rc = register_start(&h, &other_tokens.access_token, "x").await;
    register_finish(
        &h,
        &other_tokens.access_token,
        &rc.ceremony_id,
        attest(&mut stranger, &rc),
    )
    .await
    .unwrap();
    let c3 = login_start(&h, &step.mfa_ticket).await.unwrap();
    let options: RequestChallengeResponse = serde_json::from_str(&c3.options_json).unwrap();
    assert!(
        stranger.do_authentication(origin(), options).is_err(),
        "rita's key is not allowed"
    );

    // Malformed responses are typed errors.
    let c4 = login_start(&h, &step.mfa_ticket).await.unwrap();
    for junk in ["", "{}", "[1,2]", "not json", &"x".repeat(100_000)] {
        let e = login_finish(&h, &c4.ceremony_id, junk.to_owned(), &step.mfa_ticket)
            .await
            .unwrap_err();
        assert!(
            ["invalid_argument", "ceremony_expired"].contains(&e.code()),
            "{junk:.20}: {e}"
        );
    }
    // A passwordless ceremony with this (non-discoverable) key: no user handle, refused.
    let c5 = login_start(&h, "").await.unwrap();
    let options: RequestChallengeResponse = serde_json::from_str(&c5.options_json).unwrap();
    assert!(options.mediation.is_none(), "a modal prompt, not autofill");
    if let Ok(a) = key.do_authentication(origin(), options) {
        let e = login_finish(&h, &c5.ceremony_id, serde_json::to_string(&a).unwrap(), "")
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_credentials");
    }
}

#[tokio::test]
async fn ceremonies_are_single_use_short_lived_and_bound_to_their_user() {
    let h = passkey_harness();
    let (alice, _) = h.signup("alice").await;
    let (_, bob) = h.signup("bob").await;
    let _ = alice;
    let mut key = authenticator();
    // Bob finishing a ceremony Alice started.
    let (_, alice_tokens) = (0, h.login_ok("alice", PASSWORD).await);
    let c = register_start(&h, &alice_tokens.access_token, "a").await;
    let json = attest(&mut key, &c);
    let e = register_finish(&h, &bob.access_token, &c.ceremony_id, json.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ceremony_expired");
    // Taken by that attempt: Alice cannot finish it either.
    let e = register_finish(&h, &alice_tokens.access_token, &c.ceremony_id, json)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ceremony_expired");
    // Expired.
    let c = register_start(&h, &alice_tokens.access_token, "a").await;
    let json = attest(&mut key, &c);
    h.advance(Duration::from_secs(6 * 60));
    let e = register_finish(&h, &alice_tokens.access_token, &c.ceremony_id, json)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ceremony_expired");
    // Unknown and absurd ids.
    for id in ["", "nope", &"z".repeat(10_000)] {
        let e = register_finish(&h, &alice_tokens.access_token, id, "{}".into())
            .await
            .unwrap_err();
        assert!(
            ["ceremony_expired", "invalid_argument"].contains(&e.code()),
            "{e}"
        );
    }
    // A garbled registration response.
    let c = register_start(&h, &alice_tokens.access_token, "a").await;
    let e = register_finish(
        &h,
        &alice_tokens.access_token,
        &c.ceremony_id,
        "{\"id\":1}".into(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    // Names are bounded.
    let e = h
        .auth
        .passkey_register_start(PasskeyRegisterStartRequest {
            access_token: alice_tokens.access_token.clone(),
            name: "n".repeat(65),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
}

#[tokio::test]
async fn factors_change_only_from_a_multi_factor_session_and_the_last_needs_a_code() {
    let h = passkey_harness();
    let (old_session, mut key, codes) = with_passkey(&h, "sasha").await;
    // The session opened with the password alone (before the passkey) cannot add or
    // remove factors now.
    let e = h
        .auth
        .passkey_register_start(PasskeyRegisterStartRequest {
            access_token: old_session.access_token.clone(),
            name: "phone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mfa_conflict");
    let e = h
        .auth
        .totp_enroll(TotpEnrollRequest {
            access_token: old_session.access_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mfa_conflict");

    // A session opened with password and passkey can.
    let step = h.login("sasha", PASSWORD).await.unwrap();
    let c = login_start(&h, &step.mfa_ticket).await.unwrap();
    let strong = login_finish(
        &h,
        &c.ceremony_id,
        assert_with(&mut key, &c),
        &step.mfa_ticket,
    )
    .await
    .unwrap()
    .into_tokens()
    .unwrap();
    let mut phone = authenticator();
    let c = register_start(&h, &strong.access_token, "phone").await;
    let done = register_finish(
        &h,
        &strong.access_token,
        &c.ceremony_id,
        attest(&mut phone, &c),
    )
    .await
    .unwrap();
    assert!(done.recovery_codes.is_empty(), "codes exist already");
    let status = h
        .auth
        .mfa_status(MfaStatusRequest {
            access_token: strong.access_token.clone(),
        })
        .await
        .unwrap();
    let ids: Vec<String> = status
        .passkeys
        .iter()
        .map(|p| p.credential_id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    // The same authenticator twice: excluded by the options, refused if forced.
    let c = register_start(&h, &strong.access_token, "again").await;
    let options: serde_json::Value = serde_json::from_str(&c.options_json).unwrap();
    assert_eq!(
        options["publicKey"]["excludeCredentials"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    h.auth
        .passkey_rename(PasskeyRenameRequest {
            access_token: strong.access_token.clone(),
            credential_id: ids[1].clone(),
            name: "  work phone ".into(),
        })
        .await
        .unwrap();
    let remove = |token: &str, id: &str, code: &str| {
        h.auth.passkey_remove(PasskeyRemoveRequest {
            access_token: token.into(),
            credential_id: id.into(),
            code: code.into(),
            client: None,
        })
    };
    assert_eq!(
        remove(&old_session.access_token, &ids[1], "")
            .await
            .unwrap_err()
            .code(),
        "mfa_conflict"
    );
    assert_eq!(
        remove(&strong.access_token, "unknown", "")
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    remove(&strong.access_token, &ids[1], "").await.unwrap();
    // The last factor: only with a recovery code, and the codes go with it.
    assert_eq!(
        remove(&strong.access_token, &ids[0], "")
            .await
            .unwrap_err()
            .code(),
        "invalid_code"
    );
    remove(&strong.access_token, &ids[0], &codes[0])
        .await
        .unwrap();
    let stored = h.stored_user("sasha").await;
    assert!(stored.passkeys.is_empty() && stored.recovery_code_hashes.is_empty());
    assert!(h.login("sasha", PASSWORD).await.unwrap().tokens.is_some());
}

#[tokio::test]
async fn without_a_relying_party_passkeys_are_refused() {
    let h = harness();
    let (_, tokens) = h.signup("tom").await;
    let e = h
        .auth
        .passkey_register_start(PasskeyRegisterStartRequest {
            access_token: tokens.access_token,
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mfa_conflict");
    assert_eq!(
        login_start(&h, "").await.unwrap_err().code(),
        "mfa_conflict"
    );
    // A relying party that does not fit its origin is a configuration error.
    let mut config = auth_core::Config::default();
    config.mfa.passkeys = Some(PasskeyConfig::new("example.com", "https://evil.test"));
    assert_eq!(config.validate().unwrap_err().code(), "invalid_config");
}

#[tokio::test]
async fn a_factor_started_before_another_was_added_cannot_be_finished_from_that_session() {
    let h = passkey_harness();
    // A password-only session of an account without factors (an attacker's, say).
    let (_, weak) = h.signup("wade").await;
    let started = h
        .auth
        .totp_enroll(TotpEnrollRequest {
            access_token: weak.access_token.clone(),
        })
        .await
        .unwrap();
    let mut key = authenticator();
    let c = register_start(&h, &weak.access_token, "early").await;
    let early = attest(&mut key, &c);
    // The owner adds a passkey (allowed: the account had no factor yet)...
    let mut owners = authenticator();
    let c2 = register_start(&h, &weak.access_token, "owner").await;
    let done = register_finish(
        &h,
        &weak.access_token,
        &c2.ceremony_id,
        attest(&mut owners, &c2),
    )
    .await
    .unwrap();
    assert_eq!(done.recovery_codes.len(), 10);
    // ...and then neither the stale TOTP enrolment nor the stale passkey ceremony can be
    // completed from the password-only session.
    let secret = auth_core::mfa::TotpSecret::from_base32(&started.secret).unwrap();
    let step = u64::try_from(h.now_ms() / 1000).unwrap() / 30;
    let e = h
        .auth
        .totp_confirm(TotpConfirmRequest {
            access_token: weak.access_token.clone(),
            code: secret.code_at_step(step),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mfa_conflict");
    let e = register_finish(&h, &weak.access_token, &c.ceremony_id, early)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "mfa_conflict");
    let stored = h.stored_user("wade").await;
    assert_eq!(stored.passkeys.len(), 1);
    assert!(!stored.totp_confirmed);

    // From a session opened with the passkey, TOTP can be added; the recovery codes the
    // owner holds stay valid (none are reissued).
    let step_up = h.login("wade", PASSWORD).await.unwrap();
    let lc = login_start(&h, &step_up.mfa_ticket).await.unwrap();
    let strong = login_finish(
        &h,
        &lc.ceremony_id,
        assert_with(&mut owners, &lc),
        &step_up.mfa_ticket,
    )
    .await
    .unwrap()
    .into_tokens()
    .unwrap();
    let again = h
        .auth
        .totp_enroll(TotpEnrollRequest {
            access_token: strong.access_token.clone(),
        })
        .await
        .unwrap();
    let secret = auth_core::mfa::TotpSecret::from_base32(&again.secret).unwrap();
    let step = u64::try_from(h.now_ms() / 1000).unwrap() / 30;
    let confirmed = h
        .auth
        .totp_confirm(TotpConfirmRequest {
            access_token: strong.access_token,
            code: secret.code_at_step(step),
            client: None,
        })
        .await
        .unwrap();
    assert!(confirmed.recovery_codes.is_empty());
    assert_eq!(h.stored_user("wade").await.recovery_code_hashes.len(), 10);
}

#[tokio::test]
async fn an_assertion_whose_counter_went_back_is_refused() {
    let h = passkey_harness();
    let (_, mut key, _) = with_passkey(&h, "xavi").await;
    // Two ceremonies, both answered (counters n+1 then n+2), finished in reverse order:
    // the older assertion comes after the newer one, as from a cloned key.
    let t1 = h.login("xavi", PASSWORD).await.unwrap().mfa_ticket;
    let t2 = h.login("xavi", PASSWORD).await.unwrap().mfa_ticket;
    let c1 = login_start(&h, &t1).await.unwrap();
    let c2 = login_start(&h, &t2).await.unwrap();
    let older = assert_with(&mut key, &c1);
    let newer = assert_with(&mut key, &c2);
    login_finish(&h, &c2.ceremony_id, newer, &t2).await.unwrap();
    let e = login_finish(&h, &c1.ceremony_id, older, &t1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
}
