//! Time in the log is the leader's: a proposer whose clock is off cannot sweep sessions,
//! write times outside the leader's bound, or age the de-duplication table, on any node.
//!
//! Every node's clock is injected: one frozen instant `T` (the leader's "now") plus a
//! per-node offset the test moves, so the outcomes depend on the clocks, never on timing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use auth_proto::v1 as pb;
use auth_proto::v1::command::Op;
use auth_proto::v1::command_result::Result as Res;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use auth_raft::tls::PeerIdentity;
use auth_raft::{NodeClock, RaftStorage};
use auth_storage::{RotateOutcome, RotateRefresh, Session, Storage, StorageError, User};
use common::Cluster;
use tonic::transport::Endpoint;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// A 3-node cluster whose clocks read `t + offset[id]`, with the leader and a follower.
struct Skewed {
    cluster: Cluster,
    offsets: Arc<[AtomicI64; 4]>,
    t: i64,
    leader: u64,
    follower: u64,
}

impl Skewed {
    async fn start() -> Skewed {
        let t = NodeClock::system().now_ms();
        let offsets: Arc<[AtomicI64; 4]> = Arc::new(Default::default());
        let cluster = Cluster::start_with(3, |c| {
            let offsets = Arc::clone(&offsets);
            let id = c.id as usize;
            c.clock = NodeClock::from_fn(move || t + offsets[id].load(Ordering::SeqCst));
            // Steadier leadership than the 100 ms default on a loaded machine: the
            // tests name the leader once.
            c.heartbeat = Duration::from_millis(50);
            c.election_timeout = Duration::from_millis(500);
        })
        .await;
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let follower = cluster.follower().await;
        Skewed {
            cluster,
            offsets,
            t,
            leader,
            follower,
        }
    }

    /// Sets the follower's clock to `t + offset_ms`.
    fn skew_follower(&self, offset_ms: i64) {
        self.offsets[self.follower as usize].store(offset_ms, Ordering::SeqCst);
    }

    fn leader(&self) -> RaftStorage {
        self.cluster.storage(self.leader)
    }

    fn follower(&self) -> RaftStorage {
        self.cluster.storage(self.follower)
    }

    /// The session as every node has it (linearizable reads, so each node has applied
    /// every acknowledged write first).
    async fn session_everywhere(&self, id: &str) -> Vec<Option<Session>> {
        let mut out = Vec::new();
        for node in 1..=3 {
            out.push(self.cluster.storage(node).get_session(id).await.unwrap());
        }
        out
    }

    async fn user_everywhere(&self, id: &str) -> Vec<Option<User>> {
        let mut out = Vec::new();
        for node in 1..=3 {
            out.push(self.cluster.storage(node).get_user(id).await.unwrap());
        }
        out
    }

    async fn finish(self) {
        assert_eq!(
            self.cluster.leader(Duration::from_secs(5)).await,
            self.leader,
            "leadership moved during the test; its expectations named the old leader"
        );
        self.cluster.shutdown().await;
    }
}

fn user(name: &str) -> User {
    User {
        id: format!("{name:0>32}"),
        username: name.into(),
        username_key: name.into(),
        password_hash: "x".into(),
        ..User::default()
    }
}

fn session(name: &str, user_id: &str, created_at_ms: i64, expires_at_ms: i64) -> Session {
    Session {
        id: format!("{name:0>32}"),
        user_id: user_id.into(),
        refresh_hash: format!("hash-of-{name}").into_bytes(),
        created_at_ms,
        last_used_at_ms: created_at_ms,
        expires_at_ms,
        absolute_expires_at_ms: expires_at_ms + 24 * HOUR,
        ..Session::default()
    }
}

fn rotation(s: &Session, now_ms: i64) -> RotateRefresh {
    RotateRefresh {
        session_id: s.id.clone(),
        presented_hash: s.refresh_hash.clone(),
        new_hash: b"successor".to_vec(),
        sealed_successor: b"sealed".to_vec(),
        now_ms,
        idle_ttl_ms: HOUR,
        grace_ms: 0,
    }
}

