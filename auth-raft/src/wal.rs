//! The Raft log on disk: append-only segment files of checksummed records, one
//! `pwrite` per append and `fdatasync` for durability, as etcd's WAL does.
//!
//! Before this, every append was a redb write transaction: a B-tree commit that took
//! 0.37–0.42 ms with its fsync where a bare `fdatasync` of the same bytes takes
//! 0.13–0.17 ms on the same disk (`BENCHMARKS.md`, "Where a single write's time
//! goes"). The vote, the committed index, the last purged id, the snapshot's metadata
//! and the cluster identity stay in redb, where they are written rarely.
//!
//! **Layout.** `<data dir>/log/<index of its first entry, 20 digits>.wal`. A segment
//! is a run of records with consecutive indexes:
//!
//! ```text
//! [payload length: u32 LE][CRC-32 of index and payload: u32 LE][index: u64 LE][payload]
//! ```
//!
//! The payload is the entry's protobuf encoding. A segment is closed once it holds
//! [`SEGMENT_BYTES`]: it is cut to its records and synced, then the next one is
//! created and the directory synced, so only the last segment can end in an
//! interrupted write.
//!
//! **Preallocation.** The segment being written is allocated [`PREALLOCATE`] bytes
//! ahead of its records (`fallocate`, as etcd preallocates its WAL), so an append's
//! `fdatasync` has no file size to write back: 0.08–0.09 ms against 0.12–0.16 ms for
//! a 300-byte record on these machines' ext4 (`benches/fsync-prealloc.py`,
//! `BENCHMARKS.md`). The space past the records reads as zeros.
//!
//! **Recovery** reads every segment in order and skips entries at or below the last
//! purged index. The last segment's records end where only zeros follow (its
//! preallocated space). It cuts the last segment at a torn record: one the file ends
//! inside of, or one with a bad checksum and a sector of zeros (etcd's rule for a
//! write a crash interrupted; none of it was reported durable, since an `fdatasync`
//! covers everything written before it in the file). Anything else out of place (a bad
//! checksum without that sign, a torn record before the last segment's end, an index
//! out of sequence, a segment named for another index) is corruption, and the node
//! refuses to start rather than guess. Then it syncs the last segment: after a crash of
//! the process alone, writes never synced are still in the page cache, and from now
//! on they count as durable.
//!
//! **Deletions stay crash-safe.** [`Wal::truncate`] removes the later segments newest
//! first, then cuts the one holding the first removed entry and syncs it: a crash
//! midway leaves a prefix of the old log that still holds some of the entries being
//! removed, as if the call had not happened. [`Wal::remove_forgotten`] comes after
//! the caller has recorded the last purged id durably and removes whole segments
//! oldest first: whatever a crash leaves behind, recovery skips.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::db::DbError;

/// The directory under the data directory.
const DIR: &str = "log";
const SUFFIX: &str = ".wal";
/// Record header: payload length, checksum, index.
const HEADER: usize = 16;
/// A segment is closed, and the next begun, once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// The last segment is allocated on disk this far past its records.
pub(crate) const PREALLOCATE: u64 = 1 << 20;

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> DbError {
    move |e| DbError::Redb(format!("raft log {what}: {e}"))
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Entries encoded for one [`Wal::append`], in index order.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    /// (index, payload length) of each record in `buf`.
    records: Vec<(u64, u32)>,
}

impl Batch {
    /// A batch of these `(index, payload)` records (tests).
    #[cfg(test)]
    pub(crate) fn of<B: AsRef<[u8]>>(records: impl IntoIterator<Item = (u64, B)>) -> Self {
        let mut batch = Batch::default();
        for (i, bytes) in records {
            batch
                .push(i, |b| {
                    b.extend_from_slice(bytes.as_ref());
                    Ok(())
                })
                .expect("consecutive test records");
        }
        batch
    }

    /// Adds the entry at `index`, its payload written by `encode`.
    pub(crate) fn push(
        &mut self,
        index: u64,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        if let Some((last, _)) = self.records.last()
            && last.checked_add(1) != Some(index)
        {
            return Err(DbError::Corrupt(format!(
                "log append: entry {index} after {last}"
            )));
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        if let Err(e) = encode(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let payload = &self.buf[start + HEADER..];
        let len = u32::try_from(payload.len()).map_err(|_| {
            DbError::Redb(format!(
                "raft log: entry {index} of {} bytes is too large",
                payload.len()
            ))
        })?;
        let crc = checksum(index, payload);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.buf[start + 8..start + HEADER].copy_from_slice(&index.to_le_bytes());
        self.records.push((index, len));
        Ok(())
    }
}

/// What recovery finds at a place in a segment.
enum Record<'a> {
    /// A whole record whose checksum holds: its index and payload.
    Whole(u64, &'a [u8]),
    /// The end of a write a crash interrupted: the file ends inside the record, or a
    /// sector of it is all zeros (never written).
    Torn,
    /// A whole record whose checksum fails with no sign of an interrupted write.
    Damaged,
}

/// Disk sectors: a torn write shows as whole sectors of zeros (etcd's rule).
const SECTOR: usize = 512;

/// The record at `at` in `data` (a segment's bytes).
fn record(data: &[u8], at: usize) -> Record<'_> {
    let Some(header) = data.get(at..).and_then(|d| d.get(..HEADER)) else {
        return Record::Torn;
    };
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0; 4];
        b.copy_from_slice(&header[r]);
        u32::from_le_bytes(b)
    };
    let (len, crc) = (word(0..4) as usize, word(4..8));
    let mut b = [0; 8];
    b.copy_from_slice(&header[8..16]);
    let index = u64::from_le_bytes(b);
    let Some(end) = (at + HEADER).checked_add(len).filter(|e| *e <= data.len()) else {
        return Record::Torn;
    };
    let payload = &data[at + HEADER..end];
    if checksum(index, payload) == crc {
        return Record::Whole(index, payload);
    }
    let mut from = at;
    while from < end {
        let to = ((from / SECTOR + 1) * SECTOR).min(end);
        if data[from..to].iter().all(|b| *b == 0) {
            return Record::Torn;
        }
        from = to;
    }
    Record::Damaged
}

