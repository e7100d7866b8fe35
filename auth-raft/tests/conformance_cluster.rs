//! The auth-storage conformance suite on a 3-node in-process Raft cluster, with writes
//! going through a follower (forwarded to the leader) and through the leader.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_through_a_follower_and_the_leader() {
    // The suite's clocks are synthetic, decades ahead of the real one: the leader's
    // skew bound is lifted so the suite tests storage semantics (tests/clock_skew.rs
    // tests the bound).
    let cluster = Cluster::start_with(3, |c| c.max_clock_skew = None).await;
    let follower = cluster.follower().await;
    auth_storage::conformance::run_all(Arc::new(cluster.storage(follower))).await;
    let leader = cluster.leader(Duration::from_secs(5)).await;
    auth_storage::conformance::run_all(Arc::new(cluster.storage(leader))).await;
    cluster.shutdown().await;
}
