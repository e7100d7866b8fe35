//! Username normalisation and the password length rule.
//!
//! A username has two forms ([`Username`]):
//!
//! - **display**: the input in NFKC, case preserved. NFKC folds compatibility variants
//!   (full-width `ａ`, mathematical `𝐚`, ligatures, circled and superscript digits) into
//!   the plain character, so what other people see is what the policy checked.
//! - **key**: the uniqueness key stored as `username_key`. It is the fixed point of
//!   NFKC → lowercase → confusable skeleton (Unicode TR39) → NFC, so names that differ
//!   only in case, in compatibility variants or by look-alike letters share one key and
//!   therefore one account: `admin`, `ADMIN`, `ａdmin` and `adrnin` (`rn` looks like
//!   `m`), or all-Cyrillic `раураӏ` and Latin `paypal`.
//!
//! A name must also be single-script (TR39 "resolved script set" not empty): Latin and
//! Cyrillic letters in one name are refused, while all-Cyrillic, all-Greek or Japanese
//! (Han + kana) names are fine. Digits, `.`, `_` and `-` belong to every script.
//!
//! The key depends on Unicode data: the confusables table of `unicode-security` (pinned
//! in `Cargo.toml`), NFKC and the standard library's lowercase mapping. A change in any of
//! them can change the key of an existing account, so `golden_keys_do_not_drift` below
//! pins a sample; when it fails after an upgrade, stored keys need re-keying.

use unicode_normalization::UnicodeNormalization;
use unicode_security::{MixedScript, skeleton};

use crate::config::{PasswordPolicy, UsernamePolicy};
use crate::error::AuthError;

/// Inputs longer than this are rejected before any Unicode processing.
const MAX_USERNAME_INPUT_BYTES: usize = 256;
/// Rounds of [`key_round`] allowed to reach a fixed point. Every single code point
/// settles within 3 (a skeleton can yield an upper-case or compatibility character,
/// which the next round folds again); a name that does not settle is refused.
const MAX_KEY_ROUNDS: usize = 8;

/// A username that passed the policy: the display form and the uniqueness key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// NFKC-normalised, case preserved: what is shown.
    pub display: String,
    /// The uniqueness key: lowercased confusable skeleton of the NFKC form (see the
    /// module docs). Two usernames with the same key are the same account. Not meant
    /// for display: `admin` has the key `adrnin`.
    pub key: String,
}

impl UsernamePolicy {
    /// Checks and normalises a username.
    ///
    /// The input is NFKC-normalised first, so "é" typed as `e` + combining accent and as
    /// the single code point `é` name the same account, and so do full-width and plain
    /// letters. Mixed-script names are refused; look-alike names map to one key.
    pub fn normalize(&self, input: &str) -> Result<Username, AuthError> {
        if input.is_empty() {
            return Err(AuthError::InvalidUsername("must not be empty".into()));
        }
        if input.len() > MAX_USERNAME_INPUT_BYTES {
            return Err(AuthError::InvalidUsername("too long".into()));
        }
        let display: String = input.nfkc().collect();
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
        if !display.as_str().is_single_script() {
            return Err(AuthError::InvalidUsername(
                "must not mix scripts (such as Latin and Cyrillic letters)".into(),
            ));
        }
        let key = uniqueness_key(&display)
            .ok_or(AuthError::InvalidUsername("cannot be normalised".into()))?;
        Ok(Username { display, key })
    }
}

impl UsernamePolicy {
    /// The text to look for in uniqueness keys when searching for usernames
    /// containing `query`: the query through the same pipeline as a key, so that
    /// `Adam` finds `adam` (whose key is `adarn`). Lowercased as is when the pipeline
    /// does not settle.
    pub fn search_key(&self, query: &str) -> String {
        uniqueness_key(query).unwrap_or_else(|| query.to_lowercase())
    }
}

/// One round of the key pipeline: NFKC, lowercase, TR39 skeleton, NFC.
fn key_round(s: &str) -> String {
    let lower = s.nfkc().collect::<String>().to_lowercase();
    skeleton(&lower).nfc().collect()
}

