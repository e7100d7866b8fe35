//! What of this node's log is on disk, and the leader's fsync off the replication path.
//!
//! openraft 0.9 runs a leader's append to completion (fsync included) before it sends
//! the entries to the followers, so a write waited for two fsyncs in a row: the
//! leader's, then a follower's. etcd overlaps them: the leader writes its WAL while
//! the entries travel. This module does the same under openraft:
//!
//! - A **leader's own entries** (of its current term, proposed by it) are written to
//!   the log file without `fdatasync`, reported stored at once, and made durable by the
//!   flusher thread while they replicate.
//! - Everything else (every follower append, truncation, the vote) is durable before
//!   it is reported, as before. A follower's acknowledgement always means its disk.
//!
//! openraft now counts the leader's copy before it is on disk, so the leader may
//! consider an entry committed that only one follower holds durably. Two gates keep
//! that from mattering; nothing acts on an entry until a majority *including the
//! leader's disk* would hold it:
//!
//! 1. **Apply waits for durability** ([`Durability::wait_durable`]): the leader applies
//!    (and so answers the client) only once its own copy is on disk, so an
//!    acknowledged write is on the disks of the leader and of the followers that
//!    counted.
//! 2. **The commit index sent to followers is capped** at the leader's durable log id
//!    ([`Durability::cap_commit`]): no follower applies an entry the leader could
//!    still lose in a crash.
//!
//! If the machine fails before the flush, the entry may be lost (recovery cuts the log
//! at the first record that did not reach the disk); nobody applied it and no client
//! was answered. Followers may still hold it, though: a leader must not
//! reuse its log id. So a node that finds on start a committed vote naming itself
//! demotes it to a candidate's vote of that term ([`crate::LogStore::open`]): it must
//! win a later term before it leads again, and that term's entries replace the
//! orphans on every follower. Membership entries are never deferred: openraft lets
//! the next membership change begin once it counts the previous one committed.
//! A failed fsync poisons the store: later appends fail and waiting appliers get an
//! error, which stops Raft on this node (a failed fsync leaves the page cache in a
//! state nobody can vouch for).

use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::NodeId;
use crate::types::{LogId, Vote};
use crate::wal::Wal;

/// The durable part of this node's log.
pub(crate) struct Durability {
    id: NodeId,
    state: Mutex<State>,
    /// The durable index, and whether the store is poisoned.
    published: watch::Sender<(u64, bool)>,
    /// Wakes the flusher.
    wake: Mutex<Option<mpsc::Sender<()>>>,
    /// Notified when a flush brings to disk entries of a commit index that
    /// [`Durability::cap_commit`] held back: the followers were told an older one and
    /// should hear the new one now, not at the next heartbeat (see
    /// [`Durability::commit_released`]).
    released: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct State {
    /// The last log id known to be on disk; `None` after a truncation until the next
    /// durable write (only the leader's commit cap reads it: conservative is fine).
    durable: Option<LogId>,
    /// Every entry at or below this index is on disk.
    durable_index: u64,
    /// The last entry appended, durable or not.
    appended: Option<LogId>,
    /// Bumped by truncation: a flush that started before does not count.
    generation: u64,
    /// The vote last saved: whose entries this node writes as leader.
    vote: Option<Vote>,
    poisoned: bool,
    /// The highest commit index [`Durability::cap_commit`] held back, until a flush
    /// brings all of it to disk.
    held_back: Option<u64>,
}

impl Durability {
    /// Starts the flusher for `wal`, whose log ends at `last` (all of it on disk).
    pub(crate) fn start(
        id: NodeId,
        wal: Arc<Wal>,
        last: Option<LogId>,
        vote: Option<Vote>,
    ) -> Arc<Self> {
        let index = last.map_or(0, |l| l.index);
        let (published, _) = watch::channel((index, false));
        let this = Arc::new(Self {
            id,
            state: Mutex::new(State {
                durable: last,
                durable_index: index,
                appended: last,
                vote,
                ..State::default()
            }),
            published,
            wake: Mutex::new(None),
            released: Arc::default(),
        });
        let (tx, rx) = mpsc::channel();
        *this.wake.lock() = Some(tx);
        let weak = Arc::downgrade(&this);
        let spawned = std::thread::Builder::new()
            .name(format!("raft-fsync-{id}"))
            .spawn(move || flusher(weak, wal, rx));
        if spawned.is_err() {
            // No flusher: every append stays durable in place.
            this.wake.lock().take();
        }
        this
    }

    /// Whether an append of entries ending at `last` may be reported before its fsync:
    /// entries this node proposes as the leader of the current term, none of them a
    /// membership change.
    pub(crate) fn may_defer(&self, last: &LogId, membership: bool) -> bool {
        let s = self.state.lock();
        !membership
            && self.wake.lock().is_some()
            && !s.poisoned
            && s.vote.is_some_and(|v| {
                v.is_committed()
                    && v.leader_id.node_id == self.id
                    && last.leader_id.term == v.leader_id.term
                    && last.leader_id.node_id == self.id
            })
    }

