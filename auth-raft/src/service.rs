//! The server side of the peer listener: `RaftService` (Raft RPCs from peers, forwarded
//! writes, read index) and `ClusterAdmin` (status and membership), each RPC authorised
//! by the caller's client certificate (see [`crate::tls`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use auth_proto::v1 as pb;
use auth_proto::v1::cluster_admin_server::{ClusterAdmin, ClusterAdminServer};
use auth_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use auth_storage::StorageError;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::{BasicNode, Snapshot};
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::metrics::Stage;
use crate::network::MAX_RAFT_MESSAGE;
use crate::node::{NodeShared, RaftNode};
use crate::snapshot_spool::ChunkError;
use crate::tls::{PeerIdentity, identity_of};
use crate::types::NodeId;

use crate::{LEADER_ADDR_KEY, LEADER_ID_KEY};

/// Certificates whose identity is remembered (a cluster has a handful of nodes and
/// admins; the cache is emptied when full, so a flood of distinct certificates costs
/// parsing, not memory).
const MAX_CACHED_IDENTITIES: usize = 64;

/// Largest admin request (membership changes are tiny).
const MAX_ADMIN_MESSAGE: usize = 64 * 1024;

/// `RaftService` of one node.
#[derive(Clone)]
pub struct RaftGrpc {
    shared: Arc<NodeShared>,
    /// Ends this server's request streams (AppendEntries, forwards) when it turns
    /// `true` (or its sender is dropped): the server's graceful stop
    /// ([`RaftNode::serve_peer`]). `None`: only the node's shutdown ends them.
    closing: Option<tokio::sync::watch::Receiver<bool>>,
}

/// `ClusterAdmin` of one node.
#[derive(Clone)]
pub struct AdminGrpc {
    shared: Arc<NodeShared>,
}

impl RaftNode {
    /// The Raft service for this node's peer listener.
    ///
    /// A server that stops gracefully waits for its calls in flight, and a request
    /// stream (a leader's AppendEntries, a follower's forwards) lasts as long as the
    /// peer that opened it: served this way, the streams end only when this node
    /// shuts down ([`RaftNode::shutdown`]).
    /// [`RaftNode::serve_peer`] also ends them when its server begins to stop.
    pub fn grpc_service(&self) -> RaftServiceServer<RaftGrpc> {
        self.grpc_service_until(None)
    }

    /// The Raft service whose request streams also end once `closing` turns
    /// `true` (or its sender is dropped).
    pub(crate) fn grpc_service_until(
        &self,
        closing: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> RaftServiceServer<RaftGrpc> {
        RaftServiceServer::new(RaftGrpc {
            shared: Arc::clone(&self.shared),
            closing,
        })
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE)
    }

    /// The cluster admin service for this node's peer listener.
    pub fn admin_service(&self) -> ClusterAdminServer<AdminGrpc> {
        ClusterAdminServer::new(AdminGrpc {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_ADMIN_MESSAGE)
    }
}

/// The node a Raft message says it comes from: the leader (or candidate) in its vote.
fn sender(vote: &Option<pb::VotePb>) -> Option<NodeId> {
    vote.as_ref()?.leader_id.as_ref().map(|l| l.node_id)
}

fn bad(e: Malformed) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Who is calling, as proven by the TLS client certificate.
#[derive(Clone)]
enum Caller {
    /// The node runs without TLS (`--insecure`): nobody is proven, everyone is let in.
    Unauthenticated,
    Proven(PeerIdentity),
}

impl Caller {
    /// A proven caller must be a cluster node.
    fn require_node(&self) -> Result<(), Status> {
        match self {
            Caller::Proven(who) if !matches!(who, PeerIdentity::Node(_)) => Err(
                Status::permission_denied(format!("{who} is not a cluster node")),
            ),
            _ => Ok(()),
        }
    }