/// A record read back for openraft: its index and payload, or `None` if it is not
/// whole.
fn parse(bytes: &[u8]) -> Option<(u64, &[u8])> {
    match record(bytes, 0) {
        Record::Whole(index, payload) => Some((index, payload)),
        Record::Torn | Record::Damaged => None,
    }
}

struct Segment {
    file: Arc<File>,
    /// Bytes of whole records in it.
    len: u64,
    /// The file's length: `len` and the zeros preallocated after it.
    allocated: u64,
}

/// Where an entry's record is.
#[derive(Clone, Copy)]
struct Pos {
    /// The segment's name (its first index).
    segment: u64,
    offset: u64,
    /// The whole record, header included.
    len: u64,
}

struct Inner {
    /// By first index.
    segments: BTreeMap<u64, Segment>,
    /// The record of every entry in the log, the first at index `first`.
    positions: VecDeque<Pos>,
    /// The index of `positions[0]`, or of the next append when the log is empty: one
    /// past the last purged entry (0 if none was).
    first: u64,
    /// Bumped by every truncation: a read done outside the lock across one is redone.
    truncations: u64,
    closed: bool,
    /// A write, sync or removal failed: what is on disk is unknown, nothing more is
    /// written or reported durable (a failed `fdatasync` is reported once; a later one
    /// may succeed without the lost pages).
    failed: bool,
}

impl Inner {
    fn last_index(&self) -> Option<u64> {
        (self.positions.len() as u64)
            .checked_sub(1)
            .map(|n| self.first + n)
    }

    fn usable(&self) -> Result<(), DbError> {
        if self.closed {
            Err(DbError::Closed)
        } else if self.failed {
            Err(DbError::Redb(
                "raft log: an earlier write or sync failed; restart the node".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// A node's Raft log. Appends, truncations and purges come from openraft one at a time;
/// reads and the flusher's syncs run beside them.
pub(crate) struct Wal {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// [`PREALLOCATE`], 0 in tests of the files' exact contents.
    preallocate: u64,
    inner: Mutex<Inner>,
}

/// Runs of consecutive records to read: (file, segment name, offset, bytes, first index).
type Runs = Vec<(Arc<File>, u64, u64, u64, u64)>;

impl Wal {
    /// Opens the log under `data_dir` (creating it), recovering what is on disk.
    /// Entries at or below `last_purged` are not part of the log.
    pub(crate) fn open(data_dir: &Path, last_purged: Option<u64>) -> Result<Self, DbError> {
        Self::open_with(data_dir, last_purged, SEGMENT_BYTES, PREALLOCATE)
    }

    fn open_with(
        data_dir: &Path,
        last_purged: Option<u64>,
        segment_bytes: u64,
        preallocate: u64,
    ) -> Result<Self, DbError> {
        let dir = data_dir.join(DIR);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
            crate::snapshot_file::sync_dir(data_dir)?;
        }
        let mut names = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io(dir.display()))? {
            let name = item.map_err(io(dir.display()))?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(SUFFIX)
                .filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok())
            {
                names.push(first);
            }
        }
        names.sort_unstable();
        let first = last_purged.map_or(0, |p| p.saturating_add(1));
        let mut inner = Inner {
            segments: BTreeMap::new(),
            positions: VecDeque::new(),
            first,
            truncations: 0,
            closed: false,
            failed: false,
        };
        let count = names.len();
        for (k, &name) in names.iter().enumerate() {
            let path = dir.join(segment_file(name));
            let corrupt = |what: String| DbError::Corrupt(format!("{}: {what}", path.display()));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(path.display()))?;
            let mut data = Vec::new();
            (&file).read_to_end(&mut data).map_err(io(path.display()))?;
            let last = k + 1 == count;
            // The next segment begins at or before the first live entry: this one
            // holds only purged entries.
            let purged = names.get(k + 1).is_some_and(|next| *next <= first);
            let mut allocated = data.len() as u64;
            let mut offset = 0;
            while offset < data.len() {
                let (index, payload) = match record(&data, offset) {
                    Record::Whole(index, payload) => (index, payload),
                    // Preallocated space, never written: in the last segment, or in
                    // one that was last before a crash kept its removal from
                    // happening, which holds only purged entries. Anywhere else,
                    // zeros in place of records are lost entries.
                    Record::Torn if (last || purged) && data[offset..].iter().all(|b| *b == 0) => {
                        break;
                    }
                    Record::Torn if last => {
                        // The write a crash interrupted: none of it was reported durable.
                        tracing::warn!(
                            segment = %path.display(),
                            at = offset,
                            dropped = data.len() - offset,
                            "raft log: cut an interrupted write at the end of the log"
                        );
                        file.set_len(offset as u64).map_err(io(path.display()))?;
                        allocated = offset as u64;
                        break;
                    }
                    Record::Torn => {
                        return Err(corrupt(format!(
                            "incomplete record at byte {offset} of a closed segment"
                        )));
                    }
                    Record::Damaged => {
                        return Err(corrupt(format!(
                            "record at byte {offset} fails its checksum"
                        )));
                    }
                };
                if offset == 0 && index != name {
                    return Err(corrupt(format!("begins with entry {index}")));
                }
                // Purged entries are skipped unchecked: a crash during a purge may leave
                // any of their segments behind.
                if index >= first {
                    let expected = inner.first + inner.positions.len() as u64;
                    // The first live entry begins its segment (see `append`).
                    if inner.positions.is_empty() && offset == 0 {
                        inner.first = index;
                    } else if index != expected {
                        return Err(corrupt(format!(
                            "entry {index} at byte {offset} where entry {expected} belongs"
                        )));
                    }
                    inner.positions.push_back(Pos {
                        segment: name,
                        offset: offset as u64,
                        len: (HEADER + payload.len()) as u64,
                    });
                }
                offset += HEADER + payload.len();
            }
            inner.segments.insert(
                name,
                Segment {
                    file: Arc::new(file),
                    len: offset as u64,
                    allocated,
                },
            );
        }
        // After a crash of the process (not the machine), the last segment may hold
        // writes never synced, still in the page cache: they count as on disk from here
        // on, so they must be.
        if let Some((&name, seg)) = inner.segments.last_key_value() {
            seg.file.sync_data().map_err(io(segment_file(name)))?;
        }
        Ok(Self {
            dir,
            segment_bytes,
            preallocate,
            inner: Mutex::new(inner),
        })
    }

    /// The index of the last entry, if the log holds any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.inner.lock().last_index()
    }

