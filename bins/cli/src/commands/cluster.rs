//! `authctl cluster …`: Raft cluster status and membership changes, through the nodes'
//! peer listeners (`--peer-endpoints`). In a TLS cluster they need `--cacert` and an
//! admin certificate (`--cert`, `--key`); without `--cacert` they speak plaintext, which
//! only nodes started with `--insecure` accept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use auth_raft::{AdminError, ClusterAdmin, NodeStatus};
use auth_storage::backup::{Backup, BackupError};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::io::Io;
use crate::tls::TlsArgs;
use crate::{EXIT_OK, EXIT_UNREACHABLE, Failure};

/// Cluster administration (Raft storage only).
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCmd {
    /// For every endpoint: id, address, role, term, leader, last log and applied index,
    /// reachable or not.
    Status,
    /// Add a node as a learner; returns once it has caught up.
    AddLearner {
        /// The new node's id.
        id: u64,
        /// The new node's peer address (`host:port`, its `--peer-listen`), which the
        /// other nodes replicate to.
        addr: String,
    },
    /// Make a learner a voting member.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Backups of the whole state (users, sessions, lockout counters), which
    /// `auth-backend restore` seeds a new cluster from.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
}

/// `authctl cluster snapshot …`
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCmd {
    /// Stream a backup from the leader into FILE: everything acknowledged before the
    /// command started is in it. Written to FILE.part (owner-only), checked, then
    /// renamed to FILE.
    Save {
        /// Where to write the backup.
        file: PathBuf,
    },
    /// Check a backup file (format, version, checksum, record counts) and show what
    /// it holds; needs no cluster.
    Status {
        /// The backup file.
        file: PathBuf,
    },
}

fn backup_failure(file: &Path, e: BackupError) -> Failure {
    Failure::Backup(format!("{}: {e}", file.display()), e.code())
}

/// Reads and checks a backup file.
fn check_backup(file: &Path) -> Result<(Backup, u64), Failure> {
    let f = std::fs::File::open(file)
        .map_err(|e| backup_failure(file, BackupError::Io(e.to_string())))?;
    let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    let backup =
        Backup::read_from(std::io::BufReader::new(f)).map_err(|e| backup_failure(file, e))?;
    Ok((backup, bytes))
}

fn backup_summary(file: &Path, backup: &Backup, bytes: u64) -> (Value, String) {
    let h = &backup.header;
    let value = json!({
        "file": file.display().to_string(), "bytes": bytes,
        "format_version": h.format_version, "source": h.source, "cluster_id": h.cluster_id,
        "applied_index": h.applied_index, "applied_term": h.applied_term,
        "created_at_ms": h.created_at_ms, "producer": h.producer,
        "users": h.users, "sessions": h.sessions,
        "login_attempts": h.login_attempts, "challenges": h.challenges,
    });
    let origin = auth_storage::backup::origin(h);
    let text = format!(
        "{}: {bytes} bytes, format {}, checksum ok\nfrom {origin}, by {}\n{} users, {} sessions, {} lockout counters, {} open challenges\n",
        file.display(),
        h.format_version,
        h.producer,
        h.users,
        h.sessions,
        h.login_attempts,
        h.challenges
    );
    (value, text)
}

/// `authctl cluster snapshot status FILE`.
pub fn snapshot_status(file: &Path, json: bool, io: &mut Io<'_>) -> Result<u8, Failure> {
    let (backup, bytes) = check_backup(file)?;
    let (value, text) = backup_summary(file, &backup, bytes);
    crate::io::emit(io, json, value, || text)
}

