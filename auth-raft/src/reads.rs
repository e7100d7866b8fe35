//! Linearizable reads: the read index, from a leader lease or a quorum round, and the
//! queue that lets concurrent readers share one fetch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_proto::v1 as pb;
use auth_storage::StorageError;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::sync::oneshot;

use crate::NodeId;
use crate::convert::opt_log_id_from_pb;
#[cfg(doc)]
use crate::node::RaftNode;
use crate::node::{Leader, NodeShared, unavailable};
use crate::types::{LogId, Vote};

/// How reads are served.
///
/// The two linearizable modes give the same guarantee (a read sees every write
/// acknowledged before it started) and pass the same history checker; they differ in
/// what the leader's commit index is confirmed by before it serves as the read index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// Linearizable with a leader lease (default), as etcd's `ReadOnlyLeaseBased` and
    /// TiKV's lease reads. A quorum round confirms leadership once per lease (then in
    /// the background before it runs out); within the lease the leader's commit
    /// index is the read index with no network round at all. Followers ask the leader
    /// for it, one request per batch of reads.
    ///
    /// **Assumption: clocks advance at about the same rate.** A follower that answered
    /// the leader refuses to vote for anyone else for the longest election timeout
    /// after (openraft's vote lease, on its monotonic clock). The leader's lease is
    /// half of that, counted from before the round was sent, on a clock that counts
    /// time suspended (`CLOCK_BOOTTIME`): safe while no member's clock runs at more
    /// than twice the speed of another's. No clock needs to be synchronised, and a
    /// leader paused mid-read finds its lease expired. A member that restarts does
    /// not remember whom it answered, so it grants no vote until one vote lease after
    /// it started.
    #[default]
    Lease,
    /// Linearizable with a quorum round per batch of reads (openraft's read index):
    /// no clock assumption at all, at the cost of a round trip to a quorum for every
    /// batch.
    ReadIndex,
    /// Read this node's state as it is: lower latency, but possibly stale. Risk: on a
    /// lagging node a logged-out session may still verify for a moment.
    Local,
}

impl ReadConsistency {
    /// Whether reads in this mode are linearizable.
    pub fn is_linearizable(self) -> bool {
        self != Self::Local
    }
}

/// The time on the clock a leader's lease is kept on: `CLOCK_BOOTTIME`, which unlike
/// the monotonic clock also runs while the machine is suspended, so a leader whose VM
/// was frozen finds its lease expired on waking.
fn lease_clock() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to write; CLOCK_BOOTTIME exists
        // on every Linux this builds for.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// How this node, as leader, confirmed read indexes: see [`RaftNode::read_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Quorum rounds run (openraft's read index): one per batch of reads in
    /// [`ReadConsistency::ReadIndex`], about one per half lease under load in
    /// [`ReadConsistency::Lease`].
    pub quorum_rounds: u64,
    /// Read indexes served under the lease, with no round.
    pub lease_reads: u64,
}

/// The counters behind [`ReadStats`].
#[derive(Default)]
pub(crate) struct ReadCounters {
    quorum_rounds: AtomicU64,
    lease_reads: AtomicU64,
}

impl ReadCounters {
    pub(crate) fn get(&self) -> ReadStats {
        ReadStats {
            quorum_rounds: self.quorum_rounds.load(Ordering::Relaxed),
            lease_reads: self.lease_reads.load(Ordering::Relaxed),
        }
    }
}

/// The leader's lease ([`ReadConsistency::Lease`]).
#[derive(Default)]
pub(crate) struct LeaseState {
    /// The vote a quorum confirmed, and until when (on [`lease_clock`]) no other node
    /// can lead.
    held: Option<(Vote, Duration)>,
    /// A renewal is under way.
    renewing: bool,
    /// No lease in this term or any before: a hand-over began in it (the voter it
    /// targets campaigns without waiting out its own vote lease).
    revoked_term: Option<u64>,
}

