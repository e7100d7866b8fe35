//! The on-disk store: one redb file per node holding the vote, the committed index, the
//! last purged log id, the latest snapshot's metadata and the cluster identity. The log
//! itself is in segment files beside it ([`crate::wal`]); versions before those kept it
//! in the `logs` table here, which [`crate::LogStore`] moves out on start.
//!
//! redb commits with `Durability::Immediate` by default, i.e. fsync before `commit`
//! returns; that is what the vote uses. Only the committed index (which Raft can
//! recompute) is written without waiting for the disk.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// The log, in versions before [`crate::wal`].
pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const VOTE: &str = "vote";
pub(crate) const COMMITTED: &str = "committed";
pub(crate) const LAST_PURGED: &str = "last_purged";
pub(crate) const CLUSTER_ID: &str = "cluster_id";
pub(crate) const NODE_ID: &str = "node_id";
pub(crate) const SNAPSHOT_META: &str = "snapshot_meta";
/// The snapshot's data itself, in versions before [`SNAPSHOT_FILE`] (read, then
/// removed when the next snapshot is stored).
pub(crate) const SNAPSHOT_DATA: &str = "snapshot_data";
/// The name of the file under `<dir>/snapshots` holding the snapshot's data.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot_file";

/// A failure of the node's disk store.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// redb failed (I/O, corruption, ...).
    #[error("raft store: {0}")]
    Redb(String),
    /// A record does not decode.
    #[error("raft store: corrupt record {0}")]
    Corrupt(String),
    /// The data directory belongs to another cluster or node.
    #[error("raft store: {0}")]
    Identity(String),
    /// The node has shut down.
    #[error("raft store: closed")]
    Closed,
}

/// Whether `<dir>/log` ([`crate::wal`]) holds anything.
fn has_log_files(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("log")).is_ok_and(|mut d| d.next().is_some())
}

fn redb_err(e: impl std::fmt::Display) -> DbError {
    DbError::Redb(e.to_string())
}

/// Shared handle to the node's redb database. [`Db::close`] releases the file even
/// while clones of the handle are still around (they then get [`DbError::Closed`]).
#[derive(Clone)]
pub(crate) struct Db {
    inner: Arc<RwLock<Option<Database>>>,
    dir: Arc<std::path::PathBuf>,
    /// Held while a snapshot file is stored (see [`crate::snapshot_file`]).
    pub(crate) snapshot_store: Arc<parking_lot::Mutex<()>>,
    /// Snapshot files being written (outside that lock): not a crash's leftovers.
    pub(crate) snapshot_writing: Arc<parking_lot::Mutex<std::collections::HashSet<String>>>,
}

