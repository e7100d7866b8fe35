//! Receiving a snapshot from the leader in chunks, bounded: chunks must come in order,
//! the total is capped, and the bytes are spooled to a file in the data directory rather
//! than grown in memory. The finished, size-checked snapshot is handed on as that file.
//!
//! openraft's own chunk receiver seeks to whatever offset a message names and writes
//! there, so one message claiming offset 2^40 would allocate a terabyte; this replaces it.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use tokio::sync::Mutex;

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    /// The offset is not where the transfer stands.
    #[error("snapshot chunk out of order: expected offset {expected}, got {got}")]
    OutOfOrder { expected: u64, got: u64 },
    /// The snapshot would exceed the configured maximum.
    #[error("snapshot larger than the configured maximum of {max} bytes")]
    TooLarge { max: u64 },
    /// The spool file could not be written or read.
    #[error("snapshot spool: {0}")]
    Io(String),
}

struct Incoming {
    snapshot_id: String,
    file: std::fs::File,
    received: u64,
    last_chunk_start: u64,
}

/// The one snapshot transfer a node may have in progress.
pub(crate) struct SnapshotSpool {
    path: PathBuf,
    max_bytes: u64,
    current: Mutex<Option<Incoming>>,
}

fn io(e: std::io::Error) -> ChunkError {
    ChunkError::Io(e.to_string())
}

impl SnapshotSpool {
    pub(crate) fn new(dir: &std::path::Path, max_bytes: u64) -> Self {
        Self {
            path: dir.join("snapshot.incoming"),
            max_bytes,
            current: Mutex::new(None),
        }
    }

    /// Takes one chunk. Returns the whole snapshot, as a file open at its start and
    /// already unlinked, once `done` is set.
    ///
    /// A chunk at offset 0 (re)starts a transfer; otherwise the offset must be the bytes
    /// received so far, or the start of the previous chunk (a resend after a lost reply).
    pub(crate) async fn receive(
        &self,
        snapshot_id: &str,
        offset: u64,
        data: &[u8],
        done: bool,
    ) -> Result<Option<std::fs::File>, ChunkError> {
        let mut cur = self.current.lock().await;
        let same = cur.as_ref().is_some_and(|c| c.snapshot_id == snapshot_id);
        if offset == 0 || !same {
            if offset != 0 {
                return Err(ChunkError::OutOfOrder {
                    expected: 0,
                    got: offset,
                });
            }
            *cur = None;
            let file = self.create().map_err(io)?;
            *cur = Some(Incoming {
                snapshot_id: snapshot_id.to_owned(),
                file,
                received: 0,
                last_chunk_start: 0,
            });
        }
        let Some(inc) = cur.as_mut() else {
            return Err(ChunkError::Io("no transfer in progress".into()));
        };
        if offset != inc.received && offset != inc.last_chunk_start {
            return Err(ChunkError::OutOfOrder {
                expected: inc.received,
                got: offset,
            });
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > self.max_bytes {
            *cur = None;
            let _ = std::fs::remove_file(&self.path);
            return Err(ChunkError::TooLarge {
                max: self.max_bytes,
            });
        }
        // Chunks are at most a few MiB (the peer listener's message limit); writing one
        // to a local file does not hold up the runtime noticeably.
        inc.file.set_len(offset).map_err(io)?;
        inc.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        inc.file.write_all(data).map_err(io)?;
        inc.last_chunk_start = offset;
        inc.received = end;
        if !done {
            return Ok(None);
        }
        let mut inc = cur.take().ok_or_else(|| ChunkError::Io("lost".into()))?;
        inc.file.seek(SeekFrom::Start(0)).map_err(io)?;
        std::fs::remove_file(&self.path).map_err(io)?;
        Ok(Some(inc.file))
    }

    fn create(&self) -> std::io::Result<std::fs::File> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `receive` answered, with the file read back.
    fn read(r: Result<Option<std::fs::File>, ChunkError>) -> Result<Option<Vec<u8>>, ChunkError> {
        use std::io::Read;
        r.map(|f| {
            f.map(|mut f| {
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                v
            })
        })
    }

    #[tokio::test]
    async fn chunks_in_order_make_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotSpool::new(dir.path(), 100);
        assert_eq!(read(s.receive("a", 0, b"hello ", false).await), Ok(None));
        // A resend of the last chunk replaces it.
        assert_eq!(read(s.receive("a", 0, b"hello ", false).await), Ok(None));
        assert_eq!(read(s.receive("a", 6, b"wor", false).await), Ok(None));
        assert_eq!(read(s.receive("a", 6, b"wor", false).await), Ok(None));
        assert_eq!(
            read(s.receive("a", 9, b"ld", true).await),
            Ok(Some(b"hello world".to_vec()))
        );
        assert!(!dir.path().join("snapshot.incoming").exists());
    }

    #[tokio::test]
    async fn out_of_order_and_oversized_chunks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotSpool::new(dir.path(), 16);
        assert_eq!(
            read(s.receive("a", 1 << 40, b"x", false).await),
            Err(ChunkError::OutOfOrder {
                expected: 0,
                got: 1 << 40
            })
        );
        s.receive("a", 0, b"0123", false).await.unwrap();
        assert_eq!(
            read(s.receive("a", 1 << 40, b"x", false).await),
            Err(ChunkError::OutOfOrder {
                expected: 4,
                got: 1 << 40
            })
        );
        assert_eq!(
            read(s.receive("a", 2, b"x", false).await),
            Err(ChunkError::OutOfOrder {
                expected: 4,
                got: 2
            })
        );
        // A new snapshot id must start at 0.
        assert!(s.receive("b", 4, b"x", false).await.is_err());
        // The file never grew past what was written.
        let len = std::fs::metadata(dir.path().join("snapshot.incoming"))
            .unwrap()
            .len();
        assert_eq!(len, 4);
        assert_eq!(
            read(s.receive("a", 4, &[0u8; 13], false).await),
            Err(ChunkError::TooLarge { max: 16 })
        );
        assert!(!dir.path().join("snapshot.incoming").exists());
        // u64 overflow in offset + len is caught too.
        s.receive("c", 0, b"", false).await.unwrap();
        assert!(s.receive("c", u64::MAX, b"xx", false).await.is_err());
    }
}