    /// A proven node may speak only for itself: `claimed` is the node a message says
    /// it comes from (`None`: the message names nobody, which is malformed).
    fn speaks_for(&self, claimed: Option<NodeId>) -> Result<(), Status> {
        let claimed = claimed.ok_or_else(|| bad(Malformed("vote")))?;
        match self {
            Caller::Proven(PeerIdentity::Node(id)) if *id != claimed => Err(
                Status::permission_denied(format!("node {id} may not speak for node {claimed}")),
            ),
            _ => Ok(()),
        }
    }
}

impl NodeShared {
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        if self.tls.is_none() {
            return Ok(Caller::Unauthenticated);
        }
        let certs = req
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        // Peers present the same few certificates on every call: parse each once.
        if let Some(id) = self.identities.lock().get(leaf.as_ref()) {
            return Ok(Caller::Proven(id.clone()));
        }
        let id = identity_of(leaf)
            .map_err(|e| Status::unauthenticated(format!("client certificate {e}")))?;
        let mut cache = self.identities.lock();
        if cache.len() >= MAX_CACHED_IDENTITIES {
            cache.clear();
        }
        cache.insert(leaf.as_ref().to_vec(), id.clone());
        Ok(Caller::Proven(id))
    }

    /// The caller's certificate must be that of node `claimed`, the node the message
    /// says it comes from (`None`: the message names nobody, which is malformed).
    fn require_node<T>(&self, req: &Request<T>, claimed: Option<NodeId>) -> Result<(), Status> {
        let caller = self.caller(req)?;
        caller.require_node()?;
        caller.speaks_for(claimed)
    }

    /// The caller's certificate must name a current member.
    fn require_member<T>(&self, req: &Request<T>) -> Result<(), Status> {
        check_member_caller(self, &self.caller(req)?)
    }

    fn require_admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match self.caller(req)? {
            Caller::Unauthenticated | Caller::Proven(PeerIdentity::Admin(_)) => Ok(()),
            Caller::Proven(who) => Err(Status::permission_denied(format!("{who} is not an admin"))),
        }
    }

    /// An admin, or a member node (which asks for a peer's status to show the whole
    /// cluster on the admin page; status is read-only and holds no secret).
    fn require_admin_or_member<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match self.caller(req)? {
            Caller::Unauthenticated | Caller::Proven(PeerIdentity::Admin(_)) => Ok(()),
            Caller::Proven(PeerIdentity::Node(id)) => self.check_member(id),
            Caller::Proven(who) => Err(Status::permission_denied(format!("{who} is not an admin"))),
        }
    }

    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        if cluster_id == self.cluster_id {
            Ok(())
        } else {
            Err(Status::failed_precondition("message for another cluster"))
        }
    }

    /// Refuses Raft traffic from a node outside the membership, once there is one.
    fn check_member(&self, from: NodeId) -> Result<(), Status> {
        let m = self.raft.metrics().borrow().membership_config.clone();
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
            let m = self.raft.metrics().borrow().membership_config.clone();
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

/// An AppendEntries, from a call or a stream, once its caller is known to be a node
/// (or nobody is proven, without TLS).
async fn serve_append(
    shared: &NodeShared,
    caller: &Caller,
    req: pb::AppendEntriesRequestPb,
) -> Result<pb::AppendEntriesResponsePb, Status> {
    caller.speaks_for(sender(&req.vote))?;
    shared.check_cluster(&req.cluster_id)?;
    let rpc = append_from_pb(req).map_err(bad)?;
    shared.check_member(rpc.vote.leader_id.node_id)?;
    // openraft stops this node's Raft on entries that do not follow on from
    // `prev_log_id` one by one: refuse them here instead.
    let first = match rpc.prev_log_id {
        None => 0,
        Some(l) => l
            .index
            .checked_add(1)
            .ok_or_else(|| Status::invalid_argument("previous log index out of range"))?,
    };
    for (next, e) in (first..).zip(&rpc.entries) {
        if e.log_id.index != next {
            return Err(Status::invalid_argument(format!(
                "entry {} where {next} should follow the previous log id",
                e.log_id.index
            )));
        }
    }
    let carries = !rpc.entries.is_empty();
    let arrived = std::time::Instant::now();
    let _gate = shared.campaign_gate.read().await;
    let resp = shared
        .raft
        .append_entries(rpc)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
        shared.heard_from_leader();
    }
    if carries {
        Stage::FollowerAppend.since(arrived);
    }
    Ok(append_resp_to_pb(&resp))
}

/// The replies of a request stream (`AppendStream`, `ForwardStream`), in the order
/// of its requests.
pub type Replies<T> = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

