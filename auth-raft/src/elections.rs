//! When this node campaigns, beyond openraft's own timers.
//!
//! openraft 0.9 has no pre-vote: a node that campaigns raises its term, and a leader
//! that later hears of the higher term steps down. Two cases cost a whole election
//! round (hundreds of milliseconds without writes) for nothing; both are handled here.
//!
//! - **A member that restarts** forgot whom it followed. Its election timer runs from
//!   start, and the leader reaches it only after its replication to the dead peer backs
//!   off (half a second in openraft): the restarted node would campaign first, with a
//!   log too short to win, and its higher term would depose the healthy leader.
//!   [`enable_after_start`] keeps it from campaigning until it hears from a leader, or
//!   until [`RESTART_HOLD`] passes (a whole cluster that restarts elects after that).
//! - **A candidate with a shorter log.** After a leader dies, the follower whose timer
//!   fires first campaigns; if another follower has more of the log, that one refuses,
//!   and the candidate waits out openraft's longer "smaller log" timeout while the other
//!   follower waits out its own timer, often to lose a tie on the candidate's term and
//!   need a third. [`campaign_instead`]: a follower that refuses a candidate only for its
//!   shorter log, once its own leader has been silent for a whole vote lease (so it could
//!   have voted), campaigns at once with a term above the candidate's.

use std::sync::Arc;
use std::sync::Weak;
use std::time::{Duration, Instant};

use openraft::raft::{VoteRequest, VoteResponse};

use crate::node::NodeShared;
use crate::types::NodeId;

/// Longest a restarted member waits to hear from a leader before it may campaign
/// (plus up to one minimum election timeout of jitter): openraft retries a peer it
/// could not reach every 500 ms, plus a heartbeat or two.
pub(crate) const RESTART_HOLD: Duration = Duration::from_millis(1000);

/// Most terms [`campaign_instead`] skips ahead of its own.
const MAX_TERM_STEP: u64 = 3;

/// Called once at start (openraft starts with elections off): a member of a cluster
/// that existed before (`restarted`) campaigns only after hearing from a leader, or
/// after [`RESTART_HOLD`], or at once if it is the only voter; a new node at once.
pub(crate) fn enable_after_start(shared: &Arc<NodeShared>, restarted: bool) {
    if !restarted {
        shared.raft.runtime_config().elect(true);
        return;
    }
    // Members of a cluster restarted as a whole release at different times, or they
    // would all campaign in the same tick and split the vote.
    let spread = shared.raft.config().election_timeout_min;
    let jitter = Duration::from_millis(rand::Rng::random_range(&mut rand::rng(), 0..=spread));
    let weak = Arc::downgrade(shared);
    tokio::spawn(release_hold(weak, shared.started + RESTART_HOLD + jitter));
}

async fn release_hold(shared: Weak<NodeShared>, until: Instant) {
    let Some(s) = shared.upgrade() else { return };
    let me = s.id;
    let mut metrics = s.raft.metrics();
    let heard = Arc::clone(&s.leader_heard);
    drop(s);
    // Not the leader in the metrics: a follower's vote survives its restart, so they
    // name the old leader at once, before anyone was heard.
    let alone = metrics.wait_for(|m| {
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(me) && voters.next().is_none()
    });
    let _ = tokio::time::timeout_at(until.into(), async {
        tokio::select! {
            _ = alone => {}
            _ = heard.notified() => {}
        }
    })
    .await;
    let Some(s) = shared.upgrade() else { return };
    // A hand-over that began meanwhile turned elections off for good.
    let _gate = s.campaign_gate.write().await;
    if !s.is_draining() {
        s.raft.runtime_config().elect(true);
        tracing::debug!("elections enabled after restart");
    }
}

/// Called by the vote handler with the request and this node's answer: if this node
/// refused `req` only because its own log is longer, and its leader has been silent
/// for a whole vote lease, it campaigns now, with a term above the candidate's.
pub(crate) async fn campaign_instead(
    shared: &NodeShared,
    req: &VoteRequest<NodeId>,
    resp: &VoteResponse<NodeId>,
) {
    if resp.vote_granted
        || !resp.vote.is_committed()
        || req.vote.leader_id().term <= resp.vote.leader_id().term
        || resp.last_log_id.as_ref() <= req.last_log_id.as_ref()
        || shared.is_draining()
        || shared.is_leader()
    {
        return;
    }
    // Held from the check of the leader's silence until the campaign is queued, while
    // AppendEntries are handled under a read lock of it: no answer to the leader
    // (which it would count toward its read lease) falls between the two, and any
    // AppendEntries after reaches openraft after the campaign.
    let _gate = shared.campaign_gate.write().await;
    let lease = Duration::from_millis(shared.raft.config().election_timeout_max);
    if !shared.leader_silent_for(lease) || shared.is_draining() {
        return;
    }
    let mine = resp.vote.leader_id().term;
    let theirs = req.vote.leader_id().term;
    // Each campaign raises this node's term by one.
    let steps = (theirs + 1).saturating_sub(mine).clamp(1, MAX_TERM_STEP);
    tracing::info!(
        candidate = req.vote.leader_id().node_id,
        term = theirs,
        steps,
        "refused a candidate with a shorter log while the leader is silent; campaigning"
    );
    for _ in 0..steps {
        if shared.raft.trigger().elect().await.is_err() {
            return;
        }
    }
}
