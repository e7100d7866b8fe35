//! Shared helpers for the auth-core integration tests.
//!
//! Every `Auth` built here hashes with `HashParams::insecure_fast()` and reads time from
//! a `ManualClock`, so time-dependent behaviour is driven by advancing the clock, never
//! by sleeping.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use auth_core::api::{
    ClientInfo, LoginRequest, LoginResponse, RefreshRequest, RegisterRequest, TokenPair, UserInfo,
    VerifyRequest, VerifyResponse,
};
use auth_core::{Auth, AuthApi, AuthError, Config, HashParams, KeyRing, ManualClock, SigningKey};
use auth_storage::memory::MemoryStorage;
use auth_storage::{Session, Storage, User};

/// The clock's starting time: a whole second, so `iat` is exactly `T0_MS / 1000`.
pub const T0_MS: i64 = 1_700_000_000_000;
/// A password that satisfies the default policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// The service under test.
pub type TestAuth = Auth<Arc<MemoryStorage>>;

/// An `Auth` plus the handles a test needs to drive and inspect it.
pub struct Harness {
    pub auth: TestAuth,
    pub clock: Arc<ManualClock>,
    pub storage: Arc<MemoryStorage>,
}

/// The base configuration: fast hashing and the given manual clock.
pub fn base_config(clock: &Arc<ManualClock>) -> Config {
    let mut config = Config::default();
    config.hash = HashParams::insecure_fast();
    config.clock = clock.clone();
    config
}

/// A fixed HS256 key ring, for tests where two `Auth`s must accept each other's tokens.
pub fn fixed_keys() -> KeyRing {
    KeyRing::new(SigningKey::hs256("test-key-1", &[0x5a; 32]).expect("valid key"))
}

/// A harness with the default test configuration.
pub fn harness() -> Harness {
    harness_with(|_| {})
}

/// A harness whose configuration `tweak` adjusts.
pub fn harness_with(tweak: impl FnOnce(&mut Config)) -> Harness {
    let clock = Arc::new(ManualClock::new(T0_MS));
    let storage = Arc::new(MemoryStorage::new());
    let mut config = base_config(&clock);
    tweak(&mut config);
    let auth = Auth::new(config, Arc::clone(&storage)).expect("valid config");
    Harness {
        auth,
        clock,
        storage,
    }
}

impl Harness {
    /// Another `Auth` over the same storage and clock, configured by `tweak` starting
    /// from the base configuration.
    pub fn sibling(&self, tweak: impl FnOnce(&mut Config)) -> TestAuth {
        let mut config = base_config(&self.clock);
        tweak(&mut config);
        Auth::new(config, Arc::clone(&self.storage)).expect("valid config")
    }

    /// Moves the manual clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The clock's current time in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        use auth_core::Clock;
        self.clock.now_ms()
    }

    /// Registers a user, panicking on failure.
    pub async fn register(&self, username: &str, password: &str) -> UserInfo {
        register(&self.auth, username, password).await
    }

    /// Logs in.
    pub async fn login(&self, username: &str, password: &str) -> Result<LoginResponse, AuthError> {
        login(&self.auth, username, password).await
    }

    /// Logs in, panicking on failure; returns the token pair.
    pub async fn login_ok(&self, username: &str, password: &str) -> TokenPair {
        login_ok(&self.auth, username, password).await
    }

    /// Logs in with client information, panicking on failure.
    pub async fn login_from(&self, username: &str, user_agent: &str, ip: &str) -> TokenPair {
        self.auth
            .login(LoginRequest {
                username: username.into(),
                password: PASSWORD.into(),
                client: Some(ClientInfo {
                    user_agent: user_agent.into(),
                    ip: ip.into(),
                }),
            })
            .await
            .expect("login")
            .tokens
            .expect("tokens")
    }

    /// Registers `username` with [`PASSWORD`] and logs in.
    pub async fn signup(&self, username: &str) -> (UserInfo, TokenPair) {
        let user = self.register(username, PASSWORD).await;
        let tokens = self.login_ok(username, PASSWORD).await;
        (user, tokens)
    }

    /// Verifies an access token.
    pub async fn verify(&self, access_token: &str) -> Result<VerifyResponse, AuthError> {
        verify(&self.auth, access_token).await
    }

    /// Refreshes; returns the new token pair.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AuthError> {
        refresh(&self.auth, refresh_token).await
    }

    /// The stored user record for a (lowercase) username key.
    pub async fn stored_user(&self, username_key: &str) -> User {
        self.storage
            .get_user_by_username(username_key)
            .await
            .expect("storage")
            .expect("user exists")
    }

    /// The stored session record.
    pub async fn stored_session(&self, session_id: &str) -> Option<Session> {
        self.storage.get_session(session_id).await.expect("storage")
    }
}

/// Registers a user on `auth`, panicking on failure.
pub async fn register(auth: &TestAuth, username: &str, password: &str) -> UserInfo {
    auth.register(RegisterRequest {
        username: username.into(),
        password: password.into(),
        client: None,
    })
    .await
    .unwrap_or_else(|e| panic!("register {username:?}: {e}"))
    .user
    .expect("user info")
}

/// Logs in on `auth`.
pub async fn login(
    auth: &TestAuth,
    username: &str,
    password: &str,
) -> Result<LoginResponse, AuthError> {
    auth.login(LoginRequest {
        username: username.into(),
        password: password.into(),
        client: None,
    })
    .await
}

/// Logs in on `auth`, panicking on failure; returns the token pair.
pub async fn login_ok(auth: &TestAuth, username: &str, password: &str) -> TokenPair {
    login(auth, username, password)
        .await
        .unwrap_or_else(|e| panic!("login {username:?}: {e}"))
        .tokens
        .expect("tokens")
}

/// Verifies an access token on `auth`.
pub async fn verify(auth: &TestAuth, access_token: &str) -> Result<VerifyResponse, AuthError> {
    auth.verify(VerifyRequest {
        access_token: access_token.into(),
    })
    .await
}

/// Refreshes on `auth`; returns the new token pair.
pub async fn refresh(auth: &TestAuth, refresh_token: &str) -> Result<TokenPair, AuthError> {
    auth.refresh(RefreshRequest {
        refresh_token: refresh_token.into(),
        client: None,
    })
    .await
    .map(|r| r.tokens.expect("tokens"))
}

/// The error code of a result that must be an error.
pub fn err_code<T: std::fmt::Debug>(r: Result<T, AuthError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.code(),
    }
}

/// The decoded JSON header and payload of a JWT (the signature is not checked).
pub fn jwt_json(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let mut part = |what: &str| -> serde_json::Value {
        let b64 = parts.next().unwrap_or_else(|| panic!("JWT has no {what}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(b64)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT {what} is not JSON: {e}"))
    };
    let header = part("header");
    let payload = part("payload");
    assert_eq!(token.split('.').count(), 3, "a JWT has three parts");
    (header, payload)
}

/// Encodes a JWT from raw header and payload JSON with an HS256 signature made with
/// `secret` (or no signature when `secret` is `None`).
pub fn craft_jwt(
    header: &serde_json::Value,
    payload: &serde_json::Value,
    secret: Option<&[u8]>,
) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("json"));
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).expect("json"));
    let signing_input = format!("{h}.{p}");
    let sig = match secret {
        None => String::new(),
        Some(secret) => {
            let key = jsonwebtoken::EncodingKey::from_secret(secret);
            jsonwebtoken::crypto::sign(
                signing_input.as_bytes(),
                &key,
                jsonwebtoken::Algorithm::HS256,
            )
            .expect("sign")
        }
    };
    format!("{signing_input}.{sig}")
}
