//! [`PasswordHasher`]: argon2id with PHC strings, run on bounded hashing threads.
//!
//! Hashing is deliberately slow (~16 ms at the default parameters), so it must never run
//! on an async worker thread, and a semaphore admits at most `concurrency` at a time
//! (one per core by default) so a login storm cannot starve everything else. With
//! [`HashPriority::Background`] (the default) each hash goes straight to one of
//! `concurrency` threads of lower scheduling priority, which answers through a
//! one-shot channel: on a saturated machine token checks and page loads run before
//! password hashes, and a hash costs the caller two thread hand-offs (there and back),
//! not four. With [`HashPriority::Normal`] hashes run on tokio's blocking pool. The queue in front of the semaphore is bounded in
//! length (by default what the slots can serve within the waiting time, at the recent
//! time per check) and in waiting time ([`HashQueue`]): past either bound a check is shed with
//! [`AuthError::Overloaded`] without being tried, so a flood fails fast instead of
//! making every caller wait for seconds. The argon2 memory blocks (19 MiB at the
//! defaults) are pooled and reused rather than allocated per hash, which roughly halves
//! p99 hash time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::config::{HashParams, HashPriority, HashQueue};
use crate::error::AuthError;

/// Length of the raw argon2 output in bytes.
pub(crate) const HASH_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// Stored hashes with a memory cost above this are refused rather than run (a corrupt
/// or hostile record must not make us allocate gigabytes).
const MAX_STORED_MEMORY_KIB: u32 = 1 << 20;
/// Stored hashes whose work (memory × passes, in KiB) exceeds this are refused too: a
/// corrupt `t=4294967295` on a small memory cost would otherwise hold a hashing permit
/// for hours. Four passes over the largest memory allowed; the defaults use 38 912.
const MAX_STORED_WORK_KIB: u64 = 4 * MAX_STORED_MEMORY_KIB as u64;

/// What checking a password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    /// The password matches.
    pub matches: bool,
    /// The stored hash uses other parameters than the current ones and should be
    /// replaced (only meaningful when `matches`).
    pub needs_rehash: bool,
}

/// argon2id hashing and verification on bounded, lower-priority threads.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Arc<Semaphore>,
    /// Callers waiting for a permit now.
    waiting: AtomicUsize,
    /// The configured bound on `waiting`, or 0: derived (see [`Inner::max_waiting`]).
    max_waiting: usize,
    max_wait: Duration,
    /// Hashing slots (the semaphore's permits).
    concurrency: usize,
    /// How long a slot is held per check, in nanoseconds: an exponentially weighted
    /// mean of the recent ones (0 before the first).
    mean_hold_ns: AtomicU64,
    /// The lower-priority hashing threads ([`HashPriority::Background`]).
    background: Option<HashThreads>,
    /// Reusable memory blocks, one per hash in flight at most.
    blocks: Mutex<Vec<Vec<Block>>>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .finish()
    }
}

impl PasswordHasher {
    /// A hasher with these parameters admitting `concurrency` hashes at once
    /// (0 = one per CPU core).
    pub fn new(params: HashParams, concurrency: usize) -> Result<Self, AuthError> {
        Self::with_queue(params, concurrency, HashQueue::default())
    }

