//! The in-memory backend.
//!
//! [`Tables`] is the data and the rules: plain synchronous methods that each apply one
//! storage operation to maps and indexes. [`MemoryStorage`] puts `Tables` behind a
//! `parking_lot::RwLock` so every operation is atomic with respect to every other. A
//! replicated backend can apply its log entries to the same `Tables`, so it gives exactly
//! the answers `MemoryStorage` gives.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use imbl::{HashMap, OrdMap, OrdSet};
use parking_lot::RwLock;

use crate::{
    Challenge, LIST_USERS_SCAN, ListUsers, LoginAttempts, MAX_CHALLENGE_STATE, MAX_USERS_PAGE,
    PutChallenge, RETIRED_HASHES_KEPT, Reservation, ReserveLogin, Result, RotateOutcome,
    RotateRefresh, Session, SettleLogin, Storage, StorageError, User, UserPage, lock_delay_ms,
};

/// Users, sessions and their indexes. Not synchronised: wrap it (as [`MemoryStorage`]
/// does) or own it from one task (as a state machine does).
///
/// The maps are persistent (`imbl`): a clone shares their structure, costs a few
/// pointer copies whatever the size, and later writes to either side copy only the
/// paths they change. A replicated state machine clones its tables under its lock and
/// writes the clone out as a snapshot without holding writes up.
#[derive(Debug, Default, Clone)]
pub struct Tables {
    /// Records behind `Arc`: a map node then holds pointers, not whole records, and a
    /// write to a record shared with a snapshot view copies that one record.
    users: HashMap<String, Arc<User>>,
    /// `username_key` → user id, ordered for [`Tables::list_users`].
    usernames: OrdMap<String, String>,
    sessions: HashMap<String, Arc<Session>>,
    /// user id → that user's session ids.
    user_sessions: HashMap<String, BTreeSet<String>>,
    /// (idle expiry, session id), ordered so the sweeper takes the earliest first.
    expiry: OrdSet<(i64, String)>,
    /// `username_key` → failed-login record.
    attempts: HashMap<String, LoginAttempts>,
    /// (record expiry, username key), earliest first.
    attempts_expiry: OrdSet<(i64, String)>,
    /// challenge id → challenge.
    challenges: HashMap<String, Challenge>,
    /// (expiry, challenge id), earliest first.
    challenge_expiry: OrdSet<(i64, String)>,
    /// user id → (expiry, challenge id) of that user's challenges.
    user_challenges: HashMap<String, BTreeSet<(i64, String)>>,
}

impl Tables {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds tables from records as they were stored (versions kept), e.g. from a
    /// snapshot. Fails on duplicate ids or usernames, or sessions of unknown users.
    pub fn restore(
        users: impl IntoIterator<Item = User>,
        sessions: impl IntoIterator<Item = Session>,
    ) -> Result<Self> {
        let mut t = Self::new();
        for u in users {
            if t.users.contains_key(&u.id) || t.usernames.contains_key(&u.username_key) {
                return Err(StorageError::Invalid(format!("duplicate user {}", u.id)));
            }
            t.usernames.insert(u.username_key.clone(), u.id.clone());
            t.users.insert(u.id.clone(), Arc::new(u));
        }
        for s in sessions {
            if !t.users.contains_key(&s.user_id) || t.sessions.contains_key(&s.id) {
                return Err(StorageError::Invalid(format!("bad session {}", s.id)));
            }
            t.user_sessions
                .entry(s.user_id.clone())
                .or_default()
                .insert(s.id.clone());
            t.expiry.insert((s.expires_at_ms, s.id.clone()));
            t.sessions.insert(s.id.clone(), Arc::new(s));
        }
        Ok(t)
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of sessions (expired ones included until swept).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every user, in no particular order (for snapshots).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values().map(|u| &**u)
    }

