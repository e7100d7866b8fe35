//! Debug and Display output never contains a password, a token or key material.

mod common;

use auth_core::api::*;
use auth_core::{AuthApi, AuthError, Config, KeyRing, SigningKey, Storage};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;

const HS_SECRET: &[u8] = b"super-secret-signing-key-material-0123";
const ED_SEED: [u8; 32] = [0xC3; 32];
const SECRET_PASSWORD: &str = "hunter2-but-much-longer";

/// Every textual form of some secret bytes that a careless `Debug` could print.
fn forms(bytes: &[u8]) -> Vec<String> {
    let mut out = vec![
        STANDARD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.iter().map(|b| format!("{b:02X}")).collect(),
        format!("{:?}", &bytes[..8])
            .trim_end_matches(']')
            .to_owned(),
    ];
    if let Ok(s) = std::str::from_utf8(bytes) {
        out.push(s.to_owned());
    }
    out
}

fn assert_hides(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s.as_str()), "{s:?} leaked in {text}");
    }
}

/// The secret forms of a token pair: both tokens and the refresh secret.
fn token_secrets(t: &TokenPair) -> Vec<String> {
    let (_, refresh_secret) = t.refresh_token.split_once('.').unwrap();
    let (_, signature) = t.access_token.rsplit_once('.').unwrap();
    vec![
        t.access_token.clone(),
        signature.to_owned(),
        t.refresh_token.clone(),
        refresh_secret.to_owned(),
    ]
}

#[test]
fn key_material_is_not_in_debug_output() {
    let hs = SigningKey::hs256("hs-key", HS_SECRET).unwrap();
    let ed_der = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        ed25519_dalek::SigningKey::from_bytes(&ED_SEED)
            .to_pkcs8_der()
            .unwrap()
    };
    let ed = SigningKey::ed25519_pkcs8_der("ed-key", ed_der.as_bytes()).unwrap();
    let ring = KeyRing::new(ed.clone()).with_previous(hs.clone()).unwrap();
    let mut config = Config::default();
    config.keys = Some(ring.clone());
    let auth =
        auth_core::Auth::new(config.clone(), auth_storage::memory::MemoryStorage::new()).unwrap();
    let mut secrets = forms(HS_SECRET);
    secrets.extend(forms(&ED_SEED));
    secrets.extend(forms(ed_der.as_bytes()));
    for text in [
        format!("{hs:?}"),
        format!("{ed:?}"),
        format!("{ring:?}"),
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{auth:?}"),
        format!("{auth:#?}"),
    ] {
        assert_hides(&text, &secrets);
    }
    // The key ids are shown, so the output is useful (and the check above is real).
    let text = format!("{auth:?}");
    assert!(text.contains("hs-key") && text.contains("ed-key"), "{text}");
}

#[test]
fn key_loading_errors_do_not_echo_the_key() {
    let short = b"short-secret-value";
    let e = SigningKey::hs256("k", short).unwrap_err();
    assert_hides(&e.to_string(), &forms(short));
    assert_hides(&format!("{e:?}"), &forms(short));

    let bad_b64 = "my-secret-but-not-base64!!";
    let e = SigningKey::hs256_base64("k", bad_b64).unwrap_err();
    assert_hides(&e.to_string(), &[bad_b64.to_owned()]);

    let pem = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYBODY\n-----END PRIVATE KEY-----\n";
    let e = SigningKey::ed25519_pem("k", pem).unwrap_err();
    assert_hides(&e.to_string(), &["TOPSECRETKEYBODY".to_owned()]);
    let e = SigningKey::ed25519_pkcs8_der("k", b"TOPSECRETKEYBODY").unwrap_err();
    assert_hides(&format!("{e} {e:?}"), &["TOPSECRETKEYBODY".to_owned()]);
}

#[tokio::test]
async fn requests_and_responses_do_not_print_secrets() {
    let h = harness();
    h.register("alice", SECRET_PASSWORD).await;
    let login_req = LoginRequest {
        username: "alice".into(),
        password: SECRET_PASSWORD.into(),
        client: Some(ClientInfo {
            user_agent: "UA".into(),
            ip: "192.0.2.1".into(),
        }),
    };
    let req_text = format!("{login_req:?} {login_req:#?}");
    assert_hides(&req_text, &[SECRET_PASSWORD.to_owned()]);
    assert!(req_text.contains("alice"), "{req_text}");

    let login = h.auth.login(login_req).await.unwrap();
    let tokens = login.tokens.clone().unwrap();
    let refreshed = h
        .auth
        .refresh(RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
            client: None,
        })
        .await
        .unwrap();
    let pair = refreshed.tokens.clone().unwrap();
    let mut secrets = token_secrets(&tokens);
    secrets.extend(token_secrets(&pair));
    secrets.push(SECRET_PASSWORD.to_owned());
    let stored_user = h.stored_user("alice").await;
    let stored_session = h.stored_session(&tokens.session_id).await.unwrap();
    secrets.push(stored_user.password_hash.clone());
    for text in [
        format!("{tokens:?}"),
        format!("{pair:#?}"),
        format!("{login:?}"),
        format!("{refreshed:?}"),
        format!(
            "{:?}",
            RefreshRequest {
                refresh_token: pair.refresh_token.clone(),
                client: None,
            }
        ),
        format!(
            "{:?}",
            VerifyRequest {
                access_token: pair.access_token.clone()
            }
        ),
        format!(
            "{:?}",
            ChangePasswordRequest {
                access_token: pair.access_token.clone(),
                current_password: SECRET_PASSWORD.into(),
                new_password: SECRET_PASSWORD.into(),
                client: None,
            }
        ),
        format!(
            "{:?}",
            RegisterRequest {
                username: "x".into(),
                password: SECRET_PASSWORD.into(),
                client: None,
            }
        ),
        format!("{stored_user:?}"),
        format!("{stored_session:?}"),
        format!("{:?}", h.auth),
    ] {
        assert_hides(&text, &secrets);
    }
    assert!(format!("{tokens:?}").contains(&tokens.session_id));
}

