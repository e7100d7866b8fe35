//! Accessors for the parts of a response every caller uses. proto3 makes message
//! fields optional (`Option<TokenPair>`), although the service always sets them; these
//! take them out with a typed error instead of an `unwrap`:
//!
//! ```
//! use auth_proto::v1::{LoginResponse, TokenPair};
//!
//! let response = LoginResponse { tokens: Some(TokenPair::default()), ..Default::default() };
//! let tokens: TokenPair = response.into_tokens().expect("a login answers with tokens");
//! assert!(LoginResponse::default().into_tokens().is_err());
//! ```

use crate::v1::{LoginResponse, RefreshResponse, RegisterResponse, TokenPair, UserInfo};

/// A response lacked a field the service always sets (a peer that is not an auth-sdk
/// service, or a bug). Names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingField(pub &'static str);

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the response has no {}", self.0)
    }
}

impl std::error::Error for MissingField {}

impl LoginResponse {
    /// The tokens of the new session. A login that needs a second factor
    /// (`mfa_required`) has none yet: complete it with `LoginMfa` first.
    pub fn into_tokens(self) -> Result<TokenPair, MissingField> {
        if self.mfa_required {
            return Err(MissingField(
                "tokens: a second factor is required (mfa_required), complete the login with LoginMfa",
            ));
        }
        self.tokens.ok_or(MissingField("tokens"))
    }
}

impl RefreshResponse {
    /// The rotated tokens.
    pub fn into_tokens(self) -> Result<TokenPair, MissingField> {
        self.tokens.ok_or(MissingField("tokens"))
    }
}

impl RegisterResponse {
    /// The account just created.
    pub fn into_user(self) -> Result<UserInfo, MissingField> {
        self.user.ok_or(MissingField("user"))
    }
}
