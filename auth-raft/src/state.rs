//! The replicated state: [`Tables`] plus what Raft needs (last applied log, membership)
//! and the de-duplication table that makes retried writes apply once.
//!
//! Applying a [`CommandBatch`] is deterministic: it depends only on the current state and
//! the batch (time travels inside it), so every node computes the same results.

use auth_proto::v1 as pb;
use auth_proto::v1::command::Op;
use auth_proto::v1::command_result::Result as Res;
use auth_proto::v1::rotate_result::Kind;
use auth_storage::memory::Tables;
use std::sync::Arc;

use auth_storage::{
    PutChallenge, Reservation, ReserveLogin, RotateOutcome, RotateRefresh, SettleLogin,
    StorageError,
};
use imbl::{HashMap, Vector};
use prost::Message;

use crate::types::{LogId, StoredMembership};

/// How long a request id is remembered, by the leader's clock (the batch's
/// `proposed_at_ms`, which the leader stamps: a follower's clock never ages the table).
/// Retries come within the client's request timeout, seconds; this leaves a wide margin.
pub(crate) const DEDUP_WINDOW_MS: i64 = 120_000;
/// Upper bound on remembered request ids, whatever the window.
pub(crate) const DEDUP_MAX: usize = 200_000;

/// The state machine's data. Every part is persistent (see [`Tables`]): a clone is a
/// consistent view that costs nothing to take and is written out as a snapshot while
/// writes go on.
#[derive(Debug, Default, Clone)]
pub(crate) struct SmState {
    pub tables: Tables,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Results behind `Arc`: map nodes hold pointers, not whole results.
    dedup: HashMap<Vec<u8>, (i64, Arc<pb::CommandResult>)>,
    dedup_order: Vector<(i64, Vec<u8>)>,
    /// The latest leader clock seen (`proposed_at_ms`); only ever grows.
    clock_ms: i64,
}

fn failure(e: StorageError) -> pb::CommandResult {
    pb::CommandResult {
        result: Some(Res::Failure(pb::StorageFailure {
            code: e.code().to_owned(),
            message: e.to_string(),
        })),
    }
}

fn ok(r: Res) -> pb::CommandResult {
    pb::CommandResult { result: Some(r) }
}

impl SmState {
    /// Applies a batch; one result per command, in order.
    pub fn apply_batch(&mut self, batch: &pb::CommandBatch) -> pb::BatchResult {
        self.clock_ms = self.clock_ms.max(batch.proposed_at_ms);
        self.evict();
        let results = batch
            .commands
            .iter()
            .map(|cmd| {
                if !cmd.request_id.is_empty()
                    && let Some((_, r)) = self.dedup.get(&cmd.request_id)
                {
                    return pb::CommandResult::clone(r);
                }
                let r = self.apply_command(cmd);
                if !cmd.request_id.is_empty() {
                    self.dedup
                        .insert(cmd.request_id.clone(), (self.clock_ms, Arc::new(r.clone())));
                    self.dedup_order
                        .push_back((self.clock_ms, cmd.request_id.clone()));
                }
                r
            })
            .collect();
        pb::BatchResult { results }
    }