    /// Marks the log failed after `e`, and returns it.
    fn fail(&self, e: DbError) -> DbError {
        if !matches!(e, DbError::Closed) {
            self.inner.lock().failed = true;
        }
        e
    }

    /// Writes `batch` after the last entry (or, in an empty log, at one past the last
    /// purged); with `sync`, returns once it is on disk, otherwise a later
    /// [`Wal::sync`] makes it durable.
    pub(crate) fn append(&self, batch: &Batch, sync: bool) -> Result<(), DbError> {
        let Some(&(first_new, _)) = batch.records.first() else {
            return Ok(());
        };
        let mut g = self.inner.lock();
        g.usable()?;
        // Entries at those indexes are replaced, with everything after them (openraft
        // truncates first itself; its storage suite does not).
        if first_new >= g.first && g.last_index().is_some_and(|l| first_new <= l) {
            self.truncate_locked(&mut g, first_new)?;
        }
        let expected = g.first + g.positions.len() as u64;
        // openraft begins a log at 0, and after a purge at one past it. Its storage
        // suite begins them elsewhere too; an empty log takes any start (recovery then
        // starts the log at a segment's first entry), which a real node never sees.
        let anywhere = g.positions.is_empty();
        if anywhere && first_new != expected {
            tracing::warn!(
                entry = first_new,
                expected,
                "raft log: an empty log begins away from its last purged entry"
            );
        }
        if first_new != expected && !anywhere {
            return Err(DbError::Corrupt(format!(
                "log append: entry {first_new} where entry {expected} belongs"
            )));
        }
        let (name, file, start) = match self.place(&mut g, first_new) {
            Ok(at) => {
                if anywhere {
                    g.first = first_new;
                }
                at
            }
            Err(e) => {
                g.failed = true;
                return Err(e);
            }
        };
        let end = start + batch.buf.len() as u64;
        if let Some(seg) = g.segments.get_mut(&name)
            && end > seg.allocated
            && self.preallocate > 0
        {
            seg.allocated = preallocate(&seg.file, seg.allocated, end + self.preallocate);
        }
        if let Err(e) = file.write_all_at(&batch.buf, start) {
            g.failed = true;
            return Err(io(segment_file(name))(e));
        }
        let mut offset = start;
        for &(_, len) in &batch.records {
            let len = HEADER as u64 + u64::from(len);
            g.positions.push_back(Pos {
                segment: name,
                offset,
                len,
            });
            offset += len;
        }
        if let Some(seg) = g.segments.get_mut(&name) {
            seg.len = offset;
        }
        drop(g);
        if sync {
            file.sync_data()
                .map_err(io(segment_file(name)))
                .map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// The segment the next entry, `first_new`, goes into, and where: a new one if the
    /// log is empty or the last is full.
    fn place(&self, g: &mut Inner, first_new: u64) -> Result<(u64, Arc<File>, u64), DbError> {
        if g.positions.is_empty() {
            // Whatever segments remain hold only purged entries.
            self.remove_segments(g, |_| true, false)?;
        }
        let full = g
            .segments
            .last_key_value()
            .is_none_or(|(_, s)| s.len >= self.segment_bytes);
        if full {
            self.begin_segment(g, first_new)?;
        }
        let (&name, seg) = g
            .segments
            .last_key_value()
            .ok_or_else(|| DbError::Corrupt("log append: no segment".into()))?;
        Ok((name, Arc::clone(&seg.file), seg.len))
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&self) -> Result<(), DbError> {
        let (name, file) = {
            let g = self.inner.lock();
            g.usable()?;
            // Closed segments were synced before the next one began.
            match g.segments.last_key_value() {
                Some((&n, s)) => (n, Arc::clone(&s.file)),
                None => return Ok(()),
            }
        };
        file.sync_data()
            .map_err(io(segment_file(name)))
            .map_err(|e| self.fail(e))
    }

    /// Calls `f` with the index and payload of each entry in `[start, end)` the log
    /// holds, in order. The records are read outside the lock (appends do not move
    /// them); a read that a truncation overlapped is done again under the lock (a
    /// replication task openraft has detached may still read entries a truncation
    /// removes).
    pub(crate) fn read(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let (runs, truncations) = {
            let g = self.inner.lock();
            (Self::plan(&g, start, end)?, g.truncations)
        };
        let bufs = match Self::fetch(runs) {
            Ok(bufs) if self.inner.lock().truncations == truncations => bufs,
            Err(e) if self.inner.lock().truncations == truncations => return Err(e),
            _ => {
                let g = self.inner.lock();
                Self::fetch(Self::plan(&g, start, end)?)?
            }
        };
        // Every record in them was checked by `fetch`.
        for (_, buf) in bufs {
            let mut at = 0;
            while let Some((index, payload)) = buf.get(at..).and_then(parse) {
                f(index, payload)?;
                at += HEADER + payload.len();
            }
        }
        Ok(())
    }

    fn plan(g: &Inner, start: u64, end: u64) -> Result<Runs, DbError> {
        g.usable()?;
        let mut runs: Runs = Vec::new();
        let lo = start.max(g.first);
        let hi = end.min(g.first + g.positions.len() as u64);
        for index in lo..hi {
            let pos = g.positions[(index - g.first) as usize];
            match runs.last_mut() {
                Some(run) if run.1 == pos.segment && run.2 + run.3 == pos.offset => {
                    run.3 += pos.len;
                }
                _ => {
                    let seg = g.segments.get(&pos.segment).ok_or_else(|| {
                        DbError::Corrupt(format!("log {index}: segment {} gone", pos.segment))
                    })?;
                    runs.push((
                        Arc::clone(&seg.file),
                        pos.segment,
                        pos.offset,
                        pos.len,
                        index,
                    ));
                }
            }
        }
        Ok(runs)
    }

    /// Reads the runs and checks every record in them: (first index, bytes) per run.
    fn fetch(runs: Runs) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let mut out = Vec::with_capacity(runs.len());
        for (file, name, offset, len, first) in runs {
            let n = usize::try_from(len)
                .map_err(|_| DbError::Corrupt(format!("log {first}: run of {len} bytes")))?;
            let mut buf = vec![0; n];
            file.read_exact_at(&mut buf, offset)
                .map_err(io(segment_file(name)))?;
            let (mut at, mut index) = (0, first);
            while at < buf.len() {
                let payload = buf
                    .get(at..)
                    .and_then(parse)
                    .filter(|(got, _)| *got == index)
                    .map(|(_, p)| p.len())
                    .ok_or_else(|| {
                        DbError::Corrupt(format!(
                            "log {index}: damaged record in {}",
                            segment_file(name)
                        ))
                    })?;
                at += HEADER + payload;
                index += 1;
            }
            out.push((first, buf));
        }
        Ok(out)
    }

    /// Removes every entry with index `from` or above, durably.
    pub(crate) fn truncate(&self, from: u64) -> Result<(), DbError> {
        let mut g = self.inner.lock();
        g.usable()?;
        self.truncate_locked(&mut g, from)
    }

    fn truncate_locked(&self, g: &mut Inner, from: u64) -> Result<(), DbError> {
        let Some(last) = g.last_index() else {
            return Ok(());
        };
        if from > last {
            return Ok(());
        }
        g.truncations += 1;
        let keep = from.saturating_sub(g.first) as usize;
        // The first removed record: segments that begin at or after it go whole, newest
        // first; then the one holding it is cut.
        let cut_at = g.positions.get(keep).map(|p| (p.segment, p.offset));
        let r = self
            .remove_segments(
                g,
                |name| {
                    cut_at.is_none_or(|(seg, offset)| name > seg || (name == seg && offset == 0))
                },
                true,
            )
            .and_then(|()| match cut_at {
                Some((name, offset)) if offset > 0 => {
                    let seg = g.segments.get_mut(&name).ok_or_else(|| {
                        DbError::Corrupt(format!("log truncate: segment {name} gone"))
                    })?;
                    seg.file
                        .set_len(offset)
                        .and_then(|()| seg.file.sync_data())
                        .map_err(io(segment_file(name)))?;
                    seg.len = offset;
                    seg.allocated = offset;
                    Ok(())
                }
                _ => Ok(()),
            });
        if let Err(e) = r {
            g.failed = true;
            return Err(e);
        }
        g.positions.truncate(keep);
        Ok(())
    }

    /// Forgets every entry with index `upto` or below and removes the segments that
    /// hold nothing else. The caller records the purge durably first.
    #[cfg(test)]
    pub(crate) fn purge(&self, upto: u64) -> Result<(), DbError> {
        let doomed = self.forget(upto)?;
        self.remove_forgotten(&doomed)
    }

    /// Forgets every entry with index `upto` or below. Returns the segments that hold
    /// nothing else: out of the log now, their files still there until
    /// [`Wal::remove_forgotten`], which the caller runs once it has recorded the purge
    /// durably (a file gone with the purge unrecorded would leave a hole at the start
    /// of the log). With none, the record need not be durable: a crash that forgets
    /// the purge leaves entries the log still holds.
    pub(crate) fn forget(&self, upto: u64) -> Result<Vec<u64>, DbError> {
        let mut g = self.inner.lock();
        g.usable()?;
        while g.first <= upto && g.positions.pop_front().is_some() {
            g.first += 1;
        }
        if g.positions.is_empty() {
            g.first = g.first.max(upto.saturating_add(1));
        }
        // A segment holds nothing live once the next one starts at or below `upto + 1`;
        // the last one, once the log is empty.
        let names: Vec<u64> = g.segments.keys().copied().collect();
        let empty = g.positions.is_empty();
        let gone = (0..names.len())
            .take_while(|&k| match names.get(k + 1) {
                Some(next) => *next <= upto.saturating_add(1),
                None => empty,
            })
            .count();
        let doomed = names[..gone].to_vec();
        for name in &doomed {
            g.segments.remove(name);
        }
        Ok(doomed)
    }

    /// Removes the files of segments [`Wal::forget`] returned, oldest first. Not synced:
    /// a removed segment that comes back after a crash holds only entries recovery
    /// skips.
    pub(crate) fn remove_forgotten(&self, doomed: &[u64]) -> Result<(), DbError> {
        for name in doomed {
            let path = self.dir.join(segment_file(*name));
            if let Err(e) = std::fs::remove_file(&path) {
                return Err(self.fail(io(path.display())(e)));
            }
        }
        Ok(())
    }

    /// Closes the files; later calls fail with [`DbError::Closed`].
    pub(crate) fn close(&self) {
        let mut g = self.inner.lock();
        g.closed = true;
        g.segments.clear();
        g.positions.clear();
    }

    fn begin_segment(&self, g: &mut Inner, first: u64) -> Result<(), DbError> {
        // The closed segment is durable before the next one exists, so that only the
        // last segment can end in an interrupted write.
        if let Some((&name, seg)) = g.segments.last_key_value() {
            // Cut to its records first: recovery takes zeros after the records only
            // in the last segment.
            if seg.allocated > seg.len {
                seg.file.set_len(seg.len).map_err(io(segment_file(name)))?;
            }
            seg.file.sync_data().map_err(io(segment_file(name)))?;
        }
        if let Some((_, seg)) = g.segments.iter_mut().next_back() {
            seg.allocated = seg.len;
        }
        let path = self.dir.join(segment_file(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(path.display()))?;
        crate::snapshot_file::sync_dir(&self.dir)?;
        g.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                len: 0,
                allocated: 0,
            },
        );
        Ok(())
    }

