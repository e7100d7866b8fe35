//! Raft-replicated storage for auth-sdk, on openraft 0.9 (storage API v2) with a durable
//! redb log.
#![warn(missing_docs)]

mod convert;
mod db;
mod log_store;
mod state;
mod state_machine;
mod types;

pub use convert::Malformed;
pub use db::DbError;
pub use log_store::LogStore;
pub use state_machine::StateMachineStore;
pub use types::{NodeId, TypeConfig};

/// Opens the durable log store and the state machine of one node in `dir`, refusing a
/// directory that belongs to another cluster or node.
pub fn open_stores(
    dir: &std::path::Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(LogStore, StateMachineStore), DbError> {
    let db = db::Db::open(dir, cluster_id, node_id)?;
    Ok((LogStore::new(db.clone()), StateMachineStore::open(db)?))
}
