//! The client side of the Raft RPCs: openraft's [`RaftNetwork`] over tonic.

use std::time::Duration;

use auth_proto::v1::raft_service_client::RaftServiceClient;
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, Endpoint};

use crate::convert::*;
use crate::types::*;

/// Largest Raft message accepted or sent (snapshot chunks are far smaller).
pub(crate) const MAX_RAFT_MESSAGE: usize = 64 * 1024 * 1024;

/// A lazily connecting client for the node at `addr`.
pub(crate) fn raft_client(
    addr: &str,
    connect_timeout: Duration,
) -> Result<RaftServiceClient<Channel>, String> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let channel = Endpoint::from_shared(url)
        .map_err(|e| format!("bad node address {addr:?}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(RaftServiceClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE))
}

/// Builds a [`Connection`] per peer.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) cluster_id: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            client: raft_client(&node.addr, Duration::from_millis(500)),
            cluster_id: self.cluster_id.clone(),
        }
    }
}

/// The Raft RPCs to one peer.
pub(crate) struct Connection {
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    cluster_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn status_err<E: std::error::Error>(target: NodeId, s: tonic::Status) -> RpcErr<E> {
    let e = Msg(format!("node {target}: {:?}: {}", s.code(), s.message()));
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

fn malformed<E: std::error::Error>(e: Malformed) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&e))
}

impl Connection {
    // openraft's error type is large by design; it is returned once per failed RPC.
    #[allow(clippy::result_large_err)]
    fn client<E: std::error::Error>(&self) -> Result<RaftServiceClient<Channel>, RpcErr<E>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&Msg(e))))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let mut c = self.client()?;
        let mut req = tonic::Request::new(append_to_pb(&rpc, &self.cluster_id));
        req.set_timeout(option.hard_ttl());
        let resp = c
            .append_entries(req)
            .await
            .map_err(|s| status_err(self.target, s))?;
        append_resp_from_pb(resp.into_inner()).map_err(malformed)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let mut c = self.client()?;
        let mut req = tonic::Request::new(snapshot_req_to_pb(&rpc, &self.cluster_id));
        req.set_timeout(option.hard_ttl());
        let resp = c
            .install_snapshot(req)
            .await
            .map_err(|s| status_err(self.target, s))?;
        snapshot_resp_from_pb(resp.into_inner()).map_err(malformed)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let mut c = self.client()?;
        let mut req = tonic::Request::new(vote_req_to_pb(&rpc, &self.cluster_id));
        req.set_timeout(option.hard_ttl());
        let resp = c.vote(req).await.map_err(|s| status_err(self.target, s))?;
        vote_resp_from_pb(resp.into_inner()).map_err(malformed)
    }
}