/// The fixed point of [`key_round`], so that a key is its own key; `None` if it does
/// not settle within [`MAX_KEY_ROUNDS`].
fn uniqueness_key(s: &str) -> Option<String> {
    let mut key = key_round(s);
    for _ in 0..MAX_KEY_ROUNDS {
        let next = key_round(&key);
        if next == key {
            return Some(key);
        }
        key = next;
    }
    None
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

    fn key(name: &str) -> String {
        UsernamePolicy::default()
            .normalize(name)
            .unwrap_or_else(|e| panic!("{name:?}: {e}"))
            .key
    }

    fn refusal(name: &str) -> AuthError {
        UsernamePolicy::default()
            .normalize(name)
            .expect_err("must be refused")
    }

    #[test]
    fn usernames_are_normalised_and_keyed_case_insensitively() {
        let p = UsernamePolicy::default();
        let a = p.normalize("Alice.Smith-1").unwrap();
        assert_eq!(a.display, "Alice.Smith-1");
        assert_eq!(a.key, key("alice.smith-1"));
        assert_eq!(a.key, key("ALICE.SMITH-1"));
        let decomposed = p.normalize("Jose\u{301}").unwrap();
        let composed = p.normalize("Jos\u{e9}").unwrap();
        assert_eq!(decomposed, composed);
        assert_eq!(composed.display, "Jos\u{e9}");
        assert_eq!(p.normalize("JOS\u{c9}").unwrap().key, composed.key);
        assert_ne!(key("alice"), key("alicia"));
    }

    #[test]
    fn look_alikes_share_a_key_or_are_refused() {
        let admin = key("admin");
        // Cyrillic а (U+0430) among Latin letters: mixed script.
        assert_eq!(refusal("\u{430}dmin").code(), "invalid_username");
        // Full-width, mathematical bold and upper case: the same account.
        assert_eq!(key("\u{ff41}dmin"), admin);
        assert_eq!(key("\u{ff21}\u{ff24}\u{ff2d}\u{ff29}\u{ff2e}"), admin);
        assert_eq!(key("\u{1d41a}\u{1d41d}\u{1d426}\u{1d422}\u{1d427}"), admin);
        assert_eq!(key("AdMin"), admin);
        // `rn` looks like `m`, `0` like `o`, `1` like `l`.
        assert_eq!(key("adrnin"), admin);
        assert_eq!(key("b0b"), key("bob"));
        assert_eq!(key("paypa1"), key("paypal"));
        // All-Cyrillic р а у р а ӏ is single-script, so allowed, but it is paypal.
        let cyrillic = "\u{440}\u{430}\u{443}\u{440}\u{430}\u{4cf}";
        assert_eq!(key(cyrillic), key("paypal"));
        assert_eq!(key(&cyrillic.to_uppercase()), key("paypal"));
        // All-Greek ο ρ α, in either case, is Latin opa.
        assert_eq!(key("\u{3bf}\u{3c1}\u{3b1}"), key("opa"));
        assert_eq!(key("\u{39f}\u{3a1}\u{391}"), key("opa"));
    }

    /// Known limit, not a goal: the key is taken after lowercasing (so case never makes
    /// a new account), which loses look-alikes that exist only in capitals. Greek
    /// `ΑΙΟΝ` looks like Latin `AION`, but lowercased it is `αιον`, whose `ν` looks like
    /// `v`, not `n`; Cyrillic `ВОТ` is `BOT` in capitals but `вот` in small letters.
    /// Merging both ways would make `n` and `v` one letter. Catching these needs a
    /// second, capitals-first skeleton checked at registration.
    #[test]
    fn capital_only_look_alikes_get_their_own_key() {
        assert_eq!(key("\u{391}\u{399}\u{39f}\u{39d}"), "aiov");
        assert_eq!(key("AION"), "aion");
        assert_ne!(key("\u{412}\u{41e}\u{422}"), key("BOT"));
        // Capital I and small l, one letter in many fonts, are two.
        assert_ne!(key("Ilya"), key("llya"));
    }

    #[test]
    fn the_display_form_is_nfkc_with_case_preserved() {
        let p = UsernamePolicy::default();
        assert_eq!(p.normalize("\u{ff21}dmin").unwrap().display, "Admin");
        assert_eq!(p.normalize("\u{fb01}nn").unwrap().display, "finn");
        assert_eq!(p.normalize("agent\u{2464}").unwrap().display, "agent5");
        // Half-width katakana become full-width.
        assert_eq!(
            p.normalize("\u{ff76}\u{ff80}\u{ff76}\u{ff85}")
                .unwrap()
                .display,
            "\u{30ab}\u{30bf}\u{30ab}\u{30ca}"
        );
    }

    #[test]
    fn mixed_scripts_are_refused_and_single_scripts_allowed() {
        for mixed in [
            "\u{3a9}mega",         // Greek Ω + Latin
            "p\u{430}ypal",        // Latin + Cyrillic а
            "\u{432}\u{430}sya",   // Cyrillic + Latin
            "abc\u{540d}\u{524d}", // Latin + Han
            "ab\u{5d0}",           // Latin + Hebrew
            "ab\u{661}\u{662}",    // Latin + Arabic-Indic digits
        ] {
            let e = refusal(mixed);
            assert_eq!(e.code(), "invalid_username", "{mixed:?}");
            assert!(e.to_string().contains("mix scripts"), "{mixed:?}: {e}");
        }
        let p = UsernamePolicy::default();
        for single in [
            "\u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}", // Ωμέγα
            "\u{438}\u{432}\u{430}\u{43d}_2000",   // иван_2000
            "\u{540d}\u{524d}\u{3067}\u{3059}",    // 名前です (Han + Hiragana)
            "\u{d55c}\u{ad6d}\u{c5b4}.\u{97d3}",   // 한국어.韓 (Hangul + Han)
            "\u{5e9}\u{5dc}\u{5d5}\u{5dd}-1",      // שלום-1
            "x.y_z-9",
            "007",
        ] {
            let name = p
                .normalize(single)
                .unwrap_or_else(|e| panic!("{single:?}: {e}"));
            assert_eq!(name.display, single);
        }
    }

    #[test]
    fn keys_are_fixed_points() {
        for name in [
            "admin",
            "o0O",
            "Alice.Smith-1",
            "\u{3a3}\u{391}\u{3a3}",
            "\u{540d}\u{524d}\u{3067}\u{3059}",
            "\u{398}eta",
        ] {
            let Some(k) = uniqueness_key(name) else {
                panic!("{name:?} has no key");
            };
            assert_eq!(uniqueness_key(&k).as_deref(), Some(k.as_str()), "{name:?}");
        }
        // A key that is itself a valid username normalises to itself.
        let k = key("Admin");
        assert_eq!(key(&k), k);
        // `0` skeletons to upper-case `O`, which needs a second round.
        assert_eq!(key("o0O"), "ooo");
        assert_ne!(key_round("0"), key_round(&key_round("0")));
    }

    /// Every character a display form can hold reaches a key (measured: within three
    /// rounds), so no valid name is refused as "cannot be normalised".
    #[test]
    fn every_letter_and_digit_settles() {
        let chars = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
        for c in chars {
            assert!(
                uniqueness_key(&c.to_string()).is_some(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    /// A sample of keys as stored. If an upgrade of `unicode-security`,
    /// `unicode-normalization` or the toolchain changes one, existing accounts would no
    /// longer be found under their stored key: plan a re-keying before accepting it.
    #[test]
    fn golden_keys_do_not_drift() {
        for (name, expected) in [
            ("alice", "alice"),
            ("bob", "bob"),
            ("admin", "adrnin"),
            ("Alice.Smith-1", "alice.srnith-l"),
            ("paypal", "paypal"),
            ("o0O", "ooo"),
            ("Jos\u{e9}", "jos\u{e9}"),
            ("stra\u{df}e", "stra\u{df}e"),
            ("\u{3a3}\u{391}\u{3a3}", "oa\u{3c2}"),
            (
                "\u{540d}\u{524d}\u{3067}\u{3059}",
                "\u{540d}\u{524d}\u{3066}\u{ff9e}\u{3059}",
            ),
        ] {
            assert_eq!(key(name), expected, "{name:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2048,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Any input is either refused with `invalid_username` or gets a key that is its
        /// own key and does not depend on case.
        #[test]
        fn keys_are_idempotent_for_any_input(
            s in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[a-zA-Z0-9\u{400}-\u{4ff}\u{370}-\u{3ff}\u{ff01}-\u{ff5e}._-]{1,12}",
            ]
        ) {
            match UsernamePolicy::default().normalize(&s) {
                Ok(name) => {
                    proptest::prop_assert_eq!(uniqueness_key(&name.key), Some(name.key.clone()));
                    // Upper case names the same account, unless upper-casing is lossy
                    // (`ß` → `SS`, a final `ς` moved inside the word).
                    let upper = name.display.to_uppercase();
                    if upper.to_lowercase() == name.display.to_lowercase()
                        && let Ok(upper) = UsernamePolicy::default().normalize(&upper)
                    {
                        proptest::prop_assert_eq!(upper.key, name.key);
                    }
                }
                Err(e) => proptest::prop_assert_eq!(e.code(), "invalid_username"),
            }
        }
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
