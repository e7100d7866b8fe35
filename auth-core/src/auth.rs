//! [`Auth`]: construction, lifecycle (`start`/`stop`) and the session sweeper.
//! The operations themselves are in `service.rs`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use auth_storage::{Reservation, SettleLogin, Storage, StorageError, User};
use parking_lot::Mutex;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use crate::audit::{AuditEvent, AuditKind};
use crate::config::Config;
use crate::error::AuthError;
use crate::keys::{KeyRing, SigningKey};
use crate::password::{PasswordCheck, PasswordHasher};
use crate::throttle::Throttle;
use crate::tokens::{Claims, TokenCodec};

const NEW: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;
/// Expired sessions deleted per storage call by the sweeper.
const SWEEP_BATCH: usize = 1000;
/// Compare-and-set attempts before giving up on a contended user record.
pub(crate) const CAS_RETRIES: usize = 16;

/// The authentication service over a storage backend.
///
/// Cheap to clone (an `Arc` inside). Usable as soon as [`Auth::new`] returns; [`start`]
/// adds the background sweeper that deletes expired sessions, and [`stop`] ends it and
/// makes every later call fail with [`AuthError::Stopped`].
///
/// [`start`]: Auth::start
/// [`stop`]: Auth::stop
pub struct Auth<S: Storage> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: Storage> Clone for Auth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Storage> std::fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("state", &self.inner.state.load(Ordering::SeqCst))
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<S> {
    pub(crate) config: Config,
    pub(crate) storage: S,
    pub(crate) codec: TokenCodec,
    pub(crate) hasher: PasswordHasher,
    pub(crate) throttle: Throttle,
    /// Seals TOTP secrets (from `config.mfa.key`, else generated).
    pub(crate) mfa_key: crate::mfa::MfaKey,
    /// The WebAuthn relying party, when passkeys are configured.
    pub(crate) passkeys: Option<crate::passkeys::RelyingParty>,
    /// A hash of a random password, verified against for unknown users so that their
    /// logins take as long as real ones.
    dummy_hash: OnceCell<String>,
    state: AtomicU8,
    stop_tx: watch::Sender<bool>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

impl<S: Storage> Auth<S> {
    /// Checks the configuration and builds the service. Without configured keys, a
    /// random HS256 key is generated (tokens then die with the process).
    pub fn new(config: Config, storage: S) -> Result<Self, AuthError> {
        config.validate()?;
        let keys = config
            .keys
            .clone()
            .unwrap_or_else(|| KeyRing::new(SigningKey::generate_hs256()));
        let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let codec = TokenCodec::new(keys, &config.issuer, &config.audience, skew);
        let hasher =
            PasswordHasher::with_queue(config.hash, config.hash_concurrency, config.hash_queue)?;
        let throttle = Throttle::new(&config.throttle, std::sync::Arc::clone(&config.clock));
        let mfa_key = config
            .mfa
            .key
            .clone()
            .unwrap_or_else(crate::mfa::MfaKey::generate);
        let passkeys = config
            .mfa
            .passkeys
            .as_ref()
            .map(crate::passkeys::RelyingParty::new)
            .transpose()?;
        let (stop_tx, _) = watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                storage,
                codec,
                hasher,
                throttle,
                mfa_key,
                passkeys,
                dummy_hash: OnceCell::new(),
                state: AtomicU8::new(NEW),
                stop_tx,
                sweeper: Mutex::new(None),
            }),
        })
    }

    /// Starts the background sweeper. Needs a tokio runtime. Idempotent while running;
    /// [`AuthError::Stopped`] after [`Auth::stop`].
    pub fn start(&self) -> Result<(), AuthError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AuthError::InvalidConfig("Auth::start needs a tokio runtime".into()))?;
        match self
            .inner
            .state
            .compare_exchange(NEW, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {}
            Err(RUNNING) => return Ok(()),
            Err(_) => return Err(AuthError::Stopped),
        }
        let weak = Arc::downgrade(&self.inner);
        let stop_rx = self.inner.stop_tx.subscribe();
        let handle = runtime.spawn(sweep_loop(weak, stop_rx, self.inner.config.sweep_interval));
        *self.inner.sweeper.lock() = Some(handle);
        tracing::debug!("auth started");
        Ok(())
    }

    /// Stops the sweeper and waits for it to finish; later calls fail with
    /// [`AuthError::Stopped`]. Idempotent.
    pub async fn stop(&self) {
        self.inner.state.store(STOPPED, Ordering::SeqCst);
        self.inner.stop_tx.send_replace(true);
        let handle = self.inner.sweeper.lock().take();
        if let Some(handle) = handle {
            let _ = handle.await;
            tracing::debug!("auth stopped");
        }
    }

    /// True between [`Auth::start`] and [`Auth::stop`].
    pub fn is_running(&self) -> bool {
        self.inner.state.load(Ordering::SeqCst) == RUNNING
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The storage backend.
    pub fn storage(&self) -> &S {
        &self.inner.storage
    }

    /// The public keys of the key ring as a JWKS: what `/.well-known/jwks.json` serves
    /// and what a [`Verifier`](crate::Verifier) in another service checks tokens with.
    /// Empty when tokens are signed with HS256.
    pub fn jwks(&self) -> crate::Jwks {
        self.inner.codec.keys().jwks()
    }

    /// Checks an access token and returns its claims: signature, algorithm, issuer,
    /// audience, expiry and (with [`SessionCheck::Always`](crate::SessionCheck)) that
    /// the session is live. The fast path for embedding applications.
    pub async fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        self.inner.ensure_open()?;
        let now = self.inner.now_ms();
        let claims = self.inner.codec.decode(token, now)?;
        if self.inner.config.session_check == crate::SessionCheck::Always {
            self.inner.require_live(&claims, now).await?;
        }
        Ok(claims)
    }

    /// Deletes every session expired by now; what the sweeper does every
    /// `sweep_interval`. Returns how many were deleted.
    pub async fn sweep_expired(&self) -> Result<u64, AuthError> {
        self.inner.ensure_open()?;
        self.inner.sweep().await
    }
}