    /// A hasher as [`PasswordHasher::new`] whose waiting line is bounded by `queue`.
    pub fn with_queue(
        params: HashParams,
        concurrency: usize,
        queue: HashQueue,
    ) -> Result<Self, AuthError> {
        let params = params.to_argon2()?;
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            concurrency
        };
        // Present from the start, so a quiet queue reads 0 rather than nothing.
        metrics::gauge!(crate::metrics::HASH_QUEUE_DEPTH).set(0.0);
        let background = match queue.priority {
            HashPriority::Normal => None,
            HashPriority::Background => Some(background_threads(concurrency)?),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                permits: Arc::new(Semaphore::new(concurrency)),
                waiting: AtomicUsize::new(0),
                max_waiting: queue.max_waiting,
                max_wait: queue.max_wait,
                concurrency,
                mean_hold_ns: AtomicU64::new(0),
                background,
                blocks: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Waits (bounded) for a hash slot. [`AuthError::Overloaded`] when the waiting line
    /// is full or the wait passes its deadline. Holding a slot while doing something
    /// else first (a storage write that must precede the check) is allowed.
    pub async fn slot(&self) -> Result<HashSlot, AuthError> {
        use crate::metrics::{HASH_QUEUE_DEPTH, HASH_SHED_TOTAL, HASH_WAIT_SECONDS};
        let shed = || {
            metrics::counter!(HASH_SHED_TOTAL).increment(1);
            AuthError::Overloaded {
                retry_after: self.inner.max_wait,
            }
        };
        if let Ok(permit) = Arc::clone(&self.inner.permits).try_acquire_owned() {
            metrics::histogram!(HASH_WAIT_SECONDS).record(0.0);
            return Ok(self.slot_from(permit));
        }
        let started = std::time::Instant::now();
        let waiting = self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!(HASH_QUEUE_DEPTH).set(waiting.saturating_add(1) as f64);
        let _leave = Leave(&self.inner.waiting);
        if waiting >= self.inner.max_waiting() {
            return Err(shed());
        }
        let acquire = Arc::clone(&self.inner.permits).acquire_owned();
        let r = match tokio::time::timeout(self.inner.max_wait, acquire).await {
            Ok(Ok(permit)) => Ok(self.slot_from(permit)),
            Ok(Err(_)) => Err(AuthError::Stopped),
            Err(_) => Err(shed()),
        };
        metrics::histogram!(HASH_WAIT_SECONDS).record(started.elapsed().as_secs_f64());
        r
    }

    fn slot_from(&self, permit: OwnedSemaphorePermit) -> HashSlot {
        HashSlot {
            inner: Arc::clone(&self.inner),
            _permit: Held {
                _permit: permit,
                since: std::time::Instant::now(),
                inner: Arc::clone(&self.inner),
            },
        }
    }

    /// Hashes `password` with a fresh random salt into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        self.slot().await?.hash(password).await
    }

    /// Checks `password` against a stored PHC string in constant time.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<PasswordCheck, AuthError> {
        self.slot().await?.verify(password, phc).await
    }
}

/// Decrements the waiting count when a waiter leaves, however it leaves.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!(crate::metrics::HASH_QUEUE_DEPTH).set(left as f64);
    }
}

/// One admitted hash: a permit of the hasher's semaphore, used by one
/// [`HashSlot::hash`] or [`HashSlot::verify`].
pub struct HashSlot {
    inner: Arc<Inner>,
    _permit: Held,
}

/// A slot's permit, timed from admission to release: how long a slot takes to serve
/// one check, from which the waiting line's default bound follows.
struct Held {
    _permit: OwnedSemaphorePermit,
    since: std::time::Instant,
    inner: Arc<Inner>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.inner.held_for(self.since.elapsed());
    }
}

impl std::fmt::Debug for HashSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashSlot").finish_non_exhaustive()
    }
}

impl HashSlot {
    /// Hashes `password` with a fresh random salt into a PHC string.
    pub async fn hash(self, password: &str) -> Result<String, AuthError> {
        let password = Zeroizing::new(password.as_bytes().to_vec());
        let params = self.inner.params.clone();
        self.run(move |inner| {
            let mut salt = [0u8; SALT_LEN];
            rand::rng().fill_bytes(&mut salt);
            let mut out = Zeroizing::new([0u8; HASH_LEN]);
            inner.compute(&params, &password, &salt, out.as_mut())?;
            phc_string(&params, &salt, out.as_ref())
        })
        .await
    }

    /// Checks `password` against a stored PHC string in constant time.
    pub async fn verify(self, password: &str, phc: &str) -> Result<PasswordCheck, AuthError> {
        let stored = StoredHash::parse(phc)?;
        let password = Zeroizing::new(password.as_bytes().to_vec());
        let current = self.inner.params.clone();
        self.run(move |inner| {
            let mut out = Zeroizing::new(vec![0u8; stored.hash.len()]);
            inner.compute(&stored.params, &password, &stored.salt, &mut out)?;
            let matches = Output::new(&out).ok() == Output::new(&stored.hash).ok();
            let needs_rehash = stored.params.m_cost() != current.m_cost()
                || stored.params.t_cost() != current.t_cost()
                || stored.params.p_cost() != current.p_cost()
                || stored.hash.len() != HASH_LEN;
            Ok(PasswordCheck {
                matches,
                needs_rehash,
            })
        })
        .await
    }