/// Streams a backup into `file` through `file.part`, which is checked before the
/// rename and removed if anything fails.
async fn snapshot_save(admin: &ClusterAdmin, file: &Path) -> Result<(Value, String), Failure> {
    let mut part = file.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let io_failure = |e: std::io::Error| backup_failure(&part, BackupError::Io(e.to_string()));
    // A leftover FILE.part (or a link planted there) is removed, never written
    // through: the new one is created here, owner-only from the start.
    match std::fs::remove_file(&part) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_failure(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let out = options.open(&part).map_err(io_failure)?;
    let result = async {
        let mut w = std::io::BufWriter::new(out);
        admin.save_backup(&mut w).await.map_err(Failure::Admin)?;
        let out = w.into_inner().map_err(|e| io_failure(e.into_error()))?;
        out.sync_all().map_err(io_failure)?;
        drop(out);
        let (backup, bytes) = check_backup(&part)?;
        std::fs::rename(&part, file).map_err(io_failure)?;
        // The rename itself is on disk once the directory is.
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_failure)?;
        }
        Ok(backup_summary(file, &backup, bytes))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn status_json(endpoint: &str, r: &Result<NodeStatus, AdminError>) -> Value {
    match r {
        Ok(s) => json!({
            "endpoint": endpoint, "reachable": true, "id": s.id, "addr": s.addr,
            "role": s.role, "term": s.term, "leader": s.leader_id,
            "last_log_index": s.last_log_index, "applied_index": s.last_applied_index,
            "snapshot_index": s.snapshot_index, "cluster_id": s.cluster_id,
            "voters": s.membership.as_ref().and_then(|m| m.configs.last()).map(|c| c.ids.clone()).unwrap_or_default(),
        }),
        Err(e) => json!({
            "endpoint": endpoint, "reachable": false,
            "error": { "code": e.code(), "message": e.to_string() },
        }),
    }
}

fn status_text(rows: &[(String, Result<NodeStatus, AdminError>)]) -> String {
    let mut out = format!(
        "{:<4} {:<22} {:<10} {:>6} {:>7} {:>9} {:>9}  {}\n",
        "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "LAST LOG", "APPLIED", "REACHABLE"
    );
    for (endpoint, r) in rows {
        match r {
            Ok(s) => out.push_str(&format!(
                "{:<4} {:<22} {:<10} {:>6} {:>7} {:>9} {:>9}  yes\n",
                s.id, s.addr, s.role, s.term, s.leader_id, s.last_log_index, s.last_applied_index
            )),
            Err(e) => out.push_str(&format!(
                "{:<4} {:<22} {:<10} {:>6} {:>7} {:>9} {:>9}  no ({})\n",
                "-",
                endpoint,
                "-",
                "-",
                "-",
                "-",
                "-",
                e.code()
            )),
        }
    }
    out
}

/// The admin client for `--peer-endpoints`: mutual TLS with the admin certificate
/// when `--cacert` is given, plaintext otherwise.
pub fn admin(
    peer_endpoints: &[String],
    timeout: Duration,
    tls: &TlsArgs,
) -> Result<ClusterAdmin, Failure> {
    let endpoints = crate::endpoint_list(peer_endpoints);
    if endpoints.is_empty() {
        return Err(Failure::Usage(
            "cluster commands talk to the nodes' peer listeners: give them with \
             --peer-endpoints HOST:PORT,... (or AUTHCTL_PEER_ENDPOINTS)"
                .into(),
        ));
    }
    crate::check_timeout(timeout)?;
    let admin = ClusterAdmin::new(endpoints, timeout);
    Ok(match tls.admin_tls()? {
        Some(tls) => admin.with_tls(&tls),
        None => admin,
    })
}

/// Runs one cluster command.
pub async fn execute(
    cmd: ClusterCmd,
    admin: &ClusterAdmin,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let (value, text) = match cmd {
        ClusterCmd::Status => {
            let rows = admin.status().await;
            let all = rows.iter().all(|(_, r)| r.is_ok());
            let value = json!({
                "nodes": rows.iter().map(|(e, r)| status_json(e, r)).collect::<Vec<_>>(),
            });
            crate::io::emit(io, json, value, || status_text(&rows))?;
            return Ok(if all { EXIT_OK } else { EXIT_UNREACHABLE });
        }
        ClusterCmd::AddLearner { id, addr } => {
            let index = admin.add_learner(id, &addr).await.map_err(Failure::Admin)?;
            (
                json!({ "added_learner": id, "addr": addr, "log_index": index }),
                format!("node {id} ({addr}) added as a learner at log index {index}\n"),
            )
        }
        ClusterCmd::Promote { id } => {
            let index = admin.promote(id).await.map_err(Failure::Admin)?;
            (
                json!({ "promoted": id, "log_index": index }),
                format!("node {id} is now a voter (log index {index})\n"),
            )
        }
        ClusterCmd::Snapshot(SnapshotCmd::Save { file }) => snapshot_save(admin, &file).await?,
        ClusterCmd::Snapshot(SnapshotCmd::Status { file }) => {
            return snapshot_status(&file, json, io);
        }
        ClusterCmd::Remove { id } => {
            let index = admin.remove(id).await.map_err(Failure::Admin)?;
            (
                json!({ "removed": id, "log_index": index }),
                format!("node {id} removed (log index {index})\n"),
            )
        }
    };
    crate::io::emit(io, json, value, || text)
}
