//! `Verifier`: access tokens checked from public keys alone (a JWKS or a PEM key).

mod common;

use std::time::Duration;

use auth_core::{AuthApi, AuthError, Jwks, KeyRing, SigningKey, Verifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use ed25519_dalek::pkcs8::EncodePublicKey;

fn eddsa_ring(kid: &str) -> (KeyRing, ed25519_dalek::SigningKey) {
    let secret = ed25519_dalek::SigningKey::from_bytes(&[kid.len() as u8; 32]);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&secret).unwrap();
    let key = SigningKey::ed25519_pkcs8_der(kid, der.as_bytes()).unwrap();
    (KeyRing::new(key), secret)
}

fn eddsa_harness(kid: &str) -> (Harness, ed25519_dalek::SigningKey) {
    let (ring, secret) = eddsa_ring(kid);
    (harness_with(|c| c.keys = Some(ring)), secret)
}

/// A verifier for `h`'s JWKS on `h`'s clock.
fn verifier_of(h: &Harness) -> Verifier {
    Verifier::from_jwks(&h.auth.jwks())
        .expect("an EdDSA key")
        .clock(h.clock.clone())
}

#[tokio::test]
async fn tokens_verify_from_the_jwks_with_the_same_claims_as_the_issuer_sees() {
    let (h, _) = eddsa_harness("k1");
    let (user, tokens) = h.signup("alice").await;
    let v = verifier_of(&h);
    let claims = v.verify(&tokens.access_token).await.expect("verifies");
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.name, "alice");
    assert_eq!(claims.sid, tokens.session_id);
    assert_eq!(v.verify_cached(&tokens.access_token).unwrap(), claims);
    assert_eq!(v.key_ids(), [Some("k1".to_owned())]);
}

#[tokio::test]
async fn forged_expired_foreign_and_unknown_key_tokens_are_refused() {
    let (h, _) = eddsa_harness("k1");
    let (_, tokens) = h.signup("alice").await;
    let token = tokens.access_token;
    let v = verifier_of(&h);

    // A flipped signature byte.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(v.verify(&forged).await, Err(AuthError::InvalidToken));

    // Claims rewritten, `alg: none`, garbage, empty, oversized.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["name"] = "mallory".into();
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = format!("{}.{body}.{}", parts[0], parts[2]);
    assert_eq!(v.verify(&tampered).await, Err(AuthError::InvalidToken));
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    assert_eq!(
        v.verify(&format!("{none}.{body}.")).await,
        Err(AuthError::InvalidToken)
    );
    for junk in ["", "a.b.c", "not a token", &"x".repeat(20_000)] {
        assert_eq!(
            v.verify(junk).await,
            Err(AuthError::InvalidToken),
            "{junk:.20}"
        );
    }

    // Another issuer's key (same kid, different key), HS256 tokens, other audiences.
    let (other, _) = eddsa_harness("k1-other");
    let (_, theirs) = other.signup("bob").await;
    assert_eq!(
        v.verify(&theirs.access_token).await,
        Err(AuthError::InvalidToken)
    );
    let hs = harness();
    let (_, hs_tokens) = hs.signup("carol").await;
    assert_eq!(
        v.verify(&hs_tokens.access_token).await,
        Err(AuthError::InvalidToken)
    );
    let strict = verifier_of(&h).audience("another-service");
    assert_eq!(strict.verify(&token).await, Err(AuthError::InvalidToken));
    let strict = verifier_of(&h).issuer("someone-else");
    assert_eq!(strict.verify(&token).await, Err(AuthError::InvalidToken));

    // Expiry, with the clock skew allowed.
    h.advance(Duration::from_secs(15 * 60 + 10));
    assert!(v.verify(&token).await.is_ok(), "within the 30 s skew");
    h.advance(Duration::from_secs(60));
    assert_eq!(v.verify(&token).await, Err(AuthError::TokenExpired));
}

