//! Where a node keeps its latest snapshot: the data in a file of its own under
//! `<data dir>/snapshots`, the metadata and that file's name in redb.
//!
//! Writing hundreds of megabytes into redb held its single write transaction, and so
//! every log append, for the whole commit (half a second at 100k users). A file is
//! written, fsynced and renamed into place beside the log instead; only the few bytes of
//! metadata then go through redb. Order: file written (mode 0600) and synced, renamed,
//! directory synced (and the data directory, the first time), metadata committed,
//! older files removed. A crash at any point leaves the previous snapshot named in
//! redb and whole on disk; a file no record names is removed by the next store.
//!
//! The data is streamed: a build writes record by record into the file, a reader gets
//! the file open, never its contents in memory. The file is written outside any lock;
//! renaming it into place, the metadata commit and removing older files take one lock
//! with opening (openraft builds a snapshot in a task of its own, concurrently with
//! sending the current one to a follower): a reader sees the metadata and the file of
//! one store, and has the file open before a later store may remove it.
//!
//! The change of layout is one-way: an older version finds no snapshot data in redb.

use std::io::{Seek, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use auth_proto::v1 as pb;
use prost::Message;

use crate::convert::{snapshot_meta_from_pb, snapshot_meta_to_pb};
use crate::db::{Db, DbError, SNAPSHOT_DATA, SNAPSHOT_FILE, SNAPSHOT_META};
use crate::types::SnapshotMeta;

const DIR: &str = "snapshots";

/// Tells apart files stored within one nanosecond.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn io(what: &Path) -> impl Fn(std::io::Error) -> DbError + '_ {
    move |e| DbError::Redb(format!("{}: {e}", what.display()))
}

fn decode_meta(m: &[u8]) -> Result<SnapshotMeta, DbError> {
    let pb = pb::SnapshotMetaPb::decode(m)
        .map_err(|e| DbError::Corrupt(format!("snapshot meta: {e}")))?;
    snapshot_meta_from_pb(Some(pb)).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// The stored snapshot, if any: its metadata and its data, open at the start (a store
/// that removes the file later does not take it away from the reader).
pub(crate) fn open(db: &Db) -> Result<Option<(SnapshotMeta, std::fs::File)>, DbError> {
    let _stores_wait = db.snapshot_store.lock();
    let [meta, name, data] = db.get_metas([SNAPSHOT_META, SNAPSHOT_FILE, SNAPSHOT_DATA])?;
    let Some(meta) = meta else {
        return Ok(None);
    };
    let meta = decode_meta(&meta)?;
    let file = match (name, data) {
        (Some(name), _) => {
            let name = String::from_utf8(name)
                .map_err(|_| DbError::Corrupt("snapshot file name is not UTF-8".into()))?;
            let path = db.dir().join(DIR).join(name);
            std::fs::File::open(&path).map_err(io(&path))?
        }
        // Written by a version that kept the data in redb.
        (None, Some(data)) => {
            let mut f = scratch(db)?;
            let path = db.dir().join(DIR);
            f.write_all(&data)
                .and_then(|()| f.seek(std::io::SeekFrom::Start(0)))
                .map_err(io(&path))?;
            f
        }
        (None, None) => return Err(DbError::Corrupt("snapshot meta without data".into())),
    };
    Ok(Some((meta, file)))
}

/// [`open`], read into memory.
#[cfg(test)]
pub(crate) fn load(db: &Db) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
    use std::io::Read;
    let Some((meta, mut file)) = open(db)? else {
        return Ok(None);
    };
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| DbError::Redb(format!("snapshot file: {e}")))?;
    Ok(Some((meta, data)))
}

