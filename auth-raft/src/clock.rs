//! Leader-bounded time: where a node reads the time, and how the leader checks (and for
//! some commands replaces) the time a command carries before it enters the log.
//!
//! The state machine applies commands deterministically with the time inside them, so
//! whatever time reaches the log is what every node acts on. A proposer whose clock has
//! jumped an hour ahead could otherwise sweep live sessions off every node
//! (`DeleteExpired`) or age the de-duplication table. The leader is the one place every
//! write passes through, so it bounds the time there:
//!
//! | command | time | rule |
//! |---|---|---|
//! | `DeleteExpired` | `now_ms`, a cut-off | refused if ahead of the leader's clock by more than the skew; otherwise replaced by `min(now_ms, leader's now)`: a sweep never reaches past the leader's clock, and an earlier cut-off (a subset of what is due) is harmless |
//! | `RotateRefresh` | `now_ms` | refused if ahead by more than the skew, or behind by more than the skew plus the leader's request timeout (the longest a command may legitimately spend queued and forwarded). Ahead extends sessions; behind revives expired ones. Kept as sent within the bound, so the stored times agree with the tokens the proposer issues |
//! | `CreateSession` | `created_at_ms` | the same as `RotateRefresh`: a proposer with a broken clock also computed the expiry (and its tokens) with it |
//! | the batch | `proposed_at_ms` | always the leader's clock: it ages the de-duplication table; a follower's value is never used |
//!
//! User records are not checked: their times (`created_at_ms`, `updated_at_ms`,
//! `locked_until_ms`) are record data that the state machine stores without acting on,
//! an application may import users with old times, and a wrong value harms one account,
//! not the cluster.
//!
//! Refusals are [`StorageError::Unavailable`] with a message naming clock skew: it is
//! the proposing node's condition, not the request's, and another node (or this one once
//! its clock is corrected) can serve it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_proto::v1 as pb;
use auth_proto::v1::command::Op;
use auth_storage::StorageError;

/// Where a node reads the time (unix milliseconds). The system clock by default;
/// tests inject their own to give one node a skewed clock.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use auth_raft::NodeClock;
///
/// let now = Arc::new(AtomicI64::new(1_000));
/// let clock = NodeClock::from_fn({
///     let now = Arc::clone(&now);
///     move || now.load(Ordering::SeqCst)
/// });
/// now.store(2_000, Ordering::SeqCst);
/// assert_eq!(clock.now_ms(), 2_000);
/// assert!(NodeClock::system().now_ms() > 0);
/// ```
#[derive(Clone)]
pub struct NodeClock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl NodeClock {
    /// The system wall clock.
    pub fn system() -> Self {
        Self(Arc::new(system_now_ms))
    }

    /// A clock that reads `now` (unix milliseconds).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for NodeClock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for NodeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeClock")
    }
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How the leader treats the time a command carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeRule {
    /// The proposer's "now": refused outside the bound both ways, kept as sent inside it.
    Now,
    /// A cut-off in the past: refused if ahead beyond the skew, never later than the
    /// leader's clock, any earlier value allowed.
    CutOff,
}

/// The time a command carries and its rule; `None` for commands without time.
///
/// Every command whose time the state machine acts on must be listed here, or a
/// proposer's clock reaches the log unchecked.
fn command_time(op: &mut Op) -> Option<(&mut i64, TimeRule)> {
    match op {
        Op::DeleteExpired(d) => Some((&mut d.now_ms, TimeRule::CutOff)),
        Op::RotateRefresh(r) => Some((&mut r.now_ms, TimeRule::Now)),
        Op::CreateSession(s) => Some((&mut s.created_at_ms, TimeRule::Now)),
        // Also the time sessions are judged expired by when making room.
        Op::CreateBoundedSession(c) => c
            .session
            .as_mut()
            .map(|s| (&mut s.created_at_ms, TimeRule::Now)),
        // A time ahead would end locks early (a bypass); behind would lengthen them.
        Op::ReserveLogin(r) => Some((&mut r.now_ms, TimeRule::Now)),
        // A time behind would admit expired challenges; ahead would refuse good ones.
        Op::PutChallenge(c) => Some((&mut c.now_ms, TimeRule::Now)),
        Op::TakeChallenge(c) => Some((&mut c.now_ms, TimeRule::Now)),
        Op::SettleLogin(_)
        | Op::CreateUser(_)
        | Op::UpdateUser(_)
        | Op::DeleteUser(_)
        | Op::DeleteSession(_)
        | Op::DeleteUserSessions(_) => None,
    }
}

/// The window the leader accepts command times in, read from its clock once per batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeBounds {
    /// The leader's clock.
    pub now_ms: i64,
    /// How far ahead of `now_ms` a time may be.
    pub ahead_ms: i64,
    /// How far behind `now_ms` a proposer's "now" may be (skew plus transit).
    pub behind_ms: i64,
}