/// One request stream being served: its requests are handled one at a time, each
/// answered before the next is read (so at most one is in memory), until the peer
/// closes the stream, a request is refused or cannot be read (its status ends the
/// stream), the server stops, or the node shuts down.
struct Served<Req, F> {
    shared: Arc<NodeShared>,
    caller: Caller,
    requests: tonic::Streaming<Req>,
    /// [`NodeShared::stopping`].
    stopping: tokio::sync::watch::Receiver<bool>,
    /// [`RaftGrpc::closing`].
    closing: Option<tokio::sync::watch::Receiver<bool>>,
    /// Serves one request.
    serve: F,
    refused: bool,
}

/// Resolves once `flag` turns `true` or its sender is gone; never for `None`.
async fn raised(flag: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    match flag {
        Some(rx) => {
            let _ = rx.wait_for(|up| *up).await;
        }
        None => std::future::pending().await,
    }
}

impl RaftGrpc {
    /// Serves `requests` from `caller` with `serve`, one at a time (see [`Served`]).
    fn serve_stream<Req, Resp, F, Fut>(
        &self,
        caller: Caller,
        requests: tonic::Streaming<Req>,
        serve: F,
    ) -> Replies<Resp>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: Fn(Arc<NodeShared>, Caller, Req) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let state = Served {
            shared: Arc::clone(&self.shared),
            caller,
            requests,
            stopping: self.shared.stopping.subscribe(),
            closing: self.closing.clone(),
            serve,
            refused: false,
        };
        Box::pin(futures_util::stream::unfold(state, |mut st| async move {
            if st.refused {
                return None;
            }
            let request = tokio::select! {
                () = raised(Some(&mut st.stopping)) => return None,
                () = raised(st.closing.as_mut()) => return None,
                r = st.requests.message() => r,
            };
            let reply = match request {
                Ok(Some(request)) => {
                    (st.serve)(Arc::clone(&st.shared), st.caller.clone(), request).await
                }
                // The peer closed the stream.
                Ok(None) => return None,
                // Unreadable (too large, say): answered with why, which ends the stream.
                Err(status) => Err(status),
            };
            st.refused = reply.is_err();
            Some((reply, st))
        }))
    }
}

