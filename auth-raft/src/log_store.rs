//! The Raft log and vote, on redb ([`RaftLogStorage`], storage API v2).
//!
//! `save_vote` returns only after the vote is on disk, and `append` calls back only
//! after the entries are: both commit with fsync.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use auth_proto::v1 as pb;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use prost::Message;

use crate::convert::*;
use crate::db::{COMMITTED, Db, DbError, LAST_PURGED, VOTE};
use crate::durable::Durability;
use crate::metrics::Stage;
use crate::types::*;

/// The log store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    durable: Arc<Durability>,
}

impl LogStore {
    /// The log of node `id` in `db`; starts its flusher (see [`crate::durable`]).
    pub(crate) fn open(db: Db, id: NodeId) -> Result<Self, DbError> {
        let last = match db.last()? {
            Some((i, b)) => Some(decode_entry(i, &b)?.log_id),
            None => db
                .get_meta(LAST_PURGED)?
                .map(|b| decode_log_id(&b))
                .transpose()?,
        };
        let mut vote = read_vote(&db)?;
        // A leader that stopped may have lost entries it reported stored before their
        // fsync (`crate::durable`) while followers kept them. Restarted as leader of the
        // same term (openraft resumes a committed vote naming itself), it would give
        // other entries the same log ids, which followers take for the ones they hold.
        // As a candidate of that term it must win a later term first, whose entries
        // replace the orphans.
        if let Some(v) = vote
            && v.is_committed()
            && v.leader_id.node_id == id
        {
            let demoted = Vote::new(v.leader_id.term, id);
            db.put_meta(&[(VOTE, &vote_to_pb(&demoted).encode_to_vec())], true)?;
            vote = Some(demoted);
        }
        let durable = Durability::start(id, db.clone(), last, vote);
        Ok(Self { db, durable })
    }

    /// What of this log is on disk.
    pub(crate) fn durability(&self) -> Arc<Durability> {
        Arc::clone(&self.durable)
    }
}

fn read_vote(db: &Db) -> Result<Option<Vote>, DbError> {
    db.get_meta(VOTE)?
        .map(|b| {
            let pb = pb::VotePb::decode(b.as_slice())
                .map_err(|e| DbError::Corrupt(format!("vote: {e}")))?;
            vote_from_pb(Some(pb)).map_err(|e| DbError::Corrupt(e.to_string()))
        })
        .transpose()
}

/// Runs a redb operation in place. Each is short (one B-tree update, at most one
/// fsync); handing it to the blocking pool cost more CPU in thread wake-ups than it
/// saved (measured under a 64-client register load on a 3-node cluster).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    f()
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, DbError> {
    let pb =
        pb::EntryPb::decode(bytes).map_err(|e| DbError::Corrupt(format!("log {index}: {e}")))?;
    let e = entry_from_pb(pb).map_err(|e| DbError::Corrupt(format!("log {index}: {e}")))?;
    if e.log_id.index != index {
        return Err(DbError::Corrupt(format!(
            "log {index}: holds index {}",
            e.log_id.index
        )));
    }
    Ok(e)
}

fn decode_log_id(bytes: &[u8]) -> Result<LogId, DbError> {
    let pb = pb::LogIdPb::decode(bytes).map_err(|e| DbError::Corrupt(format!("log id: {e}")))?;
    log_id_from_pb(pb).map_err(|e| DbError::Corrupt(e.to_string()))
}

fn read_err(e: DbError) -> StorageIoError {
    StorageIOError::read_logs(AnyError::error(e)).into()
}

fn write_err(e: DbError) -> StorageIoError {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageIoError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let db = self.db.clone();
        blocking(move || {
            db.range(start, end)?
                .into_iter()
                .map(|(i, b)| decode_entry(i, &b))
                .collect()
        })
        .await
        .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageIoError> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged = db
                .get_meta(LAST_PURGED)?
                .map(|b| decode_log_id(&b))
                .transpose()?;
            let last = match db.last()? {
                Some((i, b)) => Some(decode_entry(i, &b)?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageIoError> {
        let db = self.db.clone();
        let bytes = vote_to_pb(vote).encode_to_vec();
        blocking(move || db.put_meta(&[(VOTE, &bytes)], true))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)))?;
        self.durable.voted(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageIoError> {
        let db = self.db.clone();
        blocking(move || read_vote(&db))
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::error(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageIoError> {
        let Some(c) = committed else { return Ok(()) };
        let db = self.db.clone();
        let bytes = log_id_to_pb(&c).encode_to_vec();
        // Not waited on: Raft recomputes the committed index if it is lost.
        blocking(move || db.put_meta(&[(COMMITTED, &bytes)], false))
            .await
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageIoError> {
        let db = self.db.clone();
        blocking(move || {
            db.get_meta(COMMITTED)?
                .map(|b| decode_log_id(&b))
                .transpose()
        })
        .await
        .map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageIoError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut last = None;
        let mut membership = false;
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| {
                last = Some(e.log_id);
                membership |= matches!(e.payload, openraft::EntryPayload::Membership(_));
                (e.log_id.index, entry_to_pb(&e).encode_to_vec())
            })
            .collect();
        let Some(last) = last else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let result = if self.durable.is_poisoned() {
            Err(DbError::Redb("the log store failed to sync earlier".into()))
        } else {
            // A leader's own entries are reported at once and flushed while they
            // replicate (see `crate::durable` for why that is safe); any other append
            // calls back only once on disk (commit = fsync).
            // A membership entry is never deferred: openraft lets the next change start
            // once it counts this one committed, and that count must be of disks.
            let defer = self.durable.may_defer(&last, membership);
            let db = self.db.clone();
            let started = std::time::Instant::now();
            let r = blocking(move || db.append(&encoded, !defer)).await;
            let stage = if defer {
                Stage::Append
            } else {
                Stage::AppendSync
            };
            stage.since(started);
            if r.is_ok() {
                if defer {
                    self.durable.appended_deferred(last);
                } else {
                    self.durable.synced(Some(last));
                }
            }
            r
        };
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageIoError> {
        let db = self.db.clone();
        blocking(move || db.truncate(log_id.index))
            .await
            .map_err(write_err)?;
        self.durable.truncated(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageIoError> {
        let db = self.db.clone();
        let bytes = log_id_to_pb(&log_id).encode_to_vec();
        blocking(move || db.purge(log_id.index, &bytes))
            .await
            .map_err(write_err)?;
        self.durable.synced(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_with_vote(vote: Vote) -> Option<Vote> {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "t", 1).unwrap();
        db.put_meta(&[(VOTE, &vote_to_pb(&vote).encode_to_vec())], true)
            .unwrap();
        let _ = LogStore::open(db.clone(), 1).unwrap();
        // What a restart after this one would find, too.
        read_vote(&db).unwrap()
    }

    #[test]
    fn a_restarted_leader_comes_back_as_a_candidate_of_its_term() {
        let mut led = Vote::new(7, 1);
        led.commit();
        let back = open_with_vote(led).unwrap();
        assert_eq!(back, Vote::new(7, 1));
        assert!(!back.is_committed());
        // A follower's vote, or its own uncommitted one, is kept as it was.
        let mut followed = Vote::new(7, 2);
        followed.commit();
        assert_eq!(open_with_vote(followed), Some(followed));
        assert_eq!(open_with_vote(Vote::new(8, 1)), Some(Vote::new(8, 1)));
    }
}
