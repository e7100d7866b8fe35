//! The auth-sdk core: accounts, passwords, tokens and sessions over any [`Storage`].
//!
//! [`Auth`] implements [`AuthApi`]: register, login, verify, refresh, logout, logout
//! everywhere, change password, delete account, list and revoke sessions.
//!
//! - **Passwords** are hashed with argon2id (OWASP parameters by default) on a bounded
//!   set of lower-priority threads, never on an async worker. Unknown users and wrong passwords fail
//!   alike and take the same time. Consecutive failures lock the account with a growing
//!   backoff, recorded in storage.
//! - **Access tokens** are short-lived JWTs (HS256 or EdDSA) from a rotating [`KeyRing`];
//!   `verify` pins the algorithm and, by default, checks the session is still live, so
//!   logout takes effect at once.
//! - **Refresh tokens** are opaque 256-bit secrets stored only as SHA-256 hashes. Each
//!   refresh rotates the token; presenting a rotated token again revokes the session
//!   (theft detection), except within a short grace window where it yields the same
//!   successor (two tabs refreshing at once).
//!
//! ```
//! use auth_core::{Auth, AuthApi, Config, HashParams};
//! use auth_core::api::{LoginRequest, RegisterRequest, VerifyRequest};
//! use auth_storage::memory::MemoryStorage;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), auth_core::AuthError> {
//! let mut config = Config::default();
//! config.hash = HashParams::insecure_fast(); // for the example only: use the default cost
//! let auth = Auth::new(config, MemoryStorage::new())?;
//! auth.start()?;
//! auth.register(RegisterRequest { username: "alice".into(), password: "correct horse".into(), client: None }).await?;
//! let login = auth
//!     .login(LoginRequest { username: "alice".into(), password: "correct horse".into(), client: None })
//!     .await?;
//! let access_token = login.tokens.unwrap().access_token;
//! let me = auth.verify(VerifyRequest { access_token }).await?;
//! assert_eq!(me.username, "alice");
//! auth.stop().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod audit;
mod auth;
pub mod clock;
mod config;
mod error;
pub mod keys;
pub mod metrics;
pub mod mfa;
mod passkeys;
pub mod password;
mod policy;
mod second_factor;
mod service;
pub mod throttle;
mod tokens;
pub mod verifier;

pub use api::AuthApi;
pub use auth::Auth;
pub use auth_storage::{Storage, StorageError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Config, HashParams, HashPriority, HashQueue, LockoutPolicy, MfaPolicy, PasskeyConfig,
    PasswordPolicy, SessionCheck, UsernamePolicy,
};
pub use error::AuthError;
pub use keys::{Algorithm, Jwk, Jwks, KeyRing, SigningKey};
pub use policy::Username;
pub use throttle::{Rate, Throttle, ThrottlePolicy};
pub use tokens::{ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR, Claims, acr_for};
pub use verifier::Verifier;
