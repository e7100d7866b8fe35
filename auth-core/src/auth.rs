//! [`Auth`]: construction, lifecycle (`start`/`stop`) and the session sweeper.
//! The operations themselves are in `service.rs`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use auth_storage::{Storage, StorageError, User};
use parking_lot::Mutex;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use crate::clock::duration_ms;
use crate::config::Config;
use crate::error::AuthError;
use crate::keys::{KeyRing, SigningKey};
use crate::password::PasswordHasher;
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
        let hasher = PasswordHasher::new(config.hash, config.hash_concurrency)?;
        let (stop_tx, _) = watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                storage,
                codec,
                hasher,
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

    /// Verifies a password against the dummy hash, to spend the same time as a real
    /// check. Always returns `InvalidCredentials`.
    pub(crate) async fn reject_unknown(&self, password: &str) -> AuthError {
        let dummy = self
            .dummy_hash
            .get_or_try_init(|| async {
                let random = crate::tokens::random_id();
                self.hasher.hash(&random).await
            })
            .await;
        if let Ok(phc) = dummy {
            let _ = self.hasher.verify(password, phc).await;
        }
        AuthError::InvalidCredentials
    }

    /// Refuses a login while the user is locked out.
    pub(crate) fn check_lock(&self, user: &User, now: i64) -> Result<(), AuthError> {
        if user.locked_until_ms > now {
            let ms = u64::try_from(user.locked_until_ms - now).unwrap_or(0);
            return Err(AuthError::Locked {
                retry_after: std::time::Duration::from_millis(ms),
            });
        }
        Ok(())
    }

    /// Counts a failed password check, locking the account past the threshold.
    pub(crate) async fn record_failure(&self, mut user: User, now: i64) -> Result<(), AuthError> {
        for _ in 0..CAS_RETRIES {
            user.failed_logins = user.failed_logins.saturating_add(1);
            let delay = self.config.lockout.delay_after(user.failed_logins);
            if !delay.is_zero() {
                user.locked_until_ms = now.saturating_add(duration_ms(delay));
            }
            user.updated_at_ms = now;
            match self.storage.update_user(user.clone()).await {
                Ok(_) | Err(StorageError::NotFound) => return Ok(()),
                Err(StorageError::Conflict) => match self.storage.get_user(&user.id).await? {
                    Some(fresh) => user = fresh,
                    None => return Ok(()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Unavailable("user record is contended".into()))
    }

    /// After a successful password check: clears the failure count and, if the stored
    /// hash uses old parameters, replaces it (unless the password changed meanwhile).
    pub(crate) async fn record_success(
        &self,
        mut user: User,
        rehash: Option<String>,
        now: i64,
    ) -> Result<User, AuthError> {
        let verified_hash = user.password_hash.clone();
        for _ in 0..CAS_RETRIES {
            let reset = user.failed_logins != 0 || user.locked_until_ms != 0;
            let upgrade = rehash.is_some() && user.password_hash == verified_hash;
            if !reset && !upgrade {
                return Ok(user);
            }
            let mut next = user.clone();
            next.failed_logins = 0;
            next.locked_until_ms = 0;
            next.updated_at_ms = now;
            if let (true, Some(h)) = (upgrade, &rehash) {
                next.password_hash = h.clone();
            }
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
