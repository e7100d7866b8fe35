//! The client side of the Raft RPCs: openraft's [`RaftNetwork`] over tonic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use auth_proto::v1 as pb;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, Timeout, Unreachable,
};
use openraft::network::RPCTypes;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, ClientTlsConfig};

use crate::convert::*;
use crate::duplex::{Append, PeerStreams, Pool, StreamCounters, StreamStats};
use crate::durable::Durability;
use crate::tls::peer_channel;
use crate::types::*;

/// Largest Raft message accepted or sent on the peer listener. The largest legitimate
/// one is an AppendEntries of `max_payload_entries` (64) batches of up to 512 commands
/// (a few hundred bytes each), about 10 MiB; snapshot chunks are 1 MiB.
pub(crate) const MAX_RAFT_MESSAGE: usize = 16 * 1024 * 1024;

/// Most bytes of entries in one AppendEntries (at least one entry is always sent): a
/// follower stores and fsyncs this much well within a heartbeat interval, the time
/// openraft allows the call.
pub(crate) const MAX_APPEND_BYTES: usize = 256 * 1024;

/// How many of `entries`, from the first, fit in `budget` bytes of commands; at least
/// one, so that an entry larger than the budget still goes, alone.
pub(crate) fn sendable_prefix(entries: &[Entry], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, e) in entries.iter().enumerate() {
        used += match &e.payload {
            openraft::EntryPayload::Normal(batch) => prost::Message::encoded_len(batch),
            _ => 64,
        };
        if used > budget {
            return i.max(1);
        }
    }
    entries.len()
}

/// A lazily connecting Raft client for the node at `addr`.
pub(crate) fn raft_client(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<RaftServiceClient<Channel>, String> {
    let channel = peer_channel(addr, connect_timeout, tls)?;
    Ok(RaftServiceClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE))
}

/// What this node keeps for one peer: its client and its idle streams.
pub(crate) struct Peer {
    /// The address the client was made for.
    addr: String,
    client: RaftServiceClient<Channel>,
    pub(crate) appends: Pool<pb::AppendEntriesRequestPb, pb::AppendEntriesResponsePb>,
    pub(crate) forwards: Pool<pb::ForwardRequest, pb::BatchResult>,
}

impl Peer {
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }
}

/// Raft clients by peer id.
pub(crate) type PeerClients = HashMap<NodeId, Peer>;

/// How this node's requests to its peers went out, on streams or as calls: see
/// [`crate::RaftNode::peer_request_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerRequestStats {
    /// AppendEntries, as a leader to its followers.
    pub appends: StreamStats,
    /// Forwarded batches of writes, as a follower to the leader.
    pub forwards: StreamStats,
}

/// The counters behind [`PeerRequestStats`].
#[derive(Default)]
pub(crate) struct PeerRequestCounters {
    pub(crate) appends: StreamCounters,
    pub(crate) forwards: StreamCounters,
}

impl PeerRequestCounters {
    pub(crate) fn get(&self) -> PeerRequestStats {
        PeerRequestStats {
            appends: self.appends.get(),
            forwards: self.forwards.get(),
        }
    }
}

/// Builds a [`Connection`] per peer. openraft asks for a new client at every election
/// round; the channel (one HTTP/2 connection, reconnecting by itself) is cached per
/// peer so that a TLS handshake is paid once, not inside every vote's deadline.
#[derive(Clone)]
pub(crate) struct Network {
    /// This node's id.
    pub(crate) id: NodeId,
    pub(crate) cluster_id: String,
    pub(crate) tls: Option<ClientTlsConfig>,
    pub(crate) clients: Arc<Mutex<PeerClients>>,
    /// This node's durable log: caps the commit index it sends.
    pub(crate) durable: Arc<Durability>,
    pub(crate) stats: Arc<PeerRequestCounters>,
}

impl Network {
    /// The cached client for peer `target` at `addr`, made on first use (or when the
    /// peer's address changed). Shared by replication, votes and write forwarding.
    pub(crate) fn client(
        &self,
        target: NodeId,
        addr: &str,
    ) -> Result<RaftServiceClient<Channel>, String> {
        let mut cache = self.clients.lock();
        if let Some(p) = cache.get(&target)
            && p.addr == addr
        {
            return Ok(p.client.clone());
        }
        let client = raft_client(addr, Duration::from_millis(500), self.tls.as_ref())?;
        let peer = Peer {
            addr: addr.to_owned(),
            client: client.clone(),
            appends: Pool::default(),
            forwards: Pool::default(),
        };
        cache.insert(target, peer);
        Ok(client)
    }

