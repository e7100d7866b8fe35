//! [`Config`]: token lifetimes, hash difficulty, policies and keys, with documented
//! defaults that are safe to ship.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::keys::KeyRing;

/// Everything `Auth` can be tuned by. `Config::default()` is production-ready except
/// for `keys`: without a key ring, a fresh HS256 key is generated at start-up, so tokens
/// stop verifying when the process restarts and are not shared between processes.
///
/// New settings are added in minor releases, so the struct is `#[non_exhaustive]`:
/// start from `Config::default()` and set the fields you need.
///
/// ```
/// use std::time::Duration;
/// use auth_core::{Config, KeyRing, SigningKey};
///
/// let mut config = Config::default();
/// config.access_token_ttl = Duration::from_secs(5 * 60);
/// config.keys = Some(KeyRing::new(SigningKey::generate_ed25519()));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Lifetime of an access token (JWT). Default 15 minutes.
    pub access_token_ttl: Duration,
    /// Idle lifetime of a session: a refresh token not used for this long expires.
    /// Default 30 days.
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a session, however often it is refreshed. Default 90 days.
    pub session_max_lifetime: Duration,
    /// How long after a rotation the just-rotated refresh token may be presented again
    /// and get the same successor (two tabs refreshing at once), instead of being
    /// treated as theft. Default 10 seconds; zero disables the window.
    pub refresh_grace: Duration,
    /// argon2id cost parameters. Default OWASP: m=19456 KiB, t=2, p=1.
    pub hash: HashParams,
    /// How many password hashes may run at once; 0 means one per CPU core. Hashing
    /// never runs on an async worker: it runs on as many threads of its own (or on
    /// tokio's blocking pool with [`HashPriority::Normal`]).
    pub hash_concurrency: usize,
    /// How many password checks may wait for a hash slot, and for how long, before
    /// they are shed with [`AuthError::Overloaded`].
    pub hash_queue: HashQueue,
    /// Throttling by source address (logins, registrations, refreshes, password
    /// changes) and per (account, source) for password checks.
    pub throttle: crate::throttle::ThrottlePolicy,
    /// Username rules.
    pub username: UsernamePolicy,
    /// Password rules.
    pub password: PasswordPolicy,
    /// Failed-login lockout (wrong second-factor codes count too).
    pub lockout: LockoutPolicy,
    /// Second factors: the key sealing TOTP secrets, the name authenticator apps show,
    /// the MFA ticket of a login's second step.
    pub mfa: MfaPolicy,
    /// `iss` claim of issued tokens, required on verification. Default `"auth-sdk"`.
    pub issuer: String,
    /// `aud` claim of issued tokens, required on verification. Default `"auth-sdk"`.
    pub audience: String,
    /// Signing keys. `None` generates an HS256 key at start-up (see the type docs).
    pub keys: Option<KeyRing>,
    /// The audit trail: where events go, and this node's name on them. Default: the
    /// `auth::audit` tracing target.
    pub audit: crate::audit::Audit,
    /// Most sessions one user may have; opening one more ends their oldest (in the
    /// same storage step). Default 100; 0 means no bound.
    pub max_sessions_per_user: u32,
    /// What `AuthApi::admin_cluster` reports beyond the storage kind: a Raft backend
    /// sets it to show its members. Default `None` (a single process).
    pub cluster: Option<Arc<dyn crate::admin::ClusterView>>,
    /// Whether `verify` also checks that the session is live. Default
    /// [`SessionCheck::Always`]: logout takes effect at once, at the cost of one storage
    /// read per verification.
    pub session_check: SessionCheck,
    /// Tolerated clock difference between issuer and verifier for `exp`/`nbf`.
    /// Default 30 seconds.
    pub clock_skew: Duration,
    /// How often the sweeper deletes expired sessions. Default 60 seconds.
    pub sweep_interval: Duration,
    /// The time source. Default: the system clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(90 * 24 * 3600),
            refresh_grace: Duration::from_secs(10),
            hash: HashParams::default(),
            hash_concurrency: 0,
            hash_queue: HashQueue::default(),
            throttle: crate::throttle::ThrottlePolicy::default(),
            username: UsernamePolicy::default(),
            password: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            mfa: MfaPolicy::default(),
            issuer: "auth-sdk".into(),
            audience: "auth-sdk".into(),
            keys: None,
            audit: crate::audit::Audit::default(),
            max_sessions_per_user: 100,
            cluster: None,
            session_check: SessionCheck::Always,
            clock_skew: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
        }
    }
}

