//! Group commit: writes queue in this node's batcher and go to the leader together,
//! one log entry per batch, proposed there or forwarded to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use auth_proto::v1 as pb;
use auth_storage::StorageError;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::NodeId;
use crate::clock::TimeBounds;
use crate::metrics::Stage;
use crate::node::{Leader, NodeShared, unavailable};

/// Most commands in one log entry.
const MAX_BATCH: usize = 512;
/// Batches of one leadership in flight from this node at once (proposed, on the
/// leader; forwarded, on a follower); while they are, new writes queue and join the
/// next.
const MAX_INFLIGHT_BATCHES: usize = 2;

/// What this node's batcher sent: see [`crate::RaftNode::write_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes queued in this node's batcher: on the leader, followers' forwarded
    /// writes too.
    pub commands: u64,
    /// Batches sent from the queue, proposed here or forwarded to the leader.
    pub batches: u64,
    /// Forwards to the leader (each retry counts).
    pub forwards: u64,
    /// The most forwards to the leader this node had under way at once, since it
    /// started (a maximum, not a count).
    pub max_forwards_in_flight: u64,
}

/// The counters behind [`WriteStats`].
#[derive(Default)]
pub(crate) struct WriteCounters {
    commands: AtomicU64,
    batches: AtomicU64,
    forwards: AtomicU64,
    forwards_in_flight: AtomicU64,
    max_forwards_in_flight: AtomicU64,
}

impl WriteCounters {
    pub(crate) fn get(&self) -> WriteStats {
        WriteStats {
            commands: self.commands.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            forwards: self.forwards.load(Ordering::Relaxed),
            max_forwards_in_flight: self.max_forwards_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Counts a forward under way until the guard drops.
    fn count_forward(&self) -> ForwardInFlight<'_> {
        self.forwards.fetch_add(1, Ordering::Relaxed);
        let now = self.forwards_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_forwards_in_flight
            .fetch_max(now, Ordering::Relaxed);
        ForwardInFlight(self)
    }
}

/// A forward under way, counted in [`WriteCounters`] until dropped.
struct ForwardInFlight<'a>(&'a WriteCounters);