    /// The forward streams to peer `target` at `addr`.
    pub(crate) fn forwards<'a>(&'a self, target: NodeId, addr: &'a str) -> PeerStreams<'a> {
        PeerStreams {
            peers: &self.clients,
            target,
            addr,
            counters: &self.stats.forwards,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        let client = self.client(target, &node.addr);
        Connection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            client,
            cluster_id: self.cluster_id.clone(),
            durable: Arc::clone(&self.durable),
            peers: Arc::clone(&self.clients),
            stats: Arc::clone(&self.stats),
        }
    }
}

/// The Raft RPCs to one peer.
pub(crate) struct Connection {
    id: NodeId,
    target: NodeId,
    /// The address its client was made for.
    addr: String,
    client: Result<RaftServiceClient<Channel>, String>,
    cluster_id: String,
    durable: Arc<Durability>,
    /// Where the peer's idle streams are kept ([`Network::clients`]).
    peers: Arc<Mutex<PeerClients>>,
    stats: Arc<PeerRequestCounters>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Connection {
    /// The openraft error for a failed call. A call that ran out of time is a
    /// `Timeout`, which openraft retries at the next heartbeat; `Unreachable` makes it
    /// back off for half a second, long enough for the followers to start an election,
    /// and is kept for a peer that cannot be reached at all. On a loaded machine one
    /// AppendEntries slower than the heartbeat interval is common, and a slow call is
    /// no sign of a dead peer.
    fn status_err<E: std::error::Error>(
        &self,
        action: RPCTypes,
        option: &RPCOption,
        s: tonic::Status,
    ) -> RpcErr<E> {
        match s.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            code => {
                let e = Msg(format!("node {}: {code:?}: {}", self.target, s.message()));
                if code == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            }
        }
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
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        // No follower learns of a commit beyond what is on this leader's disk.
        rpc.leader_commit = self.durable.cap_commit(rpc.leader_commit);
        let mut c = self.client()?;
        // openraft gives each AppendEntries one heartbeat interval, its own timeout
        // around this call. A follower catching up is sent up to 64 entries at once,
        // each a batch of up to 512 commands: more than it can store and fsync in that
        // time, so every try timed out and the same entries were sent again, forever.
        // Send what fits in MAX_APPEND_BYTES (at least one entry) and report how far
        // that got; openraft sends the rest next.
        let partial = match sendable_prefix(&rpc.entries, MAX_APPEND_BYTES) {
            keep if keep < rpc.entries.len() => {
                rpc.entries.truncate(keep);
                rpc.entries.last().map(|e| e.log_id)
            }
            _ => None,
        };
        let carries = !rpc.entries.is_empty();
        let req = append_to_pb(&rpc, &self.cluster_id);
        let sent = std::time::Instant::now();
        let appends = PeerStreams {
            peers: &self.peers,
            target: self.target,
            addr: &self.addr,
            counters: &self.stats.appends,
        };
        let deadline = tokio::time::Instant::now() + option.hard_ttl();
        let resp = appends
            .exchange::<Append>(&mut c, req, deadline)
            .await
            .map_err(|s| self.status_err(RPCTypes::AppendEntries, &option, s))?;
        if carries {
            crate::metrics::Stage::Replicate.since(sent);
        }
        match append_resp_from_pb(resp).map_err(malformed)? {
            AppendEntriesResponse::Success if partial.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(partial))
            }
            other => Ok(other),
        }
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
            .map_err(|s| self.status_err(RPCTypes::InstallSnapshot, &option, s))?;
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
        let resp = c
            .vote(req)
            .await
            .map_err(|s| self.status_err(RPCTypes::Vote, &option, s))?;
        vote_resp_from_pb(resp.into_inner()).map_err(malformed)
    }
}

#[cfg(test)]
mod tests {
    use auth_proto::v1 as pb;
    use openraft::{EntryPayload, LogId};

    use super::*;

    fn entry(index: u64, bytes: usize) -> Entry {
        let batch = pb::CommandBatch {
            proposed_at_ms: 0,
            commands: vec![pb::Command {
                request_id: vec![7; bytes],
                op: None,
            }],
        };
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(batch),
        }
    }

    #[test]
    fn an_append_carries_entries_up_to_the_byte_budget_and_never_none() {
        let small: Vec<Entry> = (1..=10).map(|i| entry(i, 100)).collect();
        assert_eq!(sendable_prefix(&small, 10_000), 10);
        assert_eq!(sendable_prefix(&[], 10_000), 0);
        let big: Vec<Entry> = (1..=10).map(|i| entry(i, 4_000)).collect();
        // Each entry is a little over 4000 bytes encoded: two fit in 10 000.
        assert_eq!(sendable_prefix(&big, 10_000), 2);
        // One entry larger than the budget still goes, alone.
        assert_eq!(sendable_prefix(&big, 1_000), 1);
    }
}
