//! What the admin page's cluster view shows for `--storage raft`: every member's role,
//! term and indexes, asked of the members by the serving node
//! ([`RaftNode::member_statuses`]), with each one's lag behind the leader.

use std::time::Duration;

use auth_core::api::{AdminClusterResponse, ClusterNodeInfo};
use auth_raft::RaftNode;

/// How long the serving node waits for each member's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// [`auth_core::admin::ClusterView`] of a Raft node.
#[derive(Clone)]
pub struct RaftClusterView {
    node: RaftNode,
}

impl std::fmt::Debug for RaftClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftClusterView")
            .field("node", &self.node.id())
            .finish()
    }
}

impl RaftClusterView {
    /// The view from `node`.
    pub fn new(node: RaftNode) -> Self {
        Self { node }
    }
}

#[async_trait::async_trait]
impl auth_core::admin::ClusterView for RaftClusterView {
    async fn cluster(&self) -> AdminClusterResponse {
        let statuses = self.node.member_statuses(ASK_TIMEOUT).await;
        // The leader's log is the reference; without a reachable leader, the longest.
        let reference = statuses
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .max_by_key(|s| (s.role == "leader", s.last_log_index))
            .map_or(0, |s| s.last_log_index);
        let own = self.node.status();
        AdminClusterResponse {
            storage: "raft".into(),
            serving_node: own.id,
            cluster_id: own.cluster_id,
            nodes: statuses
                .into_iter()
                .map(|(id, addr, r)| match r {
                    Ok(s) => ClusterNodeInfo {
                        id,
                        addr,
                        role: s.role,
                        term: s.term,
                        leader_id: s.leader_id,
                        last_log_index: s.last_log_index,
                        applied_index: s.last_applied_index,
                        lag: reference.saturating_sub(s.last_applied_index),
                        reachable: true,
                        error: String::new(),
                    },
                    Err(e) => ClusterNodeInfo {
                        id,
                        addr,
                        reachable: false,
                        error: e,
                        ..ClusterNodeInfo::default()
                    },
                })
                .collect(),
        }
    }
}
