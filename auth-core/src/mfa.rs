//! Second factors: TOTP (RFC 6238) secrets sealed at rest, and single-use recovery
//! codes.
//!
//! - [`TotpSecret`]: 160 random bits, the `otpauth://` URI an authenticator app scans,
//!   and [`TotpSecret::verify`]: a 6-digit code of the current 30-second step or the one
//!   before or after (clock drift), never a step at or before the last one accepted
//!   (replay), compared in constant time.
//! - [`MfaKey`]: the AEAD key (XChaCha20-Poly1305) that seals TOTP secrets before they
//!   reach storage. It comes from configuration and is separate from the JWT keys; the
//!   sealed secret is bound to its user id, so a sealed secret copied onto another
//!   account does not open.
//! - [`RecoveryCodes`]: ten single-use codes shown once; only their SHA-256 is kept
//!   (each carries 80 random bits, so a slow hash buys nothing).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::AuthError;

/// Seconds per TOTP step (RFC 6238's default, what every authenticator app uses).
pub const TOTP_STEP_SECS: u64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// Steps accepted either side of the current one (clock drift between phone and server).
pub const TOTP_SKEW_STEPS: u64 = 1;
/// Length of a TOTP secret: 160 bits, the HMAC-SHA1 block-size recommendation of RFC 4226.
const TOTP_SECRET_BYTES: usize = 20;
/// Recovery codes issued at once.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per recovery code (80 bits).
const RECOVERY_CODE_BYTES: usize = 10;
/// Version byte of a sealed secret, so that the format can change.
const SEALED_V1: u8 = 1;
const NONCE_BYTES: usize = 24;

/// A TOTP shared secret. `Debug` never shows it; it is wiped from memory when dropped.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; TOTP_SECRET_BYTES]);
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A secret from raw bytes (at least 128 bits, as RFC 4226 requires).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuthError> {
        if bytes.len() < 16 {
            return Err(AuthError::InvalidConfig(
                "a TOTP secret needs at least 128 bits".into(),
            ));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    fn totp(&self, issuer: &str, account: &str) -> Result<totp_rs::TOTP, AuthError> {
        totp_rs::TOTP::new(
            totp_rs::Algorithm::SHA1,
            TOTP_DIGITS,
            0,
            TOTP_STEP_SECS,
            self.0.to_vec(),
            Some(issuer.to_owned()),
            account.to_owned(),
        )
        .map_err(|e| AuthError::InvalidArgument(format!("cannot make a TOTP URI: {e}").into()))
    }

    /// A secret from its base32 form ([`TotpSecret::to_base32`]; case, spaces and
    /// padding do not matter).
    pub fn from_base32(text: &str) -> Result<Self, AuthError> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(clean.as_bytes())
                .map_err(|_| AuthError::InvalidArgument("the secret is not base32".into()))?,
        );
        Self::from_bytes(&bytes)
    }

    /// The secret in base32, as authenticator apps take it when typed in.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…` URI (Google's Key URI
    /// Format) that authenticator apps scan. Neither `issuer` nor `account` may contain
    /// a `:`.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, AuthError> {
        Ok(self.totp(issuer, account)?.get_url())
    }

    /// The code of the step `step` (unix seconds / 30).
    pub fn code_at_step(&self, step: u64) -> String {
        // Issuer and account only matter for the URI; `new_unchecked` cannot fail.
        let totp = totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            TOTP_DIGITS,
            0,
            TOTP_STEP_SECS,
            self.0.to_vec(),
            None,
            String::new(),
        );
        totp.generate(step.saturating_mul(TOTP_STEP_SECS))
    }

    /// Checks `code` at `now_ms`: it must be the code of the current step or of one
    /// step either side, and of a step later than `last_step` (the step of the last
    /// code accepted, if any). Returns the step it matched, to be stored as the new
    /// `last_step` in the same atomic write that accepts it.
    ///
    /// Malformed codes, wrong codes and replays are all
    /// [`AuthError::InvalidCode`]: the caller learns nothing
    /// about which.
    pub fn verify(
        &self,
        code: &str,
        now_ms: i64,
        last_step: Option<u64>,
    ) -> Result<u64, AuthError> {
        let code = code.trim();
        if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::InvalidCode);
        }
        let now_step = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0) / TOTP_STEP_SECS;
        let first = now_step.saturating_sub(TOTP_SKEW_STEPS);
        let mut matched = None;
        // Every candidate is computed and compared, whichever matches.
        for step in first..=now_step.saturating_add(TOTP_SKEW_STEPS) {
            let expected = self.code_at_step(step);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && matched.is_none() {
                matched = Some(step);
            }
        }
        match matched {
            Some(step) if last_step.is_none_or(|last| step > last) => Ok(step),
            _ => Err(AuthError::InvalidCode),
        }
    }
}