/// The error is the typed clock-skew refusal, and names no node address.
fn assert_skew_refusal<T: std::fmt::Debug>(r: Result<T, StorageError>, cluster: &Cluster) {
    let e = r.expect_err("a skewed time must be refused");
    let StorageError::Unavailable(m) = &e else {
        panic!("expected unavailable (clock skew), got {e:?}");
    };
    assert!(m.starts_with("clock skew:"), "{m}");
    assert_eq!(e.code(), "unavailable");
    for n in &cluster.nodes {
        assert!(!m.contains(&n.addr), "the error names a node address: {m}");
    }
    assert!(!m.contains("127.0.0.1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_an_hour_ahead_cannot_sweep_sessions_on_any_node() {
    let c = Skewed::start().await;
    let t = c.t;
    let owner = c.leader().create_user(user("owner")).await.unwrap();
    let soon = session("soon", &owner.id, t, t + 30 * MINUTE);
    let later = session("later", &owner.id, t, t + 2 * HOUR);
    for s in [&soon, &later] {
        c.leader().create_session(s.clone(), 0).await.unwrap();
    }

    // The follower's clock jumps an hour ahead; its sweeper asks for its "now".
    c.skew_follower(HOUR);
    assert_skew_refusal(
        c.follower().delete_expired_sessions(t + HOUR, 100).await,
        &c.cluster,
    );
    // The same time handed to the leader by a caller is refused too.
    assert_skew_refusal(
        c.leader().delete_expired_sessions(t + HOUR, 100).await,
        &c.cluster,
    );
    for s in [&soon, &later] {
        assert_eq!(
            c.session_everywhere(&s.id).await,
            vec![Some(s.clone()); 3],
            "{} must survive on every node",
            s.id
        );
    }

    // Within the bound (1.5 s ahead) the sweep runs, but at the leader's time: a
    // session due by the follower's clock and not by the leader's stays.
    c.skew_follower(1_500);
    let due = session("due", &owner.id, t, t - 1);
    let not_yet = session("not-yet", &owner.id, t, t + 1_000);
    for s in [&due, &not_yet] {
        c.leader().create_session(s.clone(), 0).await.unwrap();
    }
    assert_eq!(
        c.follower()
            .delete_expired_sessions(t + 1_500, 100)
            .await
            .unwrap(),
        1,
        "only the session due by the leader's clock goes"
    );
    assert_eq!(c.session_everywhere(&due.id).await, vec![None; 3]);
    for s in [&not_yet, &soon, &later] {
        assert_eq!(c.session_everywhere(&s.id).await, vec![Some(s.clone()); 3]);
    }
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_carrying_a_skewed_time_are_refused_and_writes_within_the_skew_pass() {
    let c = Skewed::start().await;
    let t = c.t;
    let owner = c.leader().create_user(user("owner")).await.unwrap();
    let live = session("live", &owner.id, t, t + 30 * MINUTE);
    let ended = session("ended", &owner.id, t, t - 10 * MINUTE);
    for s in [&live, &ended] {
        c.leader().create_session(s.clone(), 0).await.unwrap();
    }

    // An hour ahead: a new session and a rotation (which would push the expiry an hour
    // out) are refused; nothing changes anywhere.
    c.skew_follower(HOUR);
    let ahead = session("ahead", &owner.id, t + HOUR, t + HOUR + 30 * MINUTE);
    assert_skew_refusal(
        c.follower().create_session(ahead.clone(), 0).await,
        &c.cluster,
    );
    // The bounded form too: its time also decides which sessions count as expired.
    assert_skew_refusal(
        c.follower().create_session(ahead.clone(), 5).await,
        &c.cluster,
    );
    assert_eq!(c.session_everywhere(&ahead.id).await, vec![None; 3]);
    assert_skew_refusal(
        c.follower().rotate_refresh(rotation(&live, t + HOUR)).await,
        &c.cluster,
    );
    assert_eq!(
        c.session_everywhere(&live.id).await,
        vec![Some(live.clone()); 3]
    );
    // Writes without time are not the clock's business.
    let other = c.follower().create_user(user("other")).await.unwrap();
    assert_eq!(
        c.user_everywhere(&other.id).await,
        vec![Some(other.clone()); 3]
    );

    // An hour behind: rotating would revive a session that ended ten minutes ago.
    c.skew_follower(-HOUR);
    assert_skew_refusal(
        c.follower()
            .rotate_refresh(rotation(&ended, t - HOUR))
            .await,
        &c.cluster,
    );
    assert_eq!(
        c.session_everywhere(&ended.id).await,
        vec![Some(ended.clone()); 3]
    );

    // One second ahead is within the 2 s default: accepted, with the time as sent.
    c.skew_follower(1_000);
    let near = session("near", &owner.id, t + 1_000, t + 1_000 + 30 * MINUTE);
    assert_eq!(
        c.follower().create_session(near.clone(), 0).await.unwrap(),
        near
    );
    assert_eq!(
        c.session_everywhere(&near.id).await,
        vec![Some(near.clone()); 3]
    );
    let RotateOutcome::Rotated(rotated) = c
        .follower()
        .rotate_refresh(rotation(&live, t + 1_000))
        .await
        .unwrap()
    else {
        panic!("a rotation within the skew must rotate");
    };
    assert_eq!(rotated.rotated_at_ms, t + 1_000);
    assert_eq!(rotated.expires_at_ms, t + 1_000 + HOUR);
    assert_eq!(c.session_everywhere(&live.id).await, vec![Some(rotated); 3]);
    c.finish().await;
}

/// Sends one command to the leader's `Forward` RPC as the follower would, with a
/// request id and batch time of the test's choosing.
async fn forward(c: &Skewed, request_id: &[u8], proposed_at_ms: i64, op: Op) -> pb::CommandResult {
    let tls = c.cluster.ca.peer_tls(PeerIdentity::Node(c.follower));
    let leader_addr = &c.cluster.nodes[(c.leader - 1) as usize].addr;
    let channel = Endpoint::from_shared(format!("https://{leader_addr}"))
        .unwrap()
        .tls_config(tls.client_config())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut r = RaftServiceClient::new(channel)
        .forward(pb::ForwardRequest {
            batch: Some(pb::CommandBatch {
                proposed_at_ms,
                commands: vec![pb::Command {
                    request_id: request_id.to_vec(),
                    op: Some(op),
                }],
            }),
            cluster_id: c.cluster.cluster_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results.len(), 1, "{r:?}");
    r.results.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skewed_proposer_does_not_age_the_dedup_table() {
    let c = Skewed::start().await;
    let t = c.t;
    let first_id = [0xa1; 16];
    let alice = user("alice");
    let first = forward(&c, &first_id, t, Op::CreateUser(alice.clone())).await;
    assert!(matches!(first.result, Some(Res::User(_))), "{first:?}");
    // Returns how many sessions went with her: none.
    assert_eq!(c.leader().delete_user(&alice.id).await.unwrap(), 0);
    assert_eq!(c.user_everywhere(&alice.id).await, vec![None; 3]);

    // Batches from a proposer an hour ahead: through its storage and as a raw forward
    // naming that time. Were it believed, every remembered request id would be older
    // than the two-minute window.
    c.skew_follower(HOUR);
    c.follower().create_user(user("bob")).await.unwrap();
    let carol = forward(&c, &[0xa2; 16], t + HOUR, Op::CreateUser(user("carol"))).await;
    assert!(matches!(carol.result, Some(Res::User(_))), "{carol:?}");

    // A retry of the first write is still recognised: the cached answer, and alice,
    // deleted since, is not created again on any node.
    let retry = forward(&c, &first_id, t, Op::CreateUser(alice.clone())).await;
    assert_eq!(retry, first);
    assert_eq!(c.user_everywhere(&alice.id).await, vec![None; 3]);
    c.finish().await;
}
