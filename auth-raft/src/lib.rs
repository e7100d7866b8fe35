//! Raft-replicated [`Storage`](auth_storage::Storage) for auth-sdk.
//!
//! Built on openraft 0.9 with its v2 storage API and a durable redb store:
//!
//! - [`RaftNode`] runs one node: the log and vote in redb (fsync before
//!   acknowledging), the state machine in memory with snapshots in redb, the Raft RPCs
//!   over tonic (`raft.proto`), group commit of concurrent writes, and forwarding of
//!   writes from followers to the leader.
//! - [`RaftStorage`] is that node as a `Storage`: every write is one log entry command
//!   that the state machine applies to the same `Tables` as `MemoryStorage`, so the
//!   answers are identical; reads are linearizable by default ([`ReadConsistency`]).
//!
//! openraft's own types stay inside this crate; the public surface is ours.
#![warn(missing_docs)]

mod convert;
mod db;
mod log_store;
mod network;
mod node;
mod service;
mod state;
mod state_machine;
mod storage;
mod types;

pub use convert::Malformed;
pub use db::DbError;
pub use log_store::LogStore;
pub use node::{RaftConfig, RaftNode, ReadConsistency, StartError};
pub use service::{LEADER_ADDR_KEY, LEADER_ID_KEY, RaftGrpc};
pub use state_machine::StateMachineStore;
pub use storage::RaftStorage;
pub use types::{NodeId, TypeConfig};

/// Opens the durable log store and the state machine of one node in `dir`, refusing a
/// directory that belongs to another cluster or node.
pub fn open_stores(
    dir: &std::path::Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(LogStore, StateMachineStore), DbError> {
    let (_, log, sm) = open_all(dir, cluster_id, node_id)?;
    Ok((log, sm))
}

pub(crate) fn open_all(
    dir: &std::path::Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(db::Db, LogStore, StateMachineStore), DbError> {
    let db = db::Db::open(dir, cluster_id, node_id)?;
    let sm = StateMachineStore::open(db.clone())?;
    Ok((db.clone(), LogStore::new(db), sm))
}