impl Db {
    /// Opens (or creates) the store in `dir` and checks that it belongs to this cluster
    /// and node, recording them on first use.
    pub(crate) fn open(dir: &Path, cluster_id: &str, node_id: u64) -> Result<Self, DbError> {
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| DbError::Redb(format!("{p}: {e}"))
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let file = dir.join("raft.redb");
        // Password hashes and session records: owner only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&file)
                .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
                .map_err(io(&file))?;
        }
        let database = Database::create(&file).map_err(redb_err)?;
        {
            let tx = database.begin_write().map_err(redb_err)?;
            {
                tx.open_table(LOGS).map_err(redb_err)?;
                let mut meta = tx.open_table(META).map_err(redb_err)?;
                let stored_cluster = meta
                    .get(CLUSTER_ID)
                    .map_err(redb_err)?
                    .map(|v| String::from_utf8_lossy(v.value()).into_owned());
                let stored_node = meta
                    .get(NODE_ID)
                    .map_err(redb_err)?
                    .map(|v| String::from_utf8_lossy(v.value()).into_owned());
                match (stored_cluster, stored_node) {
                    // A new store beside an old log (its redb file deleted): the log is
                    // another store's, never adopted.
                    (None, None) if has_log_files(dir) => {
                        return Err(DbError::Identity(format!(
                            "data directory {} holds a Raft log but no store; \
                             remove the directory to start this node afresh",
                            dir.display()
                        )));
                    }
                    (None, None) => {
                        meta.insert(CLUSTER_ID, cluster_id.as_bytes())
                            .map_err(redb_err)?;
                        meta.insert(NODE_ID, node_id.to_string().as_bytes())
                            .map_err(redb_err)?;
                    }
                    (Some(c), _) if c != cluster_id => {
                        return Err(DbError::Identity(format!(
                            "data directory {} belongs to cluster {c:?}, not {cluster_id:?}",
                            dir.display()
                        )));
                    }
                    (_, Some(n)) if n != node_id.to_string() => {
                        return Err(DbError::Identity(format!(
                            "data directory {} belongs to node {n}, not {node_id}",
                            dir.display()
                        )));
                    }
                    _ => {}
                }
            }
            tx.commit().map_err(redb_err)?;
        }
        Ok(Self {
            inner: Arc::new(RwLock::new(Some(database))),
            dir: Arc::new(dir.to_path_buf()),
            snapshot_store: Arc::default(),
            snapshot_writing: Arc::default(),
        })
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the database file now.
    pub(crate) fn close(&self) {
        self.inner.write().take();
    }

    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, DbError>) -> Result<T, DbError> {
        let guard = self.inner.read();
        let db = guard.as_ref().ok_or(DbError::Closed)?;
        f(db)
    }

    pub(crate) fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.with(|db| {
            let tx = db.begin_read().map_err(redb_err)?;
            let t = tx.open_table(META).map_err(redb_err)?;
            Ok(t.get(key).map_err(redb_err)?.map(|v| v.value().to_vec()))
        })
    }

    /// Reads several meta records in one transaction (a consistent view of them).
    pub(crate) fn get_metas<const N: usize>(
        &self,
        keys: [&str; N],
    ) -> Result<[Option<Vec<u8>>; N], DbError> {
        self.with(|db| {
            let tx = db.begin_read().map_err(redb_err)?;
            let t = tx.open_table(META).map_err(redb_err)?;
            let mut out = [const { None }; N];
            for (slot, key) in out.iter_mut().zip(keys) {
                *slot = t.get(key).map_err(redb_err)?.map(|v| v.value().to_vec());
            }
            Ok(out)
        })
    }

    /// Writes meta records in one transaction; `durable` waits for fsync.
    pub(crate) fn put_meta(&self, records: &[(&str, &[u8])], durable: bool) -> Result<(), DbError> {
        self.put_remove_meta(records, &[], durable)
    }

    /// Writes meta records and removes others, in one transaction; `durable` waits for
    /// fsync.
    pub(crate) fn put_remove_meta(
        &self,
        records: &[(&str, &[u8])],
        remove: &[&str],
        durable: bool,
    ) -> Result<(), DbError> {
        self.with(|db| {
            let mut tx = db.begin_write().map_err(redb_err)?;
            if !durable {
                tx.set_durability(Durability::None).map_err(redb_err)?;
            }
            {
                let mut t = tx.open_table(META).map_err(redb_err)?;
                for (k, v) in records {
                    t.insert(*k, *v).map_err(redb_err)?;
                }
                for k in remove {
                    t.remove(*k).map_err(redb_err)?;
                }
            }
            tx.commit().map_err(redb_err)
        })
    }

    /// The log entries of a version that kept the log in redb (index, bytes), in order.
    pub(crate) fn legacy_logs(&self) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        self.with(|db| {
            let tx = db.begin_read().map_err(redb_err)?;
            let t = tx.open_table(LOGS).map_err(redb_err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(redb_err)? {
                let (k, v) = item.map_err(redb_err)?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Empties the legacy log table (durably).
    pub(crate) fn clear_legacy_logs(&self) -> Result<(), DbError> {
        self.with(|db| {
            let tx = db.begin_write().map_err(redb_err)?;
            {
                let mut t = tx.open_table(LOGS).map_err(redb_err)?;
                t.retain(|_, _| false).map_err(redb_err)?;
            }
            tx.commit().map_err(redb_err)
        })
    }

    /// Writes legacy log entries, as a version that kept the log in redb did.
    #[cfg(test)]
    pub(crate) fn put_legacy_logs(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), DbError> {
        self.with(|db| {
            let tx = db.begin_write().map_err(redb_err)?;
            {
                let mut t = tx.open_table(LOGS).map_err(redb_err)?;
                for (i, bytes) in entries {
                    t.insert(*i, bytes.as_slice()).map_err(redb_err)?;
                }
            }
            tx.commit().map_err(redb_err)
        })
    }
}