/// The key that seals TOTP secrets at rest (XChaCha20-Poly1305). `Debug` hides it.
#[derive(Clone)]
pub struct MfaKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MfaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MfaKey(..)")
    }
}

impl MfaKey {
    /// A random key (for tests and single-process demos: sealed secrets do not survive
    /// a restart that draws another key).
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Self(key)
    }

    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuthError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AuthError::InvalidConfig("the MFA key must be 32 bytes".into()))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// A key from base64 (standard or URL-safe), as in a key file.
    pub fn from_base64(text: &str) -> Result<Self, AuthError> {
        Self::from_bytes(&crate::keys::decode_secret_base64(text, "the MFA key")?)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Seals `secret` for `user_id`: `v1 || nonce || ciphertext`, base64url.
    pub fn seal(&self, secret: &TotpSecret, user_id: &str) -> Result<String, AuthError> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &secret.0,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| AuthError::Internal("sealing a TOTP secret failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`seal`](Self::seal) made for `user_id`. Another key, another user
    /// id or any altered byte is [`AuthError::Internal`] (stored data that does not
    /// open is a fault, not a client error).
    pub fn open(&self, sealed: &str, user_id: &str) -> Result<TotpSecret, AuthError> {
        let bad = || AuthError::Internal("a sealed TOTP secret does not open".into());
        let raw = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| bad())?;
        let (version, rest) = raw.split_first().ok_or_else(bad)?;
        if *version != SEALED_V1 || rest.len() <= NONCE_BYTES {
            return Err(bad());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| bad())?;
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        Ok(TotpSecret(Zeroizing::new(plain)))
    }
}

/// Freshly issued recovery codes: the codes to show the user once, and the hashes to
/// store. `Debug` shows neither.
pub struct RecoveryCodes {
    /// The codes, `xxxx-xxxx-xxxx-xxxx` (lowercase base32, 80 bits each).
    pub codes: Vec<Zeroizing<String>>,
    /// Their hashes, in the same order: what storage keeps.
    pub hashes: Vec<String>,
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} codes)", self.codes.len())
    }
}

impl RecoveryCodes {
    /// [`RECOVERY_CODES`] new codes.
    pub fn generate() -> Self {
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        let mut hashes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut raw = Zeroizing::new([0u8; RECOVERY_CODE_BYTES]);
            rand::rng().fill_bytes(raw.as_mut());
            let text = data_encoding::BASE32_NOPAD
                .encode(raw.as_ref())
                .to_ascii_lowercase();
            let grouped: Vec<&str> = text
                .as_bytes()
                .chunks(4)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            let code = Zeroizing::new(grouped.join("-"));
            hashes.push(recovery_code_hash(&code));
            codes.push(code);
        }
        Self { codes, hashes }
    }
}

/// The stored form of a recovery code as typed: case, spaces and dashes do not matter.
pub fn recovery_code_hash(code: &str) -> String {
    let normal: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(normal.as_bytes()))
}

