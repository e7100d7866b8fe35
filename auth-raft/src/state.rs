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

    /// The data part of a snapshot (Raft metadata travels separately), in memory.
    #[cfg(test)]
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec does not fail.
        let _ = self.write_snapshot(&mut out);
        out
    }

    /// Writes the data part of a snapshot to `w` record by record: the bytes of a
    /// `SnapshotData` message, without building it (or a second copy of any record) in
    /// memory. The records are sorted, so equal states give equal bytes.
    pub fn write_snapshot(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        fn sorted<'a, T: 'a, K: Ord + ?Sized>(
            items: impl Iterator<Item = &'a T>,
            key: impl Fn(&T) -> &K,
        ) -> Vec<&'a T> {
            let mut v: Vec<&T> = items.collect();
            v.sort_by(|a, b| key(a).cmp(key(b)));
            v
        }
        let mut buf = Vec::new();
        let mut field = |w: &mut dyn std::io::Write, number: u8, m: &dyn EncodeDyn| {
            buf.clear();
            // A length-delimited field: key (number, wire type 2), length, message.
            buf.push((number << 3) | 2);
            let len = m.encode_delimited(&mut buf);
            if len > MAX_SNAPSHOT_RECORD {
                // Better no snapshot than one no node could read back.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a snapshot record of {len} bytes (field {number})"),
                ));
            }
            w.write_all(&buf)
        };
        for u in sorted(self.tables.users(), |u| u.id.as_str()) {
            field(w, SNAPSHOT_USERS, u)?;
        }
        for x in sorted(self.tables.sessions(), |x| x.id.as_str()) {
            field(w, SNAPSHOT_SESSIONS, x)?;
        }
        let mut last: Option<&Vec<u8>> = None;
        for (at, id) in self.dedup_order.iter() {
            if last == Some(id) {
                continue;
            }
            last = Some(id);
            if let Some((_, r)) = self.dedup.get(id) {
                let d = pb::DedupEntry {
                    request_id: id.clone(),
                    applied_at_ms: *at,
                    result: Some(pb::CommandResult::clone(r)),
                };
                field(w, SNAPSHOT_DEDUP, &d)?;
            }
        }
        for x in sorted(self.tables.login_attempts(), |x| x.username_key.as_str()) {
            field(w, SNAPSHOT_LOGIN_ATTEMPTS, x)?;
        }
        for x in sorted(self.tables.challenges(), |x| x.id.as_str()) {
            field(w, SNAPSHOT_CHALLENGES, x)?;
        }
        Ok(())
    }

    /// Rebuilds the data from [`SmState::encode_snapshot`] output.
    #[cfg(test)]
    pub fn decode_snapshot(
        bytes: &[u8],
        last_applied: Option<LogId>,
        membership: StoredMembership,
    ) -> Result<Self, StorageError> {
        Self::read_snapshot(bytes, last_applied, membership)
    }

    /// Rebuilds the data from [`SmState::write_snapshot`] output, read record by record
    /// (never the whole encoding in memory).
    pub fn read_snapshot(
        mut r: impl std::io::Read,
        last_applied: Option<LogId>,
        membership: StoredMembership,
    ) -> Result<Self, StorageError> {
        let bad = |e: &dyn std::fmt::Display| {
            StorageError::Internal(format!("snapshot does not decode: {e}"))
        };
        let mut data = pb::SnapshotData::default();
        let mut buf = Vec::new();
        while let Some(key) = read_varint(&mut r, true).map_err(|e| bad(&e))? {
            // A field of a later version is skipped, as prost would.
            let skip = match key & 7 {
                2 => None,
                0 => Some(read_varint(&mut r, false).map(|_| ())),
                1 => Some(r.read_exact(&mut [0; 8])),
                5 => Some(r.read_exact(&mut [0; 4])),
                _ => return Err(bad(&format!("unexpected field key {key}"))),
            };
            if let Some(skipped) = skip {
                skipped.map_err(|e| bad(&e))?;
                continue;
            }
            let len = read_varint(&mut r, false)
                .map_err(|e| bad(&e))?
                .unwrap_or_default();
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_SNAPSHOT_RECORD)
                .ok_or_else(|| bad(&format!("a record of {len} bytes")))?;
            buf.resize(len, 0);
            r.read_exact(&mut buf).map_err(|e| bad(&e))?;
            let m = buf.as_slice();
            match u8::try_from(key >> 3).unwrap_or(u8::MAX) {
                SNAPSHOT_USERS => data.users.push(Message::decode(m).map_err(|e| bad(&e))?),
                SNAPSHOT_SESSIONS => data.sessions.push(Message::decode(m).map_err(|e| bad(&e))?),
                SNAPSHOT_DEDUP => data.dedup.push(Message::decode(m).map_err(|e| bad(&e))?),
                SNAPSHOT_LOGIN_ATTEMPTS => data
                    .login_attempts
                    .push(Message::decode(m).map_err(|e| bad(&e))?),
                SNAPSHOT_CHALLENGES => data
                    .challenges
                    .push(Message::decode(m).map_err(|e| bad(&e))?),
                // A field of a later version: skipped, as prost would.
                _ => {}
            }
        }
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

