//! [`RaftStorage`]: the [`Storage`] trait over a Raft node.
//!
//! Writes become commands in the replicated log and answer with exactly what
//! `MemoryStorage` would (the state machine applies them to the same `Tables`). Reads
//! run against the local state machine after a read barrier (see [`ReadConsistency`]).
//!
//! [`ReadConsistency`]: crate::ReadConsistency

use std::sync::Arc;

use async_trait::async_trait;
use auth_proto::v1 as pb;
use auth_proto::v1::command::Op;
use auth_proto::v1::command_result::Result as Res;
use auth_proto::v1::rotate_result::Kind;
use auth_storage::memory::Tables;
use auth_storage::{
    Challenge, ListUsers, LoginAttempts, PutChallenge, Reservation, ReserveLogin, Result,
    RotateOutcome, RotateRefresh, Session, SettleLogin, Storage, StorageError, User, UserPage,
};

use crate::node::NodeShared;

/// A [`Storage`] replicated over Raft. Cheap to clone; any node's `RaftStorage` accepts
/// writes (followers forward them to the leader).
#[derive(Clone)]
pub struct RaftStorage {
    pub(crate) shared: Arc<NodeShared>,
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStorage")
            .field("node", &self.shared.id)
            .field("read_consistency", &self.shared.read_consistency)
            .finish()
    }
}

/// Rebuilds the `StorageError` the state machine reported.
fn storage_error(f: pb::StorageFailure) -> StorageError {
    StorageError::from_code(&f.code, f.message)
}

fn unexpected(r: Option<Res>) -> StorageError {
    StorageError::Internal(format!("unexpected state machine result: {r:?}"))
}

impl RaftStorage {
    async fn write(&self, op: Op) -> Result<Res> {
        match self.shared.write(op).await?.result {
            Some(Res::Failure(f)) => Err(storage_error(f)),
            Some(r) => Ok(r),
            None => Err(unexpected(None)),
        }
    }

    async fn read<T>(&self, f: impl FnOnce(&Tables) -> T) -> Result<T> {
        self.shared.read_barrier().await?;
        let state = self.shared.sm.state.read();
        Ok(f(&state.tables))
    }

    async fn write_user(&self, op: Op) -> Result<User> {
        match self.write(op).await? {
            Res::User(u) => Ok(u),
            other => Err(unexpected(Some(other))),
        }
    }

    async fn write_count(&self, op: Op) -> Result<u64> {
        match self.write(op).await? {
            Res::Count(n) => Ok(n),
            other => Err(unexpected(Some(other))),
        }
    }
}

#[async_trait]
impl Storage for RaftStorage {
    async fn create_user(&self, user: User) -> Result<User> {
        self.write_user(Op::CreateUser(user)).await
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        self.read(|t| t.get_user(id).cloned()).await
    }

    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<User>> {
        self.read(|t| t.get_user_by_username(username_key).cloned())
            .await
    }

    /// A local read, without the read barrier: only a hint, and lagging is harmless
    /// (a name taken a moment ago is still refused by `create_user`; a name freed a
    /// moment ago may be refused once).
    async fn username_taken_hint(&self, username_key: &str) -> Result<bool> {
        let state = self.shared.sm.state.read();
        Ok(state.tables.get_user_by_username(username_key).is_some())
    }

    async fn update_user(&self, user: User) -> Result<User> {
        self.write_user(Op::UpdateUser(user)).await
    }

    async fn delete_user(&self, id: &str) -> Result<u64> {
        self.write_count(Op::DeleteUser(id.to_owned())).await
    }

    async fn list_users(&self, req: ListUsers) -> Result<UserPage> {
        self.read(|t| t.list_users(&req)).await
    }

    async fn create_session(&self, session: Session, max_per_user: u32) -> Result<Session> {
        let op = if max_per_user == 0 {
            Op::CreateSession(session)
        } else {
            Op::CreateBoundedSession(pb::CreateSessionCommand {
                session: Some(session),
                max_per_user,
            })
        };
        match self.write(op).await? {
            Res::Session(s) => Ok(s),
            other => Err(unexpected(Some(other))),
        }
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.read(|t| t.get_session(id).cloned()).await
    }

    async fn is_session_live(&self, id: &str, user_id: &str, now_ms: i64) -> Result<bool> {
        self.read(|t| t.is_session_live(id, user_id, now_ms)).await
    }

