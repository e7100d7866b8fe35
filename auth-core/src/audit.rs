//! The audit trail: a typed [`AuditEvent`] for every security-relevant outcome
//! (registrations, sign-ins that worked or failed and why, lockouts, logouts, password
//! changes, revoked sessions, refresh-token reuse, second-factor changes, and every
//! administrator's action), handed to an [`AuditSink`].
//!
//! Events are emitted by the `Auth` that served the request, never by storage: in a
//! Raft cluster each event is recorded once, by the node the client talked to, not
//! once per replica. An event never carries a secret (no password, token, code or
//! key) and never a username typed at a failed sign-in (people type passwords there);
//! it names users by id.
//!
//! Sinks here: [`TracingSink`] (the `auth::audit` tracing target, the default),
//! [`JsonLinesSink`] (a JSON-lines file with size-based rotation, written by a thread
//! of its own behind a bounded queue), [`RecentEvents`] (the last N in memory, for an
//! admin page), and [`Tee`] to send to several.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::api::ClientInfo;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// An account was created.
    Registered,
    /// A sign-in opened a session (`detail`: the `amr` values, comma-separated).
    LoginSucceeded,
    /// A sign-in was refused (`reason`: the error code, such as
    /// `invalid_credentials`, `locked`, `invalid_code`, `account_disabled`).
    LoginFailed,
    /// The password was right and a second factor is now asked for.
    SecondFactorRequired,
    /// An account was locked: by failed checks (`detail` `lockout`) or by an
    /// administrator (`detail` `admin`, `actor_id` set).
    Locked,
    /// An administrator unlocked an account.
    Unlocked,
    /// A session was ended by its owner.
    Logout,
    /// Every session of a user was ended: by the user, or by an administrator
    /// (`actor_id` set); `detail`: how many.
    LogoutAll,
    /// The password was changed (other sessions ended).
    PasswordChanged,
    /// One session was ended from the session list.
    SessionRevoked,
    /// A rotated refresh token came back: the session was revoked (likely theft).
    RefreshReuseDetected,
    /// An account was deleted: by its owner, or by an administrator (`actor_id`).
    AccountDeleted,
    /// A second factor was added (`detail`: `totp` or `passkey`).
    SecondFactorAdded,
    /// A second factor was removed (`detail`: `totp` or `passkey`).
    SecondFactorRemoved,
    /// A recovery code was spent.
    RecoveryCodeUsed,
    /// New recovery codes replaced the old ones.
    RecoveryCodesRegenerated,
    /// An administrator granted a role (`detail`: the role).
    RoleGranted,
    /// An administrator revoked a role (`detail`: the role).
    RoleRevoked,
    /// The first administrator was created or given the role at start-up.
    AdminBootstrapped,
    /// A signed-in user without the `admin` role (or locked) called an admin
    /// operation: refused (`reason`: `permission_denied`). Privilege probing shows here.
    AdminRefused,
}

impl AuditKind {
    /// The stable name (`login_failed`, ...), as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Registered => "registered",
            AuditKind::LoginSucceeded => "login_succeeded",
            AuditKind::LoginFailed => "login_failed",
            AuditKind::SecondFactorRequired => "second_factor_required",
            AuditKind::Locked => "locked",
            AuditKind::Unlocked => "unlocked",
            AuditKind::Logout => "logout",
            AuditKind::LogoutAll => "logout_all",
            AuditKind::PasswordChanged => "password_changed",
            AuditKind::SessionRevoked => "session_revoked",
            AuditKind::RefreshReuseDetected => "refresh_reuse_detected",
            AuditKind::AccountDeleted => "account_deleted",
            AuditKind::SecondFactorAdded => "second_factor_added",
            AuditKind::SecondFactorRemoved => "second_factor_removed",
            AuditKind::RecoveryCodeUsed => "recovery_code_used",
            AuditKind::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            AuditKind::RoleGranted => "role_granted",
            AuditKind::RoleRevoked => "role_revoked",
            AuditKind::AdminBootstrapped => "admin_bootstrapped",
            AuditKind::AdminRefused => "admin_refused",
        }
    }
}

/// Whether the attempt the event records worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It was refused (see [`AuditEvent::reason`]).
    Failure,
}

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// One audit record. Serialised as one JSON object (empty fields left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, unix milliseconds (the serving node's clock).
    pub time_ms: i64,
    /// What happened.
    pub kind: AuditKind,
    /// Whether it worked.
    pub outcome: Outcome,
    /// For a failure, the stable error code.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub reason: String,
    /// The user concerned, when known.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub user_id: String,
    /// The session concerned, when there is one.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub session_id: String,
    /// The client's address, as the front end saw it.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub source: String,
    /// The node that served the request ([`Audit::node`]).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub node: String,
    /// The administrator who acted, for admin actions.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub actor_id: String,
    /// Kind-specific detail (never a secret): a factor, a role, a count.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub detail: String,
}

