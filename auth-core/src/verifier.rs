//! [`Verifier`]: checks access tokens from public keys alone, with no storage and no
//! call to the auth service.
//!
//! A service that only needs to know who is calling can verify the EdDSA access tokens
//! that `Auth` issues from the issuer's JWKS document (`/.well-known/jwks.json` on the
//! web site, the `Keys` RPC on the backend) or from a public key file.
//!
//! **What stateless verification gives up.** A `Verifier` checks the signature, the
//! algorithm, the key id, the issuer, the audience and the token's lifetime. It cannot
//! know that the session behind a token has ended: after a logout, a revocation or a
//! password change, the access token keeps verifying here until it expires (15 minutes
//! by default, `Config::access_token_ttl`). Where that matters, verify through the auth
//! service instead (`AuthApi::verify`), which also checks that the session is live.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, Validation};
use parking_lot::RwLock;

use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::keys::{Algorithm, Jwk, Jwks};
use crate::tokens::{Claims, MAX_ACCESS_TOKEN_BYTES, check_time, validation};

/// The issuer and audience `Config::default()` signs with.
const DEFAULT_ISSUER: &str = "auth-sdk";
const DEFAULT_CLAIM_AUDIENCE: &str = "auth-sdk";
/// The clock difference tolerated by default, as `Config::clock_skew`.
const DEFAULT_SKEW: Duration = Duration::from_secs(30);

/// One public key: its id (`None` matches any `kid`, for a key given as a lone file)
/// and the key itself.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    key: DecodingKey,
}

/// The keys a [`Verifier`] currently trusts.
#[derive(Clone, Default)]
struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// The EdDSA keys of `jwks`; keys of any other type or curve are skipped (a JWKS may
    /// list keys for other uses). Fails if an Ed25519 key is malformed.
    fn from_jwks(jwks: &Jwks) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        for jwk in &jwks.keys {
            if let Some(key) = decode_jwk(jwk)? {
                keys.push(key);
            }
        }
        Ok(Self { keys })
    }

    /// The key for a token with this `kid`.
    fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        let exact = kid.and_then(|kid| {
            self.keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key)
        });
        exact.or_else(|| self.keys.iter().find(|k| k.kid.is_none()).map(|k| &k.key))
    }
}

fn decode_jwk(jwk: &Jwk) -> Result<Option<PublicKey>, AuthError> {
    let usable = jwk.kty == "OKP"
        && jwk.crv == "Ed25519"
        && (jwk.alg.is_empty() || jwk.alg == Algorithm::EdDsa.as_str())
        && (jwk.key_use.is_empty() || jwk.key_use == "sig");
    if !usable {
        return Ok(None);
    }
    let bad = || AuthError::InvalidConfig(format!("JWKS key {:?} is not an Ed25519 key", jwk.kid));
    let x = URL_SAFE_NO_PAD.decode(&jwk.x).map_err(|_| bad())?;
    if x.len() != 32 {
        return Err(bad());
    }
    let key = DecodingKey::from_ed_components(&jwk.x).map_err(|_| bad())?;
    let kid = Some(jwk.kid.clone()).filter(|k| !k.is_empty());
    Ok(Some(PublicKey { kid, key }))
}

