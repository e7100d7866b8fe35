//! Linearizable reads on in-process nodes over real gRPC: what confirms the leader's
//! commit index (a lease, or a quorum round per batch of reads), and that reads on
//! any node see every write acknowledged before them in both modes.

mod common;

use std::time::{Duration, Instant};

use auth_raft::{RaftConfig, ReadConsistency, ReadStats};
use auth_storage::{Storage, User};
use common::Cluster;

fn user(name: &str) -> User {
    User {
        id: format!("{:0>32}", name),
        username: name.into(),
        username_key: name.into(),
        password_hash: "x".into(),
        ..User::default()
    }
}

fn mode(m: ReadConsistency) -> impl Fn(&mut RaftConfig) {
    move |c: &mut RaftConfig| c.read_consistency = m
}

fn delta(after: ReadStats, before: ReadStats) -> ReadStats {
    ReadStats {
        quorum_rounds: after.quorum_rounds - before.quorum_rounds,
        lease_reads: after.lease_reads - before.lease_reads,
    }
}

/// `n` sequential linearizable reads through node `id`, each of which must find
/// `u`; returns how long they took.
async fn read_n(cluster: &Cluster, id: u64, u: &User, n: usize) -> Duration {
    let storage = cluster.storage(id);
    let started = Instant::now();
    for _ in 0..n {
        let got = storage.get_user(&u.id).await.unwrap();
        assert_eq!(got.map(|g| g.username).as_ref(), Some(&u.username));
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_lease_the_leader_confirms_leadership_per_half_lease_not_per_read() {
    let cluster = Cluster::start_with(3, mode(ReadConsistency::Lease)).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let node = &cluster.nodes[(leader - 1) as usize];
    let u = user("leased");
    cluster
        .storage(leader)
        .create_user(u.clone())
        .await
        .unwrap();
    // The lease, half of the longest election timeout, renewed in the background
    // once half used: about one round per quarter of that while reads keep coming.
    let renew_every = node.cfg.election_timeout * 2 / 4;
    let rounds_allowed = |took: Duration| (took.as_millis() / renew_every.as_millis()) as u64 + 3;

    let before = node.node.read_stats();
    let took = read_n(&cluster, leader, &u, 300).await;
    let d = delta(node.node.read_stats(), before);
    assert!(
        d.quorum_rounds <= rounds_allowed(took),
        "{d:?} for 300 reads in {took:?}"
    );
    assert!(d.lease_reads >= 300 - d.quorum_rounds, "{d:?}");

    // A follower asks the leader for the read index: served under the same lease.
    let follower = cluster.follower().await;
    let before = node.node.read_stats();
    let took = read_n(&cluster, follower, &u, 100).await;
    let d = delta(node.node.read_stats(), before);
    assert!(
        d.quorum_rounds <= rounds_allowed(took),
        "{d:?} for 100 follower reads in {took:?}"
    );
    assert!(d.lease_reads >= 1, "{d:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_read_index_every_batch_of_reads_costs_a_quorum_round() {
    let cluster = Cluster::start_with(3, mode(ReadConsistency::ReadIndex)).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let node = &cluster.nodes[(leader - 1) as usize];
    let u = user("indexed");
    cluster
        .storage(leader)
        .create_user(u.clone())
        .await
        .unwrap();
    let before = node.node.read_stats();
    read_n(&cluster, leader, &u, 100).await;
    let d = delta(node.node.read_stats(), before);
    // Sequential reads: each is a batch of its own.
    assert_eq!(d.lease_reads, 0, "{d:?}");
    assert!(d.quorum_rounds >= 100, "{d:?}");
    cluster.shutdown().await;
}

/// In both linearizable modes: a write acknowledged through one follower is seen at
/// once by a read through the other follower and through the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_acknowledged_anywhere_is_read_at_once_everywhere_in_both_modes() {
    for m in [ReadConsistency::Lease, ReadConsistency::ReadIndex] {
        let cluster = Cluster::start_with(3, mode(m)).await;
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        for i in 0..30 {
            let u = user(&format!("u{i}"));
            let (writer, reader) = if i % 2 == 0 {
                (followers[0], followers[1])
            } else {
                (followers[1], followers[0])
            };
            cluster
                .storage(writer)
                .create_user(u.clone())
                .await
                .unwrap();
            for id in [reader, leader] {
                let got = cluster.storage(id).get_user(&u.id).await;
                assert!(
                    matches!(&got, Ok(Some(g)) if g.username == u.username),
                    "{m:?}: node {id} missed {}: {got:?}",
                    u.username
                );
            }
        }
        cluster.shutdown().await;
    }
}