    /// Records a non-durable append and wakes the flusher.
    pub(crate) fn appended_deferred(&self, last: LogId) {
        self.state.lock().appended = Some(last);
        if let Some(w) = &*self.wake.lock() {
            let _ = w.send(());
        }
    }

    /// Records a durable append ending at `last`: everything appended so far is on
    /// disk (`fdatasync` covers every earlier write to the file, and earlier segments
    /// were synced before the next began).
    pub(crate) fn synced(&self, last: LogId) {
        let mut s = self.state.lock();
        s.appended = Some(last);
        s.durable = Some(last);
        s.durable_index = last.index;
        self.publish(&s);
        self.release(&mut s);
    }

    /// After the durable index rose: tells [`Durability::commit_released`]'s waiter if
    /// a commit index was held back, and forgets it once all of it is on disk.
    fn release(&self, s: &mut State) {
        if let Some(held) = s.held_back {
            if held <= s.durable_index {
                s.held_back = None;
            }
            self.released.notify_one();
        }
    }

    /// Records a durable truncation: entries from `from` on are gone.
    pub(crate) fn truncated(&self, from: u64) {
        let mut s = self.state.lock();
        s.generation += 1;
        s.durable = None;
        s.appended = None;
        s.durable_index = s.durable_index.min(from.saturating_sub(1));
        self.publish(&s);
    }

    /// Records the vote saved (durably; in redb, which says nothing of the log's file).
    pub(crate) fn voted(&self, vote: Vote) {
        self.state.lock().vote = Some(vote);
    }

    /// Marks the store failed: appends refuse, waiting appliers get an error.
    pub(crate) fn poison(&self) {
        let mut s = self.state.lock();
        s.poisoned = true;
        self.publish(&s);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.state.lock().poisoned
    }

    fn publish(&self, s: &State) {
        self.published.send_replace((s.durable_index, s.poisoned));
    }

    /// Waits until entry `index` is on disk; `Err` if the store failed. An index
    /// beyond the last entry appended is not in this log (openraft's storage suite
    /// applies entries it never appended): only what was appended is waited for.
    pub(crate) async fn wait_durable(&self, index: u64) -> Result<(), String> {
        let index = {
            let s = self.state.lock();
            index.min(s.appended.map_or(s.durable_index, |a| a.index))
        };
        let mut rx = self.published.subscribe();
        let r = rx.wait_for(|(d, poisoned)| *poisoned || *d >= index).await;
        match r.map(|v| *v) {
            Ok((_, false)) => Ok(()),
            Ok((_, true)) => Err("the log store failed to sync".into()),
            Err(_) => Err("the log store is closed".into()),
        }
    }

    /// The commit index a leader may tell its followers: `committed`, or the last log
    /// id on its own disk if that is lower.
    pub(crate) fn cap_commit(&self, committed: Option<LogId>) -> Option<LogId> {
        let mut s = self.state.lock();
        let capped = match (committed, s.durable) {
            (Some(c), Some(d)) if d.index < c.index => Some(d),
            (Some(c), None) if c.index > s.durable_index => None,
            (c, _) => c,
        };
        if let Some(c) = committed
            && capped != committed
        {
            s.held_back = s.held_back.max(Some(c.index));
        }
        capped
    }

    /// Notified each time a flush (or a durable append) brings to disk entries of a
    /// commit index that [`Durability::cap_commit`] held back from the followers, all
    /// of it or part. openraft tells the
    /// followers of a new commit index once, right after the commit; if that message
    /// was capped, they would otherwise learn it only with the next heartbeat or write,
    /// and a follower's linearizable read waits for exactly that.
    pub(crate) fn commit_released(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.released)
    }
}

