//! Request-reply exchanges over long-lived bidi streams to a peer, the client side of
//! `RaftService/AppendStream` and `RaftService/ForwardStream`.
//!
//! A message on an open HTTP/2 stream costs about half the CPU and round trip of a
//! unary call (BENCHMARKS.md, "What a gRPC hop costs"). Each peer keeps a few idle
//! streams per RPC. An exchange takes one (or opens one), sends one request, waits for
//! its reply and only then puts the stream back: an exchange that failed, timed out or
//! was cancelled half-way drops its stream, so a reply is never taken for the wrong
//! request. A peer that answers `UNIMPLEMENTED` (a build from before the streams) is
//! sent unary calls, and asked for a stream again a minute later (it may have been
//! upgraded since).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth_proto::v1 as pb;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::network::PeerClients;
use crate::types::NodeId;

/// Idle streams kept per peer and RPC: one per exchange that may run at once
/// (replication plus openraft's leader checks, or a follower's two forwards).
const MAX_IDLE: usize = 4;

/// How long a peer that did not know a stream RPC gets unary calls before it is asked
/// again (a rolling upgrade restarts it with the RPC).
const RETRY_STREAMS_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// One long-lived stream: requests go in through `requests`, replies come back in the
/// same order.
pub(crate) struct Duplex<Req, Resp> {
    requests: mpsc::Sender<Req>,
    replies: Streaming<Resp>,
}

/// The idle streams of one RPC to one peer.
pub(crate) struct Pool<Req, Resp> {
    idle: Vec<Duplex<Req, Resp>>,
    /// When the peer answered that it does not know the RPC: unary calls until
    /// [`RETRY_STREAMS_AFTER`] later.
    unsupported: Option<Instant>,
}

impl<Req, Resp> Pool<Req, Resp> {
    fn unsupported(&self) -> bool {
        self.unsupported
            .is_some_and(|at| at.elapsed() < RETRY_STREAMS_AFTER)
    }
}

impl<Req, Resp> Default for Pool<Req, Resp> {
    fn default() -> Self {
        Pool {
            idle: Vec::new(),
            unsupported: None,
        }
    }
}

/// How one RPC's exchanges went out: see [`crate::RaftNode::peer_request_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Streams opened to peers.
    pub opened: u64,
    /// Requests sent as messages on a stream.
    pub streamed: u64,
    /// Requests sent as unary calls, to peers without the stream RPC.
    pub calls: u64,
}

/// The counters behind [`StreamStats`].
#[derive(Default)]
pub(crate) struct StreamCounters {
    opened: AtomicU64,
    streamed: AtomicU64,
    calls: AtomicU64,
}

