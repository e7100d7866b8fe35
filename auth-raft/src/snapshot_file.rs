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
//! Stores and loads take one lock (openraft builds a snapshot in a task of its own,
//! concurrently with sending the current one to a follower): a load sees the metadata
//! and the file name of one store, and has the file open before a later store may
//! remove it.
//!
//! The change of layout is one-way: an older version finds no snapshot data in redb.

use std::io::Write;
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

/// The stored snapshot, if any: its metadata and data.
pub(crate) fn load(db: &Db) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
    use std::io::Read;
    let (meta, mut file) = {
        let _stores_wait = db.snapshot_store.lock();
        let [meta, name, data] = db.get_metas([SNAPSHOT_META, SNAPSHOT_FILE, SNAPSHOT_DATA])?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let meta = decode_meta(&meta)?;
        match (name, data) {
            (Some(name), _) => {
                let name = String::from_utf8(name)
                    .map_err(|_| DbError::Corrupt("snapshot file name is not UTF-8".into()))?;
                let path = db.dir().join(DIR).join(name);
                (meta, std::fs::File::open(&path).map_err(io(&path))?)
            }
            // Written by a version that kept the data in redb.
            (None, Some(data)) => return Ok(Some((meta, data))),
            (None, None) => return Err(DbError::Corrupt("snapshot meta without data".into())),
        }
    };
    // Open: a store that removes the file now does not take it away from us.
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| DbError::Redb(format!("snapshot file: {e}")))?;
    Ok(Some((meta, data)))
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

/// Stores a snapshot durably, with `extra` meta records in the same transaction, unless
/// the one stored already covers a later log index (a snapshot built before an install
/// finished after it): then nothing is written and the answer is `false`. Blocking:
/// call from a blocking thread.
pub(crate) fn store(
    db: &Db,
    meta: &SnapshotMeta,
    data: &[u8],
    extra: &[(&str, &[u8])],
) -> Result<bool, DbError> {
    let _one_at_a_time = db.snapshot_store.lock();
    let dir = snapshot_dir(db)?;
    if let Some(stored) = db.get_meta(SNAPSHOT_META)?
        && decode_meta(&stored)?.last_log_id > meta.last_log_id
    {
        return Ok(false);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let name = format!(
        "{index:020}-{now}-{}.snapshot",
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Password hashes and session records: owner only, like raft.redb.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_data().map_err(io(&tmp))?;
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
    remove_others(&dir, &name);
    Ok(true)
}

/// Removes every file in `dir` but `keep` (older snapshots, a crash's leftovers).
fn remove_others(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name() != keep
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
