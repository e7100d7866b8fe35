//! Access tokens (JWT) and refresh tokens (opaque, rotating).
//!
//! Access token: a JWT signed by the key ring's current key, with `kid`, `iss`, `aud`,
//! `sub` (user id), `sid` (session id), `name` (username), `iat`, `nbf`, `exp`, `jti`.
//! Decoding pins the algorithm to the one of the key named by `kid`, so `alg: none`,
//! HS/EdDSA confusion and unknown keys are all rejected.
//!
//! Refresh token: `<session id>.<256 random bits, base64url>`. Only its SHA-256 is
//! stored. On rotation the successor is also stored *sealed*: XORed with a pad derived
//! from the token it replaces, so the holder of that token (and nobody who merely reads
//! storage) can recover the successor inside the grace window.

use auth_storage::Session;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::keys::KeyRing;

/// Access tokens longer than this are rejected before parsing.
pub(crate) const MAX_ACCESS_TOKEN_BYTES: usize = 8 * 1024;
const SECRET_BYTES: usize = 32;
const ID_BYTES: usize = 16;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Session id.
    pub sid: String,
    /// Username.
    pub name: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds).
    pub nbf: i64,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// How the user authenticated (RFC 8176): `pwd` (password), `otp` (a one-time
    /// code: TOTP or recovery code), `hwk`/`swk` (a passkey), `user` (the passkey
    /// verified the user: PIN or biometrics). Empty in tokens from before second
    /// factors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Authentication context class: [`ACR_MULTI_FACTOR`] when `amr` shows two factors,
    /// [`ACR_SINGLE_FACTOR`] otherwise (after NIST SP 800-63B's AAL1/AAL2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acr: String,
    /// The user's roles when the session opened (`admin`, or an application's own).
    /// Absent when there are none. An application checks them with
    /// [`Claims::has_role`]; revoking a role ends the user's sessions, so a token
    /// carrying a revoked role lives at most until it expires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// `acr` of a single-factor sign-in (a password alone).
pub const ACR_SINGLE_FACTOR: &str = "aal1";
/// `acr` of a multi-factor sign-in (password and code, password and passkey, or a
/// passkey that verified its user).
pub const ACR_MULTI_FACTOR: &str = "aal2";

impl Claims {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// True when the token's sign-in used two factors (`acr` is
    /// [`ACR_MULTI_FACTOR`]).
    pub fn is_multi_factor(&self) -> bool {
        self.acr == ACR_MULTI_FACTOR
    }
}

/// The `acr` a set of `amr` methods earns: two kinds of factor (something known or
/// inherent, and something held) make [`ACR_MULTI_FACTOR`].
pub fn acr_for(amr: &[String]) -> &'static str {
    let has = |m: &str| amr.iter().any(|a| a == m);
    let held = has("otp") || has("hwk") || has("swk");
    let known = has("pwd") || has("user") || has("pin");
    if held && known {
        ACR_MULTI_FACTOR
    } else {
        ACR_SINGLE_FACTOR
    }
}

/// Signs and checks access tokens with a key ring.
#[derive(Debug, Clone)]
pub(crate) struct TokenCodec {
    keys: KeyRing,
    issuer: String,
    audience: String,
    skew_s: i64,
    hs256: Validation,
    eddsa: Validation,
}

impl TokenCodec {
    pub(crate) fn new(keys: KeyRing, issuer: &str, audience: &str, skew_s: i64) -> Self {
        let validation = |alg| validation(alg, issuer, audience);
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            skew_s,
            hs256: validation(Algorithm::HS256),
            eddsa: validation(Algorithm::EdDSA),
        }
    }

    /// The key ring tokens are signed and checked with.
    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Signs an access token for this session, valid from `now_ms` for `ttl_s` seconds.
    pub(crate) fn issue(
        &self,
        session: &Session,
        now_ms: i64,
        ttl_s: i64,
    ) -> Result<(String, Claims), AuthError> {
        let key = self.keys.current();
        let iat = now_ms.div_euclid(1000);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: session.user_id.clone(),
            sid: session.id.clone(),
            name: session.username.clone(),
            iat,
            nbf: iat,
            exp: iat.saturating_add(ttl_s),
            jti: random_id(),
            amr: session.amr.clone(),
            acr: acr_for(&session.amr).to_owned(),
            roles: session.roles.clone(),
        };
        let mut header = Header::new(key.algorithm().jwt());
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key.encoding())
            .map_err(|_| AuthError::Internal("signing failed".into()))?;
        Ok((token, claims))
    }

    /// Verifies `token` with `key` only: its algorithm, its `kid`, signature, issuer and
    /// audience.
    fn decode_with(
        &self,
        token: &str,
        key: &crate::keys::SigningKey,
    ) -> Result<jsonwebtoken::TokenData<Claims>, AuthError> {
        let validation = match key.algorithm() {
            crate::keys::Algorithm::Hs256 => &self.hs256,
            crate::keys::Algorithm::EdDsa => &self.eddsa,
        };
        let data = jsonwebtoken::decode::<Claims>(token, key.decoding(), validation)
            .map_err(|_| AuthError::InvalidToken)?;
        if data.header.alg != key.algorithm().jwt() || data.header.kid.as_deref() != Some(key.kid())
        {
            return Err(AuthError::InvalidToken);
        }
        Ok(data)
    }

    /// Checks signature, algorithm, issuer, audience and time; returns the claims.
    pub(crate) fn decode(&self, token: &str, now_ms: i64) -> Result<Claims, AuthError> {
        if token.is_empty() || token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(AuthError::InvalidToken);
        }
        // Common case: the current key signed it. Its Validation pins the algorithm, and
        // the header comes back with the data, so no separate header parse is needed.
        let current = self.keys.current();
        let data = match self.decode_with(token, current) {
            Ok(data) => data,
            Err(first) => {
                // A token from a previous key (rotation): find it by `kid` and retry.
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
                match header.kid.as_deref().and_then(|kid| self.keys.find(kid)) {
                    Some(key) if key.kid() != current.kid() => self.decode_with(token, key)?,
                    _ => return Err(first),
                }
            }
        };
        let claims = data.claims;
        check_time(&claims, now_ms, self.skew_s)?;
        Ok(claims)
    }
}