/// A forwarded batch, from a call or a stream, once its caller is known to be a
/// member (or nobody is proven, without TLS).
async fn serve_forward(
    shared: &NodeShared,
    req: pb::ForwardRequest,
) -> Result<pb::BatchResult, Status> {
    shared.check_cluster(&req.cluster_id)?;
    let batch = req
        .batch
        .ok_or_else(|| Status::invalid_argument("forward without a batch"))?;
    if !shared.is_leader() || shared.is_draining() {
        // A leader handing over takes no more: the follower retries at the next.
        let leader = shared
            .raft
            .metrics()
            .borrow()
            .current_leader
            .filter(|l| *l != shared.id);
        return Err(shared.not_leader(leader));
    }
    let arrived = std::time::Instant::now();
    // Re-batch on the leader: commands forwarded by every follower join the
    // leader's own queue, so one log entry carries writes from all nodes.
    let mut receivers = Vec::with_capacity(batch.commands.len());
    for cmd in batch.commands {
        receivers.push(
            shared
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
    Stage::ForwardServe.since(arrived);
    Ok(pb::BatchResult { results })
}

/// The caller must be a current member (a stream's caller is checked again at each
/// request: membership changes).
fn check_member_caller(shared: &NodeShared, caller: &Caller) -> Result<(), Status> {
    match caller {
        Caller::Unauthenticated => Ok(()),
        Caller::Proven(PeerIdentity::Node(id)) => shared.check_member(*id),
        Caller::Proven(who) => Err(Status::permission_denied(format!(
            "{who} is not a cluster node"
        ))),
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequestPb>,
    ) -> Result<Response<pb::AppendEntriesResponsePb>, Status> {
        let caller = self.shared.caller(&req)?;
        caller.require_node()?;
        serve_append(&self.shared, &caller, req.into_inner())
            .await
            .map(Response::new)
    }

    type AppendStreamStream = Replies<pb::AppendEntriesResponsePb>;

    async fn append_stream(
        &self,
        req: Request<tonic::Streaming<pb::AppendEntriesRequestPb>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        // The certificate is the connection's: proven once, for every message (each
        // of which must still come from the leader it names, a current member).
        let caller = self.shared.caller(&req)?;
        check_member_caller(&self.shared, &caller)?;
        Ok(Response::new(self.serve_stream(
            caller,
            req.into_inner(),
            |shared, caller, request| async move { serve_append(&shared, &caller, request).await },
        )))
    }

    async fn vote(
        &self,
        req: Request<pb::VoteRequestPb>,
    ) -> Result<Response<pb::VoteResponsePb>, Status> {
        let candidate = sender(&req.get_ref().vote);
        self.shared.require_node(&req, candidate)?;
        let req = req.into_inner();
        self.shared.check_cluster(&req.cluster_id)?;
        let rpc = vote_req_from_pb(req).map_err(bad)?;
        self.shared.check_member(rpc.vote.leader_id.node_id)?;
        // A member that restarted does not remember which leader it answered last, so
        // it votes only once a vote lease has passed since it started: a leader's lease
        // it helped confirm (ReadConsistency::Lease) runs out first.
        let lease = Duration::from_millis(self.shared.raft.config().election_timeout_max);
        tokio::time::sleep_until((self.shared.started + lease).into()).await;
        let resp = self
            .shared
            .raft
            .vote(rpc.clone())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        crate::elections::campaign_instead(&self.shared, &rpc, &resp).await;
        Ok(Response::new(vote_resp_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequestPb>,
    ) -> Result<Response<pb::InstallSnapshotResponsePb>, Status> {
        let leader = sender(&req.get_ref().vote);
        self.shared.require_node(&req, leader)?;
        let req = req.into_inner();
        self.shared.check_cluster(&req.cluster_id)?;
        let rpc = snapshot_req_from_pb(req).map_err(bad)?;
        self.shared.check_member(rpc.vote.leader_id.node_id)?;
        // A stale leader's transfer is not worth spooling (openraft checks again when
        // installing).
        let my_vote = self.shared.raft.metrics().borrow().vote;
        if rpc.vote < my_vote {
            return Ok(Response::new(pb::InstallSnapshotResponsePb {
                vote: Some(vote_to_pb(&my_vote)),
            }));
        }
        self.shared.heard_from_leader();
        let finished = self
            .shared
            .snapshots
            .receive(&rpc.meta.snapshot_id, rpc.offset, &rpc.data, rpc.done)
            .await
            .map_err(|e| match e {
                ChunkError::OutOfOrder { .. } => Status::out_of_range(e.to_string()),
                ChunkError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
                ChunkError::Io(_) => Status::unavailable(e.to_string()),
            })?;
        let vote = match finished {
            None => self.shared.raft.metrics().borrow().vote,
            Some(file) => {
                let snapshot = Snapshot {
                    meta: rpc.meta,
                    snapshot: Box::new(tokio::fs::File::from_std(file)),
                };
                self.shared
                    .raft
                    .install_full_snapshot(rpc.vote, snapshot)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?
                    .vote
            }
        };
        Ok(Response::new(pb::InstallSnapshotResponsePb {
            vote: Some(vote_to_pb(&vote)),
        }))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::BatchResult>, Status> {
        self.shared.require_member(&req)?;
        serve_forward(&self.shared, req.into_inner())
            .await
            .map(Response::new)
    }

    type ForwardStreamStream = Replies<pb::BatchResult>;

    async fn forward_stream(
        &self,
        req: Request<tonic::Streaming<pb::ForwardRequest>>,
    ) -> Result<Response<Self::ForwardStreamStream>, Status> {
        let caller = self.shared.caller(&req)?;
        check_member_caller(&self.shared, &caller)?;
        Ok(Response::new(self.serve_stream(
            caller,
            req.into_inner(),
            |shared, caller, request| async move {
                check_member_caller(&shared, &caller)?;
                serve_forward(&shared, request).await
            },
        )))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let claimed = req.get_ref().leader_id;
        self.shared.require_node(&req, Some(claimed))?;
        let r = req.into_inner();
        self.shared.check_cluster(&r.cluster_id)?;
        let (leader, term) = {
            let m = self.shared.raft.metrics().borrow().clone();
            (m.current_leader, m.current_term)
        };
        if leader != Some(r.leader_id) || term != r.term {
            return Err(Status::failed_precondition(
                "not from the current leader in its term",
            ));
        }
        self.shared
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::TransferLeaderResponse {}))
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.shared.require_member(&req)?;
        self.shared.check_cluster(&req.into_inner().cluster_id)?;
        if !self.shared.is_leader() {
            return Err(self
                .shared
                .not_leader(self.shared.raft.metrics().borrow().current_leader));
        }
        // Joins this node's own queue of readers: one lease check or quorum round
        // serves the followers' requests and local reads together.
        match self.shared.queued_read_index().await {
            Ok(read) => Ok(Response::new(pb::ReadIndexResponse {
                read_log_id: opt_log_id_to_pb(&read),
            })),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// Size of each `BackupChunk` a backup is streamed in.
const BACKUP_CHUNK: usize = 1024 * 1024;

/// Sends what is written to it as `BackupChunk`s of [`BACKUP_CHUNK`] bytes.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Result<pb::BackupChunk, Status>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BACKUP_CHUNK));
        self.tx
            .blocking_send(Ok(pb::BackupChunk { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BACKUP_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

/// The stream `SaveBackup` answers with.
type BackupStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ClusterAdmin for AdminGrpc {
    type SaveBackupStream = BackupStream;

    async fn save_backup(
        &self,
        req: Request<pb::SaveBackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        self.shared.require_admin(&req)?;
        // Taken on the leader once everything committed before the call is applied
        // (a read index round): nothing acknowledged before it is missing.
        match self.shared.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                return Err(self.shared.not_leader(f.leader_id));
            }
            Err(e) => return Err(Status::unavailable(e.to_string())),
        }
        let who = match self.shared.caller(&req)? {
            Caller::Proven(id) => id.to_string(),
            Caller::Unauthenticated => "an unauthenticated caller (--insecure)".to_owned(),
        };
        let (tables, header) = self.shared.backup_source();
        // Every password hash leaves the cluster: say who took it, where operators look.
        tracing::warn!(by = %who, users = tables.user_count(), "backup taken");
        // Encoded and hashed on a blocking thread, streamed as it is written; a client
        // that goes away stops it (the send fails).
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkSender {
                tx: tx.clone(),
                buf: Vec::with_capacity(BACKUP_CHUNK),
            };
            if let Err(e) = auth_storage::backup::write_tables(&tables, header, &mut out) {
                let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.shared.require_admin_or_member(&req)?;
        Ok(Response::new(self.shared.status()))
    }

    async fn init(
        &self,
        req: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        self.shared.require_admin(&req)?;
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
        self.shared.require_admin(&req)?;
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
        self.shared.membership_reply(r)
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.shared.require_admin(&req)?;
        let voters: BTreeSet<NodeId> = req.into_inner().voters.into_iter().collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument("the voter set must not be empty"));
        }
        let r = self.shared.raft.change_membership(voters, true).await;
        self.shared.membership_reply(r)
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.shared.require_admin(&req)?;
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
        self.shared.membership_reply(r)
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        self.shared.require_admin(&req)?;
        let mut user = req
            .into_inner()
            .user
            .ok_or_else(|| Status::invalid_argument("create_user without a user"))?;
        // This call makes administrators and nothing else: a fresh account with a
        // password and the `admin` role, no other state taken from the caller.
        let well_formed = user.id.len() == 32
            && user
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && !user.username.is_empty()
            && !user.username_key.is_empty()
            && user.password_hash.starts_with("$argon2id$")
            && user.roles == ["admin"];
        if !well_formed {
            return Err(Status::invalid_argument(
                "create_user takes a new administrator: a 32-hex id, a username, an \
                 argon2id hash and the admin role only",
            ));
        }
        user = pb::User {
            id: user.id,
            username: user.username,
            username_key: user.username_key,
            password_hash: user.password_hash,
            created_at_ms: user.created_at_ms,
            updated_at_ms: user.created_at_ms,
            roles: user.roles,
            ..pb::User::default()
        };
        let storage = crate::RaftStorage {
            shared: Arc::clone(&self.shared),
        };
        match auth_storage::Storage::create_user(&storage, user).await {
            Ok(user) => Ok(Response::new(pb::CreateUserResponse { user: Some(user) })),
            Err(StorageError::UserExists) => Err(Status::already_exists("the user exists")),
            Err(StorageError::Invalid(m)) => Err(Status::invalid_argument(m)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}
