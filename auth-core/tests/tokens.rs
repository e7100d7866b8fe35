//! Access tokens: format and claims, EdDSA, key rotation, time and audience checks.

mod common;

use std::time::Duration;

use auth_core::api::VerifyResponse;
use auth_core::{AuthApi, Clock, KeyRing, ManualClock, SigningKey};
use common::*;
use std::sync::Arc;

fn is_hex_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn header_names_the_key_and_hs256_by_default() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    let (header, _) = jwt_json(&tokens.access_token);
    assert_eq!(header["alg"], "HS256", "{header}");
    let kid = header["kid"].as_str().expect("kid");
    assert!(!kid.is_empty());
    // Tokens of one Auth share its key id.
    let again = h.login_ok("alice", PASSWORD).await;
    assert_eq!(jwt_json(&again.access_token).0["kid"], kid);
}

#[tokio::test]
async fn configured_key_id_is_used() {
    let h = harness_with(|c| c.keys = Some(fixed_keys()));
    let (_, tokens) = h.signup("alice").await;
    let (header, _) = jwt_json(&tokens.access_token);
    assert_eq!(header["kid"], "test-key-1");
    assert_eq!(header["alg"], "HS256");
}

#[tokio::test]
async fn claims_carry_issuer_audience_subject_session_and_times() {
    let h = harness();
    let (user, tokens) = h.signup("Alice").await;
    let (_, claims) = jwt_json(&tokens.access_token);
    let iat = T0_MS / 1000;
    assert_eq!(claims["iss"], "auth-sdk", "{claims}");
    assert_eq!(claims["aud"], "auth-sdk");
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["sid"], tokens.session_id.as_str());
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["iat"], iat);
    assert_eq!(claims["nbf"], iat);
    assert_eq!(claims["exp"], iat + 900);
    let jti = claims["jti"].as_str().expect("jti");
    assert!(is_hex_id(jti), "{jti}");
    assert_eq!(tokens.access_expires_at_ms, (iat + 900) * 1000);

    // Every token gets its own id.
    let other = h.login_ok("alice", PASSWORD).await;
    let (_, other_claims) = jwt_json(&other.access_token);
    assert_ne!(other_claims["jti"], claims["jti"]);
    assert_ne!(other_claims["sid"], claims["sid"]);

    // verify reports the same.
    let v = h.verify(&tokens.access_token).await.unwrap();
    assert_eq!(
        v,
        VerifyResponse {
            user_id: user.id.clone(),
            username: "Alice".into(),
            session_id: tokens.session_id.clone(),
            issued_at_ms: iat * 1000,
            expires_at_ms: (iat + 900) * 1000,
            token_id: jti.to_owned(),
            amr: vec!["pwd".into()],
            acr: "aal1".into(),
            roles: vec![],
        }
    );
    let claims = h.auth.verify_token(&tokens.access_token).await.unwrap();
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.jti, jti);
}