impl AuditEvent {
    /// A successful `kind` at `time_ms`, every other field empty.
    pub fn new(kind: AuditKind, time_ms: i64) -> Self {
        Self {
            time_ms,
            kind,
            outcome: Outcome::Success,
            reason: String::new(),
            user_id: String::new(),
            session_id: String::new(),
            source: String::new(),
            node: String::new(),
            actor_id: String::new(),
            detail: String::new(),
        }
    }

    /// A failure, with the error's stable code.
    pub fn failed(mut self, code: &str) -> Self {
        self.outcome = Outcome::Failure;
        code.clone_into(&mut self.reason);
        self
    }

    /// The user concerned.
    pub fn user(mut self, id: &str) -> Self {
        id.clone_into(&mut self.user_id);
        self
    }

    /// The session concerned.
    pub fn session(mut self, id: &str) -> Self {
        id.clone_into(&mut self.session_id);
        self
    }

    /// The client's address, from the request's client info.
    pub fn source(mut self, client: Option<&ClientInfo>) -> Self {
        if let Some(c) = client {
            c.ip.clone_into(&mut self.source);
        }
        self
    }

    /// The acting administrator.
    pub fn actor(mut self, id: &str) -> Self {
        id.clone_into(&mut self.actor_id);
        self
    }

    /// Kind-specific detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// Where audit events go. `record` is called on the request path: it must not block
/// (queue the event and return).
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: &AuditEvent);
}

/// The audit configuration of an `Auth`: its sink and the name of this node.
#[derive(Clone)]
pub struct Audit {
    /// Where events go. Default: [`TracingSink`].
    pub sink: Arc<dyn AuditSink>,
    /// The node name stamped on every event (a Raft node id, a host name). Default
    /// empty.
    pub node: String,
    /// The latest events, kept for `AuthApi::admin_recent_events` (the admin page).
    /// Default: the last [`DEFAULT_RECENT_EVENTS`]; `None` keeps none.
    pub recent: Option<Arc<RecentEvents>>,
}

/// How many events [`Audit::default`] keeps for the admin page.
pub const DEFAULT_RECENT_EVENTS: usize = 500;

impl Default for Audit {
    fn default() -> Self {
        Self {
            sink: Arc::new(TracingSink),
            node: String::new(),
            recent: Some(Arc::new(RecentEvents::new(DEFAULT_RECENT_EVENTS))),
        }
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Records nothing (for benchmarks and embedders that audit elsewhere).
    pub fn off() -> Self {
        Self {
            sink: Arc::new(Tee(Vec::new())),
            node: String::new(),
            recent: None,
        }
    }
}

/// Logs each event on the `auth::audit` tracing target at INFO (WARN for refresh
/// reuse and lockouts), with the event's fields as tracing fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn record(&self, e: &AuditEvent) {
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    target: "auth::audit",
                    kind = e.kind.as_str(),
                    outcome = ?e.outcome,
                    reason = %e.reason,
                    user_id = %e.user_id,
                    session_id = %e.session_id,
                    source = %e.source,
                    node = %e.node,
                    actor_id = %e.actor_id,
                    detail = %e.detail,
                    "audit"
                )
            };
        }
        match e.kind {
            AuditKind::RefreshReuseDetected | AuditKind::Locked => emit!(warn),
            _ => emit!(info),
        }
    }
}

/// Sends each event to every sink in order.
pub struct Tee(pub Vec<Arc<dyn AuditSink>>);

impl AuditSink for Tee {
    fn record(&self, event: &AuditEvent) {
        for s in &self.0 {
            s.record(event);
        }
    }
}

/// The last `capacity` events in memory, newest last: what an admin page shows.
pub struct RecentEvents {
    capacity: usize,
    events: Mutex<VecDeque<AuditEvent>>,
}

impl RecentEvents {
    /// Keeps the last `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            events: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
        }
    }

    /// The events kept, oldest first.
    pub fn snapshot(&self) -> Vec<AuditEvent> {
        self.events.lock().iter().cloned().collect()
    }
}

impl AuditSink for RecentEvents {
    fn record(&self, event: &AuditEvent) {
        if self.capacity == 0 {
            return;
        }
        let mut q = self.events.lock();
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(event.clone());
    }
}

/// Size-based rotation of a [`JsonLinesSink`] file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file has grown past this many bytes (at least 1).
    pub max_bytes: usize,
    /// Rotated files kept (`FILE.1` newest … `FILE.N`); older ones are deleted.
    pub keep: usize,
}

impl Default for Rotation {
    /// 100 MiB per file, 10 kept.
    fn default() -> Self {
        Self {
            max_bytes: 100 * 1024 * 1024,
            keep: 10,
        }
    }
}