// `SnapshotData`'s field numbers (raft.proto).
const SNAPSHOT_USERS: u8 = 1;
const SNAPSHOT_SESSIONS: u8 = 2;
const SNAPSHOT_DEDUP: u8 = 3;
const SNAPSHOT_LOGIN_ATTEMPTS: u8 = 4;
const SNAPSHOT_CHALLENGES: u8 = 5;
/// The largest single record a snapshot may hold (a user with every second factor is a
/// few KiB).
const MAX_SNAPSHOT_RECORD: usize = 16 << 20;

/// A message encoded with its length in front, behind `dyn`.
trait EncodeDyn {
    /// Appends the length and the message to `buf`; returns the message's length.
    fn encode_delimited(&self, buf: &mut Vec<u8>) -> usize;
}

impl<M: Message> EncodeDyn for M {
    fn encode_delimited(&self, buf: &mut Vec<u8>) -> usize {
        // Into a Vec, which grows: cannot fail.
        let _ = self.encode_length_delimited(buf);
        self.encoded_len()
    }
}

/// A protobuf varint from `r`; `None` at a clean end of input if `eof_ok`.
fn read_varint(r: &mut impl std::io::Read, eof_ok: bool) -> std::io::Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        if let Err(e) = r.read_exact(&mut b) {
            if i == 0 && eof_ok && e.kind() == std::io::ErrorKind::UnexpectedEof {
                return Ok(None);
            }
            return Err(e);
        }
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "varint longer than 10 bytes",
    ))
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
        // Written record by record, the bytes are prost's encoding of the whole message.
        let whole = pb::SnapshotData::decode(bytes.as_slice()).unwrap();
        assert_eq!(whole.users.len(), 2);
        assert_eq!(whole.encode_to_vec(), bytes);
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
        // Cut short anywhere but between records, or a record claiming too much: errors.
        for cut in [1, 3, bytes.len() - 1] {
            assert!(
                SmState::decode_snapshot(&bytes[..cut], None, StoredMembership::default()).is_err(),
                "cut at {cut}"
            );
        }
        let huge = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(SmState::decode_snapshot(&huge, None, StoredMembership::default()).is_err());
        // Fields a later version may add (any wire type) are skipped, as prost does.
        let mut later = bytes.clone();
        later.extend_from_slice(&[0x32, 0x02, 0xaa, 0xbb]); // field 6, length-delimited
        later.extend_from_slice(&[0x38, 0x96, 0x01]); // field 7, varint
        later.extend_from_slice(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8]); // field 8, fixed64
        let read = SmState::decode_snapshot(&later, None, StoredMembership::default()).unwrap();
        assert_eq!(read.tables.user_count(), 2);
        assert_eq!(pb::SnapshotData::decode(later.as_slice()).unwrap(), whole);
        // A record too large to read back fails the build instead.
        let mut huge_user = user("h");
        huge_user.password_hash = "x".repeat(MAX_SNAPSHOT_RECORD + 1);
        let big = SmState {
            tables: Tables::restore(vec![huge_user], vec![]).unwrap(),
            ..SmState::default()
        };
        let mut sink = Vec::new();
        assert!(big.write_snapshot(&mut sink).is_err());
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