#[tokio::test]
async fn configured_issuer_audience_and_ttl_are_used() {
    let h = harness_with(|c| {
        c.issuer = "https://issuer.example".into();
        c.audience = "api.example".into();
        c.access_token_ttl = Duration::from_secs(60);
    });
    let (_, tokens) = h.signup("alice").await;
    let (_, claims) = jwt_json(&tokens.access_token);
    assert_eq!(claims["iss"], "https://issuer.example");
    assert_eq!(claims["aud"], "api.example");
    assert_eq!(claims["exp"], T0_MS / 1000 + 60);
    h.verify(&tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn eddsa_key_ring_issues_eddsa_tokens_that_verify() {
    let key = SigningKey::generate_ed25519();
    let kid = key.kid().to_owned();
    let h = harness_with(|c| c.keys = Some(KeyRing::new(key)));
    let (user, tokens) = h.signup("alice").await;
    let (header, _) = jwt_json(&tokens.access_token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], kid.as_str());
    let v = h.verify(&tokens.access_token).await.unwrap();
    assert_eq!(v.user_id, user.id);
    // A refreshed token is EdDSA too and verifies.
    let next = h.refresh(&tokens.refresh_token).await.unwrap();
    assert_eq!(jwt_json(&next.access_token).0["alg"], "EdDSA");
    h.verify(&next.access_token).await.unwrap();
}

#[tokio::test]
async fn eddsa_key_from_pkcs8_works() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let der = dalek.to_pkcs8_der().unwrap();
    let key = SigningKey::ed25519_pkcs8_der("ed-1", der.as_bytes()).unwrap();
    let h = harness_with(|c| c.keys = Some(KeyRing::new(key)));
    let (_, tokens) = h.signup("alice").await;
    // The signature checks out with the public key, independently of auth-core.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["auth-sdk"]);
    validation.validate_exp = false;
    let decoding = jsonwebtoken::DecodingKey::from_ed_der(dalek.verifying_key().as_bytes());
    jsonwebtoken::decode::<serde_json::Value>(&tokens.access_token, &decoding, &validation)
        .expect("EdDSA signature verifies with the public key");
    h.verify(&tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn rotated_keys_keep_verifying_and_dropped_keys_do_not() {
    let old_key = SigningKey::hs256("2024-01", &[0x11; 32]).unwrap();
    let new_key = SigningKey::generate_ed25519();
    let h = harness_with(|c| c.keys = Some(KeyRing::new(old_key.clone())));
    let (user, old_tokens) = h.signup("alice").await;

    // Rotation: a new Auth (same storage) signs with the new key, still accepts the old.
    let rotated = h.sibling(|c| {
        c.keys = Some(
            KeyRing::new(new_key.clone())
                .with_previous(old_key.clone())
                .unwrap(),
        )
    });
    let v = verify(&rotated, &old_tokens.access_token).await.unwrap();
    assert_eq!(v.user_id, user.id);
    let new_tokens = login_ok(&rotated, "alice", PASSWORD).await;
    assert_eq!(jwt_json(&new_tokens.access_token).0["kid"], new_key.kid());
    verify(&rotated, &new_tokens.access_token).await.unwrap();
    // The pre-rotation Auth does not know the new key.
    assert_eq!(
        err_code(h.verify(&new_tokens.access_token).await),
        "invalid_token"
    );

    // Once the old key is dropped from the ring, its tokens fail.
    let dropped = h.sibling(|c| c.keys = Some(KeyRing::new(new_key.clone())));
    assert_eq!(
        err_code(verify(&dropped, &old_tokens.access_token).await),
        "invalid_token"
    );
    verify(&dropped, &new_tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn expired_tokens_fail_after_ttl_plus_skew() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    // ttl 900 s, skew 30 s: still good at 929 s.
    h.advance(Duration::from_secs(929));
    h.verify(&tokens.access_token).await.unwrap();
    h.advance(Duration::from_secs(2));
    let e = h.verify(&tokens.access_token).await.unwrap_err();
    assert_eq!(e.code(), "token_expired");
    assert_eq!(e.to_string(), "token expired");
    assert_eq!(
        err_code(h.auth.verify_token(&tokens.access_token).await),
        "token_expired"
    );
    // The session is still live: refreshing gives a token that verifies.
    let next = h.refresh(&tokens.refresh_token).await.unwrap();
    h.verify(&next.access_token).await.unwrap();
}

#[tokio::test]
async fn clock_skew_is_configurable() {
    let h = harness_with(|c| c.clock_skew = Duration::ZERO);
    let (_, tokens) = h.signup("alice").await;
    h.advance(Duration::from_secs(899));
    h.verify(&tokens.access_token).await.unwrap();
    h.advance(Duration::from_secs(1));
    assert_eq!(
        err_code(h.verify(&tokens.access_token).await),
        "token_expired"
    );
}

#[tokio::test]
async fn tokens_from_the_future_are_invalid() {
    let h = harness_with(|c| c.keys = Some(fixed_keys()));
    h.register("alice", PASSWORD).await;
    // An issuer whose clock runs an hour ahead, with the same keys and storage.
    let ahead_clock = Arc::new(ManualClock::new(T0_MS + 3_600_000));
    let ahead = auth_core::Auth::new(
        {
            let mut config = base_config(&ahead_clock);
            config.keys = Some(fixed_keys());
            config
        },
        Arc::clone(&h.storage),
    )
    .unwrap();
    assert_eq!(ahead_clock.now_ms(), T0_MS + 3_600_000);
    let tokens = login_ok(&ahead, "alice", PASSWORD).await;
    verify(&ahead, &tokens.access_token).await.unwrap();
    assert_eq!(
        err_code(h.verify(&tokens.access_token).await),
        "invalid_token"
    );
    // Within the skew it is accepted.
    let slightly_ahead = auth_core::Auth::new(
        {
            let mut config = base_config(&Arc::new(ManualClock::new(T0_MS + 20_000)));
            config.keys = Some(fixed_keys());
            config
        },
        Arc::clone(&h.storage),
    )
    .unwrap();
    let tokens = login_ok(&slightly_ahead, "alice", PASSWORD).await;
    h.verify(&tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn tokens_for_another_audience_or_issuer_are_invalid() {
    let h = harness_with(|c| c.keys = Some(fixed_keys()));
    h.register("alice", PASSWORD).await;
    let other_aud = h.sibling(|c| {
        c.keys = Some(fixed_keys());
        c.audience = "another-service".into();
    });
    let other_iss = h.sibling(|c| {
        c.keys = Some(fixed_keys());
        c.issuer = "another-issuer".into();
    });
    let same = h.sibling(|c| c.keys = Some(fixed_keys()));
    for (name, issuer) in [("audience", &other_aud), ("issuer", &other_iss)] {
        let tokens = login_ok(issuer, "alice", PASSWORD).await;
        verify(issuer, &tokens.access_token).await.unwrap();
        assert_eq!(
            err_code(h.verify(&tokens.access_token).await),
            "invalid_token",
            "wrong {name}"
        );
    }
    // Control: the same configuration accepts each other's tokens.
    let tokens = login_ok(&same, "alice", PASSWORD).await;
    h.verify(&tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn verify_token_and_verify_agree() {
    let h = harness();
    let (_, tokens) = h.signup("alice").await;
    let claims = h.auth.verify_token(&tokens.access_token).await.unwrap();
    let resp = h.verify(&tokens.access_token).await.unwrap();
    assert_eq!(claims.sub, resp.user_id);
    assert_eq!(claims.sid, resp.session_id);
    assert_eq!(claims.name, resp.username);
    h.auth
        .logout(auth_core::api::LogoutRequest {
            access_token: tokens.access_token.clone(),
            refresh_token: String::new(),
            client: None,
        })
        .await
        .unwrap();
    assert_eq!(
        err_code(h.auth.verify_token(&tokens.access_token).await),
        "session_ended"
    );
}

/// The ring's JWKS verifies its EdDSA tokens with jsonwebtoken's own JWK support (its
/// `JwkSet` parser and `DecodingKey::from_jwk`, not our code), and holds no HS256 key.
#[tokio::test]
async fn the_jwks_verifies_eddsa_tokens_through_jsonwebtokens_jwk_support() {
    let ring = KeyRing::new(SigningKey::generate_ed25519())
        .with_previous(SigningKey::generate_hs256())
        .expect("ring")
        .with_previous(SigningKey::generate_ed25519())
        .expect("ring");
    let h = harness_with(|c| c.keys = Some(ring.clone()));
    let (user, tokens) = h.signup("alice").await;

    let json = serde_json::to_string(&ring.jwks()).expect("jwks json");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&json).expect("a JWK set");
    assert_eq!(set.keys.len(), 2, "both EdDSA keys, no HS256: {json}");
    let hs = ring
        .keys()
        .find(|k| k.algorithm() == auth_core::Algorithm::Hs256);
    let hs_kid = hs.expect("an HS256 key").kid();
    assert!(set.find(hs_kid).is_none(), "an HS256 key was published");

    let header = jsonwebtoken::decode_header(&tokens.access_token).expect("header");
    let kid = header.kid.expect("kid");
    assert_eq!(kid, ring.current().kid());
    let jwk = set.find(&kid).expect("the signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("a decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["auth-sdk"]);
    validation.set_issuer(&["auth-sdk"]);
    // The harness's clock is synthetic: the signature, issuer and audience are the point.
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(&tokens.access_token, &key, &validation)
        .expect("verifies with the published key");
    assert_eq!(data.claims["sub"], user.id.as_str());

    // Another ring's key does not verify it.
    let other = KeyRing::new(SigningKey::generate_ed25519()).jwks();
    let other: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&serde_json::to_string(&other).expect("json")).expect("set");
    let wrong = jsonwebtoken::DecodingKey::from_jwk(&other.keys[0]).expect("key");
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(&tokens.access_token, &wrong, &validation)
            .is_err()
    );
}