#[tokio::test]
async fn error_messages_do_not_echo_secrets() {
    let h = harness();
    h.register("alice", SECRET_PASSWORD).await;
    let tokens = h.login_ok("alice", SECRET_PASSWORD).await;
    let wrong_pw = "wrong-secret-password";
    let mut secrets = token_secrets(&tokens);
    secrets.extend([SECRET_PASSWORD.to_owned(), wrong_pw.to_owned()]);
    let forged_refresh = format!("{}.{}", tokens.session_id, "Q".repeat(43));
    secrets.push(forged_refresh.clone());
    secrets.push("Q".repeat(43));

    let mut errors: Vec<AuthError> = Vec::new();
    errors.push(h.login("alice", wrong_pw).await.unwrap_err());
    errors.push(h.login("nobody", SECRET_PASSWORD).await.unwrap_err());
    errors.push(
        h.auth
            .register(RegisterRequest {
                username: "bob".into(),
                password: "x".repeat(2000) + SECRET_PASSWORD,
                client: None,
            })
            .await
            .unwrap_err(),
    );
    errors.push(h.refresh(&forged_refresh).await.unwrap_err());
    errors.push(h.refresh(&tokens.access_token).await.unwrap_err());
    errors.push(h.verify(&tokens.refresh_token).await.unwrap_err());
    let mut tampered = tokens.access_token.clone();
    tampered.push('x');
    errors.push(h.verify(&tampered).await.unwrap_err());
    errors.push(
        h.auth
            .change_password(ChangePasswordRequest {
                access_token: tokens.access_token.clone(),
                current_password: wrong_pw.into(),
                new_password: SECRET_PASSWORD.into(),
                client: None,
            })
            .await
            .unwrap_err(),
    );
    // Rotate, then reuse the old refresh token.
    let next = h.refresh(&tokens.refresh_token).await.unwrap();
    secrets.extend(token_secrets(&next));
    h.advance(std::time::Duration::from_secs(60));
    errors.push(h.refresh(&tokens.refresh_token).await.unwrap_err());
    errors.push(h.verify(&next.access_token).await.unwrap_err());

    // A corrupt stored hash (say, a legacy plaintext password) is an internal error
    // that does not print the record.
    let mut user = h.stored_user("alice").await;
    user.password_hash = SECRET_PASSWORD.into();
    h.storage.update_user(user).await.unwrap();
    let e = h.login("alice", SECRET_PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), "internal");
    errors.push(e);

    // Locked.
    let locked = harness_with(|c| c.lockout.max_failures = 1);
    locked.register("carol", SECRET_PASSWORD).await;
    let _ = locked.login("carol", wrong_pw).await;
    errors.push(locked.login("carol", SECRET_PASSWORD).await.unwrap_err());

    let codes: Vec<&str> = errors.iter().map(AuthError::code).collect();
    for code in [
        "invalid_credentials",
        "invalid_password",
        "invalid_token",
        "refresh_token_reused",
        "session_ended",
        "internal",
        "locked",
    ] {
        assert!(codes.contains(&code), "{code} not exercised: {codes:?}");
    }
    for e in &errors {
        assert_hides(&e.to_string(), &secrets);
        assert_hides(&format!("{e:?}"), &secrets);
    }
}

#[test]
fn every_error_code_has_a_message_without_secrets() {
    let all = [
        AuthError::InvalidUsername("too long".into()),
        AuthError::InvalidPassword("too short".into()),
        AuthError::UserExists,
        AuthError::InvalidCredentials,
        AuthError::Locked {
            retry_after: std::time::Duration::from_secs(30),
        },
        AuthError::InvalidToken,
        AuthError::TokenExpired,
        AuthError::SessionEnded,
        AuthError::RefreshTokenReused,
        AuthError::InvalidCode,
        AuthError::InvalidMfaTicket,
        AuthError::MfaConflict("no second factor is enrolled".into()),
        AuthError::CeremonyExpired,
        AuthError::PermissionDenied("the admin role is required".into()),
        AuthError::AccountDisabled,
        AuthError::NotFound,
        AuthError::InvalidArgument("session_id is required".into()),
        AuthError::InvalidConfig("bad".into()),
        AuthError::Stopped,
        AuthError::Unavailable("later".into()),
        AuthError::Overloaded {
            retry_after: std::time::Duration::from_secs(1),
        },
        AuthError::RateLimited {
            retry_after: std::time::Duration::from_secs(2),
        },
        AuthError::Internal("bug".into()),
    ];
    let codes: Vec<&str> = all.iter().map(AuthError::code).collect();
    assert_eq!(codes, AuthError::CODES);
    for e in &all {
        let text = e.to_string();
        assert!(!text.is_empty());
        assert_hides(&text, &[SECRET_PASSWORD.to_owned()]);
    }
    assert_eq!(
        all[4].to_string(),
        "account temporarily locked; retry in 30s"
    );
}