impl Config {
    /// Checks that the settings are coherent.
    pub fn validate(&self) -> Result<(), AuthError> {
        let bad = |m: &str| Err(AuthError::InvalidConfig(m.to_owned()));
        if self.access_token_ttl < Duration::from_secs(1) {
            return bad("access_token_ttl must be at least 1 second");
        }
        if self.refresh_token_ttl < Duration::from_secs(1) {
            return bad("refresh_token_ttl must be at least 1 second");
        }
        if self.session_max_lifetime < self.refresh_token_ttl.min(self.access_token_ttl) {
            return bad("session_max_lifetime is shorter than the token lifetimes");
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            return bad("issuer and audience must not be empty");
        }
        if self.username.min_chars == 0 || self.username.min_chars > self.username.max_chars {
            return bad("username policy needs 0 < min_chars <= max_chars");
        }
        if self.password.min_bytes == 0 || self.password.min_bytes > self.password.max_bytes {
            return bad("password policy needs 0 < min_bytes <= max_bytes");
        }
        if self.sweep_interval.is_zero() {
            return bad("sweep_interval must not be zero");
        }
        if self.hash_queue.max_wait.is_zero() {
            return bad("hash_queue.max_wait must not be zero");
        }
        if self.lockout.forget_after < self.lockout.base_delay.min(self.lockout.max_delay) {
            return bad("lockout.forget_after is shorter than the lock it would forget");
        }
        self.mfa.validate()?;
        self.hash.to_argon2().map(|_| ())
    }
}

/// Second factors (TOTP, recovery codes, passkeys) and the step-up at login.
///
/// A user with a confirmed second factor gets no tokens from a password alone: the
/// login answers `mfa_required` with a single-use ticket, and a second call with the
/// ticket and a code completes it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MfaPolicy {
    /// The key that seals TOTP secrets at rest (XChaCha20-Poly1305), separate from the
    /// token keys. `None` generates one at start-up: enrolled secrets then stop opening
    /// when the process restarts, so set it for any storage that outlives the process
    /// (and the same on every node of a cluster).
    pub key: Option<crate::mfa::MfaKey>,
    /// Whether users may enrol TOTP. Default true; off, enrolment is refused with
    /// [`AuthError::MfaConflict`] (factors enrolled before keep working if `key` opens
    /// them). A server without a shared `key` turns it off rather than seal secrets
    /// other nodes cannot open.
    pub totp_enabled: bool,
    /// The issuer authenticator apps show next to the account (the `otpauth://`
    /// label). Default `"auth-sdk"`; no `:`.
    pub totp_issuer: String,
    /// How long the ticket of a login's second step lives. Default 5 minutes.
    pub ticket_ttl: Duration,
    /// Wrong codes one ticket survives before the password must be entered again
    /// (each also counts towards the account's lockout). Default 5.
    pub ticket_attempts: u32,
    /// Passkeys (WebAuthn): the relying party. `None`: passkeys are not offered.
    pub passkeys: Option<PasskeyConfig>,
    /// Sign-ins in progress (tickets, passkey ceremonies) one user may have; a new one
    /// beyond it ends the oldest. Default 8.
    pub max_pending_per_user: u32,
    /// Sign-ins in progress in total; beyond it new ones are refused as unavailable
    /// until the sweeper removes expired ones. Default 100 000.
    pub max_pending_total: u64,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            key: None,
            totp_enabled: true,
            totp_issuer: "auth-sdk".into(),
            ticket_ttl: Duration::from_secs(5 * 60),
            ticket_attempts: 5,
            passkeys: None,
            max_pending_per_user: 8,
            max_pending_total: 100_000,
        }
    }
}

/// The WebAuthn relying party: who passkeys are registered with. Browsers bind each
/// passkey to `rp_id` and accept ceremonies only from pages of `origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyConfig {
    /// The relying party id: the site's domain (`example.com`, or `localhost` in
    /// development). Passkeys work on this domain and its subdomains.
    pub rp_id: String,
    /// The origin pages run the ceremonies from (`https://login.example.com`); its host
    /// must be `rp_id` or a subdomain of it.
    pub origin: String,
    /// The name authenticators show. Default: `rp_id`.
    pub rp_name: String,
}