    async fn list_user_sessions(&self, user_id: &str, now_ms: i64) -> Result<Vec<Session>> {
        self.read(|t| t.list_user_sessions(user_id, now_ms)).await
    }

    async fn rotate_refresh(&self, req: RotateRefresh) -> Result<RotateOutcome> {
        let cmd = pb::RotateRefreshCommand {
            session_id: req.session_id,
            presented_hash: req.presented_hash,
            new_hash: req.new_hash,
            sealed_successor: req.sealed_successor,
            now_ms: req.now_ms,
            idle_ttl_ms: req.idle_ttl_ms,
            grace_ms: req.grace_ms,
        };
        let Res::Rotate(r) = self.write(Op::RotateRefresh(cmd)).await? else {
            return Err(unexpected(None));
        };
        let session = || {
            r.session
                .clone()
                .ok_or_else(|| StorageError::Internal("rotation result without session".into()))
        };
        Ok(match Kind::try_from(r.kind) {
            Ok(Kind::Rotated) => RotateOutcome::Rotated(session()?),
            Ok(Kind::Replayed) => RotateOutcome::Replayed(session()?),
            Ok(Kind::Reused) => RotateOutcome::Reused,
            Ok(Kind::Expired) => RotateOutcome::Expired,
            Ok(Kind::Invalid) => RotateOutcome::Invalid,
            _ => return Err(StorageError::Internal("unknown rotation result".into())),
        })
    }

    async fn delete_session(&self, id: &str, user_id: &str) -> Result<bool> {
        let op = Op::DeleteSession(pb::DeleteSessionCommand {
            session_id: id.to_owned(),
            user_id: user_id.to_owned(),
        });
        match self.write(op).await? {
            Res::Flag(b) => Ok(b),
            other => Err(unexpected(Some(other))),
        }
    }

    async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        self.write_count(Op::DeleteUserSessions(pb::DeleteUserSessionsCommand {
            user_id: user_id.to_owned(),
            keep_session_id: keep.unwrap_or_default().to_owned(),
        }))
        .await
    }

    async fn delete_expired_sessions(&self, now_ms: i64, limit: usize) -> Result<u64> {
        self.write_count(Op::DeleteExpired(pb::DeleteExpiredCommand {
            now_ms,
            limit: limit as u64,
        }))
        .await
    }

    async fn get_login_attempts(&self, username_key: &str) -> Result<Option<LoginAttempts>> {
        self.read(|t| t.get_login_attempts(username_key).cloned())
            .await
    }

    async fn reserve_login(&self, req: ReserveLogin) -> Result<Reservation> {
        let op = Op::ReserveLogin(pb::ReserveLoginCommand {
            username_key: req.username_key,
            now_ms: req.now_ms,
            max_failures: req.max_failures,
            base_delay_ms: req.base_delay_ms,
            max_delay_ms: req.max_delay_ms,
            forget_after_ms: req.forget_after_ms,
        });
        match self.write(op).await? {
            Res::Reservation(r) if r.granted => Ok(Reservation::Granted { ticket: r.ticket }),
            Res::Reservation(r) => Ok(Reservation::Locked {
                until_ms: r.locked_until_ms,
            }),
            other => Err(unexpected(Some(other))),
        }
    }

    async fn put_challenge(&self, req: PutChallenge) -> Result<()> {
        let op = Op::PutChallenge(pb::PutChallengeCommand {
            challenge: Some(req.challenge),
            now_ms: req.now_ms,
            max_per_user: req.max_per_user,
            max_total: req.max_total,
        });
        match self.write(op).await? {
            Res::Flag(_) => Ok(()),
            other => Err(unexpected(Some(other))),
        }
    }

    async fn take_challenge(&self, id: &str, kind: &str, now_ms: i64) -> Result<Option<Challenge>> {
        let op = Op::TakeChallenge(pb::TakeChallengeCommand {
            id: id.to_owned(),
            kind: kind.to_owned(),
            now_ms,
        });
        match self.write(op).await? {
            Res::Challenge(c) => Ok(Some(c)),
            Res::Flag(false) => Ok(None),
            other => Err(unexpected(Some(other))),
        }
    }

    async fn settle_login(&self, req: SettleLogin) -> Result<()> {
        let op = Op::SettleLogin(pb::SettleLoginCommand {
            username_key: req.username_key,
            ticket: req.ticket,
        });
        match self.write(op).await? {
            Res::Flag(_) => Ok(()),
            other => Err(unexpected(Some(other))),
        }
    }
}
