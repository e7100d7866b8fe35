//! The openraft type configuration. Openraft's types stay inside this crate.

use auth_proto::v1::{BatchResult, CommandBatch};

pub use crate::NodeId;

openraft::declare_raft_types!(
    /// Raft types of auth-sdk: log entries carry a batch of storage commands.
    pub TypeConfig:
        D = CommandBatch,
        R = BatchResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type StorageIoError = openraft::StorageError<NodeId>;
