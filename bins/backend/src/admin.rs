//! Cluster administration over `RaftService`: status of every node, and membership
//! changes (add a learner, promote it to voter, remove a node), sent to the leader.

use std::collections::BTreeSet;
use std::time::Duration;

use auth_core::AuthError;
use auth_proto::v1 as pb;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use auth_raft::LEADER_ADDR_KEY;
use tonic::transport::{Channel, Endpoint};

/// One node's Raft state, as `authctl cluster status` shows it.
pub type NodeStatus = pb::StatusResponse;

/// Talks to the Raft admin service of a set of nodes.
#[derive(Debug, Clone)]
pub struct ClusterAdmin {
    endpoints: Vec<String>,
    timeout: Duration,
}

fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

fn unavailable(m: impl std::fmt::Display) -> AuthError {
    AuthError::Unavailable(m.to_string())
}

impl ClusterAdmin {
    /// An admin client for these nodes (`host:port`).
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        Self { endpoints, timeout }
    }

    fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, AuthError> {
        let channel = Endpoint::from_shared(url(addr))
            .map_err(|_| AuthError::InvalidConfig(format!("bad endpoint {addr:?}")))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .connect_lazy();
        Ok(RaftServiceClient::new(channel))
    }

    /// Every endpoint's status, or why it could not be asked.
    pub async fn status(&self) -> Vec<(String, Result<NodeStatus, AuthError>)> {
        let mut out = Vec::new();
        for e in &self.endpoints {
            let r = match self.client(e) {
                Ok(mut c) => c
                    .status(pb::StatusRequest {})
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| unavailable(s.message())),
                Err(e) => Err(e),
            };
            out.push((e.clone(), r));
        }
        out
    }

    /// Runs `call` on the leader: tries each endpoint, following leader hints.
    async fn on_leader<F, Fut>(&self, call: F) -> Result<pb::MembershipResponse, AuthError>
    where
        F: Fn(RaftServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<
                Output = Result<tonic::Response<pb::MembershipResponse>, tonic::Status>,
            >,
    {
        let mut candidates: Vec<String> = self.endpoints.clone();
        let mut tried = BTreeSet::new();
        let mut last = unavailable("no endpoint answered");
        while let Some(addr) = candidates.pop() {
            if !tried.insert(addr.clone()) {
                continue;
            }
            match call(self.client(&addr)?).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => {
                    if let Some(leader) = s
                        .metadata()
                        .get(LEADER_ADDR_KEY)
                        .and_then(|v| v.to_str().ok())
                    {
                        candidates.push(leader.to_owned());
                    }
                    last = match s.code() {
                        tonic::Code::InvalidArgument => {
                            AuthError::InvalidArgument(s.message().to_owned().into())
                        }
                        _ => unavailable(format!("{addr}: {}", s.message())),
                    };
                }
            }
        }
        Err(last)
    }

    /// Adds a node as a learner (it replicates but does not vote) and waits until it
    /// has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<u64, AuthError> {
        let node = pb::NodeAddr {
            id,
            addr: addr.to_owned(),
        };
        let r = self
            .on_leader(|mut c| {
                let node = node.clone();
                async move {
                    c.add_learner(pb::AddLearnerRequest { node: Some(node) })
                        .await
                }
            })
            .await?;
        Ok(r.log_id.map_or(0, |l| l.index))
    }

    /// The current voter ids, from the first node that answers.
    async fn voters(&self) -> Result<BTreeSet<u64>, AuthError> {
        for (_, r) in self.status().await {
            if let Ok(st) = r
                && let Some(m) = st.membership
                && let Some(last) = m.configs.last()
            {
                return Ok(last.ids.iter().copied().collect());
            }
        }
        Err(unavailable("no node reported its membership"))
    }

    /// Makes a learner a voter.
    pub async fn promote(&self, id: u64) -> Result<u64, AuthError> {
        let mut voters = self.voters().await?;
        voters.insert(id);
        let voters: Vec<u64> = voters.into_iter().collect();
        let r = self
            .on_leader(|mut c| {
                let voters = voters.clone();
                async move {
                    c.change_membership(pb::ChangeMembershipRequest { voters })
                        .await
                }
            })
            .await?;
        Ok(r.log_id.map_or(0, |l| l.index))
    }

    /// Removes a node from the cluster.
    pub async fn remove(&self, id: u64) -> Result<u64, AuthError> {
        let r = self
            .on_leader(|mut c| async move { c.remove_node(pb::RemoveNodeRequest { id }).await })
            .await?;
        Ok(r.log_id.map_or(0, |l| l.index))
    }
}