    /// Runs `f` on a background hashing thread (or, without them, tokio's blocking
    /// pool), holding the permit until it is done (even if the caller goes away
    /// meanwhile).
    async fn run<T, F>(self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, AuthError> + Send + 'static,
    {
        let HashSlot { inner, _permit } = self;
        let job = {
            let inner = Arc::clone(&inner);
            move || {
                let _permit = _permit;
                f(&inner)
            }
        };
        match &inner.background {
            Some(threads) => threads.run(job).await?,
            None => tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| AuthError::Internal(format!("hash task failed: {e}")))?,
        }
    }
}

/// The most checks that may wait for a slot when the bound is derived.
const MAX_WAITING_CAP: usize = 4096;

impl Inner {
    /// The bound on the waiting line: the configured one, or as many as the slots can
    /// serve within `max_wait` at the recent time per check, between 16 per slot and
    /// [`MAX_WAITING_CAP`]. At the default parameters (~16 ms a hash, 1 s, 2 slots)
    /// that is about 125; with a cheap hash, the cap: a count fixed for slow hashes
    /// would shed checks that wait a millisecond.
    fn max_waiting(&self) -> usize {
        if self.max_waiting != 0 {
            return self.max_waiting;
        }
        let floor = self.concurrency.saturating_mul(16);
        let mean = self.mean_hold_ns.load(Ordering::Relaxed);
        if mean == 0 {
            return floor;
        }
        let servable =
            (self.concurrency as u128).saturating_mul(self.max_wait.as_nanos()) / u128::from(mean);
        usize::try_from(servable)
            .unwrap_or(usize::MAX)
            .clamp(floor, MAX_WAITING_CAP.max(floor))
    }

    /// Folds one slot's holding time into the mean (weight 1/8).
    fn held_for(&self, took: Duration) {
        let x = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .mean_hold_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 { x } else { old - old / 8 + x / 8 })
            });
    }

    fn compute(
        &self,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), AuthError> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let needed = params.block_count();
        let mut blocks = {
            let mut pool = self.blocks.lock();
            match pool.iter().position(|b| b.len() == needed) {
                Some(i) => pool.swap_remove(i),
                None => vec![Block::default(); needed],
            }
        };
        let r = argon.hash_password_into_with_memory(password, salt, out, &mut blocks);
        // Only blocks of the current size are worth keeping.
        if needed == self.params.block_count() {
            self.blocks.lock().push(blocks);
        }
        r.map_err(|e| AuthError::Internal(format!("argon2: {e}")))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashing threads below the process's other threads (nice +10 on Linux), fed through
/// a channel. An idle thread sleeps in the channel's receive (a futex wait): no
/// spinning, which on a small machine would take CPU from the very work hashing is
/// meant to yield to. The threads end when the hasher is dropped (the channel closes).
struct HashThreads {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl HashThreads {
    /// Runs `f` on one of the threads; its answer comes back through a one-shot
    /// channel, so the caller's task is woken, not a thread blocked.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        // The semaphore admits at most as many hashes as there are threads and the
        // channel has room for as many: a full channel is a bug, not back-pressure.
        self.jobs
            .try_send(job)
            .map_err(|e| AuthError::Internal(format!("hashing threads: {e}")))?;
        rx.await
            .map_err(|_| AuthError::Internal("a hashing thread failed".into()))
    }
}

/// `n` hashing threads below the process's other threads: nice +10 on Linux.
fn background_threads(n: usize) -> Result<HashThreads, AuthError> {
    let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(n);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("auth-hash-{i}"))
            .spawn(move || {
                lower_this_threads_priority();
                loop {
                    // One thread waits in recv holding the lock, the others on the
                    // lock; both sleep.
                    let job = rx.lock().recv();
                    match job {
                        // A panic fails that one hash (its answer channel is dropped:
                        // the caller gets an error); the thread lives on for the next.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| AuthError::Internal(format!("cannot start the hashing threads: {e}")))?;
    }
    Ok(HashThreads { jobs })
}

/// Raises the calling thread's nice value by 10 (Linux keeps one per thread). Failure
/// only means hashing competes at normal priority, so it is logged, not returned.
#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    let done = unsafe {
        let tid = libc::gettid();
        let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, (now + 10).min(19))
    };
    if done != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "hashing thread left at normal priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