impl StreamCounters {
    pub(crate) fn get(&self) -> StreamStats {
        StreamStats {
            opened: self.opened.load(Ordering::Relaxed),
            streamed: self.streamed.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }
}

/// A request-reply RPC with a streamed twin.
pub(crate) trait StreamedRpc {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    /// Names the RPC in logs and errors.
    const NAME: &'static str;
    /// Its idle streams to `peer`.
    fn pool(peer: &mut crate::network::Peer) -> &mut Pool<Self::Req, Self::Resp>;
    /// Opens the streamed twin with `requests` as its request stream.
    fn open(
        c: &mut RaftServiceClient<Channel>,
        requests: tokio_stream::wrappers::ReceiverStream<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Streaming<Self::Resp>>, Status>> + Send;
    /// The unary call.
    fn call(
        c: &mut RaftServiceClient<Channel>,
        req: tonic::Request<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Resp>, Status>> + Send;
}

/// `AppendEntries` / `AppendStream`.
pub(crate) struct Append;

impl StreamedRpc for Append {
    type Req = pb::AppendEntriesRequestPb;
    type Resp = pb::AppendEntriesResponsePb;
    const NAME: &'static str = "AppendEntries";
    fn pool(peer: &mut crate::network::Peer) -> &mut Pool<Self::Req, Self::Resp> {
        &mut peer.appends
    }
    fn open(
        c: &mut RaftServiceClient<Channel>,
        requests: tokio_stream::wrappers::ReceiverStream<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Streaming<Self::Resp>>, Status>> + Send {
        c.append_stream(requests)
    }
    fn call(
        c: &mut RaftServiceClient<Channel>,
        req: tonic::Request<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Resp>, Status>> + Send {
        c.append_entries(req)
    }
}

/// `Forward` / `ForwardStream`.
pub(crate) struct Forward;

impl StreamedRpc for Forward {
    type Req = pb::ForwardRequest;
    type Resp = pb::BatchResult;
    const NAME: &'static str = "Forward";
    fn pool(peer: &mut crate::network::Peer) -> &mut Pool<Self::Req, Self::Resp> {
        &mut peer.forwards
    }
    fn open(
        c: &mut RaftServiceClient<Channel>,
        requests: tokio_stream::wrappers::ReceiverStream<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Streaming<Self::Resp>>, Status>> + Send {
        c.forward_stream(requests)
    }
    fn call(
        c: &mut RaftServiceClient<Channel>,
        req: tonic::Request<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Resp>, Status>> + Send {
        c.forward(req)
    }
}

/// The streams of one RPC to one peer at one address (the one its client was made
/// for), and what they are counted in.
pub(crate) struct PeerStreams<'a> {
    pub(crate) peers: &'a Arc<Mutex<PeerClients>>,
    pub(crate) target: NodeId,
    pub(crate) addr: &'a str,
    pub(crate) counters: &'a StreamCounters,
}

impl PeerStreams<'_> {
    /// One exchange of `R` by `deadline`: on an idle stream to the peer, or a new one,
    /// or as a call to a peer without the stream RPC.
    pub(crate) async fn exchange<R: StreamedRpc>(
        &self,
        c: &mut RaftServiceClient<Channel>,
        req: R::Req,
        deadline: Instant,
    ) -> Result<R::Resp, Status> {
        let (unsupported, idle) = self
            .with_pool::<R, _>(|p| (p.unsupported(), p.idle.pop()))
            .unwrap_or((false, None));
        if unsupported {
            return self.call::<R>(c, req, deadline).await;
        }
        // An idle stream the peer ended since (its listener stopped, say) is dropped
        // once its request stream is closed; one it is ending now fails below.
        let mut idle = idle.filter(|s| !s.requests.is_closed());
        let mut req = req;
        let (mut stream, reused) = loop {
            let reused = idle.is_some();
            let stream = match idle.take() {
                Some(idle) => idle,
                None => match self.open::<R>(c, deadline).await? {
                    Some(opened) => opened,
                    None => return self.call::<R>(c, req, deadline).await,
                },
            };
            match stream.requests.send(req).await {
                Ok(()) => break (stream, reused),
                // An idle stream whose peer went away since (restarted, say) hands the
                // request back: it goes on a new stream.
                Err(mpsc::error::SendError(back)) if reused => req = back,
                Err(_) => {
                    return Err(Status::unavailable(format!(
                        "the {} stream closed",
                        R::NAME
                    )));
                }
            }
        };
        let reply = tokio::time::timeout_at(deadline, stream.replies.message())
            .await
            .map_err(|_| Status::deadline_exceeded(format!("{} timed out", R::NAME)))?;
        let reply = match reply {
            Ok(Some(reply)) => reply,
            // The peer ended the stream without answering: it is stopping or stopped
            // serving. An idle stream ends so when its peer's listener restarted, which
            // is no sign that the peer is unreachable now (that would make openraft
            // back off): a cancelled exchange, tried again at once (AppendEntries is
            // idempotent, and a forwarded batch's request ids are applied once).
            Ok(None) if reused => {
                return Err(Status::cancelled(format!(
                    "the peer ended an idle {} stream",
                    R::NAME
                )));
            }
            Ok(None) => {
                return Err(Status::unavailable(format!(
                    "the peer ended the {} stream",
                    R::NAME
                )));
            }
            Err(status) => return Err(status),
        };
        self.counters.streamed.fetch_add(1, Ordering::Relaxed);
        self.with_pool::<R, _>(|pool| {
            if pool.idle.len() < MAX_IDLE {
                pool.idle.push(stream);
            }
        });
        Ok(reply)
    }

    /// Runs `f` on the pool of `R` of this peer, if its entry is still for this
    /// address (a peer that moved has a new entry, and new streams).
    fn with_pool<R: StreamedRpc, T>(
        &self,
        f: impl FnOnce(&mut Pool<R::Req, R::Resp>) -> T,
    ) -> Option<T> {
        let mut peers = self.peers.lock();
        peers
            .get_mut(&self.target)
            .filter(|p| p.addr() == self.addr)
            .map(|p| f(R::pool(p)))
    }

    /// Opens a stream by `deadline` (one round trip: the peer answers with its headers
    /// before any request); `None` if the peer does not know the RPC.
    async fn open<R: StreamedRpc>(
        &self,
        c: &mut RaftServiceClient<Channel>,
        deadline: Instant,
    ) -> Result<Option<Duplex<R::Req, R::Resp>>, Status> {
        // Capacity 1: one request at a time goes out, then its reply comes back.
        let (requests, rx) = mpsc::channel(1);
        let opened = tokio::time::timeout_at(
            deadline,
            R::open(c, tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| Status::deadline_exceeded(format!("{} timed out", R::NAME)))?;
        match opened {
            Ok(replies) => {
                self.counters.opened.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Duplex {
                    requests,
                    replies: replies.into_inner(),
                }))
            }
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                tracing::info!(
                    peer = self.target,
                    rpc = R::NAME,
                    "the peer has no streams for this RPC: using calls"
                );
                self.with_pool::<R, _>(|p| p.unsupported = Some(Instant::now()));
                Ok(None)
            }
            Err(s) => Err(s),
        }
    }

    /// The unary call, by `deadline`.
    async fn call<R: StreamedRpc>(
        &self,
        c: &mut RaftServiceClient<Channel>,
        req: R::Req,
        deadline: Instant,
    ) -> Result<R::Resp, Status> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut call = tonic::Request::new(req);
        call.set_timeout(deadline.saturating_duration_since(Instant::now()));
        Ok(R::call(c, call).await?.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_without_streams_is_asked_again_after_a_while() {
        let mut pool = Pool::<pb::ForwardRequest, pb::BatchResult>::default();
        assert!(!pool.unsupported());
        pool.unsupported = Some(Instant::now());
        assert!(pool.unsupported());
        let long_ago = Instant::now().checked_sub(RETRY_STREAMS_AFTER + RETRY_STREAMS_AFTER / 10);
        pool.unsupported = long_ago;
        assert!(long_ago.is_some() && !pool.unsupported());
    }
}
