//! Backup files: the whole state of a store in one checksummed, versioned file.
//!
//! `authctl cluster snapshot save` writes one from a Raft cluster's leader,
//! `auth-backend restore` seeds the data directories of a new cluster from it, and
//! [`MemoryStorage::export`](crate::memory::MemoryStorage::export) and
//! [`MemoryStorage::from_backup`](crate::memory::MemoryStorage::from_backup) write and
//! read the same format, so a development instance can move into a cluster.
//!
//! # Layout (format version 1)
//!
//! Integers are big-endian.
//!
//! | bytes | content |
//! |---|---|
//! | 8 | the magic `AUTHBKUP` |
//! | 4 | the format version, [`FORMAT_VERSION`] |
//! | 4 + n | the header's length, then the header (`BackupHeader` protobuf) |
//! | (4 + n) … | each record's length, then the record (`BackupRecord` protobuf) |
//! | 4 | a zero length: the end of the records |
//! | 32 | the SHA-256 of every byte before it |
//!
//! A reader checks the magic, the version, each length against a bound, the counts
//! in the header, and the checksum, and refuses anything after it: a file cut short,
//! flipped or grown gets a typed [`BackupError`], never a partial state.
//!
//! The file holds password hashes, refresh-token hashes and sealed second factors:
//! keep it like the data directory it restores (owner-only). The TOTP secrets in it
//! are sealed with the cluster's MFA key, which is not in it: a restored cluster
//! needs the same `--mfa-key-file`.

use std::io::{Read, Write};

use auth_proto::v1 as pb;
use auth_proto::v1::backup_record::Record;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::memory::Tables;
use crate::{Challenge, LoginAttempts, Session, User};

/// The first eight bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"AUTHBKUP";
/// The layout version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest header accepted.
pub const MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Largest single record accepted (a user with every passkey and recovery code is a
/// few KiB).
pub const MAX_RECORD_BYTES: u32 = 1024 * 1024;

/// Why a backup could not be written or read, with a stable [`BackupError::code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The file does not start with [`MAGIC`].
    #[error("not an auth-sdk backup file")]
    NotABackup,
    /// The file is of a layout version this code does not read.
    #[error("backup format version {found} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// The file ends early.
    #[error("backup file is truncated")]
    Truncated,
    /// The checksum does not match the contents.
    #[error("backup checksum does not match: the file is damaged")]
    ChecksumMismatch,
    /// A length, a record or the header is malformed, or the counts disagree.
    #[error("malformed backup: {0}")]
    Malformed(String),
    /// The records do not form a valid state (e.g. a session of a missing user).
    #[error("backup does not hold a valid state: {0}")]
    Invalid(String),
    /// Reading or writing failed.
    #[error("backup I/O: {0}")]
    Io(String),
}

impl BackupError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::NotABackup => "not_a_backup",
            BackupError::UnsupportedVersion { .. } => "unsupported_version",
            BackupError::Truncated => "truncated",
            BackupError::ChecksumMismatch => "checksum_mismatch",
            BackupError::Malformed(_) => "malformed",
            BackupError::Invalid(_) => "invalid",
            BackupError::Io(_) => "io",
        }
    }
}

fn io_err(e: std::io::Error) -> BackupError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        BackupError::Truncated
    } else {
        BackupError::Io(e.to_string())
    }
}

/// Where a backup came from, for people: `cluster "prod" at log index 42 (term 3)` or
/// `a memory backend`.
pub fn origin(header: &pb::BackupHeader) -> String {
    if header.source == "raft" {
        format!(
            "cluster {:?} at log index {} (term {})",
            header.cluster_id, header.applied_index, header.applied_term
        )
    } else {
        format!("a {} backend", header.source)
    }
}

/// A `Write` that hashes what goes through it.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hash.update(bytes);
        self.inner.write_all(bytes).map_err(io_err)
    }

    fn frame(&mut self, msg: &impl Message) -> Result<(), BackupError> {
        let body = msg.encode_to_vec();
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD_BYTES)
            .ok_or_else(|| BackupError::Malformed(format!("a record of {} bytes", body.len())))?;
        self.put(&len.to_be_bytes())?;
        self.put(&body)
    }
}

/// Writes `tables` as a backup file to `w`, with `header`'s source, cluster and
/// applied log position (its version, counts and producer are filled in here), and
/// returns the header as written. Records go in id order, so the same state always
/// makes the same bytes.
pub fn write_tables<W: Write>(
    tables: &Tables,
    mut header: pb::BackupHeader,
    w: W,
) -> Result<pb::BackupHeader, BackupError> {
    let mut users: Vec<&User> = tables.users().collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    let mut sessions: Vec<&Session> = tables.sessions().collect();
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    let mut attempts: Vec<&LoginAttempts> = tables.login_attempts().collect();
    attempts.sort_by(|a, b| a.username_key.cmp(&b.username_key));
    let mut challenges: Vec<&Challenge> = tables.challenges().collect();
    challenges.sort_by(|a, b| a.id.cmp(&b.id));
    header.format_version = FORMAT_VERSION;
    header.users = users.len() as u64;
    header.sessions = sessions.len() as u64;
    header.login_attempts = attempts.len() as u64;
    header.challenges = challenges.len() as u64;
    header.producer = format!("auth-sdk {}", env!("CARGO_PKG_VERSION"));

    let mut out = HashingWriter {
        inner: w,
        hash: Sha256::new(),
    };
    out.put(MAGIC)?;
    out.put(&FORMAT_VERSION.to_be_bytes())?;
    out.frame(&header)?;
    let record = |r: Record| pb::BackupRecord { record: Some(r) };
    for u in users {
        out.frame(&record(Record::User(u.clone())))?;
    }
    for s in sessions {
        out.frame(&record(Record::Session(s.clone())))?;
    }
    for a in attempts {
        out.frame(&record(Record::LoginAttempts(a.clone())))?;
    }
    for c in challenges {
        out.frame(&record(Record::Challenge(c.clone())))?;
    }
    out.put(&0u32.to_be_bytes())?;
    let digest = out.hash.finalize();
    out.inner.write_all(&digest).map_err(io_err)?;
    out.inner.flush().map_err(io_err)?;
    Ok(header)
}