impl Drop for ForwardInFlight<'_> {
    fn drop(&mut self) {
        self.0.forwards_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A queued write and where its result goes.
pub(crate) struct Pending {
    cmd: pb::Command,
    queued: Instant,
    reply: oneshot::Sender<Result<pb::CommandResult, StorageError>>,
}

impl NodeShared {
    /// Proposes a batch on the leader (locally or by forwarding), retrying on leader
    /// changes until `request_timeout` after `since` (when its oldest write was
    /// queued). Retries re-send the same request ids, which the
    /// state machine applies once.
    async fn submit(
        &self,
        batch: pb::CommandBatch,
        since: Instant,
    ) -> Result<pb::BatchResult, StorageError> {
        let mut retry = self.leader_retry_since(since);
        // The reason given if the time ran out before any attempt.
        retry.failed("queued behind earlier batches".into());
        while let Some(leader) = retry.next().await {
            let (leader_id, addr, mut client) = match leader {
                Leader::Local => match self.propose(&batch, retry.remaining()).await {
                    Ok(r) => return Ok(r),
                    Err(why) => {
                        retry.failed(why);
                        continue;
                    }
                },
                Leader::Remote(id, addr, client) => (id, addr, client),
            };
            let req = pb::ForwardRequest {
                batch: Some(batch.clone()),
                cluster_id: self.cluster_id.clone(),
            };
            let deadline = tokio::time::Instant::now() + retry.remaining();
            let sent = Instant::now();
            let _counted = self.write_stats.count_forward();
            let forwards = self.network.forwards(leader_id, &addr);
            match forwards
                .exchange::<crate::duplex::Forward>(&mut client, req, deadline)
                .await
            {
                Ok(r) => {
                    Stage::Forward.since(sent);
                    return Ok(r);
                }
                Err(s) => retry.failed(format!("forward to the leader: {}", s.message())),
            }
        }
        Err(retry.error("write not committed in time"))
    }

    /// Proposes a batch on this node, the leader.
    async fn propose(
        &self,
        batch: &pb::CommandBatch,
        remaining: std::time::Duration,
    ) -> Result<pb::BatchResult, String> {
        // Held while proposing: a hand-over waits for every proposal under way before
        // it picks its target, so the log it hands over is whole.
        let _proposing = self.proposing.read().await;
        if self.is_draining() {
            return Err("handing over".into());
        }
        let (proposal, refused) = self.bound_times(batch);
        if proposal.commands.is_empty() {
            return Ok(merge_refused(pb::BatchResult::default(), refused));
        }
        let proposed = Instant::now();
        match tokio::time::timeout(remaining, self.raft.client_write(proposal)).await {
            Ok(Ok(resp)) => {
                metrics::histogram!(crate::metrics::COMMIT_SECONDS)
                    .record(proposed.elapsed().as_secs_f64());
                Ok(merge_refused(resp.data, refused))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err("leadership moved".into())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("not committed in time".into()),
        }
    }

    /// On the leader, just before proposing: the batch as it enters the log (stamped
    /// with this node's clock, each command's time checked and bounded, see
    /// [`crate::clock`]) and the results of the commands refused, by position. Every
    /// write passes here, whether proposed on this node or forwarded to it; the time a
    /// follower put in the batch is dropped.
    fn bound_times(
        &self,
        batch: &pb::CommandBatch,
    ) -> (pb::CommandBatch, Vec<(usize, pb::CommandResult)>) {
        let now_ms = self.clock.now_ms();
        let bounds = TimeBounds::new(now_ms, self.max_clock_skew, self.request_timeout);
        let mut proposal = pb::CommandBatch {
            proposed_at_ms: now_ms,
            commands: Vec::with_capacity(batch.commands.len()),
        };
        let mut refused = Vec::new();
        let mut first_reason = None;
        for (i, cmd) in batch.commands.iter().enumerate() {
            let mut cmd = cmd.clone();
            match bounds.map_or(Ok(()), |b| b.apply(&mut cmd)) {
                Ok(()) => proposal.commands.push(cmd),
                Err(reason) => {
                    first_reason.get_or_insert_with(|| reason.clone());
                    refused.push((i, crate::clock::refused(reason)));
                }
            }
        }
        if let Some(reason) = first_reason {
            tracing::warn!(refused = refused.len(), %reason, "commands refused");
        }
        (proposal, refused)
    }

    /// Queues one command for the next batch and waits for its result.
    pub(crate) async fn write(
        &self,
        op: pb::command::Op,
    ) -> Result<pb::CommandResult, StorageError> {
        let mut request_id = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut request_id);
        let rx = self
            .enqueue(pb::Command {
                request_id: request_id.to_vec(),
                op: Some(op),
            })
            .await?;
        rx.await
            .map_err(|_| unavailable("raft node is shutting down"))?
    }

    /// Puts a command in this node's batcher; the receiver yields its result.
    pub(crate) async fn enqueue(
        &self,
        cmd: pb::Command,
    ) -> Result<oneshot::Receiver<Result<pb::CommandResult, StorageError>>, StorageError> {
        let (reply, rx) = oneshot::channel();
        self.batch_tx
            .send(Pending {
                cmd,
                queued: Instant::now(),
                reply,
            })
            .await
            .map_err(|_| unavailable("raft node is shutting down"))?;
        self.write_stats.commands.fetch_add(1, Ordering::Relaxed);
        Ok(rx)
    }
}

/// The results of a whole batch: those of the proposed commands, in order, with the
/// refused commands' results put back at their positions. A short `accepted` yields a
/// short result, which the caller reports as a mismatch.
fn merge_refused(
    accepted: pb::BatchResult,
    refused: Vec<(usize, pb::CommandResult)>,
) -> pb::BatchResult {
    if refused.is_empty() {
        return accepted;
    }
    let total = accepted.results.len() + refused.len();
    let mut accepted = accepted.results.into_iter();
    let mut refused = refused.into_iter().peekable();
    let mut results = Vec::with_capacity(total);
    for i in 0..total {
        let next = match refused.next_if(|(at, _)| *at == i) {
            Some((_, r)) => Some(r),
            None => accepted.next(),
        };
        match next {
            Some(r) => results.push(r),
            None => break,
        }
    }
    pb::BatchResult { results }
}

/// Collects queued writes into batches: while up to `MAX_INFLIGHT_BATCHES` batches of
/// this leadership are being committed (on the leader) or forwarded (on a follower),
/// new writes wait and then go together in one log entry, or one forward.
pub(crate) async fn batch_loop(weak: Weak<NodeShared>, mut rx: mpsc::Receiver<Pending>) {
    let mut slots = None;
    while let Some(first) = rx.recv().await {
        let Some(permit) = batch_slot(&weak, &mut slots).await else {
            break;
        };
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let Some(shared) = weak.upgrade() else { break };
        shared.write_stats.batches.fetch_add(1, Ordering::Relaxed);
        for p in &pending {
            Stage::Queue.since(p.queued);
        }
        tokio::spawn(async move {
            let batch = pb::CommandBatch {
                // Informational only: the leader stamps its own clock when it proposes.
                proposed_at_ms: shared.clock.now_ms(),
                commands: pending.iter().map(|p| p.cmd.clone()).collect(),
            };
            // The batch's time runs from its oldest write's arrival: a write that
            // waited for a slot does not get a whole request timeout more.
            let since = pending
                .iter()
                .map(|p| p.queued)
                .min()
                .unwrap_or_else(Instant::now);
            let result = shared.submit(batch, since).await;
            drop(permit);
            match result {
                Ok(r) if r.results.len() == pending.len() => {
                    for (p, res) in pending.into_iter().zip(r.results) {
                        let _ = p.reply.send(Ok(res));
                    }
                }
                Ok(r) => {
                    let e = StorageError::Internal(format!(
                        "batch of {} got {} results",
                        pending.len(),
                        r.results.len()
                    ));
                    for p in pending {
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for p in pending {
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// The batches in flight under one leadership (term and leader, as this node knows
/// them).
struct Slots {
    term: u64,
    leader: Option<NodeId>,
    free: Arc<Semaphore>,
}

/// A permit for one more batch in flight, bounded per leadership: a change of term or
/// leader starts a fresh bound, and a wait for a permit ends at such a change. A
/// batch may wait on a node that hands it back to this one once this one leads (a
/// follower's forwards at the old leader during a hand-over; a brief leader's own
/// batches after it steps down), so a batch must never wait behind batches of an
/// earlier leadership. (Without a bound on forwards, a follower sent one forward per
/// write: under load as many round trips to the leader as writes.) `None` once the
/// node is gone.
async fn batch_slot(
    weak: &Weak<NodeShared>,
    slots: &mut Option<Slots>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        let mut metrics = weak.upgrade()?.raft.metrics();
        let (term, leader) = {
            let m = metrics.borrow();
            (m.current_term, m.current_leader)
        };
        let free = match slots {
            Some(s) if s.term == term && s.leader == leader => Arc::clone(&s.free),
            _ => {
                let free = Arc::new(Semaphore::new(MAX_INFLIGHT_BATCHES));
                *slots = Some(Slots {
                    term,
                    leader,
                    free: Arc::clone(&free),
                });
                free
            }
        };
        let raft_stopped = tokio::select! {
            permit = Arc::clone(&free).acquire_owned() => return permit.ok(),
            changed = metrics.wait_for(|m| (m.current_term, m.current_leader) != (term, leader)) => {
                changed.is_err()
            }
        };
        if raft_stopped {
            // No leadership change will come: wait for the permit alone.
            return free.acquire_owned().await.ok();
        }
    }
}