    /// Every session, in no particular order (for snapshots).
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values().map(|s| &**s)
    }

    /// See [`Storage::create_user`].
    pub fn create_user(&mut self, mut user: User) -> Result<User> {
        if user.id.is_empty() || user.username_key.is_empty() {
            return Err(StorageError::Invalid(
                "user id and username_key are required".into(),
            ));
        }
        if self.users.contains_key(&user.id) || self.usernames.contains_key(&user.username_key) {
            return Err(StorageError::UserExists);
        }
        user.version = 1;
        self.usernames
            .insert(user.username_key.clone(), user.id.clone());
        self.users.insert(user.id.clone(), Arc::new(user.clone()));
        Ok(user)
    }

    /// See [`Storage::get_user`].
    pub fn get_user(&self, id: &str) -> Option<&User> {
        self.users.get(id).map(|u| &**u)
    }

    /// See [`Storage::get_user_by_username`].
    pub fn get_user_by_username(&self, username_key: &str) -> Option<&User> {
        self.usernames
            .get(username_key)
            .and_then(|id| self.users.get(id))
            .map(|u| &**u)
    }

    /// See [`Storage::list_users`].
    pub fn list_users(&self, req: &ListUsers) -> UserPage {
        let limit = match req.limit {
            0 => MAX_USERS_PAGE,
            n => n.min(MAX_USERS_PAGE),
        };
        let mut page = UserPage::default();
        let mut last = None;
        let keys = self
            .usernames
            .range::<_, str>((Bound::Excluded(req.after.as_str()), Bound::Unbounded));
        for (examined, (key, id)) in keys.enumerate() {
            if examined == LIST_USERS_SCAN || page.users.len() == limit {
                page.next = last;
                return page;
            }
            last = Some(key.clone());
            let matches =
                req.contains.is_empty() || key.contains(&req.contains) || *id == req.contains;
            if matches && let Some(u) = self.users.get(id) {
                page.users.push(User::clone(u));
            }
        }
        page
    }

    /// See [`Storage::update_user`].
    pub fn update_user(&mut self, mut user: User) -> Result<User> {
        // Checked on a shared view, then replaced whole: the old record is never copied
        // (a snapshot view may still hold it), not even when the update is refused.
        let stored = self.users.get(&user.id).ok_or(StorageError::NotFound)?;
        if stored.version != user.version {
            return Err(StorageError::Conflict);
        }
        if stored.username_key != user.username_key || stored.created_at_ms != user.created_at_ms {
            return Err(StorageError::Invalid(
                "username_key and created_at_ms are immutable".into(),
            ));
        }
        user.version = stored.version + 1;
        self.users.insert(user.id.clone(), Arc::new(user.clone()));
        Ok(user)
    }

    /// See [`Storage::delete_user`].
    pub fn delete_user(&mut self, id: &str) -> Result<u64> {
        let user = self.users.remove(id).ok_or(StorageError::NotFound)?;
        self.usernames.remove(&user.username_key);
        for (_, cid) in self.user_challenges.remove(id).unwrap_or_default() {
            self.remove_challenge(&cid);
        }
        let ids = self.user_sessions.remove(id).unwrap_or_default();
        let n = ids.len() as u64;
        for sid in ids {
            if let Some(s) = self.sessions.remove(&sid) {
                self.expiry.remove(&(s.expires_at_ms, sid));
            }
        }
        Ok(n)
    }

    /// See [`Storage::create_session`].
    pub fn create_session(&mut self, mut session: Session, max_per_user: u32) -> Result<Session> {
        if session.id.is_empty() {
            return Err(StorageError::Invalid("session id is required".into()));
        }
        let user = self
            .users
            .get(&session.user_id)
            .ok_or(StorageError::NotFound)?;
        if user.admin_locked_at_ms != 0 {
            return Err(StorageError::UserLocked);
        }
        session.roles.clone_from(&user.roles);
        if self.sessions.contains_key(&session.id) {
            return Err(StorageError::SessionExists);
        }
        if max_per_user > 0 {
            self.make_room(
                &session.user_id,
                session.created_at_ms,
                max_per_user as usize,
            );
        }
        self.user_sessions
            .entry(session.user_id.clone())
            .or_default()
            .insert(session.id.clone());
        self.expiry
            .insert((session.expires_at_ms, session.id.clone()));
        self.sessions
            .insert(session.id.clone(), Arc::new(session.clone()));
        Ok(session)
    }

    /// See [`Storage::get_session`].
    pub fn get_session(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id).map(|s| &**s)
    }

    /// See [`Storage::is_session_live`].
    pub fn is_session_live(&self, id: &str, user_id: &str, now_ms: i64) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|s| s.user_id == user_id && s.expires_at_ms > now_ms)
    }

    /// See [`Storage::list_user_sessions`].
    pub fn list_user_sessions(&self, user_id: &str, now_ms: i64) -> Vec<Session> {
        let mut out: Vec<Session> = self
            .user_sessions
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|sid| self.sessions.get(sid))
            .filter(|s| s.expires_at_ms > now_ms)
            .map(|s| Session::clone(s))
            .collect();
        out.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        out
    }

    /// See [`Storage::rotate_refresh`].
    pub fn rotate_refresh(&mut self, req: RotateRefresh) -> RotateOutcome {
        let Some(s) = self.sessions.get_mut(&req.session_id).map(Arc::make_mut) else {
            return RotateOutcome::Invalid;
        };
        if s.expires_at_ms <= req.now_ms {
            self.remove_session(&req.session_id);
            return RotateOutcome::Expired;
        }
        // Hashes of 256-bit random tokens: comparing them in variable time reveals
        // nothing an attacker can use, so plain equality is fine here.
        if s.refresh_hash == req.presented_hash {
            let old_expiry = s.expires_at_ms;
            let retired = std::mem::replace(&mut s.refresh_hash, req.new_hash);
            s.retired_refresh_hashes.insert(0, retired);
            s.retired_refresh_hashes.truncate(RETIRED_HASHES_KEPT);
            s.sealed_successor = req.sealed_successor;
            s.rotated_at_ms = req.now_ms;
            s.last_used_at_ms = req.now_ms;
            s.generation += 1;
            s.expires_at_ms = req
                .now_ms
                .saturating_add(req.idle_ttl_ms)
                .min(s.absolute_expires_at_ms);
            let new_expiry = s.expires_at_ms;
            let session = s.clone();
            self.expiry.remove(&(old_expiry, req.session_id.clone()));
            self.expiry.insert((new_expiry, req.session_id));
            return RotateOutcome::Rotated(session);
        }
        let just_retired = s.retired_refresh_hashes.first() == Some(&req.presented_hash);
        // A grace of zero (or less) disables replay entirely.
        if just_retired
            && req.grace_ms > 0
            && req.now_ms.saturating_sub(s.rotated_at_ms) <= req.grace_ms
        {
            return RotateOutcome::Replayed(s.clone());
        }
        if s.retired_refresh_hashes.contains(&req.presented_hash) {
            self.remove_session(&req.session_id);
            return RotateOutcome::Reused;
        }
        RotateOutcome::Invalid
    }

    /// See [`Storage::delete_session`].
    pub fn delete_session(&mut self, id: &str, user_id: &str) -> bool {
        match self.sessions.get(id) {
            Some(s) if s.user_id == user_id => self.remove_session(id),
            _ => false,
        }
    }

    /// See [`Storage::delete_user_sessions`].
    pub fn delete_user_sessions(&mut self, user_id: &str, keep: Option<&str>) -> u64 {
        let ids: Vec<String> = self
            .user_sessions
            .get(user_id)
            .into_iter()
            .flatten()
            .filter(|sid| Some(sid.as_str()) != keep)
            .cloned()
            .collect();
        ids.iter().filter(|sid| self.remove_session(sid)).count() as u64
    }

    /// See [`Storage::delete_expired_sessions`].
    pub fn delete_expired_sessions(&mut self, now_ms: i64, limit: usize) -> u64 {
        let expired = due(&self.expiry, now_ms, limit);
        let sessions = expired
            .iter()
            .filter(|sid| self.remove_session(sid))
            .count() as u64;
        let stale = due(&self.attempts_expiry, now_ms, limit);
        let attempts = stale.iter().filter(|k| self.remove_attempts(k)).count() as u64;
        sessions + attempts + self.purge_challenges(now_ms, limit)
    }

    /// Every challenge, in no particular order (for snapshots).
    pub fn challenges(&self) -> impl Iterator<Item = &Challenge> {
        self.challenges.values()
    }

    /// Adds challenges as they were stored (e.g. from a snapshot), replacing any with
    /// the same id.
    pub fn restore_challenges(&mut self, records: impl IntoIterator<Item = Challenge>) {
        for c in records {
            self.remove_challenge(&c.id);
            self.insert_challenge(c);
        }
    }

    /// See [`Storage::put_challenge`].
    pub fn put_challenge(&mut self, req: PutChallenge) -> Result<()> {
        let c = req.challenge;
        if c.id.is_empty() || c.kind.is_empty() {
            return Err(StorageError::Invalid(
                "challenge id and kind are required".into(),
            ));
        }
        if c.expires_at_ms <= req.now_ms {
            return Err(StorageError::Invalid(
                "challenge expires in the past".into(),
            ));
        }
        if c.state.len() > MAX_CHALLENGE_STATE {
            return Err(StorageError::Invalid("challenge state is too large".into()));
        }
        if !c.user_id.is_empty() && !self.users.contains_key(&c.user_id) {
            return Err(StorageError::NotFound);
        }
        if self.challenges.contains_key(&c.id) {
            return Err(StorageError::ChallengeExists);
        }
        // Challenges without a user (anyone may start a passwordless login) may fill
        // only half the room, so they can never crowd out the tickets of users who
        // gave their password.
        let cap = if c.user_id.is_empty() {
            req.max_total / 2
        } else {
            req.max_total
        };
        if self.challenges.len() as u64 >= cap {
            return Err(StorageError::Unavailable(
                "too many sign-ins in progress; retry shortly".into(),
            ));
        }
        if !c.user_id.is_empty() {
            let max = usize::try_from(req.max_per_user.max(1)).unwrap_or(usize::MAX);
            let mine = self.user_challenges.get(&c.user_id);
            let excess = mine.map_or(0, |set| (set.len() + 1).saturating_sub(max));
            let oldest: Vec<String> = mine
                .into_iter()
                .flatten()
                .take(excess)
                .map(|(_, id)| id.clone())
                .collect();
            for id in oldest {
                self.remove_challenge(&id);
            }
        }
        self.insert_challenge(c);
        Ok(())
    }

    /// See [`Storage::take_challenge`].
    pub fn take_challenge(&mut self, id: &str, kind: &str, now_ms: i64) -> Option<Challenge> {
        let c = self.remove_challenge(id)?;
        (c.kind == kind && c.expires_at_ms > now_ms).then_some(c)
    }

    fn insert_challenge(&mut self, c: Challenge) {
        self.challenge_expiry
            .insert((c.expires_at_ms, c.id.clone()));
        if !c.user_id.is_empty() {
            self.user_challenges
                .entry(c.user_id.clone())
                .or_default()
                .insert((c.expires_at_ms, c.id.clone()));
        }
        self.challenges.insert(c.id.clone(), c);
    }

    fn remove_challenge(&mut self, id: &str) -> Option<Challenge> {
        let c = self.challenges.remove(id)?;
        let key = (c.expires_at_ms, c.id.clone());
        self.challenge_expiry.remove(&key);
        if let Some(set) = self.user_challenges.get_mut(&c.user_id) {
            set.remove(&key);
            if set.is_empty() {
                self.user_challenges.remove(&c.user_id);
            }
        }
        Some(c)
    }

    /// Drops up to `limit` challenges expired at `now_ms`; returns how many.
    fn purge_challenges(&mut self, now_ms: i64, limit: usize) -> u64 {
        due(&self.challenge_expiry, now_ms, limit)
            .iter()
            .filter(|id| self.remove_challenge(id).is_some())
            .count() as u64
    }

    /// Adds failed-login records as they were stored (e.g. from a snapshot), replacing
    /// any with the same key.
    pub fn restore_login_attempts(&mut self, records: impl IntoIterator<Item = LoginAttempts>) {
        for r in records {
            self.put_attempts(r);
        }
    }

    /// Every failed-login record, in no particular order.
    pub fn login_attempts(&self) -> impl Iterator<Item = &LoginAttempts> {
        self.attempts.values()
    }

    /// See [`Storage::get_login_attempts`].
    pub fn get_login_attempts(&self, username_key: &str) -> Option<&LoginAttempts> {
        self.attempts.get(username_key)
    }

    /// See [`Storage::reserve_login`].
    pub fn reserve_login(&mut self, req: ReserveLogin) -> Result<Reservation> {
        if req.username_key.is_empty() {
            return Err(StorageError::Invalid("empty username key".into()));
        }
        let now = req.now_ms;
        let mut rec = match self.attempts.get(&req.username_key) {
            Some(r) if r.locked_until_ms > now => {
                return Ok(Reservation::Locked {
                    until_ms: r.locked_until_ms,
                });
            }
            Some(r) if r.expires_at_ms > now => r.clone(),
            _ => LoginAttempts {
                username_key: req.username_key.clone(),
                ..LoginAttempts::default()
            },
        };
        rec.failures = rec.failures.saturating_add(1);
        let delay = lock_delay_ms(
            rec.failures,
            req.max_failures,
            req.base_delay_ms,
            req.max_delay_ms,
        );
        if delay > 0 {
            rec.locked_until_ms = now.saturating_add(delay);
        }
        rec.expires_at_ms = now
            .saturating_add(req.forget_after_ms.max(0))
            .max(rec.locked_until_ms);
        let ticket = rec.failures;
        self.put_attempts(rec);
        Ok(Reservation::Granted { ticket })
    }

    /// See [`Storage::settle_login`].
    pub fn settle_login(&mut self, req: SettleLogin) {
        let Some(rec) = self.attempts.get(&req.username_key) else {
            return;
        };
        if rec.failures == req.ticket {
            self.remove_attempts(&req.username_key);
        } else if rec.failures > req.ticket {
            let mut rec = rec.clone();
            rec.failures -= 1;
            self.put_attempts(rec);
        }
    }

    fn put_attempts(&mut self, rec: LoginAttempts) {
        self.remove_attempts(&rec.username_key);
        self.attempts_expiry
            .insert((rec.expires_at_ms, rec.username_key.clone()));
        self.attempts.insert(rec.username_key.clone(), rec);
    }

    fn remove_attempts(&mut self, key: &str) -> bool {
        let Some(old) = self.attempts.remove(key) else {
            return false;
        };
        self.attempts_expiry
            .remove(&(old.expires_at_ms, old.username_key));
        true
    }

    /// Deletes sessions of `user_id` until fewer than `max` remain: the ones expired
    /// at `now_ms` first, then the oldest.
    fn make_room(&mut self, user_id: &str, now_ms: i64, max: usize) {
        let Some(ids) = self.user_sessions.get(user_id) else {
            return;
        };
        if ids.len() < max {
            return;
        }
        let mut order: Vec<(bool, i64, String)> = ids
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .map(|s| (s.expires_at_ms > now_ms, s.created_at_ms, s.id.clone()))
            .collect();
        order.sort_unstable();
        let excess = (order.len() + 1).saturating_sub(max);
        for (_, _, id) in order.into_iter().take(excess) {
            self.remove_session(&id);
        }
    }

    fn remove_session(&mut self, id: &str) -> bool {
        let Some(s) = self.sessions.remove(id) else {
            return false;
        };
        self.expiry.remove(&(s.expires_at_ms, s.id.clone()));
        if let Some(set) = self.user_sessions.get_mut(&s.user_id) {
            set.remove(id);
            if set.is_empty() {
                self.user_sessions.remove(&s.user_id);
            }
        }
        true
    }
}