    /// Removes the segments `doomed` picks. `newest_first` removes them from the newest
    /// and syncs the directory after; otherwise oldest first, unsynced.
    fn remove_segments(
        &self,
        g: &mut Inner,
        doomed: impl Fn(u64) -> bool,
        newest_first: bool,
    ) -> Result<(), DbError> {
        let mut names: Vec<u64> = g.segments.keys().copied().filter(|n| doomed(*n)).collect();
        if names.is_empty() {
            return Ok(());
        }
        if newest_first {
            names.reverse();
        }
        for name in names {
            g.segments.remove(&name);
            let path = self.dir.join(segment_file(name));
            std::fs::remove_file(&path).map_err(io(path.display()))?;
        }
        if newest_first {
            crate::snapshot_file::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Allocates `file` on disk from `from` up to `to` (its new length), so that appends
/// there change no file size; returns `to`, where the next preallocation begins. Where
/// the file system cannot (`fallocate` unsupported), the file is extended sparse,
/// which still spares the size update; if that fails too, appends extend the file as
/// they go.
fn preallocate(file: &File, from: u64, to: u64) -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let flags = rustix::fs::FallocateFlags::empty();
        match rustix::fs::fallocate(file, flags, from, to - from) {
            Ok(()) => return to,
            Err(e) => tracing::debug!(error = %e, "raft log: fallocate failed"),
        }
    }
    if let Err(e) = file.set_len(to) {
        // Tried again a preallocation later, not at every append.
        tracing::warn!(error = %e, "raft log: could not preallocate a segment");
    }
    to
}

fn segment_file(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments of about three 100-byte entries.
    const SMALL: u64 = 300;

    fn payload(i: u64) -> Vec<u8> {
        format!("entry {i} ").repeat(10).into_bytes()
    }

    fn append(wal: &Wal, range: std::ops::Range<u64>, sync: bool) {
        wal.append(&Batch::of(range.map(|i| (i, payload(i)))), sync)
            .unwrap();
    }

    fn all(wal: &Wal) -> Vec<u64> {
        let mut out = Vec::new();
        wal.read(0, u64::MAX, |i, b| {
            assert_eq!(b, payload(i), "entry {i}");
            out.push(i);
            Ok(())
        })
        .unwrap();
        out
    }

    fn segments(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn entries_come_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        assert_eq!(wal.last_index(), None);
        for k in 0..6 {
            append(&wal, k * 3 + 1..k * 3 + 4, k % 2 == 0);
        }
        wal.sync().unwrap();
        assert_eq!(all(&wal), (1..19).collect::<Vec<_>>());
        assert!(
            segments(dir.path()).len() >= 4,
            "{:?}",
            segments(dir.path())
        );
        // A range inside, spanning segments; one past the end; below the start.
        let mut got = Vec::new();
        wal.read(5, 11, |i, _| {
            got.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, (5..11).collect::<Vec<_>>());
        drop(wal);
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        assert_eq!(wal.last_index(), Some(18));
        assert_eq!(all(&wal), (1..19).collect::<Vec<_>>());
        append(&wal, 19..20, true);
        assert_eq!(wal.last_index(), Some(19));
        // Out of sequence: refused, nothing written.
        let mut batch = Batch::default();
        batch
            .push(25, |b| {
                b.extend_from_slice(b"x");
                Ok(())
            })
            .unwrap();
        assert!(matches!(wal.append(&batch, true), Err(DbError::Corrupt(_))));
        // A log purged up to 9 begins at 10 and comes back so.
        let empty = tempfile::tempdir().unwrap();
        let fresh = Wal::open(empty.path(), Some(9)).unwrap();
        append(&fresh, 10..12, true);
        drop(fresh);
        let fresh = Wal::open(empty.path(), Some(9)).unwrap();
        assert_eq!(all(&fresh), vec![10, 11]);
        let mut gap = Batch::default();
        gap.push(1, |_| Ok(())).unwrap();
        assert!(gap.push(3, |_| Ok(())).is_err(), "a batch with a gap");
        assert_eq!(wal.last_index(), Some(19));
    }

    #[test]
    fn an_interrupted_write_at_the_end_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        // Without preallocation, so that the file ends where the records do (the next
        // test has it).
        let open = || Wal::open_with(dir.path(), Some(0), SEGMENT_BYTES, 0);
        let wal = open().unwrap();
        append(&wal, 1..6, true);
        drop(wal);
        let last = dir.path().join(DIR).join(segment_file(1));
        let whole = std::fs::metadata(&last).unwrap().len();
        // Half of a record, then (another crash) a record whose bytes did not all land.
        let mut torn = Batch::default();
        torn.push(6, |b| {
            b.extend_from_slice(&payload(6));
            Ok(())
        })
        .unwrap();
        let mut zeroed = torn.buf.clone();
        let n = zeroed.len();
        zeroed[HEADER..n].fill(0);
        for damage in [torn.buf[..torn.buf.len() / 2].to_vec(), zeroed] {
            let f = OpenOptions::new().append(true).open(&last).unwrap();
            f.write_all_at(&damage, whole).unwrap();
            let wal = open().unwrap();
            assert_eq!(wal.last_index(), Some(5));
            assert_eq!(std::fs::metadata(&last).unwrap().len(), whole, "cut");
            assert_eq!(all(&wal), (1..6).collect::<Vec<_>>());
        }
        // Zeros after the records (preallocated space): the log ends there.
        let f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all_at(&[0; 4096], whole).unwrap();
        let wal = open().unwrap();
        assert_eq!(all(&wal), (1..6).collect::<Vec<_>>());
        drop(wal);
        f.set_len(whole).unwrap();
        // A whole record whose checksum fails with no zeroed sector is not a torn
        // write but damage: refused, nothing cut.
        let mut flipped = torn.buf.clone();
        flipped[n - 3] ^= 0xff;
        let f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all_at(&flipped, whole).unwrap();
        match open() {
            Err(DbError::Corrupt(m)) => assert!(m.contains("checksum"), "{m}"),
            other => panic!("opened a damaged log: {:?}", other.map(|w| w.last_index())),
        }
        assert_eq!(std::fs::metadata(&last).unwrap().len(), whole + n as u64);
        f.set_len(whole).unwrap();
        let wal = open().unwrap();
        append(&wal, 6..8, true);
        drop(wal);
        let wal = open().unwrap();
        assert_eq!(all(&wal), (1..8).collect::<Vec<_>>());
    }

    /// The bytes of records `range` as `append` writes them.
    fn records_len(range: std::ops::Range<u64>) -> u64 {
        Batch::of(range.map(|i| (i, payload(i)))).buf.len() as u64
    }

    #[test]
    fn the_last_segment_is_preallocated_and_its_zeros_are_not_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let last = dir.path().join(DIR).join(segment_file(1));
        let file_len = || std::fs::metadata(&last).unwrap().len();
        let wal = Wal::open(dir.path(), Some(0)).unwrap();
        append(&wal, 1..6, true);
        let records = records_len(1..6);
        assert!(file_len() >= records + PREALLOCATE, "not preallocated");
        drop(wal);
        // Reopened: the zeros after the records are neither cut nor taken for entries.
        let allocated = file_len();
        let wal = Wal::open(dir.path(), Some(0)).unwrap();
        assert_eq!(all(&wal), (1..6).collect::<Vec<_>>());
        assert_eq!(file_len(), allocated, "the preallocated space was cut");
        append(&wal, 6..8, true);
        assert_eq!(file_len(), allocated, "an append inside it grew the file");
        drop(wal);
        let wal = Wal::open(dir.path(), Some(0)).unwrap();
        assert_eq!(all(&wal), (1..8).collect::<Vec<_>>());
        drop(wal);
        // A write a crash interrupted inside the preallocated space (its first sector
        // landed, the next did not): cut there.
        let end = records_len(1..8);
        let torn = Batch::of([(8, vec![7u8; 1000])]);
        let landed = (end as usize / SECTOR + 1) * SECTOR - end as usize;
        assert!(landed < torn.buf.len());
        let f = OpenOptions::new().write(true).open(&last).unwrap();
        f.write_all_at(&torn.buf[..landed], end).unwrap();
        let wal = Wal::open(dir.path(), Some(0)).unwrap();
        assert_eq!(all(&wal), (1..8).collect::<Vec<_>>());
        assert_eq!(file_len(), end, "cut");
        // Appends go on, preallocating again.
        append(&wal, 8..10, true);
        assert!(file_len() >= records_len(1..10) + PREALLOCATE);
        drop(wal);
        let wal = Wal::open(dir.path(), Some(0)).unwrap();
        assert_eq!(all(&wal), (1..10).collect::<Vec<_>>());
    }

