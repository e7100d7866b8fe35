//! The Raft state machine ([`RaftStateMachine`], storage API v2): applies command
//! batches to the in-memory [`SmState`] and keeps the latest snapshot on disk
//! ([`crate::snapshot_file`]).
//!
//! Durability: the state machine itself lives in memory. What is durable is the log
//! (every entry fsynced before it is applied, see [`crate::durable`]), the committed index, and the latest
//! snapshot. On restart the snapshot is loaded and openraft re-applies the committed log
//! after it, which rebuilds exactly the state that was acknowledged.

use std::io::{BufReader, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use auth_proto::v1 as pb;
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use parking_lot::RwLock;

use crate::db::{Db, DbError};
use crate::durable::Durability;
use crate::metrics::Stage;
use crate::snapshot_file;
use crate::state::SmState;
use crate::types::*;

/// The state machine. Clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    pub(crate) state: Arc<RwLock<SmState>>,
    db: Db,
    snapshot_seq: Arc<AtomicU64>,
    /// Entries are applied only once on this node's disk (see [`crate::durable`]).
    durable: Arc<Durability>,
}

fn snap_err(e: impl std::fmt::Display) -> StorageIoError {
    StorageIOError::read_snapshot(None, AnyError::error(e)).into()
}

impl StateMachineStore {
    /// Opens the state machine, starting from the stored snapshot if there is one.
    pub(crate) fn open(db: Db, durable: Arc<Durability>) -> Result<Self, DbError> {
        let state = match snapshot_file::open(&db)? {
            Some((meta, file)) => SmState::read_snapshot(
                BufReader::with_capacity(1 << 20, file),
                meta.last_log_id,
                meta.last_membership,
            )
            .map_err(|e| DbError::Corrupt(format!("snapshot: {e}")))?,
            None => SmState::default(),
        };
        Ok(Self {
            state: Arc::new(RwLock::new(state)),
            db,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            durable,
        })
    }
}

fn write_err(e: impl std::fmt::Display) -> StorageIoError {
    StorageIOError::write_snapshot(None, AnyError::error(e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageIoError> {
        let started = std::time::Instant::now();
        // A consistent view, taken in O(1) under the lock; encoded off it, so writes
        // go on meanwhile.
        let view = self.state.read().clone();
        let (last_applied, membership) = (view.last_applied, view.membership.clone());
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        // Encoded straight into its file (see `crate::snapshot_file`).
        let (db, m) = (self.db.clone(), meta.clone());
        let (stored, file) = tokio::task::spawn_blocking(move || {
            snapshot_file::store_with(&db, &m, |w| view.write_snapshot(w), &[])
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)?;
        let bytes = file.metadata().map_or(0, |m| m.len());
        metrics::counter!(crate::metrics::SNAPSHOTS_BUILT).increment(1);
        metrics::histogram!(crate::metrics::SNAPSHOT_BUILD_SECONDS)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(snapshot = %meta.snapshot_id, bytes, stored, "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageIoError> {
        let s = self.state.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::BatchResult>, StorageIoError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            let started = Instant::now();
            self.durable
                .wait_durable(last.log_id.index)
                .await
                .map_err(|e| StorageIOError::write_logs(AnyError::error(e)))?;
            Stage::WaitDurable.since(started);
        }
        let started = Instant::now();
        let mut s = self.state.write();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            s.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(pb::BatchResult::default()),
                EntryPayload::Normal(batch) => out.push(s.apply_batch(&batch)),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(pb::BatchResult::default());
                }
            }
        }
        drop(s);
        Stage::Apply.since(started);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageIoError> {
        let db = self.db.clone();
        let file = tokio::task::spawn_blocking(move || snapshot_file::scratch(&db))
            .await
            .map_err(write_err)?
            .map_err(write_err)?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageIoError> {
        // Read twice from the file, never whole in memory: decoded, then copied into
        // the store.
        let mut file = snapshot.into_std().await;
        let (db, m) = (self.db.clone(), meta.clone());
        // Which step failed: reading (the snapshot is bad) or storing it.
        enum Failed {
            Read(String),
            Store(String),
        }
        let new_state = tokio::task::spawn_blocking(move || {
            let read = |e: &dyn std::fmt::Display| Failed::Read(e.to_string());
            file.seek(SeekFrom::Start(0)).map_err(|e| read(&e))?;
            let state = SmState::read_snapshot(
                BufReader::with_capacity(1 << 20, &file),
                m.last_log_id,
                m.last_membership.clone(),
            )
            .map_err(|e| read(&e))?;
            file.seek(SeekFrom::Start(0)).map_err(|e| read(&e))?;
            snapshot_file::store_with(&db, &m, |w| std::io::copy(&mut file, w).map(|_| ()), &[])
                .map_err(|e| Failed::Store(e.to_string()))?;
            Ok(state)
        })
        .await
        .map_err(write_err)?
        .map_err(|e| match e {
            Failed::Read(e) => snap_err(e),
            Failed::Store(e) => write_err(e),
        })?;
        *self.state.write() = new_state;
        metrics::counter!(crate::metrics::SNAPSHOTS_INSTALLED).increment(1);
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageIoError> {
        let db = self.db.clone();
        let opened = tokio::task::spawn_blocking(move || snapshot_file::open(&db))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        Ok(opened.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
