//! Hostile and malformed input: every case gets a typed error with the right code,
//! never a panic and never success.

mod common;

use std::sync::Arc;

use auth_core::api::*;
use auth_core::{AuthApi, AuthError, KeyRing, SigningKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::json;

async fn register_err(h: &Harness, username: &str, password: &str) -> AuthError {
    h.auth
        .register(RegisterRequest {
            username: username.into(),
            password: password.into(),
            client: None,
        })
        .await
        .expect_err("register must fail")
}

// ---------------------------------------------------------------------------------------
// Usernames

#[tokio::test]
async fn bad_usernames_are_rejected_with_invalid_username() {
    let h = harness();
    let ten_kb = "a".repeat(10 * 1024);
    let ten_kb_unicode = "é".repeat(5 * 1024);
    let cases: Vec<(&str, &str)> = vec![
        ("empty", ""),
        ("10 KB", &ten_kb),
        ("10 KB of two-byte characters", &ten_kb_unicode),
        ("33 characters", "abcdefghijklmnopqrstuvwxyz0123456"),
        ("too short", "ab"),
        ("spaces only", "   "),
        ("whitespace only", " \t\n\r "),
        ("NUL", "bob\u{0}"),
        ("BEL", "bob\u{7}x"),
        ("escape sequence", "bob\u{1b}[31m"),
        ("newline", "bob\nsmith"),
        ("DEL", "bob\u{7f}"),
        ("zero-width space", "bob\u{200b}"),
        ("right-to-left override", "bob\u{202e}gpj"),
        ("inner space", "bob smith"),
        ("leading dot", ".bob"),
        ("email", "bob@example.com"),
        ("slash", "../../etc/passwd"),
    ];
    for (what, name) in cases {
        let e = register_err(&h, name, PASSWORD).await;
        assert_eq!(e.code(), "invalid_username", "{what}: {e}");
        assert!(matches!(e, AuthError::InvalidUsername(_)), "{what}");
        // Logging in with it is just bad credentials.
        assert_eq!(
            err_code(h.login(name, PASSWORD).await),
            "invalid_credentials",
            "{what}"
        );
    }
    assert_eq!(h.storage.user_count(), 0);
}

#[tokio::test]
async fn good_usernames_are_accepted() {
    let h = harness();
    for name in [
        "bob",
        "Bob.Smith_1-x",
        // Single-script non-Latin names (Greek Ω + Latin "mega" is refused as mixed).
        "Ωμέγα",
        "名前です",
        "a1b",
        &"z".repeat(32),
    ] {
        h.register(name, PASSWORD).await;
        h.login_ok(name, PASSWORD).await;
    }
}

#[tokio::test]
async fn usernames_are_unique_case_insensitively() {
    let h = harness();
    let alice = h.register("alice", PASSWORD).await;
    for dup in ["Alice", "ALICE", "aLiCe"] {
        let e = register_err(&h, dup, "another password").await;
        assert_eq!(e, AuthError::UserExists, "{dup}");
        assert_eq!(e.code(), "user_exists");
    }
    // Any case logs into the one account.
    let t = h.login_ok("ALICE", PASSWORD).await;
    assert_eq!(h.verify(&t.access_token).await.unwrap().user_id, alice.id);
    assert_eq!(h.storage.user_count(), 1);
}

#[tokio::test]
async fn usernames_are_unique_after_unicode_normalisation() {
    let h = harness();
    let composed = "Jos\u{e9}";
    let decomposed = "Jose\u{301}";
    let jose = h.register(composed, PASSWORD).await;
    assert_eq!(jose.username, composed);
    for dup in [decomposed, "JOSE\u{301}", "jos\u{e9}", "JOS\u{c9}"] {
        assert_eq!(
            register_err(&h, dup, PASSWORD).await.code(),
            "user_exists",
            "{dup:?}"
        );
    }
    let t = h.login_ok(decomposed, PASSWORD).await;
    let v = h.verify(&t.access_token).await.unwrap();
    assert_eq!(v.user_id, jose.id);
    assert_eq!(v.username, composed);

    // And the other way round: a decomposed registration is stored composed.
    let h = harness();
    let u = h.register("Rene\u{301}e", PASSWORD).await;
    assert_eq!(u.username, "Ren\u{e9}e");
    assert_eq!(
        register_err(&h, "ren\u{e9}e", PASSWORD).await.code(),
        "user_exists"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_name_create_one_account() {
    let h = harness();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let auth = h.auth.clone();
        let name = if i % 2 == 0 { "carol" } else { "CAROL" };
        tasks.push(tokio::spawn(async move {
            auth.register(RegisterRequest {
                username: name.into(),
                password: format!("password number {i}"),
                client: None,
            })
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "user_exists"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(h.storage.user_count(), 1);
}

// ---------------------------------------------------------------------------------------
// Passwords

#[tokio::test]
async fn passwords_outside_the_length_bounds_are_rejected_on_register() {
    let h = harness();
    let mib = "x".repeat(1 << 20);
    let over = "y".repeat(1025);
    for (what, pw) in [
        ("0 bytes", ""),
        ("7 bytes", "1234567"),
        ("1025 bytes", over.as_str()),
        ("1 MiB", mib.as_str()),
    ] {
        let e = register_err(&h, "alice", pw).await;
        assert_eq!(e.code(), "invalid_password", "{what}");
        assert!(matches!(e, AuthError::InvalidPassword(_)), "{what}");
    }
    assert_eq!(h.storage.user_count(), 0);
    // The bounds themselves are fine; length is in bytes.
    h.register("eight", "12345678").await;
    h.register("max", &"z".repeat(1024)).await;
    // 7 bytes, 4 characters.
    assert_eq!(
        register_err(&h, "multibyte", "ééé!").await.code(),
        "invalid_password"
    );
    h.login_ok("max", &"z".repeat(1024)).await;
}

#[tokio::test]
async fn huge_passwords_are_bad_credentials_on_login() {
    let h = harness();
    h.register("alice", PASSWORD).await;
    let mib = "x".repeat(1 << 20);
    // Even one whose first bytes are the right password.
    let padded = format!("{PASSWORD}{}", "x".repeat(1 << 20));
    for pw in [&mib, &padded] {
        assert_eq!(err_code(h.login("alice", pw).await), "invalid_credentials");
        assert_eq!(err_code(h.login("nobody", pw).await), "invalid_credentials");
    }
    let t = h.login_ok("alice", PASSWORD).await;
    // Also when re-authenticating for account operations.
    let e = h
        .auth
        .delete_user(DeleteUserRequest {
            access_token: t.access_token.clone(),
            password: mib.clone(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
    let e = h
        .auth
        .change_password(ChangePasswordRequest {
            access_token: t.access_token.clone(),
            current_password: mib.clone(),
            new_password: "a brand new password".into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
    let e = h
        .auth
        .change_password(ChangePasswordRequest {
            access_token: t.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: mib.clone(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_password");
    h.login_ok("alice", PASSWORD).await;
}

// ---------------------------------------------------------------------------------------
// Access tokens

#[tokio::test]
async fn malformed_access_tokens_are_invalid() {
    let h = harness();
    let (_, t) = h.signup("alice").await;
    let random_b64 = URL_SAFE_NO_PAD.encode([0x9f_u8; 48]);
    let (head, rest) = t.access_token.split_once('.').unwrap();
    let cases = vec![
        String::new(),
        "abc".into(),
        "a.b.c".into(),
        "..".into(),
        "...".into(),
        random_b64.clone(),
        format!("{random_b64}.{random_b64}.{random_b64}"),
        format!("{head}.{rest}.extra"),
        format!("{head}..{}", t.access_token.rsplit_once('.').unwrap().1),
        format!("{}.", t.access_token.rsplit_once('.').unwrap().0),
        format!(" {}", t.access_token),
        format!("{} ", t.access_token),
        format!("Bearer {}", t.access_token),
        t.refresh_token.clone(),
        format!("{}{}", t.access_token, "A".repeat(9000)),
        "\u{0}".repeat(100),
        "é.é.é".into(),
    ];
    for token in cases {
        let e = h.verify(&token).await.unwrap_err();
        assert_eq!(e.code(), "invalid_token", "{token:?}");
        assert_eq!(
            h.auth.verify_token(&token).await.unwrap_err().code(),
            "invalid_token"
        );
    }
    // Control: the genuine token verifies.
    h.verify(&t.access_token).await.unwrap();
}

/// Flips `mask` into byte `pos` of `token`.
fn flip(token: &str, pos: usize, mask: u8) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[pos] ^= mask;
    String::from_utf8_lossy(&bytes).into_owned()
}

fn flips_are_rejected(keys: Option<KeyRing>, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = harness_with(|c| c.keys = keys);
    let (_, t) = rt.block_on(h.signup("alice"));
    let token = t.access_token.clone();
    rt.block_on(h.verify(&token))
        .expect("genuine token verifies");

    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&(0..token.len(), 1u8..=255), |(pos, mask)| {
            let tampered = flip(&token, pos, mask);
            prop_assert_ne!(&tampered, &token);
            let r = rt.block_on(h.verify(&tampered));
            prop_assert!(r.is_err(), "flip {mask:#04x} at {pos} verified");
            let code = r.unwrap_err().code();
            prop_assert!(code == "invalid_token", "flip {mask:#04x} at {pos}: {code}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_flipped_byte_of_an_hs256_token_is_rejected() {
    flips_are_rejected(None, 1024);
}

#[test]
fn any_flipped_byte_of_an_eddsa_token_is_rejected() {
    flips_are_rejected(Some(KeyRing::new(SigningKey::generate_ed25519())), 256);
}

#[tokio::test]
async fn every_bit_of_every_byte_matters() {
    let h = harness();
    let (_, t) = h.signup("alice").await;
    for pos in 0..t.access_token.len() {
        for bit in 0..8 {
            let tampered = flip(&t.access_token, pos, 1 << bit);
            assert_eq!(
                err_code(h.verify(&tampered).await),
                "invalid_token",
                "bit {bit} of byte {pos}"
            );
        }
    }
    h.verify(&t.access_token).await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_are_never_valid_tokens(
        s in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,60}(\\.[A-Za-z0-9_-]{0,60}){0,4}",
            "eyJ[A-Za-z0-9_-]{0,80}\\.eyJ[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,86}",
            "[0-9a-f]{32}\\.[A-Za-z0-9_-]{43}",
        ]
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let h = harness();
        let (v, r) = rt.block_on(async { (h.verify(&s).await, h.refresh(&s).await) });
        prop_assert_eq!(v.map(drop), Err(AuthError::InvalidToken));
        prop_assert_eq!(r.map(drop), Err(AuthError::InvalidToken));
    }
}

/// A user signed in with the fixed key ring; returns the harness, the token and its
/// decoded header and payload.
async fn fixed_key_session() -> (Harness, TokenPair, serde_json::Value, serde_json::Value) {
    let h = harness_with(|c| c.keys = Some(fixed_keys()));
    let (_, t) = h.signup("alice").await;
    let (header, payload) = jwt_json(&t.access_token);
    (h, t, header, payload)
}

#[tokio::test]
async fn crafted_tokens_with_the_right_key_verify() {
    // Control for the forgeries below: the crafting itself is sound.
    let (h, _, header, payload) = fixed_key_session().await;
    let token = craft_jwt(&header, &payload, Some(&[0x5a; 32]));
    h.verify(&token).await.expect("well-formed token verifies");
}

#[tokio::test]
async fn tokens_signed_with_another_secret_under_the_same_kid_are_invalid() {
    let (h, _, header, payload) = fixed_key_session().await;
    let forged = craft_jwt(&header, &payload, Some(&[0xa5; 32]));
    assert_eq!(err_code(h.verify(&forged).await), "invalid_token");

    // Also when issued by a real Auth over the same storage.
    let impostor = h.sibling(|c| {
        c.keys = Some(KeyRing::new(
            SigningKey::hs256("test-key-1", &[0xa5; 32]).unwrap(),
        ))
    });
    let t = login_ok(&impostor, "alice", PASSWORD).await;
    assert_eq!(jwt_json(&t.access_token).0["kid"], "test-key-1");
    assert_eq!(err_code(h.verify(&t.access_token).await), "invalid_token");
}

#[tokio::test]
async fn unsigned_tokens_are_invalid() {
    let (h, t, header, payload) = fixed_key_session().await;
    let kid = header["kid"].clone();
    let real_sig = t.access_token.rsplit_once('.').unwrap().1.to_owned();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let h_none = json!({ "alg": alg, "typ": "JWT", "kid": kid });
        let unsigned = craft_jwt(&h_none, &payload, None);
        assert!(unsigned.ends_with('.'));
        assert_eq!(
            err_code(h.verify(&unsigned).await),
            "invalid_token",
            "{alg}"
        );
        // With the genuine signature appended, still no.
        let resigned = format!("{unsigned}{real_sig}");
        assert_eq!(
            err_code(h.verify(&resigned).await),
            "invalid_token",
            "{alg}"
        );
    }
    // No alg at all.
    let no_alg = craft_jwt(&json!({ "typ": "JWT", "kid": kid }), &payload, None);
    assert_eq!(err_code(h.verify(&no_alg).await), "invalid_token");
}

#[tokio::test]
async fn tokens_without_a_known_kid_or_with_another_alg_are_invalid() {
    let (h, _, _, payload) = fixed_key_session().await;
    let secret = [0x5a_u8; 32];
    for header in [
        json!({ "alg": "HS256", "typ": "JWT" }),
        json!({ "alg": "HS256", "typ": "JWT", "kid": "unknown" }),
        json!({ "alg": "HS256", "typ": "JWT", "kid": "" }),
        json!({ "alg": "HS256", "typ": "JWT", "kid": 1 }),
        json!({ "alg": "HS384", "typ": "JWT", "kid": "test-key-1" }),
        json!({ "alg": "HS512", "typ": "JWT", "kid": "test-key-1" }),
        json!({ "alg": "EdDSA", "typ": "JWT", "kid": "test-key-1" }),
        json!({ "alg": "RS256", "typ": "JWT", "kid": "test-key-1" }),
    ] {
        let token = craft_jwt(&header, &payload, Some(&secret));
        assert_eq!(
            err_code(h.verify(&token).await),
            "invalid_token",
            "{header}"
        );
    }
}

#[tokio::test]
async fn tokens_with_missing_or_wrong_claims_are_invalid_even_if_signed() {
    let (h, _, header, payload) = fixed_key_session().await;
    let secret = [0x5a_u8; 32];
    let mut cases = Vec::new();
    for claim in ["exp", "nbf", "iss", "aud", "sub", "sid", "iat", "jti"] {
        let mut p = payload.clone();
        p.as_object_mut().unwrap().remove(claim);
        cases.push((format!("without {claim}"), p));
    }
    for (claim, value) in [
        ("exp", json!("tomorrow")),
        ("aud", json!("someone-else")),
        ("aud", json!(["someone-else"])),
        ("iss", json!("someone-else")),
        ("nbf", json!(i64::MAX)),
        ("iat", json!(T0_MS / 1000 + 3600)),
    ] {
        let mut p = payload.clone();
        p[claim] = value.clone();
        cases.push((format!("{claim} = {value}"), p));
    }
    for (what, p) in cases {
        let token = craft_jwt(&header, &p, Some(&secret));
        assert_eq!(err_code(h.verify(&token).await), "invalid_token", "{what}");
    }
    // Expiry far in the past is an expired token.
    let mut p = payload.clone();
    p["exp"] = json!(0);
    let token = craft_jwt(&header, &p, Some(&secret));
    assert_eq!(err_code(h.verify(&token).await), "token_expired");
}

#[tokio::test]
async fn hs256_signed_with_the_eddsa_public_key_is_invalid() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let der = dalek.to_pkcs8_der().unwrap();
    let key = SigningKey::ed25519_pkcs8_der("ed-1", der.as_bytes()).unwrap();
    let h = harness_with(|c| c.keys = Some(KeyRing::new(key)));
    let (_, t) = h.signup("alice").await;
    let (header, payload) = jwt_json(&t.access_token);
    assert_eq!(header["alg"], "EdDSA");
    h.verify(&t.access_token).await.unwrap();

    let public = dalek.verifying_key();
    let spki_der = public.to_public_key_der().unwrap();
    let spki_pem = public
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let confused = json!({ "alg": "HS256", "typ": "JWT", "kid": "ed-1" });
    for secret in [
        public.as_bytes().as_slice(),
        spki_der.as_bytes(),
        spki_pem.as_bytes(),
    ] {
        let forged = craft_jwt(&confused, &payload, Some(secret));
        assert_eq!(err_code(h.verify(&forged).await), "invalid_token");
    }
}

// ---------------------------------------------------------------------------------------
// Refresh tokens

#[tokio::test]
async fn garbage_refresh_tokens_are_invalid() {
    let h = harness();
    let (_, t) = h.signup("alice").await;
    let (sid, secret) = t.refresh_token.split_once('.').unwrap();
    let cases = vec![
        String::new(),
        ".".into(),
        "garbage".into(),
        "a.b".into(),
        t.access_token.clone(),
        format!("{sid}."),
        format!("{sid}.{}", &secret[..42]),
        format!("{sid}.{secret}A"),
        format!("{}.{secret}", sid.to_uppercase()),
        format!("{}.{secret}", &sid[..31]),
        format!("{sid}.{}!", &secret[..42]),
        format!("{sid}.{secret}.{secret}"),
        format!(" {}", t.refresh_token),
        // Well-formed, but for no session.
        format!("0123456789abcdef0123456789abcdef.{secret}"),
        // The right session, a guessed secret.
        format!("{sid}.{}", "A".repeat(43)),
        format!("{sid}.{}", URL_SAFE_NO_PAD.encode([0xff_u8; 32])),
    ];
    for token in cases {
        let e = h.refresh(&token).await.unwrap_err();
        assert_eq!(e.code(), "invalid_token", "{token:?}");
    }
    // Guesses did not revoke or rotate the session.
    h.verify(&t.access_token).await.unwrap();
    h.refresh(&t.refresh_token).await.unwrap();
}

#[tokio::test]
async fn a_refresh_token_used_twice_after_grace_is_reuse() {
    let h = harness();
    let (_, t) = h.signup("alice").await;
    let next = h.refresh(&t.refresh_token).await.unwrap();
    h.advance(std::time::Duration::from_secs(10) + std::time::Duration::from_millis(1));
    assert_eq!(
        err_code(h.refresh(&t.refresh_token).await),
        "refresh_token_reused"
    );
    assert_eq!(
        err_code(h.verify(&next.access_token).await),
        "session_ended"
    );
    // Presented again after that, the session is simply gone.
    assert_eq!(err_code(h.refresh(&t.refresh_token).await), "invalid_token");
    assert_eq!(
        err_code(h.refresh(&next.refresh_token).await),
        "invalid_token"
    );
    assert_eq!(h.storage.session_count(), 0);
}

#[tokio::test]
async fn an_unrotated_refresh_token_presented_late_still_works_within_the_idle_ttl() {
    let h = harness();
    let (_, t) = h.signup("alice").await;
    // Long after any grace window, but within the idle lifetime: a normal rotation.
    h.advance(std::time::Duration::from_secs(29 * 86_400));
    let next = h.refresh(&t.refresh_token).await.unwrap();
    h.verify(&next.access_token).await.unwrap();
    // And presenting the now-rotated token after the grace window is reuse.
    h.advance(std::time::Duration::from_secs(11));
    assert_eq!(
        err_code(h.refresh(&t.refresh_token).await),
        "refresh_token_reused"
    );
}

#[tokio::test]
async fn refresh_tokens_of_another_session_do_not_cross() {
    let h = harness();
    let (_, a) = h.signup("alice").await;
    let (_, b) = h.signup("bob").await;
    let (_, a_secret) = a.refresh_token.split_once('.').unwrap();
    let mixed = format!("{}.{a_secret}", b.session_id);
    assert_eq!(err_code(h.refresh(&mixed).await), "invalid_token");
    h.refresh(&a.refresh_token).await.unwrap();
    h.refresh(&b.refresh_token).await.unwrap();
}

#[tokio::test]
async fn account_calls_with_bad_tokens_are_typed_errors() {
    let h = harness();
    let (_, t) = h.signup("alice").await;
    let bad = "not-a-token".to_owned();
    let a = Arc::new(h.auth.clone());
    let results = vec![
        a.logout_all(LogoutAllRequest {
            access_token: bad.clone(),
            client: None,
        })
        .await
        .map(drop),
        a.list_sessions(ListSessionsRequest {
            access_token: bad.clone(),
        })
        .await
        .map(drop),
        a.revoke_session(RevokeSessionRequest {
            access_token: bad.clone(),
            session_id: t.session_id.clone(),
            client: None,
        })
        .await
        .map(drop),
        a.change_password(ChangePasswordRequest {
            access_token: bad.clone(),
            current_password: PASSWORD.into(),
            new_password: "a brand new password".into(),
            client: None,
        })
        .await
        .map(drop),
        a.delete_user(DeleteUserRequest {
            access_token: bad.clone(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .map(drop),
        a.delete_user(DeleteUserRequest {
            access_token: String::new(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .map(drop),
    ];
    for r in results {
        assert_eq!(r, Err(AuthError::InvalidToken));
    }
    h.verify(&t.access_token).await.unwrap();
    assert_eq!(h.storage.user_count(), 1);
}