/// Makes deferred appends durable: one `fdatasync` covers every write before it, so a
/// burst of appends costs one.
fn flusher(this: std::sync::Weak<Durability>, wal: Arc<Wal>, wake: mpsc::Receiver<()>) {
    while wake.recv().is_ok() {
        while wake.try_recv().is_ok() {}
        let Some(this) = this.upgrade() else { return };
        let (target, generation) = {
            let s = this.state.lock();
            if s.poisoned || s.appended.map(|a| a.index) <= Some(s.durable_index) {
                continue;
            }
            (s.appended, s.generation)
        };
        let started = std::time::Instant::now();
        match wal.sync() {
            Ok(()) => {
                crate::metrics::Stage::Flush.since(started);
                let mut s = this.state.lock();
                if s.generation == generation
                    && let Some(t) = target
                    && t.index > s.durable_index
                {
                    s.durable = Some(t);
                    s.durable_index = t.index;
                    this.publish(&s);
                    this.release(&mut s);
                }
            }
            Err(crate::db::DbError::Closed) => return,
            Err(e) => {
                tracing::error!(error = %e, "raft log fsync failed: this node stops");
                this.poison();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn leader_vote(term: u64, node: NodeId) -> Vote {
        let mut v = Vote::new(term, node);
        v.commit();
        v
    }

    fn durability() -> (tempfile::TempDir, Arc<Wal>, Arc<Durability>) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), Some(0)).unwrap());
        let d = Durability::start(1, Arc::clone(&wal), None, None);
        (dir, wal, d)
    }

    fn append(wal: &Wal, entries: &[(u64, &[u8])], sync: bool) {
        let batch = crate::wal::Batch::of(entries.iter().copied());
        wal.append(&batch, sync).unwrap();
    }

    impl Durability {
        fn may_defer_normal(&self, last: &LogId) -> bool {
            self.may_defer(last, false)
        }
    }

    #[test]
    fn only_the_leaders_own_entries_of_its_term_are_deferred() {
        let (_dir, _db, d) = durability();
        // No vote yet, or a follower's vote: nothing is deferred.
        assert!(!d.may_defer_normal(&log_id(1, 1, 1)));
        d.voted(Vote::new(2, 2));
        assert!(!d.may_defer_normal(&log_id(2, 2, 1)));
        // Leading in term 3: its own entries of term 3, nothing else.
        d.voted(leader_vote(3, 1));
        assert!(d.may_defer_normal(&log_id(3, 1, 5)));
        assert!(
            !d.may_defer_normal(&log_id(2, 1, 4)),
            "its own entries of an older term"
        );
        assert!(!d.may_defer_normal(&log_id(3, 2, 5)));
        assert!(!d.may_defer(&log_id(3, 1, 5), true), "a membership change");
        // A candidate's vote for itself is not committed: nothing is deferred.
        d.voted(Vote::new(4, 1));
        assert!(!d.may_defer_normal(&log_id(4, 1, 6)));
    }

    #[tokio::test]
    async fn apply_waits_for_the_flush_and_followers_hear_of_no_commit_beyond_the_disk() {
        let (_dir, wal, d) = durability();
        d.voted(leader_vote(1, 1));
        append(&wal, &[(1, b"one")], true);
        d.synced(log_id(1, 1, 1));
        assert_eq!(d.cap_commit(Some(log_id(1, 1, 1))), Some(log_id(1, 1, 1)));
        // Entries 2 and 3 written without fsync; openraft may count them committed.
        append(&wal, &[(2, b"two"), (3, b"three")], false);
        d.state.lock().appended = Some(log_id(1, 1, 3));
        // Not yet flushed: the cap holds the commit at the last durable id, and an
        // applier of 3 waits. (The flusher has not been woken yet.)
        assert_eq!(d.cap_commit(Some(log_id(1, 1, 3))), Some(log_id(1, 1, 1)));
        let waiting = tokio::time::timeout(Duration::from_millis(50), d.wait_durable(3)).await;
        assert!(waiting.is_err(), "applied before it was on disk");
        d.wait_durable(1).await.unwrap();
        // Wake the flusher: both become durable, and the commit index held back from
        // the followers is released (the node then sends them a heartbeat).
        let released = d.commit_released();
        d.appended_deferred(log_id(1, 1, 3));
        tokio::time::timeout(Duration::from_secs(10), d.wait_durable(3))
            .await
            .expect("flushed")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), released.notified())
            .await
            .expect("the held-back commit index was released");
        assert_eq!(d.cap_commit(Some(log_id(1, 1, 3))), Some(log_id(1, 1, 3)));
        // A flush that releases nothing held back notifies nobody.
        append(&wal, &[(4, b"four")], false);
        d.appended_deferred(log_id(1, 1, 4));
        tokio::time::timeout(Duration::from_secs(10), d.wait_durable(4))
            .await
            .expect("flushed")
            .unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(50), released.notified()).await;
        assert!(quiet.is_err(), "released with nothing held back");
        // A commit below the durable id passes unchanged; none stays none.
        assert_eq!(d.cap_commit(Some(log_id(1, 1, 2))), Some(log_id(1, 1, 2)));
        assert_eq!(d.cap_commit(None), None);
    }

    #[tokio::test]
    async fn truncation_lowers_the_durable_index_and_a_poisoned_store_fails_waiters() {
        let (_dir, _db, d) = durability();
        d.synced(log_id(1, 2, 10));
        d.truncated(8);
        // Nothing from 8 on is in the log: an applier of 8 waits for nothing more.
        d.wait_durable(8).await.unwrap();
        // A new 8 appended but not yet on disk: an applier of it waits for its write.
        d.state.lock().appended = Some(log_id(2, 1, 8));
        let waiting = tokio::time::timeout(Duration::from_millis(50), d.wait_durable(8)).await;
        assert!(waiting.is_err());
        d.wait_durable(7).await.unwrap();
        assert_eq!(d.cap_commit(Some(log_id(2, 1, 9))), None);
        d.poison();
        assert!(d.wait_durable(9).await.is_err());
        assert!(d.is_poisoned());
        assert!(!d.may_defer_normal(&log_id(1, 1, 11)));
    }
}