impl LeaseState {
    /// Drops the lease and takes none again in `term` (see [`RaftNode::hand_over`]).
    pub(crate) fn revoke(&mut self, term: u64) {
        self.held = None;
        self.revoked_term = Some(self.revoked_term.map_or(term, |t| t.max(term)));
    }

    fn allowed(&self, vote: &Vote) -> bool {
        self.revoked_term.is_none_or(|t| vote.leader_id.term > t)
    }
}

/// Why a read index could not be had from this node as leader.
type ReadIndexError = RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>;

impl NodeShared {
    /// Returns once this node has applied every write committed before the call
    /// (linearizable reads); immediately with [`ReadConsistency::Local`].
    pub(crate) async fn read_barrier(self: &Arc<Self>) -> Result<(), StorageError> {
        if !self.read_consistency.is_linearizable() {
            return Ok(());
        }
        let index = self.queued_read_index().await?.map(|l| l.index);
        self.raft
            .wait(Some(self.request_timeout))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| unavailable(format!("read barrier: {e}")))
    }

    /// A read index for a read that starts now, shared with the reads around it: a
    /// reader joins the queue, and one fetch at a time serves everyone who queued
    /// before it started. That is still linearizable (the index was learnt after each
    /// of those reads began) and costs one fetch per batch, not per read.
    pub(crate) async fn queued_read_index(self: &Arc<Self>) -> Result<Option<LogId>, StorageError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.reads.lock();
            q.waiting.push(tx);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(read_index_loop(Arc::clone(self)));
        }
        rx.await
            .map_err(|_| unavailable("raft node is shutting down"))?
    }

    /// The leader's read index, from this node if it leads or else asked of the
    /// leader, retrying across leader changes until `request_timeout`.
    async fn fetch_read_index(self: &Arc<Self>) -> Result<Option<LogId>, StorageError> {
        let mut retry = self.leader_retry();
        while let Some(leader) = retry.next().await {
            let mut client = match leader {
                Leader::Local => match self.leader_read_index().await {
                    Ok(read) => return Ok(read),
                    Err(e) => {
                        retry.failed(e.to_string());
                        continue;
                    }
                },
                Leader::Remote(_, _, client) => client,
            };
            let mut req = tonic::Request::new(pb::ReadIndexRequest {
                cluster_id: self.cluster_id.clone(),
            });
            req.set_timeout(retry.remaining());
            match client.read_index(req).await {
                Ok(r) => match opt_log_id_from_pb(r.into_inner().read_log_id) {
                    Ok(read) => return Ok(read),
                    Err(e) => retry.failed(e.to_string()),
                },
                Err(s) => retry.failed(format!("read index from the leader: {}", s.message())),
            }
        }
        Err(retry.error("linearizable read timed out"))
    }

    /// This node's read index as leader: its commit index, once it knows no other
    /// node can have been elected in a later term (by its lease, or else by a quorum
    /// round) and an entry of its own term is committed.
    pub(crate) async fn leader_read_index(
        self: &Arc<Self>,
    ) -> Result<Option<LogId>, ReadIndexError> {
        if self.read_consistency == ReadConsistency::Lease
            && let Some(index) = self.read_index_by_lease().await
        {
            return Ok(index);
        }
        self.read_index_by_quorum().await
    }

    /// The lease is half of openraft's vote lease (the longest election timeout),
    /// which is how long a follower that answered refuses anyone else its vote.
    fn lease_span(&self) -> Duration {
        Duration::from_millis(self.raft.config().election_timeout_max) / 2
    }

    /// The read index under a lease still held; `None` if there is none (then a
    /// quorum round decides). Renews the lease in the background once half used.
    async fn read_index_by_lease(self: &Arc<Self>) -> Option<Option<LogId>> {
        if self.is_draining() {
            // A leader handing over grants its vote away at any moment.
            return None;
        }
        let (vote, until) = {
            let lease = self.lease.lock();
            let held = lease.held?;
            lease.allowed(&held.0).then_some(held)?
        };
        // The state first and the clock after: if the lease still holds once the state
        // was read, no other node led in a later term when it was read. A vote this
        // node granted (a hand-over, a candidate its own vote lease let through) shows
        // here as a changed vote.
        let (leads, now_vote, committed) = self
            .raft
            .with_raft_state(|st| {
                (
                    st.server_state == ServerState::Leader,
                    *st.vote_ref(),
                    st.committed,
                )
            })
            .await
            .ok()?;
        let now = lease_clock();
        if !leads || now_vote != vote || now >= until {
            return None;
        }
        // Until an entry of this leadership is committed, the commit index may be
        // behind what an earlier leader acknowledged: the quorum path waits for it.
        // The whole leader id, not the term: openraft's leader ids are (term, node),
        // and two nodes can lead one after the other in the same term.
        let committed = committed?;
        if committed.leader_id != vote.leader_id {
            return None;
        }
        if until - now < self.lease_span() / 2 {
            self.renew_lease_in_background();
        }
        self.read_stats.lease_reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::LEASE_READS).increment(1);
        Some(Some(committed))
    }

    fn renew_lease_in_background(self: &Arc<Self>) {
        if std::mem::replace(&mut self.lease.lock().renewing, true) {
            return;
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let _ = shared.read_index_by_quorum().await;
            shared.lease.lock().renewing = false;
        });
    }

    /// openraft's read index: the commit index, confirmed by a quorum answering
    /// heartbeats sent after the call. In [`ReadConsistency::Lease`] a success also
    /// takes the lease: the quorum's members each answered after `start` under the
    /// vote seen before and after, so none votes for another node before `start`
    /// plus the vote lease (on its own clock).
    async fn read_index_by_quorum(&self) -> Result<Option<LogId>, ReadIndexError> {
        let start = lease_clock();
        let lease = self.read_consistency == ReadConsistency::Lease;
        let before = if lease {
            Some(self.vote().await?)
        } else {
            None
        };
        let (read, _) = self.raft.get_read_log_id().await?;
        self.read_stats
            .quorum_rounds
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::READ_INDEX_ROUNDS).increment(1);
        if let Some(before) = before
            && before.is_committed()
            && self.vote().await? == before
            && !self.is_draining()
        {
            let mut lease = self.lease.lock();
            if lease.allowed(&before) {
                lease.held = Some((before, start + self.lease_span()));
            }
        }
        Ok(read)
    }

    async fn vote(&self) -> Result<Vote, ReadIndexError> {
        self.raft
            .with_raft_state(|st| *st.vote_ref())
            .await
            .map_err(RaftError::Fatal)
    }
}

/// Readers waiting for a read index, and whether a fetch is under way.
#[derive(Default)]
pub(crate) struct ReadQueue {
    running: bool,
    waiting: Vec<oneshot::Sender<Result<Option<LogId>, StorageError>>>,
}

/// Serves queued readers one read-index fetch at a time until the queue is empty.
async fn read_index_loop(shared: Arc<NodeShared>) {
    loop {
        let batch = {
            let mut q = shared.reads.lock();
            if q.waiting.is_empty() {
                q.running = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let result = shared.fetch_read_index().await;
        for tx in batch {
            let _ = tx.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_term_takes_no_lease_and_a_later_term_may() {
        let mut lease = LeaseState::default();
        let mut v5 = Vote::new(5, 1);
        v5.commit();
        assert!(lease.allowed(&v5));
        lease.held = Some((v5, Duration::from_secs(1)));
        lease.revoke(5);
        assert!(lease.held.is_none());
        assert!(!lease.allowed(&v5));
        // An older revocation never lowers the bar.
        lease.revoke(3);
        assert!(!lease.allowed(&v5));
        let mut v6 = Vote::new(6, 1);
        v6.commit();
        assert!(lease.allowed(&v6));
    }
}
