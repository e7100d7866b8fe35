//! Throttling by source: token buckets (GCRA, the `governor` crate) per client address
//! for each costly operation, and per (account, source) for password checks.
//!
//! # Threat model
//!
//! - **One address floods logins** (credential stuffing, or just burning our CPU with
//!   password hashes). The per-address login bucket admits a burst and then a steady
//!   rate; the rest get [`AuthError::RateLimited`] before any hash or storage write.
//! - **One address guesses one account's password.** The per-(account, address) bucket
//!   is small: after a few checks the guesser waits, progressively longer in effect,
//!   while the account's owner, from their own address, is not slowed down. This is
//!   OWASP's advice: throttle per (account, source) first, and keep the account-wide
//!   lock ([`LockoutPolicy`](crate::LockoutPolicy)) well above it, so that one attacker
//!   cannot keep a victim locked out.
//! - **Many addresses** (a botnet) defeat per-address buckets by design; the
//!   account-wide lock and the bounded hash queue (`overloaded`) are what hold then.
//!
//! The source is `ClientInfo.ip` as the surface established it: the web takes it from
//! the socket (or a trusted proxy's `X-Forwarded-For`), the gRPC server from the
//! connection unless the caller is a trusted front end. A request without a source (an
//! application calling [`Auth`](crate::Auth) in process without `ClientInfo`) is not
//! throttled by source. IPv6 addresses count per /64, as one host usually owns one.
//!
//! Buckets live in this process: with several backend nodes, each keeps its own.
//! Memory is bounded: buckets that are full again are dropped by the sweeper, and each
//! limiter tracks at most [`ThrottlePolicy::max_tracked`] sources (beyond that, new
//! sources share one overflow bucket).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::error::AuthError;

/// A token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained requests per minute; 0 disables this limit.
    pub per_minute: u32,
    /// Requests admitted at once from a full bucket (at least 1).
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_minute: 0,
        burst: 0,
    };

    /// `per_minute` sustained with bursts of `burst`.
    pub const fn new(per_minute: u32, burst: u32) -> Rate {
        Rate { per_minute, burst }
    }

    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Some(Quota::per_minute(per_minute).allow_burst(burst))
    }
}

/// Throttling by source; see the [module docs](self) for the threat model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Logins per source address. Default 60/min, bursts of 20.
    pub login: Rate,
    /// Password checks per (account, source address): logins, password changes and
    /// account deletions. Default 2/min, bursts of 5.
    pub account_source: Rate,
    /// Registrations per source address. Default 10/min, bursts of 5.
    pub register: Rate,
    /// Refreshes per source address. Default 120/min, bursts of 60.
    pub refresh: Rate,
    /// Password changes per source address. Default 10/min, bursts of 5.
    pub change_password: Rate,
    /// Sources tracked per limiter before new ones share one overflow bucket.
    /// Default 100 000.
    pub max_tracked: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            login: Rate::new(60, 20),
            account_source: Rate::new(2, 5),
            register: Rate::new(10, 5),
            refresh: Rate::new(120, 60),
            change_password: Rate::new(10, 5),
            max_tracked: 100_000,
        }
    }
}

impl ThrottlePolicy {
    /// Every limit off (benchmarks, or a deployment that throttles elsewhere).
    pub const fn disabled() -> Self {
        Self {
            login: Rate::UNLIMITED,
            account_source: Rate::UNLIMITED,
            register: Rate::UNLIMITED,
            refresh: Rate::UNLIMITED,
            change_password: Rate::UNLIMITED,
            max_tracked: 0,
        }
    }
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A login (password check for a name).
    Login,
    /// A registration (a password hash).
    Register,
    /// A refresh-token rotation.
    Refresh,
    /// A password change (a check and a hash).
    ChangePassword,
}

/// `governor` measures time with our [`Clock`] (so tests can use a manual one).
#[derive(Clone)]
struct ClockAdapter(Arc<dyn Clock>);