    #[test]
    fn closed_segments_end_at_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        for i in 1..20 {
            append(&wal, i..i + 1, true);
        }
        let names = segments(dir.path());
        assert!(names.len() >= 4, "{names:?}");
        let (closed, last) = names.split_at(names.len() - 1);
        for name in closed {
            let bytes = std::fs::read(dir.path().join(DIR).join(name)).unwrap();
            let first: u64 = name.trim_end_matches(SUFFIX).parse().unwrap();
            let mut at = 0;
            let mut next = first;
            while at < bytes.len() {
                let Record::Whole(index, payload) = record(&bytes, at) else {
                    panic!("{name}: no whole record at byte {at} of {}", bytes.len());
                };
                assert_eq!(index, next);
                at += HEADER + payload.len();
                next += 1;
            }
        }
        let last = std::fs::metadata(dir.path().join(DIR).join(&last[0])).unwrap();
        assert!(
            last.len() >= PREALLOCATE,
            "the last segment is preallocated"
        );
        drop(wal);
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        assert_eq!(all(&wal), (1..20).collect::<Vec<_>>());
    }

    #[test]
    fn damage_before_the_end_of_the_log_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        for i in 1..10 {
            append(&wal, i..i + 1, true);
        }
        drop(wal);
        let first = dir.path().join(DIR).join(segment_file(1));
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER + 2] ^= 0x01;
        std::fs::write(&first, &bytes).unwrap();
        match Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE) {
            Err(DbError::Corrupt(m)) => assert!(m.contains("checksum"), "{m}"),
            other => panic!("opened a damaged log: {:?}", other.map(|w| w.last_index())),
        }
        // Zeros in place of a closed segment's records (entries lost at the start of
        // the log, were the zeros taken for preallocated space): refused.
        let zeros = vec![0u8; bytes.len()];
        std::fs::write(&first, &zeros).unwrap();
        match Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE) {
            Err(DbError::Corrupt(m)) => assert!(m.contains("incomplete record"), "{m}"),
            other => panic!("opened a damaged log: {:?}", other.map(|w| w.last_index())),
        }
        // A segment renamed out of place is refused as well.
        bytes[HEADER + 2] ^= 0x01;
        std::fs::write(&first, &bytes).unwrap();
        let second = segments(dir.path())[1].clone();
        std::fs::rename(
            dir.path().join(DIR).join(&second),
            dir.path().join(DIR).join(segment_file(77)),
        )
        .unwrap();
        assert!(matches!(
            Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE),
            Err(DbError::Corrupt(_))
        ));
    }

    #[test]
    fn truncation_removes_the_tail_durably_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        for i in 1..13 {
            append(&wal, i..i + 1, true);
        }
        // From the middle of a segment: later segments go, that one is cut.
        wal.truncate(6).unwrap();
        assert_eq!(all(&wal), (1..6).collect::<Vec<_>>());
        append(&wal, 6..8, true);
        wal.truncate(100).unwrap();
        assert_eq!(wal.last_index(), Some(7));
        drop(wal);
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        assert_eq!(all(&wal), (1..8).collect::<Vec<_>>());
        // Everything: the next append starts the log again.
        wal.truncate(1).unwrap();
        assert_eq!(wal.last_index(), None);
        append(&wal, 1..3, true);
        drop(wal);
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        assert_eq!(all(&wal), vec![1, 2]);
    }

    #[test]
    fn a_truncation_cut_short_by_a_crash_leaves_a_prefix_of_the_old_log() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        for i in 1..10 {
            append(&wal, i..i + 1, true);
        }
        drop(wal);
        // The newest segment was removed, then the crash: the cut never happened.
        let names = segments(dir.path());
        std::fs::remove_file(dir.path().join(DIR).join(names.last().unwrap())).unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        let got = all(&wal);
        assert_eq!(got, (1..got.len() as u64 + 1).collect::<Vec<_>>());
        assert!(got.len() < 9);
    }

    #[test]
    fn purged_segments_go_and_what_a_crash_leaves_of_them_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        for i in 1..13 {
            append(&wal, i..i + 1, true);
        }
        let before = segments(dir.path());
        wal.purge(7).unwrap();
        let after = segments(dir.path());
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        // The first segment left holds entry 8; the one before it held only purged ones.
        assert!(after[0] <= segment_file(8), "{after:?}");
        assert!(
            after.get(1).is_none_or(|n| *n > segment_file(8)),
            "{after:?}"
        );
        assert_eq!(all(&wal), (8..13).collect::<Vec<_>>());
        drop(wal);
        // Restarted knowing the purge: entries at or below it are not the log's.
        let wal = Wal::open_with(dir.path(), Some(7), SMALL, PREALLOCATE).unwrap();
        assert_eq!(all(&wal), (8..13).collect::<Vec<_>>());
        // The whole log purged (a snapshot installed past it), then a new log further on.
        wal.purge(40).unwrap();
        assert_eq!(wal.last_index(), None);
        append(&wal, 41..44, true);
        drop(wal);
        let wal = Wal::open_with(dir.path(), Some(40), SMALL, PREALLOCATE).unwrap();
        assert_eq!(all(&wal), vec![41, 42, 43]);
        drop(wal);
        // A purged segment that survived a crash, before the new log: skipped.
        let dir2 = tempfile::tempdir().unwrap();
        let old = Wal::open_with(dir2.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        append(&old, 1..3, true);
        drop(old);
        std::fs::copy(
            dir2.path().join(DIR).join(segment_file(1)),
            dir.path().join(DIR).join(segment_file(1)),
        )
        .unwrap();
        let wal = Wal::open_with(dir.path(), Some(40), SMALL, PREALLOCATE).unwrap();
        assert_eq!(all(&wal), vec![41, 42, 43]);
        append(&wal, 44..45, true);
        assert_eq!(wal.last_index(), Some(44));
    }

    #[test]
    fn reads_beside_truncations_see_whole_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open_with(dir.path(), Some(0), 4096, PREALLOCATE).unwrap());
        let versioned = |i: u64, v: u64| format!("{i}/{v};").repeat((v % 7 + 1) as usize);
        let write = move |wal: &Wal, v: u64| {
            let batch = Batch::of((5..15).map(|i| (i, versioned(i, v))));
            wal.append(&batch, false).unwrap();
        };
        append(&wal, 1..5, true);
        write(&wal, 0);
        // What a read outside the lock hits when a truncation rewrites the tail.
        let (runs, _) = {
            let g = wal.inner.lock();
            (Wal::plan(&g, 1, 15).unwrap(), g.truncations)
        };
        wal.truncate(5).unwrap();
        write(&wal, 1);
        assert!(
            Wal::fetch(runs).is_err(),
            "the old positions no longer hold"
        );
        // Readers and a truncating writer side by side, bounded: no read fails.
        let writer = {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for v in 2..300 {
                    wal.truncate(5).unwrap();
                    write(&wal, v);
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            let mut next = 1;
            wal.read(0, u64::MAX, |i, b| {
                assert_eq!(i, next);
                if i >= 5 {
                    let text = std::str::from_utf8(b).unwrap();
                    assert!(text.starts_with(&format!("{i}/")), "{text}");
                }
                next += 1;
                Ok(())
            })
            .unwrap();
            reads += 1;
        }
        writer.join().unwrap();
    }

    #[test]
    fn after_a_failed_write_the_log_takes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), Some(0), SMALL, PREALLOCATE).unwrap();
        append(&wal, 1..5, true);
        assert!(segments(dir.path()).len() == 1, "the segment is full");
        // The next segment cannot be created: the append fails...
        std::fs::remove_dir_all(dir.path().join(DIR)).unwrap();
        let batch = Batch::of((5..8).map(|i| (i, payload(i))));
        assert!(wal.append(&batch, true).is_err());
        // ...and with the directory back, the log still refuses until restarted.
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        match wal.append(&batch, true) {
            Err(DbError::Redb(m)) => assert!(m.contains("failed"), "{m}"),
            other => panic!("appended after a failure: {other:?}"),
        }
        assert!(wal.sync().is_err());
        assert!(wal.truncate(2).is_err());
    }

    #[test]
    fn a_closed_log_refuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), Some(0)).unwrap();
        append(&wal, 1..3, false);
        wal.sync().unwrap();
        wal.close();
        let mut batch = Batch::default();
        batch.push(3, |_| Ok(())).unwrap();
        assert!(matches!(wal.append(&batch, true), Err(DbError::Closed)));
        assert!(matches!(wal.sync(), Err(DbError::Closed)));
        assert!(matches!(
            wal.read(0, 5, |_, _| Ok(())),
            Err(DbError::Closed)
        ));
        assert!(matches!(wal.truncate(1), Err(DbError::Closed)));
        assert!(matches!(wal.purge(1), Err(DbError::Closed)));
    }
}