/// A `Read` that hashes what it reads.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.inner.read_exact(buf).map_err(io_err)?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn bytes(&mut self, len: u32) -> Result<Vec<u8>, BackupError> {
        let mut body = vec![0u8; len as usize];
        self.take(&mut body)?;
        Ok(body)
    }
}

/// The contents of a backup file, checked.
#[derive(Debug, Clone, Default)]
pub struct Backup {
    /// The header as written.
    pub header: pb::BackupHeader,
    /// Every user.
    pub users: Vec<User>,
    /// Every session (expired ones included until swept).
    pub sessions: Vec<Session>,
    /// Failed-login counters by username key.
    pub login_attempts: Vec<LoginAttempts>,
    /// Second-factor and passkey challenges still open.
    pub challenges: Vec<Challenge>,
}

impl Backup {
    /// Reads and checks a whole backup file: magic, version, bounds, counts and
    /// checksum, and nothing after the checksum.
    pub fn read_from<R: Read>(r: R) -> Result<Self, BackupError> {
        let mut input = HashingReader {
            inner: r,
            hash: Sha256::new(),
        };
        let mut magic = [0u8; 8];
        input.take(&mut magic).map_err(|e| match e {
            BackupError::Truncated => BackupError::NotABackup,
            e => e,
        })?;
        if &magic != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let version = input.u32()?;
        if version != FORMAT_VERSION {
            return Err(BackupError::UnsupportedVersion { found: version });
        }
        let len = input.u32()?;
        if len > MAX_HEADER_BYTES {
            return Err(BackupError::Malformed(format!("a header of {len} bytes")));
        }
        let header = pb::BackupHeader::decode(input.bytes(len)?.as_slice())
            .map_err(|e| BackupError::Malformed(format!("header: {e}")))?;
        let mut backup = Backup {
            header,
            ..Backup::default()
        };
        loop {
            let len = input.u32()?;
            if len == 0 {
                break;
            }
            if len > MAX_RECORD_BYTES {
                return Err(BackupError::Malformed(format!("a record of {len} bytes")));
            }
            let record = pb::BackupRecord::decode(input.bytes(len)?.as_slice())
                .map_err(|e| BackupError::Malformed(format!("record: {e}")))?;
            // More records of a kind than the header announced: refused as they come,
            // not after a hostile file has been read whole into memory.
            let h = &backup.header;
            let over = match &record.record {
                Some(Record::User(_)) => backup.users.len() as u64 >= h.users,
                Some(Record::Session(_)) => backup.sessions.len() as u64 >= h.sessions,
                Some(Record::LoginAttempts(_)) => {
                    backup.login_attempts.len() as u64 >= h.login_attempts
                }
                Some(Record::Challenge(_)) => backup.challenges.len() as u64 >= h.challenges,
                None => false,
            };
            if over {
                return Err(BackupError::Malformed(
                    "more records than the header counts".into(),
                ));
            }
            match record.record {
                Some(Record::User(u)) => backup.users.push(u),
                Some(Record::Session(s)) => backup.sessions.push(s),
                Some(Record::LoginAttempts(a)) => backup.login_attempts.push(a),
                Some(Record::Challenge(c)) => backup.challenges.push(c),
                None => return Err(BackupError::Malformed("an empty record".into())),
            }
        }
        let computed = input.hash.finalize();
        let mut stored = [0u8; 32];
        input.inner.read_exact(&mut stored).map_err(io_err)?;
        if computed[..] != stored[..] {
            return Err(BackupError::ChecksumMismatch);
        }
        let mut extra = [0u8; 1];
        match input.inner.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(BackupError::Malformed("bytes after the checksum".into())),
            Err(e) => return Err(io_err(e)),
        }
        let h = &backup.header;
        let counts = [
            (h.users, backup.users.len(), "users"),
            (h.sessions, backup.sessions.len(), "sessions"),
            (
                h.login_attempts,
                backup.login_attempts.len(),
                "login attempts",
            ),
            (h.challenges, backup.challenges.len(), "challenges"),
        ];
        for (said, found, what) in counts {
            if said != found as u64 {
                return Err(BackupError::Malformed(format!(
                    "the header counts {said} {what}, the file holds {found}"
                )));
            }
        }
        Ok(backup)
    }

    /// The state it holds, checked as a whole (unique ids and usernames, every
    /// session's user present).
    pub fn into_tables(self) -> Result<Tables, BackupError> {
        let mut tables = Tables::restore(self.users, self.sessions)
            .map_err(|e| BackupError::Invalid(e.to_string()))?;
        tables.restore_login_attempts(self.login_attempts);
        tables.restore_challenges(self.challenges);
        Ok(tables)
    }
}