impl TimeBounds {
    /// Bounds at the leader's `now_ms`; `None` skew: no bound (commands keep their time).
    pub fn new(now_ms: i64, max_skew: Option<Duration>, transit: Duration) -> Option<Self> {
        let skew = ms(max_skew?);
        Some(Self {
            now_ms,
            ahead_ms: skew,
            behind_ms: skew.saturating_add(ms(transit)),
        })
    }

    /// Checks the command's time and, for cut-offs, replaces it with the leader's bound.
    /// The error is a message for [`StorageError::Unavailable`].
    pub fn apply(&self, cmd: &mut pb::Command) -> Result<(), String> {
        let Some((t, rule)) = cmd.op.as_mut().and_then(command_time) else {
            return Ok(());
        };
        let ahead = t.saturating_sub(self.now_ms);
        if ahead > self.ahead_ms {
            return Err(skew_message(ahead, "ahead of", self.ahead_ms));
        }
        match rule {
            TimeRule::CutOff => *t = (*t).min(self.now_ms),
            TimeRule::Now => {
                let behind = self.now_ms.saturating_sub(*t);
                if behind > self.behind_ms {
                    return Err(skew_message(behind, "behind", self.behind_ms));
                }
            }
        }
        Ok(())
    }
}

fn skew_message(by_ms: i64, direction: &str, bound_ms: i64) -> String {
    format!(
        "clock skew: the command's time is {by_ms} ms {direction} the leader's clock \
         (at most {bound_ms} ms allowed); check the proposing node's time synchronisation"
    )
}

/// A refused command's result, as the state machine would report the error.
pub(crate) fn refused(message: String) -> pb::CommandResult {
    pb::CommandResult {
        result: Some(pb::command_result::Result::Failure(pb::StorageFailure {
            code: StorageError::Unavailable(String::new()).code().to_owned(),
            message,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn bounds() -> TimeBounds {
        TimeBounds::new(NOW, Some(Duration::from_secs(2)), Duration::from_secs(5)).unwrap()
    }

    fn sweep(now_ms: i64) -> pb::Command {
        pb::Command {
            request_id: vec![1],
            op: Some(Op::DeleteExpired(pb::DeleteExpiredCommand {
                now_ms,
                limit: 10,
            })),
        }
    }

    fn rotate(now_ms: i64) -> pb::Command {
        pb::Command {
            request_id: vec![2],
            op: Some(Op::RotateRefresh(pb::RotateRefreshCommand {
                now_ms,
                ..Default::default()
            })),
        }
    }

    fn time_of(cmd: &mut pb::Command) -> i64 {
        *cmd.op.as_mut().and_then(command_time).unwrap().0
    }

    #[test]
    fn a_sweep_never_reaches_past_the_leaders_clock() {
        let b = bounds();
        let mut within = sweep(NOW + 1_500);
        b.apply(&mut within).unwrap();
        assert_eq!(time_of(&mut within), NOW, "clamped to the leader's clock");
        let mut earlier = sweep(NOW - 86_400_000);
        b.apply(&mut earlier).unwrap();
        assert_eq!(
            time_of(&mut earlier),
            NOW - 86_400_000,
            "an earlier cut-off stays"
        );
        let mut ahead = sweep(NOW + 3_600_000);
        let e = b.apply(&mut ahead).unwrap_err();
        assert!(e.starts_with("clock skew"), "{e}");
        assert_eq!(
            time_of(&mut ahead),
            NOW + 3_600_000,
            "a refused command is left alone"
        );
    }

    #[test]
    fn a_proposers_now_must_lie_within_the_skew_plus_transit() {
        let b = bounds();
        for ok in [NOW, NOW + 2_000, NOW - 7_000] {
            let mut c = rotate(ok);
            b.apply(&mut c).unwrap();
            assert_eq!(time_of(&mut c), ok, "kept as sent within the bound");
        }
        for bad in [NOW + 2_001, NOW - 7_001, i64::MAX, i64::MIN] {
            let e = b.apply(&mut rotate(bad)).unwrap_err();
            assert!(e.contains("clock skew"), "{bad}: {e}");
        }
        let mut session = pb::Command {
            request_id: vec![3],
            op: Some(Op::CreateSession(pb::Session {
                created_at_ms: NOW - 3_600_000,
                ..Default::default()
            })),
        };
        assert!(b.apply(&mut session).is_err());
    }

    #[test]
    fn commands_without_time_and_unbounded_nodes_pass() {
        let mut user = pb::Command {
            request_id: vec![4],
            op: Some(Op::CreateUser(pb::User {
                created_at_ms: 0,
                ..Default::default()
            })),
        };
        bounds().apply(&mut user).unwrap();
        bounds().apply(&mut pb::Command::default()).unwrap();
        assert!(TimeBounds::new(NOW, None, Duration::from_secs(5)).is_none());
    }

    #[test]
    fn a_refusal_is_unavailable_with_the_bare_message() {
        let r = refused("clock skew: x".into());
        let Some(pb::command_result::Result::Failure(f)) = r.result else {
            panic!("{r:?}")
        };
        assert_eq!(f.code, "unavailable");
        assert_eq!(f.message, "clock skew: x");
    }
}