/// The `jsonwebtoken` validation of our access tokens for one algorithm: `iss` and
/// `aud` pinned, the registered claims required. Time is left to [`check_time`], which
/// reads the injected clock.
pub(crate) fn validation(alg: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v
}

/// Checks `nbf`, `iat` and `exp` against `now_ms`, allowing `skew_s` seconds of clock
/// difference: expired is [`AuthError::TokenExpired`], not yet valid
/// [`AuthError::InvalidToken`].
pub(crate) fn check_time(claims: &Claims, now_ms: i64, skew_s: i64) -> Result<(), AuthError> {
    let now_s = now_ms.div_euclid(1000);
    if claims.nbf > now_s.saturating_add(skew_s) || claims.iat > now_s.saturating_add(skew_s) {
        return Err(AuthError::InvalidToken);
    }
    if claims.exp <= now_s.saturating_sub(skew_s) {
        return Err(AuthError::TokenExpired);
    }
    Ok(())
}

/// A random 128-bit identifier as 32 lowercase hex characters.
pub(crate) fn random_id() -> String {
    let mut b = [0u8; ID_BYTES];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn is_id(s: &str) -> bool {
    s.len() == ID_BYTES * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A refresh token: session id plus 256-bit secret. `Debug` shows the session only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RefreshToken {
    session_id: String,
    secret: Zeroizing<[u8; SECRET_BYTES]>,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    /// A fresh token for a session.
    pub(crate) fn generate(session_id: &str) -> Self {
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        rand::rng().fill_bytes(secret.as_mut());
        Self {
            session_id: session_id.to_owned(),
            secret,
        }
    }

    /// Parses the wire form; any deviation is [`AuthError::InvalidToken`].
    pub(crate) fn parse(token: &str) -> Result<Self, AuthError> {
        let (sid, secret) = token.split_once('.').ok_or(AuthError::InvalidToken)?;
        if !is_id(sid) || secret.len() != 43 {
            return Err(AuthError::InvalidToken);
        }
        let mut buf = Zeroizing::new([0u8; SECRET_BYTES]);
        match URL_SAFE_NO_PAD.decode_slice(secret, buf.as_mut()) {
            Ok(SECRET_BYTES) => {}
            _ => return Err(AuthError::InvalidToken),
        }
        Ok(Self {
            session_id: sid.to_owned(),
            secret: buf,
        })
    }

    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The wire form, `<session id>.<secret>`.
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.session_id,
            URL_SAFE_NO_PAD.encode(self.secret.as_ref())
        )
    }

    /// SHA-256 of the wire form: what storage keeps.
    pub(crate) fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.encode().as_bytes()).to_vec()
    }

    fn pad(&self) -> [u8; SECRET_BYTES] {
        let mut h = Sha256::new();
        h.update(b"auth-sdk/v1/refresh-successor\0");
        h.update(self.encode().as_bytes());
        h.finalize().into()
    }

    /// Seals `successor` (of the same session) so only the holder of `self` can open it.
    pub(crate) fn seal(&self, successor: &RefreshToken) -> Vec<u8> {
        let pad = self.pad();
        successor
            .secret
            .iter()
            .zip(pad.iter())
            .map(|(a, b)| a ^ b)
            .collect()
    }

    /// Opens a successor sealed with [`RefreshToken::seal`].
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<RefreshToken, AuthError> {
        if sealed.len() != SECRET_BYTES {
            return Err(AuthError::Internal(
                "sealed successor has the wrong size".into(),
            ));
        }
        let pad = self.pad();
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        for (i, s) in secret.iter_mut().enumerate() {
            *s = sealed[i] ^ pad[i];
        }
        Ok(Self {
            session_id: self.session_id.clone(),
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_round_trip_and_reject_garbage() {
        let sid = random_id();
        let t = RefreshToken::generate(&sid);
        let wire = t.encode();
        assert_eq!(RefreshToken::parse(&wire).unwrap(), t);
        assert!(wire.len() > 43 + 32);
        for bad in [
            "",
            ".",
            "abc",
            &format!("{sid}."),
            &format!("{sid}.{}", "A".repeat(42)),
            &format!("{sid}.{}", "A".repeat(44)),
            &format!("{}.{}", sid.to_uppercase(), &wire[33..]),
            &format!("{}x.{}", &sid[..31], &wire[33..]),
            &format!("{sid}.{}!", &wire[33..75]),
        ] {
            assert_eq!(
                RefreshToken::parse(bad),
                Err(AuthError::InvalidToken),
                "{bad}"
            );
        }
        assert!(!format!("{t:?}").contains(&wire[33..]));
    }

    #[test]
    fn sealed_successor_opens_only_with_its_predecessor() {
        let sid = random_id();
        let a = RefreshToken::generate(&sid);
        let b = RefreshToken::generate(&sid);
        let sealed = a.seal(&b);
        assert_eq!(a.open(&sealed).unwrap(), b);
        let other = RefreshToken::generate(&sid);
        assert_ne!(other.open(&sealed).unwrap(), b);
        assert_ne!(sealed, b.secret.to_vec());
    }
}
