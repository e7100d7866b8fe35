//! Group commit: writes queue in this node's batcher and go to the leader together,
//! one log entry per batch, proposed there or forwarded to it.

use std::sync::{Arc, Weak};
use std::time::Instant;

use auth_proto::v1 as pb;
use auth_storage::StorageError;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clock::TimeBounds;
use crate::metrics::Stage;
use crate::node::{Leader, NodeShared, unavailable};

/// Most commands in one log entry.
const MAX_BATCH: usize = 512;
/// Batches being committed at once; while they are, new writes queue and join the next.
const MAX_INFLIGHT_BATCHES: usize = 2;

/// A queued write and where its result goes.
pub(crate) struct Pending {
    cmd: pb::Command,
    queued: Instant,
    reply: oneshot::Sender<Result<pb::CommandResult, StorageError>>,
}

impl NodeShared {
    /// Proposes a batch on the leader (locally or by forwarding), retrying on leader
    /// changes until `request_timeout`. Retries re-send the same request ids, which the
    /// state machine applies once.
    async fn submit(&self, batch: pb::CommandBatch) -> Result<pb::BatchResult, StorageError> {
        let mut retry = self.leader_retry();
        while let Some(leader) = retry.next().await {
            let mut client = match leader {
                Leader::Local => match self.propose(&batch, retry.remaining()).await {
                    Ok(r) => return Ok(r),
                    Err(why) => {
                        retry.failed(why);
                        continue;
                    }
                },
                Leader::Remote(_, client) => client,
            };
            let mut req = tonic::Request::new(pb::ForwardRequest {
                batch: Some(batch.clone()),
                cluster_id: self.cluster_id.clone(),
            });
            req.set_timeout(retry.remaining());
            let sent = Instant::now();
            match client.forward(req).await {
                Ok(r) => {
                    Stage::Forward.since(sent);
                    return Ok(r.into_inner());
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

/// Collects queued writes into batches: while up to `MAX_INFLIGHT_BATCHES` batches are
/// being committed, new writes wait and then go together in one log entry.
pub(crate) async fn batch_loop(weak: Weak<NodeShared>, mut rx: mpsc::Receiver<Pending>) {
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_BATCHES));
    while let Some(first) = rx.recv().await {
        // The bound is on proposals, on the leader. A follower's batches only wait for
        // the leader's answer: holding permits there could deadlock a hand-over, when
        // they wait on the old leader, which forwards them back here once this node
        // leads and its own batcher has no permit left.
        let leads = weak.upgrade().is_some_and(|s| s.is_leader());
        let permit = if leads {
            let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
                break;
            };
            Some(permit)
        } else {
            None
        };
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let Some(shared) = weak.upgrade() else { break };
        for p in &pending {
            Stage::Queue.since(p.queued);
        }
        tokio::spawn(async move {
            let batch = pb::CommandBatch {
                // Informational only: the leader stamps its own clock when it proposes.
                proposed_at_ms: shared.clock.now_ms(),
                commands: pending.iter().map(|p| p.cmd.clone()).collect(),
            };
            let result = shared.submit(batch).await;
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