/// The keys of up to `limit` entries of an expiry index due at `now_ms`, earliest first.
fn due(index: &OrdSet<(i64, String)>, now_ms: i64, limit: usize) -> Vec<String> {
    index
        .iter()
        .take_while(|(at, _)| *at <= now_ms)
        .take(limit)
        .map(|(_, key)| key.clone())
        .collect()
}

/// Thread-safe in-memory [`Storage`]: [`Tables`] behind a `parking_lot::RwLock`.
///
/// Reads share the lock; each write holds it exclusively for one operation, which is
/// what makes create-if-absent, compare-and-set and rotation atomic. Data lives as long
/// as the value: use it for a single process, for tests, and as the reference the
/// replicated backend is checked against.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    tables: RwLock<Tables>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of users stored.
    pub fn user_count(&self) -> usize {
        self.tables.read().user_count()
    }

    /// Number of sessions stored (expired ones included until swept).
    pub fn session_count(&self) -> usize {
        self.tables.read().session_count()
    }

    /// Writes the whole store to `w` as a backup file (see [`crate::backup`]), the
    /// format `auth-backend restore` seeds a Raft cluster from. The store is copied at
    /// one point (writes wait for the copy, not for `w`), then written.
    pub fn export<W: std::io::Write>(
        &self,
        w: W,
    ) -> std::result::Result<auth_proto::v1::BackupHeader, crate::backup::BackupError> {
        let header = auth_proto::v1::BackupHeader {
            source: "memory".into(),
            created_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            ..Default::default()
        };
        let tables = self.tables.read().clone();
        crate::backup::write_tables(&tables, header, w)
    }

    /// A store holding what a backup file holds (from this backend's
    /// [`MemoryStorage::export`] or a cluster's `authctl cluster snapshot save`).
    pub fn from_backup(
        backup: crate::backup::Backup,
    ) -> std::result::Result<Self, crate::backup::BackupError> {
        Ok(Self {
            tables: RwLock::new(backup.into_tables()?),
        })
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn create_user(&self, user: User) -> Result<User> {
        self.tables.write().create_user(user)
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        Ok(self.tables.read().get_user(id).cloned())
    }

    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<User>> {
        Ok(self
            .tables
            .read()
            .get_user_by_username(username_key)
            .cloned())
    }

    async fn update_user(&self, user: User) -> Result<User> {
        self.tables.write().update_user(user)
    }

    async fn delete_user(&self, id: &str) -> Result<u64> {
        self.tables.write().delete_user(id)
    }

    async fn create_session(&self, session: Session, max_per_user: u32) -> Result<Session> {
        self.tables.write().create_session(session, max_per_user)
    }

    async fn list_users(&self, req: ListUsers) -> Result<UserPage> {
        Ok(self.tables.read().list_users(&req))
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        Ok(self.tables.read().get_session(id).cloned())
    }

    async fn is_session_live(&self, id: &str, user_id: &str, now_ms: i64) -> Result<bool> {
        Ok(self.tables.read().is_session_live(id, user_id, now_ms))
    }

    async fn list_user_sessions(&self, user_id: &str, now_ms: i64) -> Result<Vec<Session>> {
        Ok(self.tables.read().list_user_sessions(user_id, now_ms))
    }

    async fn rotate_refresh(&self, req: RotateRefresh) -> Result<RotateOutcome> {
        Ok(self.tables.write().rotate_refresh(req))
    }

    async fn delete_session(&self, id: &str, user_id: &str) -> Result<bool> {
        Ok(self.tables.write().delete_session(id, user_id))
    }

    async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        Ok(self.tables.write().delete_user_sessions(user_id, keep))
    }

    async fn delete_expired_sessions(&self, now_ms: i64, limit: usize) -> Result<u64> {
        Ok(self.tables.write().delete_expired_sessions(now_ms, limit))
    }

    async fn get_login_attempts(&self, username_key: &str) -> Result<Option<LoginAttempts>> {
        Ok(self.tables.read().get_login_attempts(username_key).cloned())
    }

    async fn reserve_login(&self, req: ReserveLogin) -> Result<Reservation> {
        self.tables.write().reserve_login(req)
    }

    async fn settle_login(&self, req: SettleLogin) -> Result<()> {
        self.tables.write().settle_login(req);
        Ok(())
    }

    async fn put_challenge(&self, req: PutChallenge) -> Result<()> {
        self.tables.write().put_challenge(req)
    }

    async fn take_challenge(&self, id: &str, kind: &str, now_ms: i64) -> Result<Option<Challenge>> {
        Ok(self.tables.write().take_challenge(id, kind, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_leaves_a_snapshot_views_record_in_place_and_uncopied() {
        let mut t = Tables::default();
        let created = t
            .create_user(User {
                id: "u1".into(),
                username: "Ann".into(),
                username_key: "ann".into(),
                ..Default::default()
            })
            .unwrap();
        let view = t.clone();
        let before: *const User = view.get_user("u1").unwrap();
        // Refused (stale version) and accepted updates alike: the view's record is the
        // same allocation, unchanged; the table has the new one.
        let mut stale = created.clone();
        stale.version += 5;
        assert!(matches!(t.update_user(stale), Err(StorageError::Conflict)));
        let mut renamed = created.clone();
        renamed.username = "Anne".into();
        let updated = t.update_user(renamed).unwrap();
        assert_eq!(updated.version, created.version + 1);
        assert!(std::ptr::eq(before, view.get_user("u1").unwrap()));
        assert_eq!(view.get_user("u1").unwrap().username, "Ann");
        assert_eq!(t.get_user("u1").unwrap().username, "Anne");
    }
}
