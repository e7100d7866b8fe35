//! The server side of `RaftService`: Raft RPCs from peers, forwarded writes, read
//! index, status and membership administration. Served on the same port as
//! `AuthService`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use auth_proto::v1 as pb;
use auth_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use openraft::BasicNode;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::network::MAX_RAFT_MESSAGE;
use crate::node::{NodeShared, RaftNode};
use crate::types::NodeId;

/// Metadata key naming the leader when a request reached a follower.
pub const LEADER_ID_KEY: &str = "raft-leader-id";
/// Metadata key with the leader's address.
pub const LEADER_ADDR_KEY: &str = "raft-leader-addr";

/// The tonic service of one node.
#[derive(Clone)]
pub struct RaftGrpc {
    shared: Arc<NodeShared>,
}

impl RaftNode {
    /// The gRPC service to add to this node's server.
    pub fn grpc_service(&self) -> RaftServiceServer<RaftGrpc> {
        RaftServiceServer::new(RaftGrpc {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE)
    }
}

fn bad(e: Malformed) -> Status {
    Status::invalid_argument(e.to_string())
}

impl RaftGrpc {
    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        if cluster_id == self.shared.cluster_id {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "message for cluster {cluster_id:?}; this node belongs to {:?}",
                self.shared.cluster_id
            )))
        }
    }

    /// Refuses Raft traffic from a node outside the membership, once there is one.
    fn check_member(&self, from: NodeId) -> Result<(), Status> {
        let m = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        let membership = m.membership();
        if membership.nodes().next().is_none() || membership.get_node(&from).is_some() {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "node {from} is not a member of this cluster"
            )))
        }
    }

    /// `FAILED_PRECONDITION` naming the leader, for requests only the leader serves.
    fn not_leader(&self, leader: Option<NodeId>) -> Status {
        let mut s = Status::failed_precondition("not the leader");
        if let Some(id) = leader {
            if let Ok(v) = id.to_string().parse() {
                s.metadata_mut().insert(LEADER_ID_KEY, v);
            }
            let m = self
                .shared
                .raft
                .metrics()
                .borrow()
                .membership_config
                .clone();
            if let Some(n) = m.membership().get_node(&id)
                && let Ok(v) = n.addr.parse()
            {
                s.metadata_mut().insert(LEADER_ADDR_KEY, v);
            }
        }
        s
    }

    fn write_error(&self, e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Status {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                self.not_leader(f.leader_id)
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Status::failed_precondition(c.to_string())
            }
            RaftError::Fatal(f) => Status::unavailable(f.to_string()),
        }
    }

    fn membership_reply(
        &self,
        r: Result<
            openraft::raft::ClientWriteResponse<crate::TypeConfig>,
            RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
        >,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        r.map(|resp| {
            Response::new(pb::MembershipResponse {
                log_id: Some(log_id_to_pb(&resp.log_id)),
            })
        })
        .map_err(|e| self.write_error(e))
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequestPb>,
    ) -> Result<Response<pb::AppendEntriesResponsePb>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let rpc = append_from_pb(req).map_err(bad)?;
        self.check_member(rpc.vote.leader_id.node_id)?;
        let resp = self
            .shared
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(append_resp_to_pb(&resp)))
    }

    async fn vote(
        &self,
        req: Request<pb::VoteRequestPb>,
    ) -> Result<Response<pb::VoteResponsePb>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let rpc = vote_req_from_pb(req).map_err(bad)?;
        self.check_member(rpc.vote.leader_id.node_id)?;
        let resp = self
            .shared
            .raft
            .vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(vote_resp_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequestPb>,
    ) -> Result<Response<pb::InstallSnapshotResponsePb>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let rpc = snapshot_req_from_pb(req).map_err(bad)?;
        self.check_member(rpc.vote.leader_id.node_id)?;
        let resp = self
            .shared
            .raft
            .install_snapshot(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(snapshot_resp_to_pb(&resp)))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::BatchResult>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let batch = req
            .batch
            .ok_or_else(|| Status::invalid_argument("forward without a batch"))?;
        if !self.shared.is_leader() {
            let leader = self.shared.raft.metrics().borrow().current_leader;
            return Err(self.not_leader(leader));
        }
        // Re-batch on the leader: commands forwarded by every follower join the
        // leader's own queue, so one log entry carries writes from all nodes.
        let mut receivers = Vec::with_capacity(batch.commands.len());
        for cmd in batch.commands {
            receivers.push(
                self.shared
                    .enqueue(cmd)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?,
            );
        }
        let mut results = Vec::with_capacity(receivers.len());
        for rx in receivers {
            match rx.await {
                Ok(Ok(r)) => results.push(r),
                Ok(Err(e)) => return Err(Status::unavailable(e.to_string())),
                Err(_) => return Err(Status::unavailable("raft node is shutting down")),
            }
        }
        Ok(Response::new(pb::BatchResult { results }))
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.check_cluster(&req.into_inner().cluster_id)?;
        match self.shared.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(Response::new(pb::ReadIndexResponse {
                read_log_id: opt_log_id_to_pb(&read),
            })),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.not_leader(f.leader_id))
            }
            Err(RaftError::APIError(e)) => Err(Status::unavailable(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(f.to_string())),
        }
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.shared.status()))
    }

    async fn init(
        &self,
        req: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let members: BTreeMap<NodeId, BasicNode> = req
            .into_inner()
            .members
            .into_iter()
            .map(|n| (n.id, BasicNode::new(n.addr)))
            .collect();
        if members.is_empty() {
            return Err(Status::invalid_argument("init needs at least one member"));
        }
        self.shared
            .raft
            .initialize(members)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::InitResponse {}))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("add_learner without a node"))?;
        if node.id == 0 || node.addr.is_empty() {
            return Err(Status::invalid_argument(
                "a learner needs a non-zero id and an address",
            ));
        }
        let r = self
            .shared
            .raft
            .add_learner(node.id, BasicNode::new(node.addr), true)
            .await;
        self.membership_reply(r)
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let voters: BTreeSet<NodeId> = req.into_inner().voters.into_iter().collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument("the voter set must not be empty"));
        }
        let r = self.shared.raft.change_membership(voters, true).await;
        self.membership_reply(r)
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let id = req.into_inner().id;
        let m = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().filter(|v| *v != id).collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument("cannot remove the last voter"));
        }
        // retain = false: the node leaves the cluster entirely (not kept as a learner).
        let r = self.shared.raft.change_membership(voters, false).await;
        self.membership_reply(r)
    }
}