impl PasskeyConfig {
    /// A relying party `rp_id` for pages of `origin`, named after `rp_id`.
    pub fn new(rp_id: impl Into<String>, origin: impl Into<String>) -> Self {
        let rp_id = rp_id.into();
        Self {
            rp_name: rp_id.clone(),
            rp_id,
            origin: origin.into(),
        }
    }
}

impl MfaPolicy {
    fn validate(&self) -> Result<(), AuthError> {
        let bad = |m: &str| Err(AuthError::InvalidConfig(m.to_owned()));
        if self.totp_issuer.is_empty() || self.totp_issuer.contains(':') {
            return bad("mfa.totp_issuer must be non-empty and contain no ':'");
        }
        if self.ticket_ttl < Duration::from_secs(10) {
            return bad("mfa.ticket_ttl must be at least 10 seconds");
        }
        if self.ticket_attempts == 0 || self.max_pending_per_user == 0 {
            return bad("mfa.ticket_attempts and mfa.max_pending_per_user must not be zero");
        }
        if self.max_pending_total == 0 {
            return bad("mfa.max_pending_total must not be zero");
        }
        if let Some(p) = &self.passkeys {
            crate::passkeys::RelyingParty::new(p)?;
        }
        Ok(())
    }
}

/// The queue in front of the password hashers, and how they are scheduled: a login
/// storm is shed with a typed, retryable error instead of queueing without end, and
/// the hashes admitted run behind everything else (starving nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashQueue {
    /// Checks that may wait for a hash slot at once. Beyond it, a check fails at once
    /// with [`AuthError::Overloaded`]. 0 (the default) derives it from `max_wait`: as
    /// many as the slots can serve within it at the recent time per check, at least
    /// 16 per slot and at most 4 096 (about 125 at the default hash parameters on two
    /// cores).
    pub max_waiting: usize,
    /// Longest wait for a slot before a check fails with [`AuthError::Overloaded`].
    /// Default 1 second.
    pub max_wait: Duration,
    /// How the hashing threads are scheduled against the process's other threads.
    /// Default [`HashPriority::Background`].
    pub priority: HashPriority,
}

/// Scheduling of the password-hashing threads.
///
/// A hash is tens of milliseconds of CPU; a token check, a refresh or a page is tens of
/// microseconds. When the cores are busy, `Background` lets the short work run first,
/// so that a burst of logins (or a flood that got through the throttles) does not
/// show in the latency of everyone already signed in. Logins then take longer while the
/// machine is saturated, never fail for it: the queue's bounds count waiting for a
/// slot, not for the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashPriority {
    /// Hashing threads run below the others: on Linux at nice +10 (a tenth of a
    /// normal thread's share of a contended core). Elsewhere the same as `Normal`.
    #[default]
    Background,
    /// Hashes run on tokio's blocking pool like any other blocking work.
    Normal,
}

impl Default for HashQueue {
    fn default() -> Self {
        Self {
            max_waiting: 0,
            max_wait: Duration::from_secs(1),
            priority: HashPriority::Background,
        }
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB. Default 19456 (19 MiB).
    pub memory_kib: u32,
    /// Passes over memory. Default 2.
    pub iterations: u32,
    /// Lanes. Default 1.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommended minimum for argon2id.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// Very cheap parameters (m=64 KiB, t=1, p=1) for tests and benchmarks of
    /// everything except hashing. Never use them in production.
    pub const fn insecure_fast() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    pub(crate) fn to_argon2(self) -> Result<argon2::Params, AuthError> {
        argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(crate::password::HASH_LEN),
        )
        .map_err(|e| AuthError::InvalidConfig(format!("argon2 parameters: {e}")))
    }
}

/// Username rules. A username is NFKC-normalised (full-width and other compatibility
/// forms become the plain letter), then must be `min_chars..=max_chars` characters of
/// Unicode letters and digits plus `.`, `_` and `-`, starting with a letter or digit,
/// in one script (digits and punctuation go with any). Uniqueness is by a key that is
/// lowercased and reduced to its Unicode TR39 confusable skeleton, so look-alikes
/// (`ａdmin`, `adrnin`) are the same account as `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsernamePolicy {
    /// Minimum length in characters. Default 3.
    pub min_chars: usize,
    /// Maximum length in characters. Default 32.
    pub max_chars: usize,
}

impl Default for UsernamePolicy {
    fn default() -> Self {
        Self {
            min_chars: 3,
            max_chars: 32,
        }
    }
}