fn phc_string(params: &Params, salt: &[u8], hash: &[u8]) -> Result<String, AuthError> {
    let err = |e: argon2::password_hash::Error| AuthError::Internal(format!("phc: {e}"));
    let salt = SaltString::encode_b64(salt).map_err(err)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(err)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(hash).map_err(err)?),
    };
    Ok(phc.to_string())
}

/// A parsed, owned PHC string.
struct StoredHash {
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl StoredHash {
    fn parse(phc: &str) -> Result<Self, AuthError> {
        let corrupt = |what: &str| AuthError::Internal(format!("stored password hash: {what}"));
        let parsed = PasswordHash::new(phc).map_err(|_| corrupt("not a PHC string"))?;
        if parsed.algorithm != argon2::ARGON2ID_IDENT {
            return Err(corrupt("not argon2id"));
        }
        // argon2 0.5 computes `8 * p` before it bounds `p`, which overflows (a panic in
        // debug builds) from p = 2^29 on: bound it first.
        if parsed
            .params
            .get_decimal("p")
            .is_some_and(|p| p > Params::MAX_P_COST)
        {
            return Err(corrupt("bad parameters"));
        }
        let params = Params::try_from(&parsed).map_err(|_| corrupt("bad parameters"))?;
        if params.m_cost() > MAX_STORED_MEMORY_KIB {
            return Err(corrupt("memory cost too high"));
        }
        if u64::from(params.m_cost()) * u64::from(params.t_cost()) > MAX_STORED_WORK_KIB {
            return Err(corrupt("time cost too high"));
        }
        let mut salt_buf = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or_else(|| corrupt("no salt"))?
            .decode_b64(&mut salt_buf)
            .map_err(|_| corrupt("bad salt"))?
            .to_vec();
        let hash = parsed
            .hash
            .ok_or_else(|| corrupt("no hash"))?
            .as_bytes()
            .to_vec();
        Ok(Self { params, salt, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::new(HashParams::insecure_fast(), 2).unwrap()
    }

    /// Callers shed at once while one slot is held and `callers` more ask for one.
    async fn shed_while_held(h: &PasswordHasher, callers: usize) -> usize {
        let held = h.slot().await.unwrap();
        let waiters: Vec<_> = (0..callers)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.slot().await.map(drop) })
            })
            .collect();
        // Everyone is in line or shed once the count stops at a value where every
        // task has run (paused time: nothing else moves it).
        for _ in 0..callers * 4 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut shed = 0;
        for w in waiters {
            match w.await.unwrap() {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.code(), "overloaded");
                    shed += 1;
                }
            }
        }
        shed
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_line_holds_what_the_slots_serve_within_the_wait() {
        let h = PasswordHasher::with_queue(
            HashParams::insecure_fast(),
            1,
            HashQueue {
                priority: HashPriority::Normal,
                ..HashQueue::default()
            },
        )
        .unwrap();
        // Before any check is timed: 16 per slot.
        assert_eq!(h.inner.max_waiting(), 16);
        assert_eq!(shed_while_held(&h, 100).await, 100 - 16);
        // Checks of 1 ms: the slot serves 1 000 within the 1 s wait.
        h.inner.mean_hold_ns.store(0, Ordering::Relaxed);
        for _ in 0..50 {
            h.inner.held_for(Duration::from_millis(1));
        }
        let limit = h.inner.max_waiting();
        assert!((990..=1010).contains(&limit), "{limit}");
        h.inner.mean_hold_ns.store(1_000_000, Ordering::Relaxed);
        assert_eq!(shed_while_held(&h, 300).await, 0);
        // Checks of 200 ms: 5 would be servable, the floor of 16 holds.
        h.inner.mean_hold_ns.store(200_000_000, Ordering::Relaxed);
        assert_eq!(h.inner.max_waiting(), 16);
        // Checks of 1 µs: the cap.
        h.inner.mean_hold_ns.store(1_000, Ordering::Relaxed);
        assert_eq!(h.inner.max_waiting(), MAX_WAITING_CAP);
        // A configured bound is kept as it is.
        let fixed = PasswordHasher::with_queue(
            HashParams::insecure_fast(),
            1,
            HashQueue {
                max_waiting: 3,
                ..HashQueue::default()
            },
        )
        .unwrap();
        fixed.inner.mean_hold_ns.store(1_000, Ordering::Relaxed);
        assert_eq!(fixed.inner.max_waiting(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_or_slow_queue_sheds_with_overloaded() {
        let h = PasswordHasher::with_queue(
            HashParams::insecure_fast(),
            1,
            HashQueue {
                max_waiting: 1,
                max_wait: Duration::from_millis(200),
                ..HashQueue::default()
            },
        )
        .unwrap();
        let held = h.slot().await.unwrap();
        // One may wait: it is shed when the deadline passes (paused time jumps there).
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.slot().await.map(drop) }
        });
        // Wait until the spawned caller is in line.
        while h.inner.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The line is full: shed at once, with the wait as retry-after.
        let e = h
            .verify("pw", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
            .await;
        assert_eq!(
            e.unwrap_err(),
            AuthError::Overloaded {
                retry_after: Duration::from_millis(200)
            }
        );
        assert_eq!(waiter.await.unwrap().unwrap_err().code(), "overloaded");
        assert_eq!(
            h.inner.waiting.load(Ordering::SeqCst),
            0,
            "waiters left the line"
        );
        // Once the slot is free, work goes on.
        drop(held);
        let phc = h.hash("correct horse").await.unwrap();
        assert!(h.verify("correct horse", &phc).await.unwrap().matches);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn background_hashing_threads_run_ten_nice_levels_down() {
        // SAFETY: reading the calling thread's own priority.
        let priority = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as _) };
        let ours = priority();
        let threads = background_threads(2).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // A job that panics is an error for its caller, and costs no thread.
        for _ in 0..3 {
            let e = rt.block_on(threads.run(|| panic!("boom"))).unwrap_err();
            assert_eq!(e.code(), "internal");
        }
        for _ in 0..4 {
            let theirs = rt.block_on(threads.run(priority)).unwrap();
            assert_eq!(theirs, (ours + 10).min(19));
        }
        assert_eq!(priority(), ours, "the caller's own priority is untouched");
    }

    #[tokio::test]
    async fn hash_is_argon2id_phc_and_verifies() {
        let h = fast();
        let phc = h.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let ok = h.verify("correct horse", &phc).await.unwrap();
        assert!(ok.matches && !ok.needs_rehash);
        assert!(!h.verify("wrong horse", &phc).await.unwrap().matches);
        // Fresh salt each time.
        assert_ne!(phc, h.hash("correct horse").await.unwrap());
    }

    #[tokio::test]
    async fn older_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::new(
            HashParams {
                memory_kib: 128,
                iterations: 1,
                parallelism: 1,
            },
            1,
        )
        .unwrap();
        let phc = old.hash("password123").await.unwrap();
        let check = fast().verify("password123", &phc).await.unwrap();
        assert!(check.matches && check.needs_rehash);
    }

    #[tokio::test]
    async fn corrupt_or_hostile_hashes_are_errors_not_panics() {
        let h = fast();
        for bad in [
            "",
            "plaintext",
            "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4000000,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
            // Unbounded passes made verify run for hours; tests/fuzz.rs found t=1048577.
            "$argon2id$v=19$m=8,t=1048577,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=64,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            // Found by tests/fuzz.rs: argon2 overflowed computing 8 * p (a debug panic).
            "$argon2id$v=19$m=64,t=1,p=4294967295$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=64,t=1,p=536870912$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1048576,t=5,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let e = h.verify("password", bad).await.unwrap_err();
            assert_eq!(e.code(), "internal", "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_hashes_run_at_once() {
        let h = PasswordHasher::new(HashParams::insecure_fast(), 1).unwrap();
        let permit = h.inner.permits.acquire().await.unwrap();
        let h2 = h.clone();
        let task = tokio::spawn(async move { h2.hash("password1").await });
        // With the only permit held, the hash cannot start; give it a bounded chance.
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(100), async {
            while !task.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(blocked.is_err(), "hash ran without a permit");
        drop(permit);
        assert!(task.await.unwrap().unwrap().starts_with("$argon2id$"));
    }
}