async fn sweep_loop<S: Storage>(
    weak: Weak<Inner<S>>,
    mut stop: watch::Receiver<bool>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let Some(inner) = weak.upgrade() else { break };
        inner.throttle.forget_idle();
        match inner.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired sessions swept"),
            Err(e) => tracing::warn!(code = e.code(), error = %e, "session sweep failed"),
        }
    }
}

impl<S: Storage> Inner<S> {
    pub(crate) fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    /// A new audit event of `kind` now, stamped with this node's name.
    pub(crate) fn event(&self, kind: AuditKind) -> AuditEvent {
        let mut e = AuditEvent::new(kind, self.now_ms());
        e.node.clone_from(&self.config.audit.node);
        e
    }

    /// Hands `event` to the audit sink.
    pub(crate) fn audit(&self, event: AuditEvent) {
        self.config.audit.sink.record(&event);
        if let Some(recent) = &self.config.audit.recent {
            crate::audit::AuditSink::record(recent.as_ref(), &event);
        }
    }

    /// Whether the failure charged as `ticket` started a lock: the `locked` event.
    fn audit_lock(&self, ticket: Option<u32>, user_id: &str, source: Option<&str>, now: i64) {
        let Some(ticket) = ticket else {
            return;
        };
        let r = self.config.lockout.reservation("", now);
        if auth_storage::lock_delay_ms(ticket, r.max_failures, r.base_delay_ms, r.max_delay_ms) > 0
        {
            let mut e = self
                .event(AuditKind::Locked)
                .user(user_id)
                .detail("lockout");
            e.source = source.unwrap_or_default().to_owned();
            self.audit(e);
        }
    }

    pub(crate) fn ensure_open(&self) -> Result<(), AuthError> {
        if self.state.load(Ordering::SeqCst) == STOPPED {
            Err(AuthError::Stopped)
        } else {
            Ok(())
        }
    }

    async fn sweep(&self) -> Result<u64, AuthError> {
        let now = self.now_ms();
        let mut total = 0;
        // Bounded so one sweep cannot monopolise storage; the next tick continues.
        for _ in 0..100 {
            let n = self
                .storage
                .delete_expired_sessions(now, SWEEP_BATCH)
                .await?;
            total += n;
            if n < SWEEP_BATCH as u64 {
                break;
            }
        }
        Ok(total)
    }

    pub(crate) async fn require_live(&self, claims: &Claims, now: i64) -> Result<(), AuthError> {
        if self
            .storage
            .is_session_live(&claims.sid, &claims.sub, now)
            .await?
        {
            Ok(())
        } else {
            Err(AuthError::SessionEnded)
        }
    }

    /// The hash unknown users are checked against (a random password's), so that their
    /// checks take as long as real ones.
    async fn dummy_phc(&self) -> Result<&str, AuthError> {
        self.dummy_hash
            .get_or_try_init(|| async {
                let random = crate::tokens::random_id();
                self.hasher.hash(&random).await
            })
            .await
            .map(String::as_str)
    }

    /// Checks a password for a name that cannot exist (it breaks the username policy)
    /// against the dummy hash: the same hashing time, no storage. Always fails with
    /// `InvalidCredentials` unless the check itself is shed.
    pub(crate) async fn reject_unknown(&self, password: &str) -> AuthError {
        let phc = match self.dummy_phc().await {
            Ok(p) => p,
            Err(e) => return e,
        };
        match self.hasher.verify(password, phc).await {
            Err(e @ AuthError::Overloaded { .. }) => e,
            _ => AuthError::InvalidCredentials,
        }
    }