/// An empty file for snapshot data, readable and writable, already unlinked: it goes
/// when the handle does.
pub(crate) fn scratch(db: &Db) -> Result<std::fs::File, DbError> {
    let dir = snapshot_dir(db)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("scratch-{now}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let path = dir.join(&name);
    let _writing = Writing::new(db, name);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let f = opts.open(&path).map_err(io(&path))?;
    std::fs::remove_file(&path).map_err(io(&path))?;
    Ok(f)
}

/// Creates `<dir>/snapshots` durably (its entry in the data directory synced too).
fn snapshot_dir(db: &Db) -> Result<std::path::PathBuf, DbError> {
    let dir = db.dir().join(DIR);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        sync_dir(db.dir())?;
    }
    Ok(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), DbError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// [`store_with`] of bytes in memory; `true` if stored.
#[cfg(test)]
pub(crate) fn store(
    db: &Db,
    meta: &SnapshotMeta,
    data: &[u8],
    extra: &[(&str, &[u8])],
) -> Result<bool, DbError> {
    store_with(db, meta, |w| w.write_all(data), extra).map(|(stored, _)| stored)
}

/// Stores a snapshot durably, with `extra` meta records in the same transaction, unless
/// the one stored already covers a later log index (a snapshot built before an install
/// finished after it): then it is not stored. The data is written by `write`, streamed
/// to the file (never whole in memory), outside the store lock: a snapshot being
/// written holds up no load. Returns whether it was stored, and the data, open at the
/// start (if not stored, in a file already unlinked). Blocking: call from a blocking
/// thread.
pub(crate) fn store_with(
    db: &Db,
    meta: &SnapshotMeta,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    extra: &[(&str, &[u8])],
) -> Result<(bool, std::fs::File), DbError> {
    let dir = snapshot_dir(db)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let name = format!(
        "{index:020}-{now}-{}.snapshot",
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(&name);
    let tmp_name = format!("{name}.tmp");
    let tmp = dir.join(&tmp_name);
    let _writing = Writing::new(db, tmp_name);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Password hashes and session records: owner only, like raft.redb.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let f = opts.open(&tmp).map_err(io(&tmp))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &f);
        let written = write(&mut w).and_then(|()| w.flush());
        drop(w);
        if let Err(e) = written.and_then(|()| f.sync_data()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
    }
    let _one_at_a_time = db.snapshot_store.lock();
    if let Some(stored) = db.get_meta(SNAPSHOT_META)?
        && decode_meta(&stored)?.last_log_id > meta.last_log_id
    {
        let f = std::fs::File::open(&tmp).map_err(io(&tmp))?;
        let _ = std::fs::remove_file(&tmp);
        return Ok((false, f));
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(&dir)?;
    let meta_bytes = snapshot_meta_to_pb(meta).encode_to_vec();
    let mut records = vec![
        (SNAPSHOT_META, meta_bytes.as_slice()),
        (SNAPSHOT_FILE, name.as_bytes()),
    ];
    records.extend_from_slice(extra);
    // On failure the file stays: the commit may still have reached the disk (a
    // failed fsync says nothing either way), and the next store removes it if not.
    db.put_remove_meta(&records, &[SNAPSHOT_DATA], true)?;
    // Opened before a later store may remove it.
    let f = std::fs::File::open(&path).map_err(io(&path))?;
    remove_others(db, &dir, &name);
    Ok((true, f))
}

/// A snapshot file being written, for as long as this lives.
struct Writing<'a> {
    db: &'a Db,
    name: String,
}

impl<'a> Writing<'a> {
    fn new(db: &'a Db, name: String) -> Self {
        db.snapshot_writing.lock().insert(name.clone());
        Self { db, name }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.db.snapshot_writing.lock().remove(&self.name);
    }
}

/// Removes every file in `dir` but `keep` and those being written (older snapshots, a
/// crash's leftovers).
fn remove_others(db: &Db, dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // Listed in full first, then filtered under the lock: a file is registered before
    // it is created, so any in this listing that is being written is in the set now.
    let entries: Vec<_> = entries.flatten().collect();
    let writing = db.snapshot_writing.lock();
    for e in entries {
        if e.file_name() != keep
            && !writing.contains(e.file_name().to_string_lossy().as_ref())
            && let Err(err) = std::fs::remove_file(e.path())
        {
            tracing::warn!(file = %e.path().display(), error = %err, "old snapshot file left");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LogId, StoredMembership};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{index}"),
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_latest_snapshot_is_kept_in_one_file_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "c", 1).unwrap();
        assert!(load(&db).unwrap().is_none());
        store(&db, &meta(10), b"ten", &[]).unwrap();
        // A crash's leftover is removed by the next store.
        std::fs::write(dir.path().join(DIR).join("x.snapshot.tmp"), b"junk").unwrap();
        store(&db, &meta(20), b"twenty", &[]).unwrap();
        assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
        // An older snapshot finishing late does not replace a newer one.
        assert!(!store(&db, &meta(15), b"fifteen", &[]).unwrap());
        #[cfg(unix)]
        for f in files(dir.path()) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(DIR).join(f))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600, "snapshot files are private");
        }
        db.close();
        let db = Db::open(dir.path(), "c", 1).unwrap();
        let (m, data) = load(&db).unwrap().unwrap();
        assert_eq!(m.snapshot_id, "s20");
        assert_eq!(data, b"twenty");
        assert_eq!(files(dir.path()).len(), 1);
    }

    #[test]
    fn data_kept_in_redb_by_an_older_version_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "c", 1).unwrap();
        let m = snapshot_meta_to_pb(&meta(7)).encode_to_vec();
        db.put_meta(&[(SNAPSHOT_META, &m), (SNAPSHOT_DATA, b"legacy")], true)
            .unwrap();
        let (m, data) = load(&db).unwrap().unwrap();
        assert_eq!(
            (m.snapshot_id.as_str(), data.as_slice()),
            ("s7", &b"legacy"[..])
        );
        // The next store moves it to a file and removes the old record.
        assert!(store(&db, &meta(8), b"eight", &[]).unwrap());
        assert_eq!(db.get_meta(SNAPSHOT_DATA).unwrap(), None);
        assert_eq!(load(&db).unwrap().unwrap().1, b"eight");
    }

    #[test]
    fn a_snapshot_being_written_survives_a_store_that_finishes_first() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "c", 1).unwrap();
        // While an install writes the snapshot at 10 (streaming, outside the lock), a
        // build of 20 is stored: it removes older files, not the one being written.
        let (stored, mut file) = store_with(
            &db,
            &meta(10),
            |w| {
                w.write_all(b"ten, part one; ")?;
                assert!(store(&db, &meta(20), b"twenty", &[]).unwrap());
                w.write_all(b"part two")
            },
            &[],
        )
        .unwrap();
        assert!(!stored, "older than the one stored");
        let mut data = String::new();
        file.read_to_string(&mut data).unwrap();
        assert_eq!(data, "ten, part one; part two");
        assert_eq!(load(&db).unwrap().unwrap().1, b"twenty");
        assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
        // A stored snapshot comes back open at its start.
        let (stored, mut file) =
            store_with(&db, &meta(30), |w| w.write_all(b"thirty"), &[]).unwrap();
        assert!(stored);
        let mut data = String::new();
        file.read_to_string(&mut data).unwrap();
        assert_eq!(data, "thirty");
        // A write that fails stores nothing and leaves nothing behind.
        let failed = store_with(
            &db,
            &meta(40),
            |_| Err(std::io::Error::other("encoder gave up")),
            &[],
        );
        assert!(failed.is_err());
        assert_eq!(load(&db).unwrap().unwrap().1, b"thirty");
        assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
    }

    #[test]
    fn a_missing_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), "c", 1).unwrap();
        store(&db, &meta(3), b"three", &[]).unwrap();
        for f in files(dir.path()) {
            std::fs::remove_file(dir.path().join(DIR).join(f)).unwrap();
        }
        assert!(load(&db).is_err());
    }
}