/// The index in `hashes` of the hash of `code`, compared in constant time against
/// every entry.
pub fn find_recovery_code(hashes: &[String], code: &str) -> Option<usize> {
    let wanted = recovery_code_hash(code);
    let mut found = None;
    for (i, h) in hashes.iter().enumerate() {
        if bool::from(h.as_bytes().ct_eq(wanted.as_bytes())) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the secret is ASCII "12345678901234567890" and
    /// codes have 8 digits.
    #[test]
    fn rfc_6238_test_vectors() {
        let totp = totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            8,
            0,
            30,
            b"12345678901234567890".to_vec(),
            None,
            String::new(),
        );
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time), code, "T = {time}");
        }
        // Our 6-digit codes are the same truncation, modulo 10^6.
        let ours = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(ours.code_at_step(59 / 30), "287082");
        assert_eq!(ours.code_at_step(1_111_111_109 / 30), "081804");
    }

    #[test]
    fn codes_of_adjacent_steps_verify_once_and_in_order() {
        let s = TotpSecret::generate();
        let now_ms = 1_800_000_000_000;
        let step = 1_800_000_000 / 30;
        let code = s.code_at_step(step);
        assert_eq!(s.verify(&code, now_ms, None), Ok(step));
        // Replay of the same step, and of any step before the last accepted one.
        assert!(s.verify(&code, now_ms, Some(step)).is_err());
        let before = s.code_at_step(step - 1);
        assert!(s.verify(&before, now_ms, Some(step)).is_err());
        // One step of drift either way is fine; two is not.
        assert_eq!(s.verify(&before, now_ms, None), Ok(step - 1));
        assert_eq!(
            s.verify(&s.code_at_step(step + 1), now_ms, Some(step)),
            Ok(step + 1)
        );
        assert!(s.verify(&s.code_at_step(step + 2), now_ms, None).is_err());
        assert!(s.verify(&s.code_at_step(step - 2), now_ms, None).is_err());
        // Malformed input: one typed error, no panic.
        for junk in ["", "12345", "1234567", "12a456", "１２３４５６", "      "] {
            assert_eq!(
                s.verify(junk, now_ms, None).unwrap_err().code(),
                "invalid_code",
                "{junk:?}"
            );
        }
        assert_eq!(s.verify(&format!(" {code} "), now_ms, None), Ok(step));
    }

    #[test]
    fn the_uri_is_what_authenticator_apps_scan() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let uri = s.otpauth_uri("auth-sdk", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/auth-sdk:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", s.to_base32())), "{uri}");
        assert!(uri.contains("issuer=auth-sdk"), "{uri}");
        assert_eq!(s.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(s.otpauth_uri("auth-sdk", "a:b").is_err());
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_user() {
        let key = MfaKey::generate();
        let s = TotpSecret::generate();
        let sealed = key.seal(&s, "user-1").unwrap();
        assert_eq!(key.open(&sealed, "user-1").unwrap().0, s.0);
        // Two seals of one secret differ (random nonce).
        assert_ne!(key.seal(&s, "user-1").unwrap(), sealed);
        assert!(key.open(&sealed, "user-2").is_err());
        assert!(MfaKey::generate().open(&sealed, "user-1").is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(key.open(&URL_SAFE_NO_PAD.encode(&raw), "user-1").is_err());
        for junk in ["", "AA", "!!!", &URL_SAFE_NO_PAD.encode([2u8; 60])] {
            assert_eq!(key.open(junk, "user-1").unwrap_err().code(), "internal");
        }
        assert!(!format!("{key:?}{s:?}").contains(&s.to_base32()));
        assert!(MfaKey::from_bytes(&[0; 31]).is_err());
        assert!(MfaKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
    }

    #[test]
    fn recovery_codes_are_distinct_and_found_by_their_hash_however_typed() {
        let rc = RecoveryCodes::generate();
        assert_eq!(rc.codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = rc.hashes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let third = rc.codes[2].to_string();
        assert_eq!(third.len(), 19, "{third}");
        assert_eq!(find_recovery_code(&rc.hashes, &third), Some(2));
        let sloppy = third.to_uppercase().replace('-', " ");
        assert_eq!(find_recovery_code(&rc.hashes, &sloppy), Some(2));
        assert_eq!(find_recovery_code(&rc.hashes, "aaaa-bbbb-cccc-dddd"), None);
        assert_eq!(find_recovery_code(&rc.hashes, ""), None);
        assert!(!format!("{rc:?}").contains(&third));
    }
}