    fn evict(&mut self) {
        let horizon = self.clock_ms.saturating_sub(DEDUP_WINDOW_MS);
        while let Some((at, _)) = self.dedup_order.front() {
            if *at >= horizon && self.dedup_order.len() <= DEDUP_MAX {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    fn apply_command(&mut self, cmd: &pb::Command) -> pb::CommandResult {
        let t = &mut self.tables;
        let Some(op) = &cmd.op else {
            return failure(StorageError::Invalid("empty command".into()));
        };
        match op {
            Op::CreateUser(u) => t
                .create_user(u.clone())
                .map_or_else(failure, |u| ok(Res::User(u))),
            Op::UpdateUser(u) => t
                .update_user(u.clone())
                .map_or_else(failure, |u| ok(Res::User(u))),
            Op::DeleteUser(id) => t
                .delete_user(id)
                .map_or_else(failure, |n| ok(Res::Count(n))),
            Op::CreateSession(s) => t
                .create_session(s.clone(), 0)
                .map_or_else(failure, |s| ok(Res::Session(s))),
            Op::CreateBoundedSession(c) => t
                .create_session(c.session.clone().unwrap_or_default(), c.max_per_user)
                .map_or_else(failure, |s| ok(Res::Session(s))),
            Op::RotateRefresh(r) => {
                let outcome = t.rotate_refresh(RotateRefresh {
                    session_id: r.session_id.clone(),
                    presented_hash: r.presented_hash.clone(),
                    new_hash: r.new_hash.clone(),
                    sealed_successor: r.sealed_successor.clone(),
                    now_ms: r.now_ms,
                    idle_ttl_ms: r.idle_ttl_ms,
                    grace_ms: r.grace_ms,
                });
                let (kind, session) = match outcome {
                    RotateOutcome::Rotated(s) => (Kind::Rotated, Some(s)),
                    RotateOutcome::Replayed(s) => (Kind::Replayed, Some(s)),
                    RotateOutcome::Reused => (Kind::Reused, None),
                    RotateOutcome::Expired => (Kind::Expired, None),
                    RotateOutcome::Invalid => (Kind::Invalid, None),
                };
                ok(Res::Rotate(pb::RotateResult {
                    kind: kind as i32,
                    session,
                }))
            }
            Op::DeleteSession(d) => ok(Res::Flag(t.delete_session(&d.session_id, &d.user_id))),
            Op::DeleteUserSessions(d) => {
                let keep = (!d.keep_session_id.is_empty()).then_some(d.keep_session_id.as_str());
                ok(Res::Count(t.delete_user_sessions(&d.user_id, keep)))
            }
            Op::DeleteExpired(d) => {
                let limit = usize::try_from(d.limit).unwrap_or(usize::MAX);
                ok(Res::Count(t.delete_expired_sessions(d.now_ms, limit)))
            }
            Op::ReserveLogin(r) => t
                .reserve_login(ReserveLogin {
                    username_key: r.username_key.clone(),
                    now_ms: r.now_ms,
                    max_failures: r.max_failures,
                    base_delay_ms: r.base_delay_ms,
                    max_delay_ms: r.max_delay_ms,
                    forget_after_ms: r.forget_after_ms,
                })
                .map_or_else(failure, |d| {
                    ok(Res::Reservation(match d {
                        Reservation::Granted { ticket } => pb::ReservationResult {
                            granted: true,
                            ticket,
                            locked_until_ms: 0,
                        },
                        Reservation::Locked { until_ms } => pb::ReservationResult {
                            granted: false,
                            ticket: 0,
                            locked_until_ms: until_ms,
                        },
                    }))
                }),
            Op::SettleLogin(r) => {
                t.settle_login(SettleLogin {
                    username_key: r.username_key.clone(),
                    ticket: r.ticket,
                });
                ok(Res::Flag(true))
            }
            Op::PutChallenge(c) => match &c.challenge {
                None => failure(StorageError::Invalid("challenge is required".into())),
                Some(challenge) => t
                    .put_challenge(PutChallenge {
                        challenge: challenge.clone(),
                        now_ms: c.now_ms,
                        max_per_user: c.max_per_user,
                        max_total: c.max_total,
                    })
                    .map_or_else(failure, |()| ok(Res::Flag(true))),
            },
            Op::TakeChallenge(c) => match t.take_challenge(&c.id, &c.kind, c.now_ms) {
                Some(taken) => ok(Res::Challenge(taken)),
                None => ok(Res::Flag(false)),
            },
        }
    }

    /// The data part of a snapshot (Raft metadata travels separately).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut dedup: Vec<pb::DedupEntry> = self
            .dedup_order
            .iter()
            .filter_map(|(at, id)| {
                self.dedup.get(id).map(|(_, r)| pb::DedupEntry {
                    request_id: id.clone(),
                    applied_at_ms: *at,
                    result: Some(pb::CommandResult::clone(r)),
                })
            })
            .collect();
        dedup.dedup_by(|a, b| a.request_id == b.request_id);
        let mut users: Vec<_> = self.tables.users().cloned().collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        let mut sessions: Vec<_> = self.tables.sessions().cloned().collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        let mut login_attempts: Vec<_> = self.tables.login_attempts().cloned().collect();
        login_attempts.sort_by(|a, b| a.username_key.cmp(&b.username_key));
        let mut challenges: Vec<_> = self.tables.challenges().cloned().collect();
        challenges.sort_by(|a, b| a.id.cmp(&b.id));
        pb::SnapshotData {
            users,
            sessions,
            dedup,
            login_attempts,
            challenges,
        }
        .encode_to_vec()
    }

    /// Rebuilds the data from [`SmState::encode_snapshot`] output.
    pub fn decode_snapshot(
        bytes: &[u8],
        last_applied: Option<LogId>,
        membership: StoredMembership,
    ) -> Result<Self, StorageError> {
        let data = pb::SnapshotData::decode(bytes)
            .map_err(|e| StorageError::Internal(format!("snapshot does not decode: {e}")))?;
        let mut tables = Tables::restore(data.users, data.sessions)?;
        tables.restore_login_attempts(data.login_attempts);
        tables.restore_challenges(data.challenges);
        let mut state = SmState {
            tables,
            last_applied,
            membership,
            ..SmState::default()
        };
        for d in data.dedup {
            state.clock_ms = state.clock_ms.max(d.applied_at_ms);
            if let Some(r) = d.result {
                state
                    .dedup_order
                    .push_back((d.applied_at_ms, d.request_id.clone()));
                state
                    .dedup
                    .insert(d.request_id, (d.applied_at_ms, Arc::new(r)));
            }
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> pb::User {
        pb::User {
            id: id.into(),
            username: id.into(),
            username_key: id.into(),
            ..Default::default()
        }
    }

    fn create(id: &str, rid: &[u8]) -> pb::Command {
        pb::Command {
            request_id: rid.to_vec(),
            op: Some(Op::CreateUser(user(id))),
        }
    }

    #[test]
    fn results_match_memory_storage_and_retries_apply_once() {
        let mut s = SmState::default();
        let r = s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 1,
            commands: vec![create("a", b"r1"), create("a", b"r2")],
        });
        assert!(matches!(r.results[0].result, Some(Res::User(_))));
        match &r.results[1].result {
            Some(Res::Failure(f)) => assert_eq!(f.code, "user_exists"),
            other => panic!("{other:?}"),
        }
        // The same request id again: the cached answer, not user_exists.
        let again = s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 2,
            commands: vec![create("a", b"r1")],
        });
        assert_eq!(again.results[0], r.results[0]);
        assert_eq!(s.tables.user_count(), 1);
    }

