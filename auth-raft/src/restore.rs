//! Seeding a new cluster from a backup file, like `etcdutl snapshot restore`.
//!
//! Each member of the new cluster gets its data directory from the same file and the
//! same member list: the directory then holds a Raft snapshot of the backup's state at
//! log id T1-N0-1 (term 1, index 1, leader "node 0"), with the new membership,
//! as if the cluster had been initialised with that state and committed it. That log
//! id is one `Raft::initialize` never produces (it starts at term 0, index 0): a
//! member started on an empty directory cannot win an election against seeded ones
//! (its log is shorter), and receives the seeded state as a snapshot instead of
//! imposing an empty one. Node ids are non-zero, so every real leader's id is above
//! the seed's. Every member starts from identical state; the first election picks a
//! leader and the cluster serves. Nothing of the old cluster's log, votes or
//! membership comes along, so the new one may have other node ids and addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use auth_storage::backup::{Backup, BackupError};
use openraft::BasicNode;
use prost::Message;

use crate::convert::log_id_to_pb;
use crate::db::{COMMITTED, Db, LAST_PURGED};
use crate::state::SmState;
use crate::types::{LogId, Membership, NodeId, SnapshotMeta, StoredMembership};

/// The log id of the seeded snapshot (see the module documentation).
pub(crate) fn seed_log_id() -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(1, 0), 1)
}

/// Why a data directory could not be seeded, with a stable [`RestoreError::code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The backup is damaged, of another version, or not a valid state.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The data directory already holds a Raft store: restore never overwrites one.
    #[error("{0} already holds a Raft store; restore seeds an empty data directory")]
    NotEmpty(String),
    /// The member list is empty or does not name this node.
    #[error("invalid members: {0}")]
    Members(String),
    /// Writing the store failed.
    #[error("{0}")]
    Store(String),
}

impl RestoreError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RestoreError::Backup(e) => e.code(),
            RestoreError::NotEmpty(_) => "already_exists",
            RestoreError::Members(_) => "invalid_argument",
            RestoreError::Store(_) => "io",
        }
    }
}

/// What a seeded directory starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Users in the restored state.
    pub users: u64,
    /// Sessions in the restored state.
    pub sessions: u64,
    /// Bytes of the Raft snapshot written.
    pub snapshot_bytes: u64,
}

/// Seeds `dir`, which must not hold a Raft store yet, as node `node_id` of a new
/// cluster `cluster_id` whose voters are `members` (id → peer address), holding
/// `backup`'s state. Run it for every member with the same file and members, then
/// start each node with `serve` and the same `--peers`.
pub fn seed_data_dir(
    dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
    members: &BTreeMap<NodeId, String>,
    backup: Backup,
) -> Result<Seeded, RestoreError> {
    if !members.contains_key(&node_id) {
        return Err(RestoreError::Members(format!(
            "node {node_id} is not among the members {:?}",
            members.keys().collect::<Vec<_>>()
        )));
    }
    if members.contains_key(&0) {
        return Err(RestoreError::Members("node ids are non-zero".into()));
    }
    if dir.join("raft.redb").exists() || dir.join("log").exists() {
        return Err(RestoreError::NotEmpty(dir.display().to_string()));
    }
    let users = backup.users.len() as u64;
    let sessions = backup.sessions.len() as u64;
    let tables = backup.into_tables()?;

    let at = seed_log_id();
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    let membership = StoredMembership::new(Some(at), Membership::new(vec![voters], nodes));
    let mut state = SmState::default();
    state.tables = tables;
    state.last_applied = Some(at);
    state.membership = membership.clone();
    let meta = SnapshotMeta {
        last_log_id: Some(at),
        last_membership: membership,
        snapshot_id: format!("restored-{node_id}"),
    };
    let store = |e: crate::DbError| RestoreError::Store(e.to_string());
    let db = Db::open(dir, cluster_id, node_id).map_err(store)?;
    let at_bytes = log_id_to_pb(&at).encode_to_vec();
    let written = crate::snapshot_file::store_with(
        &db,
        &meta,
        |w| state.write_snapshot(w),
        &[(LAST_PURGED, &at_bytes), (COMMITTED, &at_bytes)],
    )
    .and_then(|(stored, file)| {
        // The directory was checked to be new: nothing can be stored there already.
        stored
            .then(|| file.metadata().map_or(0, |m| m.len()))
            .ok_or_else(|| crate::DbError::Corrupt("a newer snapshot is already there".into()))
    });
    db.close();
    let snapshot_bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            // A store with the identity but not the state would start as an empty,
            // uninitialised member: remove it, so a rerun can seed the directory.
            let _ = std::fs::remove_file(dir.join("raft.redb"));
            let _ = std::fs::remove_dir_all(dir.join("snapshots"));
            let _ = std::fs::remove_dir_all(dir.join("log"));
            return Err(store(e));
        }
    };
    Ok(Seeded {
        users,
        sessions,
        snapshot_bytes,
    })
}
