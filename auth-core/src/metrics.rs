//! Metrics through the [`metrics`] facade: whichever recorder the application
//! installs (a Prometheus exporter in `auth-backend` and `auth-web`) receives them;
//! without one they cost an atomic load each.
//!
//! Names follow Prometheus conventions (base units, `_total` counters). Labels take
//! values from small fixed sets (outcomes, stable error codes, event kinds): never a
//! username, id or address.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `auth_logins_total` | counter | `result`: `success`, `failure`, `second_factor` |
//! | `auth_login_failures_total` | counter | `reason`: the error code |
//! | `auth_registrations_total` | counter | |
//! | `auth_lockouts_total` | counter | |
//! | `auth_refresh_reuse_total` | counter | |
//! | `auth_audit_events_total` | counter | `kind`, `outcome` |
//! | `auth_hash_queue_depth` | gauge | |
//! | `auth_hash_wait_seconds` | histogram | |
//! | `auth_hash_shed_total` | counter | |
//!
//! The sign-in counters come from audit events: add [`MetricsSink`] to the audit sinks
//! (the binaries do).

use crate::audit::{AuditEvent, AuditKind, AuditSink, Outcome};

/// Password checks and hashes waiting for a hash slot now.
pub const HASH_QUEUE_DEPTH: &str = "auth_hash_queue_depth";
/// How long a password check or hash waited for a slot, seconds.
pub const HASH_WAIT_SECONDS: &str = "auth_hash_wait_seconds";
/// Password checks shed because the queue was full or its wait too long.
pub const HASH_SHED_TOTAL: &str = "auth_hash_shed_total";

/// Describes every metric of this crate to the installed recorder (help texts and
/// units). Call once after installing it.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "auth_logins_total",
        "Sign-in attempts by result: success (a session opened), failure, second_factor (password right, second factor asked)."
    );
    describe_counter!(
        "auth_login_failures_total",
        "Refused sign-ins by stable error code."
    );
    describe_counter!("auth_registrations_total", "Accounts created.");
    describe_counter!(
        "auth_lockouts_total",
        "Locks started by failed password or code checks."
    );
    describe_counter!(
        "auth_refresh_reuse_total",
        "Rotated refresh tokens presented again (sessions revoked)."
    );
    describe_counter!(
        "auth_audit_events_total",
        "Audit events by kind and outcome."
    );
    describe_gauge!(
        HASH_QUEUE_DEPTH,
        "Password checks and hashes waiting for a hash slot."
    );
    describe_histogram!(
        HASH_WAIT_SECONDS,
        Unit::Seconds,
        "Time a password check or hash waited for a hash slot."
    );
    describe_counter!(
        HASH_SHED_TOTAL,
        "Password checks shed (queue full or waited too long)."
    );
}

/// Counts audit events as metrics (see the module docs). Counter handles are looked
/// up once per label set and kept: an event pays a few atomic increments.
#[derive(Default)]
pub struct MetricsSink {
    counters: parking_lot::RwLock<
        std::collections::HashMap<(&'static str, &'static str, &'static str), metrics::Counter>,
    >,
}

impl std::fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSink").finish_non_exhaustive()
    }
}

impl MetricsSink {
    /// Increments `name`, labelled `(k1, v1)` and `(k2, v2)` where the keys are not
    /// empty.
    fn bump(&self, name: &'static str, labels: [(&'static str, &'static str); 2]) {
        let key = (name, labels[0].1, labels[1].1);
        if let Some(c) = self.counters.read().get(&key) {
            c.increment(1);
            return;
        }
        let owned: Vec<metrics::Label> = labels
            .iter()
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| metrics::Label::new(*k, *v))
            .collect();
        let c = metrics::counter!(name, owned);
        c.increment(1);
        self.counters.write().entry(key).or_insert(c);
    }
}

impl AuditSink for MetricsSink {
    fn record(&self, e: &AuditEvent) {
        let outcome = match e.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        };
        const NONE: (&str, &str) = ("", "");
        self.bump(
            "auth_audit_events_total",
            [("kind", e.kind.as_str()), ("outcome", outcome)],
        );
        match e.kind {
            AuditKind::LoginSucceeded => {
                self.bump("auth_logins_total", [("result", "success"), NONE]);
            }
            AuditKind::SecondFactorRequired => {
                self.bump("auth_logins_total", [("result", "second_factor"), NONE]);
            }
            AuditKind::LoginFailed => {
                self.bump("auth_logins_total", [("result", "failure"), NONE]);
                let reason = crate::AuthError::CODES
                    .iter()
                    .find(|c| **c == e.reason)
                    .copied()
                    .unwrap_or("other");
                self.bump("auth_login_failures_total", [("reason", reason), NONE]);
            }
            AuditKind::Registered => self.bump("auth_registrations_total", [NONE, NONE]),
            AuditKind::Locked if e.detail == "lockout" => {
                self.bump("auth_lockouts_total", [NONE, NONE]);
            }
            AuditKind::RefreshReuseDetected => {
                self.bump("auth_refresh_reuse_total", [NONE, NONE]);
            }
            _ => {}
        }
    }
}