/// Validates access tokens from public keys: a JWKS document, a JWKS URL (with the
/// `jwks-url` feature) or a PEM public key. Only EdDSA tokens verify: HS256 keys are
/// secrets that a JWKS never carries.
///
/// Checks the signature with the key named by the token's `kid`, the algorithm
/// (pinned to EdDSA, so `alg: none` and algorithm confusion fail), the issuer and
/// audience (both `"auth-sdk"` unless set, as in `Config::default()`), and `nbf`/`exp`
/// with 30 seconds of clock skew. It does **not** see logouts: see the
/// [module docs](self).
///
/// Cloning is cheap and clones share the key cache.
///
/// ```
/// use auth_core::{Auth, AuthApi, Config, HashParams, KeyRing, SigningKey, Verifier};
/// use auth_core::api::{LoginRequest, RegisterRequest};
/// use auth_storage::memory::MemoryStorage;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), auth_core::AuthError> {
/// let mut config = Config::default();
/// config.hash = HashParams::insecure_fast();
/// config.keys = Some(KeyRing::new(SigningKey::generate_ed25519()));
/// let auth = Auth::new(config, MemoryStorage::new())?;
/// auth.start()?;
/// let creds = |username: &str| (username.to_owned(), "correct horse".to_owned());
/// let (username, password) = creds("alice");
/// auth.register(RegisterRequest { username: username.clone(), password: password.clone(), client: None }).await?;
/// let tokens = auth.login(LoginRequest { username, password, client: None }).await?.into_tokens()?;
///
/// // In another service: only the public keys.
/// let verifier = Verifier::from_jwks(&auth.jwks())?;
/// let claims = verifier.verify(&tokens.access_token).await?;
/// assert_eq!(claims.name, "alice");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<RwLock<KeySet>>,
    validation: Validation,
    skew_s: i64,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "jwks-url")]
    remote: Option<Arc<remote::Remote>>,
    #[cfg(feature = "jwks-url")]
    refresh: Duration,
    #[cfg(feature = "jwks-url")]
    min_refetch: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.key_ids())
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    fn with_keys(keys: KeySet) -> Self {
        Self {
            keys: Arc::new(RwLock::new(keys)),
            validation: validation(JwtAlgorithm::EdDSA, DEFAULT_ISSUER, DEFAULT_CLAIM_AUDIENCE),
            skew_s: secs(DEFAULT_SKEW),
            clock: Arc::new(SystemClock),
            #[cfg(feature = "jwks-url")]
            remote: None,
            #[cfg(feature = "jwks-url")]
            refresh: remote::DEFAULT_REFRESH,
            #[cfg(feature = "jwks-url")]
            min_refetch: remote::DEFAULT_MIN_REFETCH,
        }
    }

    /// A verifier for the EdDSA keys of a JWKS document (other key types are
    /// ignored). Fails if it holds no Ed25519 key, or a malformed one.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, AuthError> {
        let keys = KeySet::from_jwks(jwks)?;
        if keys.keys.is_empty() {
            return Err(AuthError::InvalidConfig(
                "the JWKS holds no Ed25519 key (are tokens signed with HS256?)".into(),
            ));
        }
        Ok(Self::with_keys(keys))
    }

    /// A verifier for one Ed25519 public key in PEM (SPKI, `-----BEGIN PUBLIC KEY-----`,
    /// as `openssl pkey -pubout` writes it). It verifies tokens whatever their `kid`.
    pub fn from_public_key_pem(pem: &str) -> Result<Self, AuthError> {
        let key = DecodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|_| AuthError::InvalidConfig("not a PEM Ed25519 public key (SPKI)".into()))?;
        Ok(Self::with_keys(KeySet {
            keys: vec![PublicKey { kid: None, key }],
        }))
    }

    /// [`from_public_key_pem`](Self::from_public_key_pem) on the contents of a file.
    pub fn from_public_key_file(path: impl AsRef<std::path::Path>) -> Result<Self, AuthError> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path).map_err(|e| {
            AuthError::InvalidConfig(format!("cannot read {}: {}", path.display(), e.kind()))
        })?;
        Self::from_public_key_pem(&pem)
    }

    /// Requires this `iss` claim (`Config::issuer`) instead of `"auth-sdk"`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Requires this `aud` claim (`Config::audience`) instead of `"auth-sdk"`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self
    }

    /// Tolerated clock difference with the issuer for `nbf` and `exp` (default 30 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.skew_s = secs(skew);
        self
    }

    /// The time source (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The ids of the keys currently trusted (`None` for a key that matches any id).
    pub fn key_ids(&self) -> Vec<Option<String>> {
        self.keys
            .read()
            .keys
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    /// Checks `token` and returns its claims. With a JWKS URL, a stale key set is
    /// refreshed first, and a token naming an unknown `kid` triggers one refresh (at
    /// most one per [`min_refetch_interval`](Self::min_refetch_interval)) before it is
    /// refused: that is how keys rotated in at the issuer are picked up.
    ///
    /// Errors: [`AuthError::TokenExpired`] for an expired token,
    /// [`AuthError::InvalidToken`] for anything else wrong with it.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        #[cfg(feature = "jwks-url")]
        if let Some(remote) = &self.remote {
            return remote.verify(self, token).await;
        }
        self.verify_cached(token)
    }

    /// Like [`verify`](Self::verify), with the keys at hand only: never fetches.
    pub fn verify_cached(&self, token: &str) -> Result<Claims, AuthError> {
        self.try_verify(token)?.ok_or(AuthError::InvalidToken)
    }

    /// `Ok(None)` when no trusted key has the token's `kid`.
    fn try_verify(&self, token: &str) -> Result<Option<Claims>, AuthError> {
        if token.is_empty() || token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(AuthError::InvalidToken);
        }
        let keys = self.keys.read();
        // The common case, one key: decode with it straight away (the `Validation` pins
        // EdDSA) and compare the `kid` the decoded header brings back, instead of
        // parsing the header twice.
        if let [only] = keys.keys.as_slice()
            && let Ok(data) = jsonwebtoken::decode::<Claims>(token, &only.key, &self.validation)
        {
            if only.kid.is_some() && data.header.kid != only.kid {
                return Ok(None);
            }
            drop(keys);
            check_time(&data.claims, self.clock.now_ms(), self.skew_s)?;
            return Ok(Some(data.claims));
        }
        // Several keys, or a token the only key refused: find its key by `kid`. An
        // unknown `kid` is `None`, so that a URL-fed verifier can refetch.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.alg != JwtAlgorithm::EdDSA {
            return Err(AuthError::InvalidToken);
        }
        let Some(key) = keys.find(header.kid.as_deref()) else {
            return Ok(None);
        };
        if keys.keys.len() == 1 {
            // The only key, which the fast path above has already refused.
            return Err(AuthError::InvalidToken);
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|_| AuthError::InvalidToken)?;
        drop(keys);
        check_time(&data.claims, self.clock.now_ms(), self.skew_s)?;
        Ok(Some(data.claims))
    }

    #[cfg(feature = "jwks-url")]
    fn replace_keys(&self, keys: KeySet) {
        *self.keys.write() = keys;
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(feature = "jwks-url")]
mod remote {
    //! Fetching and refreshing a JWKS from a URL.