    #[test]
    fn dedup_entries_expire_by_the_batch_clock() {
        let mut s = SmState::default();
        s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 0,
            commands: vec![create("a", b"r1")],
        });
        s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: DEDUP_WINDOW_MS + 1,
            commands: vec![],
        });
        let late = s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: DEDUP_WINDOW_MS + 2,
            commands: vec![create("a", b"r1")],
        });
        assert!(matches!(late.results[0].result, Some(Res::Failure(_))));
    }

    #[test]
    fn snapshot_round_trip_keeps_everything() {
        let mut s = SmState::default();
        s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 10,
            commands: vec![create("a", b"r1"), create("b", b"r2")],
        });
        let challenge = pb::Challenge {
            id: "c1".into(),
            kind: "mfa".into(),
            user_id: "a".into(),
            expires_at_ms: 1_000,
            state: b"state".to_vec(),
            ..Default::default()
        };
        s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 10,
            commands: vec![pb::Command {
                request_id: b"r3".to_vec(),
                op: Some(Op::PutChallenge(pb::PutChallengeCommand {
                    challenge: Some(challenge.clone()),
                    now_ms: 10,
                    max_per_user: 4,
                    max_total: 100,
                })),
            }],
        });
        let bytes = s.encode_snapshot();
        let mut back = SmState::decode_snapshot(&bytes, None, StoredMembership::default()).unwrap();
        assert_eq!(back.tables.user_count(), 2);
        assert_eq!(
            back.tables.challenges().cloned().collect::<Vec<_>>(),
            vec![challenge]
        );
        let again = back.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 11,
            commands: vec![create("a", b"r1")],
        });
        assert!(matches!(again.results[0].result, Some(Res::User(_))));
        assert!(SmState::decode_snapshot(b"\xff\xff", None, StoredMembership::default()).is_err());
    }

    #[test]
    fn empty_command_is_an_error_result() {
        let mut s = SmState::default();
        let r = s.apply_batch(&pb::CommandBatch {
            proposed_at_ms: 1,
            commands: vec![pb::Command::default()],
        });
        assert!(matches!(r.results[0].result, Some(Res::Failure(_))));
    }
}
