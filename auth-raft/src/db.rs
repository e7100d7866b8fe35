//! The on-disk store: one redb file per node holding the Raft log, the vote, the
//! committed index, the latest snapshot and the cluster identity.
//!
//! redb commits with `Durability::Immediate` by default, i.e. fsync before `commit`
//! returns; that is what the log and the vote use. Only the committed index (which Raft
//! can recompute) is written without waiting for the disk.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

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

    /// Appends encoded entries (index, bytes); `durable` waits for fsync, otherwise a
    /// later durable commit ([`Db::sync`]) makes them durable.
    pub(crate) fn append(&self, entries: &[(u64, Vec<u8>)], durable: bool) -> Result<(), DbError> {
        self.with(|db| {
            let mut tx = db.begin_write().map_err(redb_err)?;
            if !durable {
                tx.set_durability(Durability::None).map_err(redb_err)?;
            }
            {
                let mut t = tx.open_table(LOGS).map_err(redb_err)?;
                for (i, bytes) in entries {
                    t.insert(*i, bytes.as_slice()).map_err(redb_err)?;
                }
            }
            tx.commit().map_err(redb_err)
        })
    }

    /// Makes every commit so far durable: an empty commit with fsync (redb persists
    /// the non-durable commits before a durable one).
    pub(crate) fn sync(&self) -> Result<(), DbError> {
        self.with(|db| {
            db.begin_write()
                .map_err(redb_err)?
                .commit()
                .map_err(redb_err)
        })
    }

    /// Removes every entry with index >= `from`.
    pub(crate) fn truncate(&self, from: u64) -> Result<(), DbError> {
        self.with(|db| {
            let tx = db.begin_write().map_err(redb_err)?;
            {
                let mut t = tx.open_table(LOGS).map_err(redb_err)?;
                t.retain_in(from.., |_, _| false).map_err(redb_err)?;
            }
            tx.commit().map_err(redb_err)
        })
    }

    /// Records `last_purged` and removes every entry with index <= `upto`, atomically.
    pub(crate) fn purge(&self, upto: u64, last_purged: &[u8]) -> Result<(), DbError> {
        self.with(|db| {
            let tx = db.begin_write().map_err(redb_err)?;
            {
                let mut t = tx.open_table(LOGS).map_err(redb_err)?;
                t.retain_in(..=upto, |_, _| false).map_err(redb_err)?;
                let mut m = tx.open_table(META).map_err(redb_err)?;
                m.insert(LAST_PURGED, last_purged).map_err(redb_err)?;
            }
            tx.commit().map_err(redb_err)
        })
    }

    /// Entries in `[start, end)`, in order.
    pub(crate) fn range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        self.with(|db| {
            let tx = db.begin_read().map_err(redb_err)?;
            let t = tx.open_table(LOGS).map_err(redb_err)?;
            let mut out = Vec::new();
            if start >= end {
                return Ok(out);
            }
            for item in t.range(start..end).map_err(redb_err)? {
                let (k, v) = item.map_err(redb_err)?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Result<Option<(u64, Vec<u8>)>, DbError> {
        self.with(|db| {
            let tx = db.begin_read().map_err(redb_err)?;
            let t = tx.open_table(LOGS).map_err(redb_err)?;
            Ok(t.last()
                .map_err(redb_err)?
                .map(|(k, v)| (k.value(), v.value().to_vec())))
        })
    }
}