    /// A password check under throttling and lockout, the same for a real account
    /// (`stored` = its hash) and an unknown name (`None`, checked against the dummy
    /// hash):
    ///
    /// 1. the (account, source) bucket ([`AuthError::RateLimited`]);
    /// 2. a read of the name's lock: while it holds, no hash and no write
    ///    ([`AuthError::Locked`]);
    /// 3. a hash slot, bounded in waiting ([`AuthError::Overloaded`]);
    /// 4. the reservation: the check is charged as a failure *before* it runs, in one
    ///    atomic storage operation, so concurrent guesses cannot outrun the lock;
    /// 5. the check; on success the charge is refunded ([`Storage::settle_login`]),
    ///    which never lifts a lock set meanwhile.
    ///
    /// Returns the check (always `matches`) or `InvalidCredentials`.
    /// A failure that starts a lock is audited (`locked`, with `user_id` when the
    /// account exists).
    pub(crate) async fn guarded_check(
        &self,
        username_key: &str,
        user_id: &str,
        source: Option<&str>,
        password: &str,
        stored: Option<&str>,
        now: i64,
    ) -> Result<PasswordCheck, AuthError> {
        self.throttle.check_account(username_key, source)?;
        let phc = match stored {
            Some(p) => p,
            None => self.dummy_phc().await?,
        };
        self.refuse_if_locked(username_key, now).await?;
        let slot = self.hasher.slot().await?;
        let ticket = self.charge(username_key, now).await?;
        let check = match slot.verify(password, phc).await {
            Ok(c) if c.matches && stored.is_some() => c,
            Ok(_) => {
                self.audit_lock(ticket, user_id, source, now);
                return Err(AuthError::InvalidCredentials);
            }
            Err(e) => {
                self.audit_lock(ticket, user_id, source, now);
                return Err(e);
            }
        };
        self.refund(username_key, ticket).await?;
        Ok(check)
    }

    /// A second-factor check under the same throttling and lockout as a password
    /// check (steps 1, 2, 4 and 5 of [`Inner::guarded_check`]): a wrong code is charged
    /// to the account like a wrong password, a right one refunds its charge.
    pub(crate) async fn guarded_code<T>(
        &self,
        username_key: &str,
        user_id: &str,
        source: Option<&str>,
        now: i64,
        check: impl std::future::Future<Output = Result<T, AuthError>>,
    ) -> Result<T, AuthError> {
        self.throttle.check_account(username_key, source)?;
        self.refuse_if_locked(username_key, now).await?;
        let ticket = self.charge(username_key, now).await?;
        let out = match check.await {
            Ok(out) => out,
            Err(e) => {
                self.audit_lock(ticket, user_id, source, now);
                return Err(e);
            }
        };
        self.refund(username_key, ticket).await?;
        Ok(out)
    }

    /// `Locked` while the name's lock holds: a read, so a locked name costs no hash
    /// and no write.
    async fn refuse_if_locked(&self, username_key: &str, now: i64) -> Result<(), AuthError> {
        if self.config.lockout.max_failures > 0
            && let Some(rec) = self.storage.get_login_attempts(username_key).await?
        {
            check_lock(rec.locked_until_ms, now)?;
        }
        Ok(())
    }

    /// Charges one check as a failure before it runs, in one atomic storage
    /// operation; `None` when lockout is off.
    async fn charge(&self, username_key: &str, now: i64) -> Result<Option<u32>, AuthError> {
        let lockout = &self.config.lockout;
        if lockout.max_failures == 0 {
            return Ok(None);
        }
        match self
            .storage
            .reserve_login(lockout.reservation(username_key, now))
            .await?
        {
            Reservation::Granted { ticket } => Ok(Some(ticket)),
            Reservation::Locked { until_ms } => {
                check_lock(until_ms, now)?;
                // A lock that ended already is still a refusal: never check uncharged.
                Err(AuthError::Locked {
                    retry_after: std::time::Duration::from_millis(1),
                })
            }
        }
    }

    /// Refunds the charge of a check that succeeded ([`Storage::settle_login`]).
    async fn refund(&self, username_key: &str, ticket: Option<u32>) -> Result<(), AuthError> {
        if let Some(ticket) = ticket {
            self.storage
                .settle_login(SettleLogin {
                    username_key: username_key.to_owned(),
                    ticket,
                })
                .await?;
        }
        Ok(())
    }

    /// After a successful check whose stored hash uses old parameters: replaces it,
    /// unless the password changed meanwhile.
    pub(crate) async fn upgrade_hash(
        &self,
        mut user: User,
        rehash: String,
        now: i64,
    ) -> Result<User, AuthError> {
        let verified_hash = user.password_hash.clone();
        for _ in 0..CAS_RETRIES {
            if user.password_hash != verified_hash {
                return Ok(user);
            }
            let mut next = user.clone();
            next.password_hash = rehash.clone();
            next.updated_at_ms = now;
            match self.storage.update_user(next).await {
                Ok(stored) => return Ok(stored),
                Err(StorageError::Conflict) => match self.storage.get_user(&user.id).await? {
                    Some(fresh) => user = fresh,
                    None => return Err(AuthError::InvalidCredentials),
                },
                Err(StorageError::NotFound) => return Err(AuthError::InvalidCredentials),
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Unavailable("user record is contended".into()))
    }
}

/// `Locked` while a lock ending at `until_ms` holds at `now`.
fn check_lock(until_ms: i64, now: i64) -> Result<(), AuthError> {
    if until_ms > now {
        let ms = u64::try_from(until_ms - now).unwrap_or(0);
        return Err(AuthError::Locked {
            retry_after: std::time::Duration::from_millis(ms),
        });
    }
    Ok(())
}