/// Password rules, after NIST SP 800-63B: a length range and nothing else. The upper
/// bound stops hash flooding (megabyte passwords fed to the hasher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in bytes. Default 8.
    pub min_bytes: usize,
    /// Maximum length in bytes. Default 1024.
    pub max_bytes: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_bytes: 8,
            max_bytes: 1024,
        }
    }
}

/// The account-wide lock after failed password checks, kept in storage (so it holds
/// cluster-wide) and keyed by username, whether or not the account exists (so an
/// unknown name locks exactly like a real one).
///
/// Every check is charged before it runs; after `max_failures` charges the name is
/// locked for `base_delay`, and each further failure doubles the delay, up to
/// `max_delay`. A success refunds its own charge and resets the count (but never lifts
/// a lock others' failures set meanwhile). The count is forgotten `forget_after` after
/// the last failure. While locked, checks are refused without hashing.
///
/// This is the last line: per-(account, source) throttling
/// ([`ThrottlePolicy::account_source`](crate::ThrottlePolicy)) slows one guesser far
/// earlier, so one attacker cannot keep a victim locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures before the first lock; 0 disables lockout. Default 20.
    pub max_failures: u32,
    /// First lock duration. Default 30 seconds.
    pub base_delay: Duration,
    /// Longest lock duration. Default 15 minutes.
    pub max_delay: Duration,
    /// Failures older than this (with no lock in force) are forgotten. Default 1 hour.
    pub forget_after: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 20,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
        }
    }
}

impl LockoutPolicy {
    /// The lock duration after `failures` consecutive failures (zero if not locked).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let ms = auth_storage::lock_delay_ms(
            failures,
            self.max_failures,
            crate::clock::duration_ms(self.base_delay),
            crate::clock::duration_ms(self.max_delay),
        );
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// The storage request charging one check of `username_key` at `now_ms`.
    pub(crate) fn reservation(
        &self,
        username_key: &str,
        now_ms: i64,
    ) -> auth_storage::ReserveLogin {
        auth_storage::ReserveLogin {
            username_key: username_key.to_owned(),
            now_ms,
            max_failures: self.max_failures,
            base_delay_ms: crate::clock::duration_ms(self.base_delay),
            max_delay_ms: crate::clock::duration_ms(self.max_delay),
            forget_after_ms: crate::clock::duration_ms(self.forget_after),
        }
    }
}

/// What `verify` checks beyond the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    /// Also check that the session is live (one storage read): logout and revocation
    /// take effect at once.
    Always,
    /// Check only the token: faster, but a logged-out token keeps verifying until it
    /// expires (at most `access_token_ttl`).
    Stateless,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(c.refresh_grace, Duration::from_secs(10));
        assert_eq!(
            c.hash,
            HashParams {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1
            }
        );
        assert_eq!(c.lockout.max_failures, 20);
        assert_eq!(c.lockout.forget_after, Duration::from_secs(3600));
        assert_eq!(c.hash_queue.max_wait, Duration::from_secs(1));
        assert_eq!(c.throttle.account_source.burst, 5);
        assert_eq!(c.password.min_bytes, 8);
        assert_eq!(c.password.max_bytes, 1024);
        c.validate().unwrap();
    }

    #[test]
    fn lockout_backoff_grows_and_caps() {
        let p = LockoutPolicy {
            max_failures: 5,
            ..LockoutPolicy::default()
        };
        assert_eq!(p.delay_after(4), Duration::ZERO);
        assert_eq!(p.delay_after(5), Duration::from_secs(30));
        assert_eq!(p.delay_after(6), Duration::from_secs(60));
        assert_eq!(p.delay_after(7), Duration::from_secs(120));
        assert_eq!(p.delay_after(60), Duration::from_secs(900));
        assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(900));
        let off = LockoutPolicy {
            max_failures: 0,
            ..p
        };
        assert_eq!(off.delay_after(100), Duration::ZERO);
    }

    #[test]
    fn incoherent_configs_are_rejected() {
        let mut c = Config {
            hash: HashParams {
                memory_kib: 1,
                iterations: 0,
                parallelism: 0,
            },
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().code(), "invalid_config");
        c = Config::default();
        c.issuer.clear();
        assert!(c.validate().is_err());
        c = Config::default();
        c.password.min_bytes = 2000;
        assert!(c.validate().is_err());
    }
}