    use std::time::{Duration, Instant};

    use super::{KeySet, Verifier};
    use crate::error::AuthError;
    use crate::keys::Jwks;
    use crate::tokens::Claims;

    /// Largest JWKS document accepted.
    const MAX_JWKS_BYTES: usize = 64 * 1024;
    /// Default time a fetched key set is trusted before it is fetched again.
    pub(super) const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
    /// Default shortest time between two fetches caused by unknown key ids.
    pub(super) const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(10);
    /// How long one fetch may take.
    const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

    pub(super) struct Remote {
        pub(super) url: reqwest::Url,
        pub(super) client: reqwest::Client,
        /// When the key set was last fetched (successfully or not); one fetch at a time.
        pub(super) last_fetch: tokio::sync::Mutex<FetchState>,
    }

    pub(super) struct FetchState {
        pub(super) attempted: Instant,
        pub(super) succeeded: Instant,
    }

    /// Why a refresh is wanted.
    #[derive(Clone, Copy)]
    enum Why {
        /// The key set is older than the refresh interval.
        Stale,
        /// A token named a key we do not have.
        UnknownKid,
    }

    impl Remote {
        /// Fetches the JWKS: its EdDSA keys, at least one.
        pub(super) async fn fetch(&self) -> Result<KeySet, AuthError> {
            let unavailable = |what: &str| {
                AuthError::Unavailable(format!("JWKS fetch from {}: {what}", self.url))
            };
            let mut resp = self
                .client
                .get(self.url.clone())
                .timeout(FETCH_TIMEOUT)
                .send()
                .await
                .map_err(|_| unavailable("request failed"))?;
            if !resp.status().is_success() {
                return Err(unavailable(&format!("HTTP {}", resp.status().as_u16())));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|_| unavailable("body not read"))?
            {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(unavailable("document too large"));
                }
                body.extend_from_slice(&chunk);
            }
            let jwks: Jwks =
                serde_json::from_slice(&body).map_err(|_| unavailable("not a JWKS document"))?;
            let keys = KeySet::from_jwks(&jwks)?;
            if keys.keys.is_empty() {
                // An issuer briefly serving `{"keys":[]}` must not lock everyone out.
                return Err(unavailable("no Ed25519 key in the document"));
            }
            Ok(keys)
        }

