//! When a node builds a snapshot.
//!
//! openraft's own policy builds one every `snapshot_every` log entries, whatever the
//! size of the state. A build costs time proportional to the state (18 s of one core
//! at a million users), so with a fixed interval the total cost of snapshots grows
//! with the square of the data: at a million users a node was building nearly all the
//! time, and the load rate halved. Here a snapshot is due once both:
//!
//! - at least `snapshot_every` entries were applied since the last one (openraft's
//!   rule, which alone decides while the state is small), and
//! - the log written since the last snapshot is at least a quarter of that snapshot's
//!   size, once the snapshot is over [`SMALL`].
//!
//! So the work of building snapshots stays within a constant factor of the work of
//! writing the log, and the log kept between two snapshots (what a restart replays and
//! the disk holds) stays within a quarter of the state's size.
//!
//! openraft runs with `SnapshotPolicy::Never`; [`pace_snapshots`] watches the node and
//! triggers the builds.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::node::NodeShared;

/// Below this snapshot size only the entry count decides.
pub(crate) const SMALL: u64 = 4 << 20;
/// The log since the last snapshot must be at least its size divided by this.
const LOG_TO_SNAPSHOT: u64 = 4;
/// How often the node is looked at.
const EVERY: Duration = Duration::from_millis(50);

/// What the pacing rule needs to know, fed by the log store and the state machine.
#[derive(Debug, Default)]
pub(crate) struct SnapshotPacing {
    /// Bytes appended to this node's log since it started.
    log_bytes: AtomicU64,
    /// `log_bytes` when the latest snapshot was stored.
    log_bytes_at_snapshot: AtomicU64,
    /// The size of the latest snapshot's data.
    snapshot_bytes: AtomicU64,
}

impl SnapshotPacing {
    /// `n` bytes of entries went into the log.
    pub(crate) fn appended(&self, n: u64) {
        self.log_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of `size` bytes was stored (built here, or installed from a leader).
    pub(crate) fn stored(&self, size: u64) {
        self.log_bytes_at_snapshot
            .store(self.log_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        self.snapshot_bytes.store(size, Ordering::Relaxed);
    }

    /// Whether a snapshot is due, `entries` entries after the last one.
    pub(crate) fn due(&self, entries: u64, snapshot_every: u64) -> bool {
        if entries < snapshot_every.max(1) {
            return false;
        }
        let size = self.snapshot_bytes.load(Ordering::Relaxed);
        if size < SMALL {
            return true;
        }
        let since = self
            .log_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.log_bytes_at_snapshot.load(Ordering::Relaxed));
        since >= size / LOG_TO_SNAPSHOT
    }
}

/// Triggers this node's snapshots by the rule above, until the node is gone.
pub(crate) async fn pace_snapshots(weak: Weak<NodeShared>, snapshot_every: u64) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = weak.upgrade() else { return };
        let entries = {
            let m = shared.raft.metrics();
            let m = m.borrow();
            let applied = m.last_applied.map_or(0, |l| l.index + 1);
            let snapshot = m.snapshot.map_or(0, |l| l.index + 1);
            applied.saturating_sub(snapshot)
        };
        if shared.db.pacing.due(entries, snapshot_every) {
            // A build already under way makes this a no-op (openraft checks).
            if let Err(e) = shared.raft.trigger().snapshot().await {
                tracing::debug!(error = %e, "snapshot trigger refused");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_state_snapshots_by_entries_a_large_one_by_log_written_too() {
        let p = SnapshotPacing::default();
        assert!(!p.due(99, 100));
        assert!(p.due(100, 100));
        p.stored(SMALL - 1);
        assert!(p.due(100, 100), "small: the entry count alone decides");
        p.stored(400 << 20);
        assert!(!p.due(100, 100), "large: not before 100 MiB of log");
        p.appended(99 << 20);
        assert!(!p.due(1_000_000, 100));
        p.appended(1 << 20);
        assert!(p.due(100, 100));
        assert!(!p.due(99, 100), "the entry count still has to be reached");
        // A new snapshot starts the count again.
        p.stored(400 << 20);
        assert!(!p.due(100, 100));
    }
}
