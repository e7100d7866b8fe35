//! Where a node keeps its latest snapshot: the data in a file of its own under
//! `<data dir>/snapshots`, the metadata and that file's name in redb.
//!
//! Writing hundreds of megabytes into redb held its single write transaction, and so
//! every log append, for the whole commit (half a second at 100k users). A file is
//! written, fsynced and renamed into place beside the log instead; only the few bytes of
//! metadata then go through redb. Order: file written and synced, renamed, directory
//! synced, metadata committed, older files removed. A crash at any point leaves the
//! previous snapshot named in redb and whole on disk; a file no record names is removed
//! by the next store.

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

fn stored_meta(db: &Db) -> Result<Option<SnapshotMeta>, DbError> {
    db.get_meta(SNAPSHOT_META)?
        .map(|m| {
            let pb = pb::SnapshotMetaPb::decode(m.as_slice())
                .map_err(|e| DbError::Corrupt(format!("snapshot meta: {e}")))?;
            snapshot_meta_from_pb(Some(pb)).map_err(|e| DbError::Corrupt(e.to_string()))
        })
        .transpose()
}

/// The stored snapshot, if any: its metadata and data.
pub(crate) fn load(db: &Db) -> Result<Option<(SnapshotMeta, Vec<u8>)>, DbError> {
    let Some(meta) = stored_meta(db)? else {
        return Ok(None);
    };
    let name = db.get_meta(SNAPSHOT_FILE)?.unwrap_or_default();
    if !name.is_empty() {
        let name = String::from_utf8(name)
            .map_err(|_| DbError::Corrupt("snapshot file name is not UTF-8".into()))?;
        let path = db.dir().join(DIR).join(name);
        return Ok(Some((meta, std::fs::read(&path).map_err(io(&path))?)));
    }
    // Written by a version that kept the data in redb.
    match db.get_meta(SNAPSHOT_DATA)? {
        Some(data) => Ok(Some((meta, data))),
        None => Err(DbError::Corrupt("snapshot meta without data".into())),
    }
}

/// Stores a snapshot durably, with `extra` meta records in the same transaction, unless
/// the one stored already covers a later log index (a snapshot built before an install
/// finished after it). Blocking: call from a blocking thread.
pub(crate) fn store(
    db: &Db,
    meta: &SnapshotMeta,
    data: &[u8],
    extra: &[(&str, &[u8])],
) -> Result<(), DbError> {
    let dir = db.dir().join(DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let _one_at_a_time = db.snapshot_store.lock();
    if let Some(stored) = stored_meta(db)?
        && stored.last_log_id > meta.last_log_id
    {
        return Ok(());
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
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_data().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    let meta_bytes = snapshot_meta_to_pb(meta).encode_to_vec();
    let mut records = vec![
        (SNAPSHOT_META, meta_bytes.as_slice()),
        (SNAPSHOT_FILE, name.as_bytes()),
        (SNAPSHOT_DATA, &[][..]),
    ];
    records.extend_from_slice(extra);
    if let Err(e) = db.put_meta(&records, true) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    remove_others(&dir, &name);
    Ok(())
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
        store(&db, &meta(15), b"fifteen", &[]).unwrap();
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
        // The next store moves it to a file and empties the old record.
        store(&db, &meta(8), b"eight", &[]).unwrap();
        assert_eq!(db.get_meta(SNAPSHOT_DATA).unwrap().unwrap(), b"");
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
