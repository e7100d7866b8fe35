//! Leaving leadership gracefully: [`RaftNode::hand_over`] before a node stops.

use std::time::{Duration, Instant};

use auth_proto::v1 as pb;
use openraft::BasicNode;

use crate::NodeId;
use crate::node::{NodeShared, RaftNode};

/// Records when this node becomes leader, for [`RaftNode::hand_over`].
pub(crate) async fn watch_leadership(shared: std::sync::Weak<NodeShared>) {
    let Some(mut rx) = shared.upgrade().map(|s| s.raft.metrics()) else {
        return;
    };
    loop {
        {
            let Some(s) = shared.upgrade() else { return };
            let m = rx.borrow_and_update().clone();
            if m.current_leader == Some(s.id) {
                let mut since = s.leader_since.lock();
                if since.is_none_or(|(term, _)| term != m.current_term) {
                    *since = Some((m.current_term, Instant::now()));
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl RaftNode {
    /// Hands leadership over before this node stops (a SIGTERM, a rolling upgrade),
    /// instead of leaving the cluster to notice its silence and elect (a full election
    /// timeout plus the followers' leader lease, about 0.3–0.4 s of failed writes).
    ///
    /// From now on this node proposes nothing: writes it receives wait for the next
    /// leader and are forwarded there. Once a voter has matched this node's whole log
    /// (the most up to date; entries in flight settle first), this node sends it
    /// `TransferLeader` ("TimeoutNow"), and that voter starts an election at once.
    ///
    /// openraft 0.9 has no transfer RPC and its followers refuse votes while their
    /// leader lease (the longest election timeout since the leader's last message)
    /// holds. The leader's own vote is what carries the election: its lease dates
    /// from its own election, so it grants the vote to a candidate whose log is as
    /// long as its own, and steps down. In a 3-node cluster that vote and the
    /// candidate's own are a majority: leadership moves in about one round trip. In
    /// larger clusters the other followers' leases must lapse first (the draining
    /// leader's heartbeats renew them until it grants its vote), so the election
    /// completes about one lease later.
    /// Safe throughout: the candidate wins only with votes Raft allows, and this node
    /// stops leading as it grants its vote.
    ///
    /// Returns the new leader; `Ok(None)` if this node did not lead or had no voter
    /// to hand to; an error if no new leader emerged within `timeout` (the cluster then
    /// elects one the usual way once this node stops).
    pub async fn hand_over(&self, timeout: Duration) -> Result<Option<NodeId>, String> {
        let s = &self.shared;
        if !s.is_leader() {
            return Ok(None);
        }
        let me = s.id;
        let voters: Vec<NodeId> = s
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != me)
            .collect();
        if voters.is_empty() {
            return Ok(None);
        }
        // Under the gate that a restarted member's hold releases under: elections
        // switched off here stay off (`crate::elections`).
        let gate = s.campaign_gate.write().await;
        s.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        // The voter asked to campaign does so without waiting out its own vote lease,
        // so a lease this node holds no longer proves anything, in this term even if
        // the hand-over fails: reads take a quorum round until a later term.
        let term = s.raft.metrics().borrow().current_term;
        s.lease.lock().revoke(term);
        // A node on its way out never campaigns again: once it stops hearing from the
        // next leader it would otherwise run for election and, being up to date, win.
        s.raft.runtime_config().elect(false);
        drop(gate);
        let r = self.transfer_to_a_voter(voters, timeout).await;
        if r.is_err() {
            // Lead on until the process stops, rather than hold writes back, and take
            // part in elections again.
            s.draining.store(false, std::sync::atomic::Ordering::SeqCst);
            s.raft.runtime_config().elect(true);
        }
        r
    }

    /// The body of [`RaftNode::hand_over`], once draining.
    async fn transfer_to_a_voter(
        &self,
        voters: Vec<NodeId>,
        timeout: Duration,
    ) -> Result<Option<NodeId>, String> {
        let s = &self.shared;
        let me = s.id;
        let deadline = Instant::now() + timeout;
        // Nothing more is appended once the proposals under way are in the log (new ones
        // see `draining` and wait for the next leader): the log to hand over is final.
        // A voter that matched an earlier index would lose the election it is asked to
        // start, to this node's own vote and to any follower that has the rest.
        let settled = tokio::time::timeout_at(deadline.into(), self.shared.proposing.write())
            .await
            .map_err(|_| "proposals under way did not finish".to_string())?;
        drop(settled);
        // The voter that has matched the whole log (entries in flight included).
        let caught_up = |m: &openraft::RaftMetrics<NodeId, BasicNode>| -> Option<NodeId> {
            let last = m.last_log_index?;
            let replication = m.replication.as_ref()?;
            voters
                .iter()
                .copied()
                .find(|v| replication.get(v).and_then(|l| l.map(|l| l.index)) == Some(last))
        };
        let m = s
            .raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(|m| caught_up(m).is_some(), "a voter caught up")
            .await
            .map_err(|e| format!("no voter caught up: {e}"))?;
        // This node grants the candidate its vote only once its own lease, dating from
        // its election, has run out: a leader elected moments ago waits for that.
        let lease = Duration::from_millis(s.raft.config().election_timeout_max);
        let since = *s.leader_since.lock();
        if let Some((term, at)) = since
            && term == m.current_term
        {
            let ready = at + lease + Duration::from_millis(5);
            if ready > Instant::now() {
                tokio::time::sleep_until(ready.into()).await;
            }
        }
        let target = caught_up(&m).ok_or("no voter caught up")?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or("the chosen voter has no address")?;
        let mut client = s.network.client(target, &addr).map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(pb::TransferLeaderRequest {
            cluster_id: s.cluster_id.clone(),
            leader_id: me,
            term: m.current_term,
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        client
            .transfer_leader(req)
            .await
            .map_err(|e| format!("transfer to node {target}: {}", e.message()))?;
        // An election takes a round trip or, in a larger cluster, about one lease:
        // waiting much longer would only hold this node's writes back.
        let election = (lease * 2 + Duration::from_millis(200))
            .min(deadline.saturating_duration_since(Instant::now()));
        let m = s
            .raft
            .wait(Some(election))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "a new leader",
            )
            .await
            .map_err(|e| format!("no new leader: {e}"))?;
        Ok(m.current_leader)
    }
}