        /// Fetches again if it is due, one caller at a time; on failure the cached
        /// keys stay.
        async fn refresh(&self, verifier: &Verifier, why: Why) {
            let mut state = self.last_fetch.lock().await;
            let retry_ok = state.attempted.elapsed() >= verifier.min_refetch;
            let due = match why {
                Why::Stale => retry_ok && state.succeeded.elapsed() >= verifier.refresh,
                Why::UnknownKid => retry_ok,
            };
            if !due {
                return;
            }
            state.attempted = Instant::now();
            match self.fetch().await {
                Ok(keys) => {
                    verifier.replace_keys(keys);
                    state.succeeded = Instant::now();
                }
                // Keep verifying with the keys we have: the issuer being down must
                // not log everyone out.
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the cached keys")
                }
            }
        }

        pub(super) async fn verify(
            &self,
            verifier: &Verifier,
            token: &str,
        ) -> Result<Claims, AuthError> {
            let stale = self
                .last_fetch
                .try_lock()
                .map(|s| s.succeeded.elapsed() >= verifier.refresh)
                .unwrap_or(false);
            if stale {
                // In the background: a slow or unreachable issuer must not hold up
                // requests that the cached keys can answer.
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        let verifier = verifier.clone();
                        runtime.spawn(async move {
                            if let Some(remote) = verifier.remote.clone() {
                                remote.refresh(&verifier, Why::Stale).await;
                            }
                        });
                    }
                    Err(_) => self.refresh(verifier, Why::Stale).await,
                }
            }
            if let Some(claims) = verifier.try_verify(token)? {
                return Ok(claims);
            }
            // An unknown key id: perhaps a key rotated in since the last fetch.
            self.refresh(verifier, Why::UnknownKid).await;
            verifier.verify_cached(token)
        }
    }
}

#[cfg(feature = "jwks-url")]
impl Verifier {
    /// A verifier for the JWKS at `url` (e.g. `https://auth.example.com/.well-known/jwks.json`),
    /// fetched now. The key set is fetched again, in the background, once it is older
    /// than [`refresh_interval`](Self::refresh_interval) (default 5 minutes), and
    /// before refusing a token that names an unknown `kid`; if a fetch fails or finds
    /// no Ed25519 key, the cached keys stay in use. Redirects are not followed.
    /// `https://` URLs are checked against the Web PKI roots; use
    /// [`from_url_with_client`](Self::from_url_with_client) for a private CA.
    ///
    /// Fails with [`AuthError::Unavailable`] if the first fetch fails or finds no
    /// Ed25519 key, or [`AuthError::InvalidConfig`] for a URL that is not http(s).
    pub async fn from_url(url: &str) -> Result<Self, AuthError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Internal(format!("HTTP client: {e}")))?;
        Self::from_url_with_client(url, client).await
    }

    /// [`from_url`](Self::from_url) with a client of your own (a private CA, a proxy).
    pub async fn from_url_with_client(
        url: &str,
        client: reqwest::Client,
    ) -> Result<Self, AuthError> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| AuthError::InvalidConfig(format!("not an http(s) URL: {url:?}")))?;
        let now = std::time::Instant::now();
        let remote = remote::Remote {
            url,
            client,
            last_fetch: tokio::sync::Mutex::new(remote::FetchState {
                attempted: now,
                succeeded: now,
            }),
        };
        let keys = remote.fetch().await?;
        let mut verifier = Self::with_keys(keys);
        verifier.remote = Some(std::sync::Arc::new(remote));
        Ok(verifier)
    }

    /// How long a fetched key set is used before it is fetched again (default 5
    /// minutes). Only for verifiers made [`from_url`](Self::from_url).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh = interval;
        self
    }

    /// The shortest time between two fetches (default 10 seconds), so forged `kid`s
    /// cannot make us hammer the issuer.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }
}
