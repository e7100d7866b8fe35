//! Username normalisation and the password length rule.

use unicode_normalization::UnicodeNormalization;

use crate::config::{PasswordPolicy, UsernamePolicy};
use crate::error::AuthError;

/// Inputs longer than this are rejected before any Unicode processing.
const MAX_USERNAME_INPUT_BYTES: usize = 256;

/// A username that passed the policy: the display form and the uniqueness key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// NFC-normalised, case preserved.
    pub display: String,
    /// NFC-normalised and lowercased: two usernames with the same key are the same
    /// account.
    pub key: String,
}

impl UsernamePolicy {
    /// Checks and normalises a username.
    ///
    /// The input is NFC-normalised first, so "é" typed as `e` + combining accent and as
    /// the single code point `é` name the same account.
    pub fn normalize(&self, input: &str) -> Result<Username, AuthError> {
        if input.is_empty() {
            return Err(AuthError::InvalidUsername("must not be empty".into()));
        }
        if input.len() > MAX_USERNAME_INPUT_BYTES {
            return Err(AuthError::InvalidUsername("too long".into()));
        }
        let display: String = input.nfc().collect();
        let chars = display.chars().count();
        if chars < self.min_chars {
            return Err(AuthError::InvalidUsername("too short".into()));
        }
        if chars > self.max_chars {
            return Err(AuthError::InvalidUsername("too long".into()));
        }
        if !display
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(AuthError::InvalidUsername(
                "only letters, digits, '.', '_' and '-' are allowed".into(),
            ));
        }
        if !display.chars().next().is_some_and(char::is_alphanumeric) {
            return Err(AuthError::InvalidUsername(
                "must start with a letter or digit".into(),
            ));
        }
        let key: String = display.to_lowercase().nfc().collect();
        Ok(Username { display, key })
    }
}

impl PasswordPolicy {
    /// Checks a new password's length.
    pub fn check(&self, password: &str) -> Result<(), AuthError> {
        if password.len() < self.min_bytes {
            return Err(AuthError::InvalidPassword("too short".into()));
        }
        if password.len() > self.max_bytes {
            return Err(AuthError::InvalidPassword("too long".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalised_and_keyed_case_insensitively() {
        let p = UsernamePolicy::default();
        let a = p.normalize("Alice.Smith-1").unwrap();
        assert_eq!(a.display, "Alice.Smith-1");
        assert_eq!(a.key, "alice.smith-1");
        let decomposed = p.normalize("Jose\u{301}").unwrap();
        let composed = p.normalize("Jos\u{e9}").unwrap();
        assert_eq!(decomposed, composed);
        assert_eq!(p.normalize("JOS\u{c9}").unwrap().key, composed.key);
    }

    #[test]
    fn bad_usernames_get_typed_errors() {
        let p = UsernamePolicy::default();
        let long = "a".repeat(10 * 1024);
        for bad in [
            "",
            "ab",
            "   ",
            "\t\n\r",
            "bob\u{0}",
            "bob\u{7}x",
            "bob smith",
            ".bob",
            "bob@example",
            long.as_str(),
            &"é".repeat(33),
        ] {
            let e = p.normalize(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_username", "{bad:?}");
        }
    }

    #[test]
    fn password_length_bounds() {
        let p = PasswordPolicy::default();
        assert!(p.check("").is_err());
        assert!(p.check("1234567").is_err());
        assert!(p.check("12345678").is_ok());
        assert!(p.check(&"x".repeat(1024)).is_ok());
        assert_eq!(
            p.check(&"x".repeat(1025)).unwrap_err(),
            AuthError::InvalidPassword("too long".into())
        );
        assert!(p.check(&"x".repeat(1 << 20)).is_err());
    }
}