impl GovernorClock for ClockAdapter {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

type Limiter =
    RateLimiter<String, DashMapStateStore<String>, ClockAdapter, NoOpMiddleware<Duration>>;

/// The limiters of one [`ThrottlePolicy`]. `Auth` keeps one; a front end (auth-web) may
/// keep its own with the same policy to refuse a flood at the edge, before it costs a
/// call to the backend.
pub struct Throttle {
    clock: ClockAdapter,
    max_tracked: usize,
    login: Option<Limiter>,
    account_source: Option<Limiter>,
    register: Option<Limiter>,
    refresh: Option<Limiter>,
    change_password: Option<Limiter>,
}

/// The key of the bucket shared by sources beyond `max_tracked`.
const OVERFLOW: &str = "\u{0}overflow";

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("max_tracked", &self.max_tracked)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// Limiters for `policy`, measuring time with `clock`.
    pub fn new(policy: &ThrottlePolicy, clock: Arc<dyn Clock>) -> Self {
        let clock = ClockAdapter(clock);
        let make = |r: Rate| {
            r.quota()
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone()))
        };
        Self {
            login: make(policy.login),
            account_source: make(policy.account_source),
            register: make(policy.register),
            refresh: make(policy.refresh),
            change_password: make(policy.change_password),
            max_tracked: policy.max_tracked,
            clock,
        }
    }

    /// Draws one request of `action` from `source`'s bucket (a client address); no
    /// source, no limit. [`AuthError::RateLimited`] with the wait when it is empty.
    pub fn check(&self, action: Action, source: Option<&str>) -> Result<(), AuthError> {
        let limiter = match action {
            Action::Login => &self.login,
            Action::Register => &self.register,
            Action::Refresh => &self.refresh,
            Action::ChangePassword => &self.change_password,
        };
        match (limiter, source.and_then(source_key)) {
            (Some(l), Some(key)) => self.draw(l, key),
            _ => Ok(()),
        }
    }

    /// Draws one password check for `account` (a username key) from `source`.
    pub fn check_account(&self, account: &str, source: Option<&str>) -> Result<(), AuthError> {
        match (&self.account_source, source.and_then(source_key)) {
            (Some(l), Some(key)) => self.draw(l, format!("{key} {account}")),
            _ => Ok(()),
        }
    }

    fn draw(&self, limiter: &Limiter, key: String) -> Result<(), AuthError> {
        if limiter.len() >= self.max_tracked {
            // At the bound: drop the buckets that are full again before overflowing.
            limiter.retain_recent();
        }
        let key = if limiter.len() >= self.max_tracked {
            OVERFLOW.to_owned()
        } else {
            key
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            AuthError::RateLimited {
                retry_after: wait.max(Duration::from_millis(1)),
            }
        })
    }

    /// Forgets buckets that are full again (they would admit a full burst anyway).
    pub fn forget_idle(&self) {
        for l in [
            &self.login,
            &self.account_source,
            &self.register,
            &self.refresh,
            &self.change_password,
        ]
        .into_iter()
        .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The bucket key of a source address: IPv4 as is, IPv6 by its /64, anything else
/// (not an address) verbatim up to 64 bytes. `None` for an empty source.
fn source_key(ip: &str) -> Option<String> {
    let ip = ip.trim();
    if ip.is_empty() {
        return None;
    }
    Some(match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.chars().take(64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn throttle(policy: ThrottlePolicy) -> (Throttle, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        (Throttle::new(&policy, clock.clone()), clock)
    }

    #[test]
    fn a_source_gets_its_burst_then_the_steady_rate() {
        let (t, clock) = throttle(ThrottlePolicy {
            login: Rate::new(60, 3),
            ..ThrottlePolicy::default()
        });
        for _ in 0..3 {
            t.check(Action::Login, Some("192.0.2.1")).unwrap();
        }
        let e = t.check(Action::Login, Some("192.0.2.1")).unwrap_err();
        assert_eq!(e.code(), "rate_limited");
        let wait = e.retry_after().unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another address has its own bucket; no address is not throttled.
        t.check(Action::Login, Some("192.0.2.2")).unwrap();
        for _ in 0..10 {
            t.check(Action::Login, None).unwrap();
            t.check(Action::Login, Some("")).unwrap();
        }
        // One token per second at 60/min.
        clock.advance(Duration::from_secs(1));
        t.check(Action::Login, Some("192.0.2.1")).unwrap();
        assert!(t.check(Action::Login, Some("192.0.2.1")).is_err());
    }

    #[test]
    fn account_buckets_are_per_account_and_source() {
        let (t, _) = throttle(ThrottlePolicy {
            account_source: Rate::new(1, 2),
            ..ThrottlePolicy::default()
        });
        for _ in 0..2 {
            t.check_account("alice", Some("192.0.2.1")).unwrap();
        }
        assert!(t.check_account("alice", Some("192.0.2.1")).is_err());
        // The owner from elsewhere, and the attacker on another account, are not slowed.
        t.check_account("alice", Some("198.51.100.7")).unwrap();
        t.check_account("bob", Some("192.0.2.1")).unwrap();
    }

    #[test]
    fn ipv6_counts_per_64_and_disabled_limits_admit_everything() {
        let (t, _) = throttle(ThrottlePolicy {
            register: Rate::new(1, 1),
            ..ThrottlePolicy::default()
        });
        t.check(Action::Register, Some("2001:db8:1:2::1")).unwrap();
        assert!(
            t.check(Action::Register, Some("2001:db8:1:2:ffff::9"))
                .is_err(),
            "same /64"
        );
        t.check(Action::Register, Some("2001:db8:1:3::1")).unwrap();
        let (off, _) = throttle(ThrottlePolicy::disabled());
        for _ in 0..1000 {
            off.check(Action::Login, Some("192.0.2.1")).unwrap();
            off.check_account("a", Some("192.0.2.1")).unwrap();
        }
    }

    #[test]
    fn sources_beyond_the_bound_share_one_bucket() {
        let (t, _) = throttle(ThrottlePolicy {
            refresh: Rate::new(1, 1),
            max_tracked: 2,
            ..ThrottlePolicy::default()
        });
        t.check(Action::Refresh, Some("192.0.2.1")).unwrap();
        t.check(Action::Refresh, Some("192.0.2.2")).unwrap();
        // Two tracked: the third and fourth source share the overflow bucket.
        t.check(Action::Refresh, Some("192.0.2.3")).unwrap();
        assert!(t.check(Action::Refresh, Some("192.0.2.4")).is_err());
    }
}
