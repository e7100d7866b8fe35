//! The Raft log ([`crate::wal`]) and the vote (redb), as openraft's [`RaftLogStorage`]
//! (storage API v2).
//!
//! `save_vote` returns only after the vote is on disk (a redb commit with fsync), and
//! `append` calls back only after the entries are (`fdatasync`), except for a leader's
//! own entries, which [`crate::durable`] flushes while they replicate.

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
use crate::wal::{Batch, Wal};

/// The log store. Cheap to clone: clones share the files.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    wal: Arc<Wal>,
    durable: Arc<Durability>,
    /// The last purge, when it was recorded without an fsync (see `purge`).
    unsynced_purge: Arc<parking_lot::Mutex<Option<Vec<u8>>>>,
}

impl LogStore {
    /// The log of node `id` in `db`'s data directory; starts its flusher (see
    /// [`crate::durable`]).
    pub(crate) fn open(db: Db, id: NodeId) -> Result<Self, DbError> {
        let last_purged = read_last_purged(&db)?;
        let wal = Arc::new(Wal::open(db.dir(), last_purged.map(|l| l.index))?);
        migrate_redb_log(&db, &wal, last_purged.map(|l| l.index))?;
        let last = match last_entry(&wal)? {
            Some(e) => Some(e.log_id),
            None => last_purged,
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
        let durable = Durability::start(id, Arc::clone(&wal), last, vote);
        Ok(Self {
            db,
            wal,
            durable,
            unsynced_purge: Arc::default(),
        })
    }

    /// What of this log is on disk.
    pub(crate) fn durability(&self) -> Arc<Durability> {
        Arc::clone(&self.durable)
    }

    /// The log's files.
    pub(crate) fn wal(&self) -> Arc<Wal> {
        Arc::clone(&self.wal)
    }
}

fn read_last_purged(db: &Db) -> Result<Option<LogId>, DbError> {
    db.get_meta(LAST_PURGED)?
        .map(|b| decode_log_id(&b))
        .transpose()
}

fn last_entry(wal: &Wal) -> Result<Option<Entry>, DbError> {
    let Some(i) = wal.last_index() else {
        return Ok(None);
    };
    let mut last = None;
    wal.read(i, i + 1, |i, b| {
        last = Some(decode_entry(i, b)?);
        Ok(())
    })?;
    Ok(last)
}

/// Moves the log of a data directory written by a version that kept it in redb into
/// the segment files, then empties redb's table. Idempotent: after a crash midway, the
/// entries the files lack are copied again.
fn migrate_redb_log(db: &Db, wal: &Wal, last_purged: Option<u64>) -> Result<(), DbError> {
    let old = db.legacy_logs()?;
    if old.is_empty() {
        return Ok(());
    }
    let have = wal.last_index();
    // What the files hold already (a copy a crash interrupted) must be the same bytes.
    let mut copied = Vec::new();
    wal.read(0, u64::MAX, |i, b| {
        copied.push((i, b.to_vec()));
        Ok(())
    })?;
    for (i, bytes) in &copied {
        if old
            .iter()
            .find(|(j, _)| j == i)
            .is_some_and(|(_, b)| b != bytes)
        {
            return Err(DbError::Corrupt(format!(
                "log {i}: differs between redb and the log files"
            )));
        }
    }
    let mut batch = Batch::default();
    for (i, bytes) in &old {
        decode_entry(*i, bytes)?;
        if Some(*i) > have.max(last_purged) {
            batch.push(*i, |buf| {
                buf.extend_from_slice(bytes);
                Ok(())
            })?;
        }
    }
    wal.append(&batch, true)?;
    tracing::info!(
        entries = old.len(),
        "raft log moved from redb to segment files"
    );
    db.clear_legacy_logs()
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

/// Runs a storage operation in place. Each is short (one write, at most one fsync);
/// handing it to the blocking pool cost more CPU in thread wake-ups than it saved
/// (measured under a 64-client register load on a 3-node cluster).
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
        let wal = Arc::clone(&self.wal);
        blocking(move || {
            let mut out = Vec::with_capacity(end.saturating_sub(start).min(1024) as usize);
            wal.read(start, end, |i, b| {
                out.push(decode_entry(i, b)?);
                Ok(())
            })?;
            Ok(out)
        })
        .await
        .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageIoError> {
        let (db, wal) = (self.db.clone(), Arc::clone(&self.wal));
        blocking(move || {
            let last_purged = read_last_purged(&db)?;
            let last = match last_entry(&wal)? {
                Some(e) => Some(e.log_id),
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
        let mut batch = Batch::default();
        let mut encoded = Ok(());
        for e in entries {
            last = Some(e.log_id);
            membership |= matches!(e.payload, openraft::EntryPayload::Membership(_));
            let index = e.log_id.index;
            let pb = entry_into_pb(e);
            encoded = encoded.and_then(|()| {
                batch.push(index, |buf| {
                    pb.encode(buf)
                        .map_err(|e| DbError::Corrupt(format!("log {index}: {e}")))
                })
            });
        }
        let Some(last) = last else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let result = if let Err(e) = encoded {
            Err(e)
        } else if self.durable.is_poisoned() {
            Err(DbError::Redb("the log store failed to sync earlier".into()))
        } else {
            // A leader's own entries are reported at once and flushed while they
            // replicate (see `crate::durable` for why that is safe); any other append
            // calls back only once on disk.
            // A membership entry is never deferred: openraft lets the next change start
            // once it counts this one committed, and that count must be of disks.
            let defer = self.durable.may_defer(&last, membership);
            let wal = Arc::clone(&self.wal);
            let started = std::time::Instant::now();
            let r = blocking(move || wal.append(&batch, !defer)).await;
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
                    self.durable.synced(last);
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
                // The log's state on disk is unknown: nothing more is reported durable.
                self.durable.poison();
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageIoError> {
        let (db, wal) = (self.db.clone(), Arc::clone(&self.wal));
        // A truncation may empty the log, and the next append then removes the
        // segments left, which hold only purged entries: the purge must be on disk
        // first (truncations are rare; this is one fsync).
        let unsynced = self.unsynced_purge.lock().take();
        blocking(move || {
            if let Some(bytes) = unsynced {
                db.put_meta(&[(LAST_PURGED, &bytes)], true)?;
            }
            wal.truncate(log_id.index)
        })
        .await
        .map_err(|e| {
            self.durable.poison();
            write_err(e)
        })?;
        self.durable.truncated(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageIoError> {
        let (db, wal) = (self.db.clone(), Arc::clone(&self.wal));
        let bytes = log_id_to_pb(&log_id).encode_to_vec();
        let started = std::time::Instant::now();
        let unsynced = Arc::clone(&self.unsynced_purge);
        let r = blocking(move || {
            let doomed = wal.forget(log_id.index)?;
            // Recorded durably before any file goes: recovery then skips what is left.
            // A purge that removes no file (most: a segment holds about 200 000
            // entries) is recorded without an fsync, which openraft's core, and so
            // every write, would wait for; a crash that forgets it leaves entries the
            // log still holds, and they are purged again.
            let sync = !doomed.is_empty();
            db.put_meta(&[(LAST_PURGED, &bytes)], sync)?;
            *unsynced.lock() = (!sync).then_some(bytes);
            wal.remove_forgotten(&doomed)
        })
        .await
        .map_err(write_err);
        Stage::Purge.since(started);
        r
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

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 1), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    #[tokio::test]
    async fn a_log_kept_in_redb_by_an_older_version_moves_to_the_segment_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "t", 1).unwrap();
        let old: Vec<(u64, Vec<u8>)> = (5..9)
            .map(|i| (i, entry_to_pb(&entry(i)).encode_to_vec()))
            .collect();
        db.put_legacy_logs(&old).unwrap();
        db.put_meta(
            &[(LAST_PURGED, &log_id_to_pb(&entry(4).log_id).encode_to_vec())],
            true,
        )
        .unwrap();
        // A crash after the first two were copied, before redb's table was emptied.
        let wal = Wal::open(dir.path(), Some(4)).unwrap();
        let batch = Batch::of(old[..2].iter().map(|(i, b)| (*i, b)));
        wal.append(&batch, true).unwrap();
        drop(wal);
        let mut log = LogStore::open(db.clone(), 1).unwrap();
        let got = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got, (5..9).map(entry).collect::<Vec<_>>());
        assert!(db.legacy_logs().unwrap().is_empty(), "redb's table emptied");
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(entry(8).log_id));
        // Opened again: nothing copied twice.
        drop(log);
        let mut log = LogStore::open(db, 1).unwrap();
        assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_purge_forgets_entries_and_removes_segments_only_once_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "t", 1).unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        let records: Vec<(u64, Vec<u8>)> = (0..20)
            .map(|i| (i, entry_to_pb(&entry(i)).encode_to_vec()))
            .collect();
        wal.append(&Batch::of(records.iter().map(|(i, b)| (*i, b))), true)
            .unwrap();
        drop(wal);
        let segments = || std::fs::read_dir(dir.path().join("log")).unwrap().count();
        let mut log = LogStore::open(db.clone(), 1).unwrap();
        // Within the one segment: entries forgotten, the file stays.
        log.purge(entry(9).log_id).await.unwrap();
        assert_eq!(segments(), 1);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(9).log_id));
        let got = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got, (10..20).map(entry).collect::<Vec<_>>());
        drop(log);
        let mut log = LogStore::open(db.clone(), 1).unwrap();
        assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 10);
        // Past the last entry (a snapshot installed from the leader): the segment goes.
        log.purge(entry(30).log_id).await.unwrap();
        assert_eq!(segments(), 0);
        drop(log);
        let mut log = LogStore::open(db, 1).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(30).log_id));
        assert_eq!(state.last_log_id, Some(entry(30).log_id));
        assert!(log.try_get_log_entries(0..100).await.unwrap().is_empty());
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
