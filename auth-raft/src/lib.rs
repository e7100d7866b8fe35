//! Raft-replicated [`Storage`](auth_storage::Storage) for auth-sdk.
//!
//! Built on openraft 0.9 with its v2 storage API, an append-only log file and redb:
//!
//! - [`RaftNode`] runs one node: the log in segment files and the vote in redb (on disk
//!   before acknowledging), the state machine in memory with snapshots in files, the Raft RPCs
//!   over tonic (`raft.proto`), group commit of concurrent writes, and forwarding of
//!   writes from followers to the leader.
//! - [`RaftStorage`] is that node as a `Storage`: every write is one log entry command
//!   that the state machine applies to the same `Tables` as `MemoryStorage`, so the
//!   answers are identical; reads are linearizable by default ([`ReadConsistency`]).
//! - Time in the log is the leader's: the leader stamps each batch with its clock and
//!   refuses (or, for session sweeps, bounds) a command whose time differs from it by
//!   more than [`RaftConfig::max_clock_skew`], so one node's clock cannot expire
//!   sessions cluster-wide ([`NodeClock`] makes the clock injectable).
//!
//! - The peer listener ([`RaftNode::serve_peer`]) speaks mutual TLS: every node holds a
//!   certificate from the cluster CA naming its id ([`tls`]), and each Raft RPC is
//!   accepted only from the node it claims to come from; the admin RPCs
//!   ([`ClusterAdmin`]) only from an admin certificate. [`pki`] issues the certificates.
//!
//! Without the default feature `node` the crate is only the admin client, [`tls`] and
//! [`pki`], and compiles neither openraft nor redb.
//!
//! openraft's own types stay inside this crate; the public surface is ours.
//!
//! A one-node cluster with its own CA, and an `auth_core::Auth` over it (a
//! real cluster lists every member in `initial_members`, one process or machine each,
//! with certificates from `auth-backend certs`):
//!
//! ```
//! use std::time::Duration;
//! use auth_core::api::{LoginRequest, RegisterRequest};
//! use auth_core::{Auth, AuthApi, Config, HashParams};
//! use auth_raft::net::ListenerLimits;
//! use auth_raft::pki::{CertAuthority, CertRequest};
//! use auth_raft::tls::{PeerIdentity, PeerTls};
//! use auth_raft::{RaftConfig, RaftNode};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?.to_string();
//!
//! // The cluster CA, and this node's certificate naming its id.
//! let ca = CertAuthority::generate("my cluster CA", Duration::from_secs(3600))?;
//! let cert = ca.issue(&CertRequest::new(PeerIdentity::Node(1), ["127.0.0.1"]))?;
//!
//! let mut config = RaftConfig::new(1, addr.clone(), dir.path());
//! config.initial_members = [(1, addr)].into();
//! config.tls = Some(PeerTls::from_pem(ca.cert_pem(), &cert.cert_pem, &cert.key_pem, None)?);
//! let node = RaftNode::start(config).await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let peer = tokio::spawn(node.serve_peer(listener, ListenerLimits::default(), async {
//!     let _ = stopped.await;
//! })?);
//! node.wait_for_leader(Duration::from_secs(10)).await.ok_or("no leader")?;
//!
//! let mut auth_config = Config::default();
//! auth_config.hash = HashParams::insecure_fast(); // tests only
//! let auth = Auth::new(auth_config, node.storage())?;
//! let login = |username: &str| LoginRequest { username: username.into(), password: "correct horse".into(), client: None };
//! auth.register(RegisterRequest { username: "alice".into(), password: "correct horse".into(), client: None }).await?;
//! let tokens = auth.login(login("alice")).await?.into_tokens()?;
//! assert!(!tokens.access_token.is_empty());
//!
//! let _ = stop.send(());
//! node.shutdown().await;
//! peer.await??;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod admin;
#[cfg(feature = "node")]
mod batcher;
#[cfg(feature = "node")]
mod clock;
#[cfg(feature = "node")]
mod convert;
#[cfg(feature = "node")]
mod db;
#[cfg(feature = "node")]
mod duplex;
#[cfg(feature = "node")]
mod durable;
#[cfg(feature = "node")]
mod elections;
#[cfg(feature = "node")]
mod handover;
#[cfg(feature = "node")]
mod log_store;
#[cfg(feature = "node")]
pub mod metrics;
pub mod net;
#[cfg(feature = "node")]
mod network;
#[cfg(feature = "node")]
mod node;
pub mod pki;
#[cfg(feature = "node")]
mod reads;
#[cfg(feature = "node")]
pub mod restore;
#[cfg(feature = "node")]
mod service;
#[cfg(feature = "node")]
mod snapshot_file;
#[cfg(feature = "node")]
mod snapshot_spool;
#[cfg(feature = "node")]
mod state;
#[cfg(feature = "node")]
mod state_machine;
#[cfg(feature = "node")]
mod storage;
pub mod tls;
#[cfg(feature = "node")]
mod types;
#[cfg(feature = "node")]
mod wal;

/// openraft's own storage test suite, run on our log store and state machine.
#[cfg(all(test, feature = "node"))]
mod openraft_suite;

pub use admin::{AdminError, ClusterAdmin, NodeStatus};
#[cfg(feature = "node")]
pub use clock::NodeClock;
#[cfg(feature = "node")]
pub(crate) use db::DbError;
#[cfg(feature = "node")]
pub use duplex::StreamStats;
#[cfg(feature = "node")]
pub(crate) use log_store::LogStore;
#[cfg(feature = "node")]
pub use node::{
    DEFAULT_CLUSTER_ID, DEFAULT_LOGS_TO_KEEP, DEFAULT_MAX_CLOCK_SKEW, DEFAULT_MAX_SNAPSHOT_BYTES,
    DEFAULT_SNAPSHOT_EVERY, PeerRequestStats, RaftConfig, RaftNode, ReadConsistency, ReadStats,
    StartError, WriteStats,
};
#[cfg(feature = "node")]
pub use service::{AdminGrpc, RaftGrpc};
#[cfg(feature = "node")]
pub(crate) use state_machine::StateMachineStore;
#[cfg(feature = "node")]
pub use storage::RaftStorage;
#[cfg(feature = "node")]
pub(crate) use types::TypeConfig;

/// A node id (non-zero).
pub type NodeId = u64;

/// Metadata key naming the leader when a request reached a follower.
pub const LEADER_ID_KEY: &str = "raft-leader-id";
/// Metadata key with the leader's (peer) address.
pub const LEADER_ADDR_KEY: &str = "raft-leader-addr";

#[cfg(feature = "node")]
pub(crate) fn open_all(
    dir: &std::path::Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(db::Db, LogStore, StateMachineStore), DbError> {
    let db = db::Db::open(dir, cluster_id, node_id)?;
    let log = LogStore::open(db.clone(), node_id)?;
    let sm = StateMachineStore::open(db.clone(), log.durability())?;
    Ok((db, log, sm))
}