/// Events queued for the file before new ones are dropped (and counted).
const FILE_QUEUE: usize = 16 * 1024;

/// Appends each event as one JSON line to a file (mode 0600), rotated by size
/// (`file-rotate`). A thread of its own writes; the request path only queues. When
/// the queue is full (the disk stalls) events are dropped and counted
/// ([`JsonLinesSink::dropped`]) rather than stall sign-ins; the count is logged.
pub struct JsonLinesSink {
    tx: Mutex<Option<SyncSender<Vec<u8>>>>,
    dropped: Arc<AtomicU64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

impl JsonLinesSink {
    /// Opens (creating, mode 0600) `path` for appending, rotated by `rotation`. Fails
    /// if the file cannot be opened or the rotation is empty.
    pub fn open(path: impl AsRef<Path>, rotation: Rotation) -> std::io::Result<Self> {
        let path = path.as_ref().to_owned();
        if rotation.max_bytes == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "audit log rotation needs max_bytes > 0",
            ));
        }
        // Surface a bad path now, not on the first event.
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        drop(opts.open(&path)?);
        let file = file_rotate::FileRotate::new(
            &path,
            file_rotate::suffix::AppendCount::new(rotation.keep),
            file_rotate::ContentLimit::BytesSurpassed(rotation.max_bytes),
            file_rotate::compression::Compression::None,
            Some(opts),
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(FILE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(file, rx))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            dropped: Arc::new(AtomicU64::new(0)),
            writer: Mutex::new(Some(writer)),
            path,
        })
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued and stops the writer; later events are dropped.
    pub fn close(&self) {
        drop(self.tx.lock().take());
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("path", &self.path)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

fn write_lines(
    mut file: file_rotate::FileRotate<file_rotate::suffix::AppendCount>,
    rx: Receiver<Vec<u8>>,
) {
    fn write(file: &mut impl std::io::Write, line: &[u8]) {
        if let Err(e) = file.write_all(line) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
    while let Ok(line) = rx.recv() {
        write(&mut file, &line);
        // What queued meanwhile goes out with it: one flush per burst.
        while let Ok(more) = rx.try_recv() {
            write(&mut file, &more);
        }
        let _ = file.flush();
    }
}

impl AuditSink for JsonLinesSink {
    fn record(&self, event: &AuditEvent) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(dropped = n, "the audit log cannot keep up: events dropped");
                }
            }
        }
    }
}

impl Drop for JsonLinesSink {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_without_empty_fields() {
        let e = AuditEvent::new(AuditKind::LoginFailed, 1_700_000_000_000)
            .failed("invalid_credentials")
            .source(Some(&ClientInfo {
                user_agent: "ua".into(),
                ip: "192.0.2.1".into(),
            }));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"time_ms":1700000000000,"kind":"login_failed","outcome":"failure","reason":"invalid_credentials","source":"192.0.2.1"}"#
        );
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn every_kind_names_itself_as_serde_does() {
        use AuditKind::*;
        for k in [
            Registered,
            LoginSucceeded,
            LoginFailed,
            SecondFactorRequired,
            Locked,
            Unlocked,
            Logout,
            LogoutAll,
            PasswordChanged,
            SessionRevoked,
            RefreshReuseDetected,
            AccountDeleted,
            SecondFactorAdded,
            SecondFactorRemoved,
            RecoveryCodeUsed,
            RecoveryCodesRegenerated,
            RoleGranted,
            RoleRevoked,
            AdminBootstrapped,
            AdminRefused,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }

    #[test]
    fn recent_events_keep_the_last_n() {
        let r = RecentEvents::new(3);
        for t in 0..5 {
            r.record(&AuditEvent::new(AuditKind::Logout, t));
        }
        let kept: Vec<i64> = r.snapshot().iter().map(|e| e.time_ms).collect();
        assert_eq!(kept, vec![2, 3, 4]);
    }

    #[test]
    fn the_json_lines_file_rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = JsonLinesSink::open(
            &path,
            Rotation {
                max_bytes: 300,
                keep: 2,
            },
        )
        .unwrap();
        for t in 0..40 {
            sink.record(&AuditEvent::new(AuditKind::Registered, t).user("u"));
        }
        sink.close();
        assert_eq!(sink.dropped(), 0);
        let mut lines = Vec::new();
        for name in ["audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() < 400, "{name}: {} bytes", text.len());
            for l in text.lines() {
                lines.push(serde_json::from_str::<AuditEvent>(l).unwrap().time_ms);
            }
        }
        assert!(
            !dir.path().join("audit.jsonl.3").exists(),
            "only 2 are kept"
        );
        // The newest events, in order, with nothing lost among those kept.
        assert_eq!(*lines.last().unwrap(), 39);
        assert!(lines.windows(2).all(|w| w[1] == w[0] + 1), "{lines:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