#[tokio::test]
async fn hmac_signed_with_the_published_public_key_is_refused() {
    // The classic JWKS attack: take the public key everyone can fetch and use it as an
    // HS256 secret, hoping the verifier picks the algorithm from the token.
    let (h, _) = eddsa_harness("k1");
    let (_, tokens) = h.signup("alice").await;
    let v = verifier_of(&h);
    let x = h.auth.jwks().keys[0].x.clone();
    let public = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let claims: serde_json::Value = {
        let body = tokens.access_token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    for secret in [public.as_slice(), x.as_bytes()] {
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        let forged = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        assert_eq!(v.verify(&forged).await, Err(AuthError::InvalidToken));
    }
}

#[tokio::test]
async fn a_logout_is_not_seen_until_the_token_expires() {
    let (h, _) = eddsa_harness("k1");
    let (_, tokens) = h.signup("alice").await;
    let v = verifier_of(&h);
    h.auth
        .logout(auth_core::api::LogoutRequest {
            refresh_token: tokens.refresh_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        h.verify(&tokens.access_token).await.err(),
        Some(AuthError::SessionEnded)
    );
    // The documented trade-off of stateless verification.
    assert!(v.verify(&tokens.access_token).await.is_ok());
}

#[tokio::test]
async fn previous_keys_verify_and_a_pem_public_key_works_for_any_kid() {
    let (old_ring, old_secret) = eddsa_ring("old");
    let (h_old, _) = (harness_with(|c| c.keys = Some(old_ring.clone())), ());
    let (_, old_tokens) = h_old.signup("alice").await;
    let new = SigningKey::generate_ed25519();
    let rotated = KeyRing::new(new)
        .with_previous(old_ring.current().clone())
        .unwrap();
    let v = Verifier::from_jwks(&rotated.jwks())
        .unwrap()
        .clock(h_old.clock.clone());
    assert_eq!(v.key_ids().len(), 2);
    assert!(v.verify(&old_tokens.access_token).await.is_ok());

    let pem = old_secret
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("public.pem");
    std::fs::write(&file, &pem).unwrap();
    let v = Verifier::from_public_key_file(&file)
        .unwrap()
        .clock(h_old.clock.clone());
    assert_eq!(v.key_ids(), [None]);
    assert!(v.verify(&old_tokens.access_token).await.is_ok());
    let (other, _) = eddsa_harness("zz");
    let (_, theirs) = other.signup("bob").await;
    assert_eq!(
        v.verify(&theirs.access_token).await,
        Err(AuthError::InvalidToken)
    );
}

#[test]
fn unusable_key_sources_are_typed_configuration_errors() {
    let code = |r: Result<Verifier, AuthError>| r.err().map(|e| e.code());
    // An HS256 ring publishes nothing: nothing to verify with.
    let hs = KeyRing::new(SigningKey::generate_hs256());
    assert_eq!(
        code(Verifier::from_jwks(&hs.jwks())),
        Some("invalid_config")
    );
    assert_eq!(
        code(Verifier::from_jwks(&Jwks::default())),
        Some("invalid_config")
    );
    // A malformed Ed25519 key.
    let mut jwks = KeyRing::new(SigningKey::generate_ed25519()).jwks();
    jwks.keys[0].x = "AAAA".into();
    assert_eq!(code(Verifier::from_jwks(&jwks)), Some("invalid_config"));
    // Keys of other types are skipped, not fatal.
    let mut jwks = KeyRing::new(SigningKey::generate_ed25519()).jwks();
    let mut rsa = jwks.keys[0].clone();
    rsa.kty = "RSA".into();
    jwks.keys.push(rsa);
    assert_eq!(Verifier::from_jwks(&jwks).unwrap().key_ids().len(), 1);
    assert_eq!(
        code(Verifier::from_public_key_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )),
        Some("invalid_config")
    );
    assert_eq!(
        code(Verifier::from_public_key_file("/nonexistent/key.pem")),
        Some("invalid_config")
    );
}
