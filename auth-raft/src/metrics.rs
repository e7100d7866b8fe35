//! Raft metrics through the `metrics` facade (see `auth_core::metrics` for the
//! conventions). Node ids are the only label values: bounded by the cluster's size.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `auth_raft_term` | gauge | |
//! | `auth_raft_is_leader` | gauge (0/1) | |
//! | `auth_raft_leader_id` | gauge (0: none known) | |
//! | `auth_raft_last_log_index` | gauge | |
//! | `auth_raft_applied_index` | gauge | |
//! | `auth_raft_follower_lag_entries` | gauge, on the leader | `follower` |
//! | `auth_raft_snapshots_built_total` | counter | |
//! | `auth_raft_snapshots_installed_total` | counter | |
//! | `auth_raft_snapshot_build_seconds` | histogram | |
//! | `auth_raft_commit_seconds` | histogram: proposal to commit on the leader | |
//! | `auth_raft_read_index_rounds_total` | counter: quorum rounds confirming leadership for reads, on the leader | |
//! | `auth_raft_lease_reads_total` | counter: read indexes served under the leader lease, no round | |
//! | `auth_raft_write_stage_seconds` | histogram: one stage of the write path ([`Stage`]) | `stage` |

use openraft::ServerState;

use crate::types::NodeId;

/// Snapshots built by this node.
pub const SNAPSHOTS_BUILT: &str = "auth_raft_snapshots_built_total";
/// Snapshots received from a leader and installed.
pub const SNAPSHOTS_INSTALLED: &str = "auth_raft_snapshots_installed_total";
/// Time to build (encode and persist) a snapshot.
pub const SNAPSHOT_BUILD_SECONDS: &str = "auth_raft_snapshot_build_seconds";
/// Time from proposing a batch on the leader to its commit and apply.
pub const COMMIT_SECONDS: &str = "auth_raft_commit_seconds";

/// Quorum rounds run to confirm leadership for reads (read index), on the leader.
pub const READ_INDEX_ROUNDS: &str = "auth_raft_read_index_rounds_total";
/// Read indexes served under the leader lease, with no quorum round.
pub const LEASE_READS: &str = "auth_raft_lease_reads_total";

/// Time spent in one stage of the write path, labelled by [`Stage`]: with
/// `auth_raft_commit_seconds` and the gRPC request histogram, where a write's time goes
/// (`benches/write-stages.py` prints the breakdown).
pub const WRITE_STAGE_SECONDS: &str = "auth_raft_write_stage_seconds";

/// A stage of the write path, the `stage` label of [`WRITE_STAGE_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A command waiting in this node's batcher for its batch to leave (per command).
    Queue,
    /// A follower's forward of a batch to the leader, round trip (per batch).
    Forward,
    /// The leader serving a forwarded batch, arrival to answer (per batch).
    ForwardServe,
    /// Writing entries to the log without fsync: the leader's own, flushed by
    /// [`Stage::Flush`] while they replicate (per append).
    Append,
    /// Writing entries to the log with fsync: a follower's, or a leader's membership
    /// change (per append).
    AppendSync,
    /// The leader's flusher thread making deferred appends durable (per fsync).
    Flush,
    /// The leader's AppendEntries carrying entries to one follower, round trip
    /// (per call; heartbeats are not counted).
    Replicate,
    /// A follower serving an AppendEntries that carries entries (per call).
    FollowerAppend,
    /// The state machine waiting for entries to be on this node's disk before applying
    /// them (per apply call).
    WaitDurable,
    /// Applying committed entries to the state machine (per apply call).
    Apply,
    /// Compacting the log after a snapshot: recording what is purged and removing the
    /// segments that hold nothing else (per purge). openraft's core waits for it, so
    /// every write on the node does.
    Purge,
}

impl Stage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::Forward => "forward",
            Stage::ForwardServe => "forward_serve",
            Stage::Append => "append",
            Stage::AppendSync => "append_sync",
            Stage::Flush => "flush",
            Stage::Replicate => "replicate",
            Stage::FollowerAppend => "follower_append",
            Stage::WaitDurable => "wait_durable",
            Stage::Apply => "apply",
            Stage::Purge => "purge",
        }
    }

    /// Records the time since `start` in this stage.
    pub(crate) fn since(self, start: std::time::Instant) {
        metrics::histogram!(WRITE_STAGE_SECONDS, "stage" => self.as_str())
            .record(start.elapsed().as_secs_f64());
    }
}

/// Describes the Raft metrics to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("auth_raft_term", "Current Raft term.");
    describe_counter!(
        READ_INDEX_ROUNDS,
        "Quorum rounds run to confirm leadership for reads (read index), on the leader."
    );
    describe_counter!(
        LEASE_READS,
        "Read indexes served under the leader lease, with no quorum round."
    );
    describe_gauge!("auth_raft_is_leader", "1 on the leader, 0 elsewhere.");
    describe_gauge!(
        "auth_raft_leader_id",
        "The leader this node knows (0: none)."
    );
    describe_gauge!("auth_raft_last_log_index", "Index of the last log entry.");
    describe_gauge!(
        "auth_raft_applied_index",
        "Index of the last applied entry."
    );
    describe_gauge!(
        "auth_raft_follower_lag_entries",
        "On the leader: entries each follower is behind the leader's log."
    );
    describe_counter!(SNAPSHOTS_BUILT, "Snapshots built by this node.");
    describe_counter!(SNAPSHOTS_INSTALLED, "Snapshots installed from a leader.");
    describe_histogram!(
        SNAPSHOT_BUILD_SECONDS,
        Unit::Seconds,
        "Time to build and persist a snapshot."
    );
    describe_histogram!(
        WRITE_STAGE_SECONDS,
        Unit::Seconds,
        "Time in one stage of the write path (label stage)."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time from proposal to commit and apply, on the leader."
    );
}

/// Sets the gauges from openraft's metrics.
pub(crate) fn record(m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) {
    let last = m.last_log_index.unwrap_or(0);
    metrics::gauge!("auth_raft_term").set(m.current_term as f64);
    metrics::gauge!("auth_raft_is_leader").set(f64::from(u8::from(m.state == ServerState::Leader)));
    metrics::gauge!("auth_raft_leader_id").set(m.current_leader.unwrap_or(0) as f64);
    metrics::gauge!("auth_raft_last_log_index").set(last as f64);
    metrics::gauge!("auth_raft_applied_index").set(m.last_applied.map_or(0, |l| l.index) as f64);
    if let Some(replication) = &m.replication {
        for (id, matched) in replication {
            let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
            metrics::gauge!("auth_raft_follower_lag_entries", "follower" => id.to_string())
                .set(lag as f64);
        }
    }
}
