//! Who may call what on the peer listener: every RPC is bound to the caller's client
//! certificate. (The same attacks against the real binaries are in auth-backend's
//! `tests/attack.rs`.)

mod common;

use std::time::Duration;

use auth_proto::v1 as pb;
use auth_proto::v1::cluster_admin_client::ClusterAdminClient;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use auth_raft::tls::PeerIdentity;
use auth_testing::TestCa;
use common::Cluster;
use tonic::Code;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

async fn channel(addr: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut e = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        e = e.tls_config(tls).unwrap();
    }
    e.connect().await.map_err(|e| format!("{e:?}"))
}

fn vote(term: u64, node_id: u64) -> Option<pb::VotePb> {
    Some(pb::VotePb {
        leader_id: Some(pb::LeaderIdPb { term, node_id }),
        committed: true,
    })
}

/// Sends `requests` on a new AppendEntries stream: every reply until the stream ends
/// (the refusal of the stream itself as the only item).
async fn on_a_stream(
    c: &mut RaftServiceClient<Channel>,
    requests: Vec<pb::AppendEntriesRequestPb>,
) -> Vec<Result<pb::AppendEntriesResponsePb, tonic::Status>> {
    match c.append_stream(tokio_stream::iter(requests)).await {
        Ok(r) => auth_testing::replies(r.into_inner()).await,
        Err(e) => vec![Err(e)],
    }
}

/// Status, Forward and an AppendEntries stream through `ch`: all must fail (at connect
/// or per call).
async fn refused_everything(ch: Result<Channel, String>, cluster_id: &str) {
    let Ok(ch) = ch else { return };
    let st = ClusterAdminClient::new(ch.clone())
        .status(pb::StatusRequest {})
        .await;
    assert!(st.is_err(), "status answered: {st:?}");
    let append = pb::AppendEntriesRequestPb {
        vote: vote(1_000, 1),
        cluster_id: cluster_id.to_owned(),
        ..Default::default()
    };
    let replies = on_a_stream(&mut RaftServiceClient::new(ch.clone()), vec![append]).await;
    assert!(
        matches!(replies.as_slice(), [Err(_)]),
        "append stream answered: {replies:?}"
    );
    let forward = pb::ForwardRequest {
        batch: Some(pb::CommandBatch::default()),
        cluster_id: cluster_id.to_owned(),
    };
    let mut raft = RaftServiceClient::new(ch);
    let fwd = raft.forward(forward.clone()).await;
    assert!(fwd.is_err(), "forward answered: {fwd:?}");
    let fwd = match raft.forward_stream(tokio_stream::iter(vec![forward])).await {
        Ok(replies) => replies.into_inner().message().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(fwd.is_err(), "forward stream answered: {fwd:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_without_a_certificate_of_this_cluster_reach_nothing() {
    let cluster = Cluster::start(3).await;
    let addr = cluster.nodes[0].addr.clone();
    // Plaintext.
    refused_everything(channel(&addr, None).await, &cluster.cluster_id).await;
    // TLS that trusts the cluster CA but presents no certificate.
    let no_cert = cluster.ca.client_tls_config();
    refused_everything(channel(&addr, Some(no_cert)).await, &cluster.cluster_id).await;
    // A node certificate from a foreign CA, with the same node id, by a client that
    // trusts the cluster CA (so only the server's check can stop it).
    let foreign = TestCa::new("foreign");
    let cfg = cluster
        .ca
        .client_tls_config()
        .identity(foreign.identity(PeerIdentity::Node(2)));
    refused_everything(channel(&addr, Some(cfg)).await, &cluster.cluster_id).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cannot_speak_for_another_node() {
    let cluster = Cluster::start(3).await;
    let target = &cluster.nodes[0];
    let status = target.node.status();
    let node2 = cluster.ca.peer_tls(PeerIdentity::Node(2));
    let mut c = RaftServiceClient::new(
        channel(&target.addr, Some(node2.client_config()))
            .await
            .unwrap(),
    );
    let e = c
        .append_entries(pb::AppendEntriesRequestPb {
            vote: vote(status.term + 1, 3),
            cluster_id: cluster.cluster_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // The same on a stream, which node 2 may open: its message claiming node 3 is
    // refused, and the refusal ends the stream (the next message is never read; were
    // it, it would be refused for naming another cluster).
    let replies = on_a_stream(
        &mut c,
        vec![
            pb::AppendEntriesRequestPb {
                vote: vote(status.term + 1, 3),
                cluster_id: cluster.cluster_id.clone(),
                ..Default::default()
            },
            pb::AppendEntriesRequestPb {
                vote: vote(status.term + 1, 2),
                cluster_id: "another cluster".into(),
                ..Default::default()
            },
        ],
    )
    .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    let e = replies.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .install_snapshot(pb::InstallSnapshotRequestPb {
            vote: vote(status.term + 1, 3),
            cluster_id: cluster.cluster_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .vote(pb::VoteRequestPb {
            vote: Some(pb::VotePb {
                leader_id: Some(pb::LeaderIdPb {
                    term: status.term + 5,
                    node_id: 3,
                }),
                committed: false,
            }),
            last_log_id: None,
            cluster_id: cluster.cluster_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Nothing moved: no new term.
    assert!(target.node.status().term <= status.term + 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_rpcs_need_an_admin_certificate_and_admins_are_not_nodes() {
    let cluster = Cluster::start(3).await;
    let addr = cluster.nodes[0].addr.clone();
    let learner = pb::AddLearnerRequest {
        node: Some(pb::NodeAddr {
            id: 9,
            addr: "127.0.0.1:9".into(),
        }),
    };
    for who in [
        PeerIdentity::Node(2),
        PeerIdentity::Node(9),
        PeerIdentity::Client("web".into()),
    ] {
        let tls = cluster.ca.peer_tls(who.clone());
        let mut admin =
            ClusterAdminClient::new(channel(&addr, Some(tls.client_config())).await.unwrap());
        let e = admin.add_learner(learner.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        let e = admin
            .save_backup(pb::SaveBackupRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        // Status is read-only and holds no secret: a member may ask (the admin page
        // shows the whole cluster from any node); nobody else may.
        let status = admin.status(pb::StatusRequest {}).await;
        if who == PeerIdentity::Node(2) {
            assert_eq!(status.unwrap().into_inner().id, 1);
        } else {
            assert_eq!(status.unwrap_err().code(), Code::PermissionDenied, "{who}");
        }
    }
    let admin_tls = cluster.ca.peer_tls(PeerIdentity::Admin("ops".into()));
    let ch = channel(&addr, Some(admin_tls.client_config()))
        .await
        .unwrap();
    let st = ClusterAdminClient::new(ch.clone())
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.id, 1);
    let e = RaftServiceClient::new(ch.clone())
        .read_index(pb::ReadIndexRequest {
            cluster_id: cluster.cluster_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // An admin is not a node: no AppendEntries stream opens for it.
    let e = RaftServiceClient::new(ch)
        .append_stream(tokio_stream::iter(Vec::<pb::AppendEntriesRequestPb>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_chunks_must_come_in_order() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let follower = cluster.follower().await;
    let target = &cluster.nodes[(follower - 1) as usize];
    let st = cluster.nodes[(leader - 1) as usize].node.status();
    let leader_tls = cluster.ca.peer_tls(PeerIdentity::Node(leader));
    let mut c = RaftServiceClient::new(
        channel(&target.addr, Some(leader_tls.client_config()))
            .await
            .unwrap(),
    );
    let meta = Some(pb::SnapshotMetaPb {
        last_log_id: None,
        last_membership: Some(pb::StoredMembershipPb {
            log_id: None,
            membership: Some(pb::MembershipPb::default()),
        }),
        snapshot_id: "forged".into(),
    });
    let e = c
        .install_snapshot(pb::InstallSnapshotRequestPb {
            vote: vote(st.term, leader),
            meta,
            offset: 1 << 40,
            data: vec![1; 16],
            done: false,
            cluster_id: cluster.cluster_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_open_only_for_member_nodes() {
    let cluster = Cluster::start(3).await;
    let addr = cluster.nodes[0].addr.clone();
    for who in [
        PeerIdentity::Admin("ops".into()),
        PeerIdentity::Node(9),
        PeerIdentity::Client("web".into()),
    ] {
        let tls = cluster.ca.peer_tls(who.clone());
        let mut c =
            RaftServiceClient::new(channel(&addr, Some(tls.client_config())).await.unwrap());
        let e = c
            .append_stream(tokio_stream::iter(Vec::<pb::AppendEntriesRequestPb>::new()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        let e = c
            .forward_stream(tokio_stream::iter(Vec::<pb::ForwardRequest>::new()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
    }
    // A member's forward for another cluster is refused, and that ends the stream.
    let tls = cluster.ca.peer_tls(PeerIdentity::Node(2));
    let mut c = RaftServiceClient::new(channel(&addr, Some(tls.client_config())).await.unwrap());
    let foreign = pb::ForwardRequest {
        batch: Some(pb::CommandBatch::default()),
        cluster_id: "another cluster".into(),
    };
    let mut replies = c
        .forward_stream(tokio_stream::iter(vec![foreign.clone(), foreign]))
        .await
        .unwrap()
        .into_inner();
    let e = replies.message().await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(matches!(replies.message().await, Ok(None)));
    cluster.shutdown().await;
}

/// Membership is checked again at every forwarded batch, not only when a stream opens:
/// a node removed from the cluster cannot go on writing through a stream it opened
/// while it was a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_member_forwards_nothing_more_on_an_open_stream() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let removed = (1..=3).find(|id| *id != leader).unwrap();
    let leader_addr = &cluster.nodes[(leader - 1) as usize].addr;
    let as_removed = cluster.ca.peer_tls(PeerIdentity::Node(removed));
    let mut c = RaftServiceClient::new(
        channel(leader_addr, Some(as_removed.client_config()))
            .await
            .unwrap(),
    );
    let batch = || pb::ForwardRequest {
        batch: Some(pb::CommandBatch::default()),
        cluster_id: cluster.cluster_id.clone(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = c
        .forward_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // As a member: answered.
    tx.send(batch()).await.unwrap();
    replies.message().await.unwrap().unwrap();
    let admin = cluster.ca.peer_tls(PeerIdentity::Admin("ops".into()));
    ClusterAdminClient::new(
        channel(leader_addr, Some(admin.client_config()))
            .await
            .unwrap(),
    )
    .remove_node(pb::RemoveNodeRequest { id: removed })
    .await
    .unwrap();
    // Removed: the next batch on the same stream is refused.
    tx.send(batch()).await.unwrap();
    let e = replies.message().await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    cluster.shutdown().await;
}

/// A member that sends an unreadable or oversized message on a stream gets the reason
/// as the stream's status, the stream ends, what follows it on the stream is not acted
/// on, and the node goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_or_oversized_stream_messages_end_the_stream_and_nothing_else() {
    use auth_storage::Storage;
    use prost::Message;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let member = (1..=3).find(|id| *id != leader).unwrap();
    let addr = cluster.nodes[(leader - 1) as usize].addr.clone();
    let tls = cluster.ca.peer_tls(PeerIdentity::Node(member));
    let ch = channel(&addr, Some(tls.client_config())).await.unwrap();
    // A forwarded batch that creates user `name`: visible in storage once served.
    let create = |name: &str, id: u8| {
        pb::ForwardRequest {
            batch: Some(pb::CommandBatch {
                proposed_at_ms: 0,
                commands: vec![pb::Command {
                    request_id: vec![id; 16],
                    op: Some(pb::command::Op::CreateUser(pb::User {
                        id: format!("{id:02x}").repeat(16),
                        username: name.into(),
                        username_key: name.into(),
                        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                        version: 1,
                        ..Default::default()
                    })),
                }],
            }),
            cluster_id: cluster.cluster_id.clone(),
        }
        .encode_to_vec()
    };
    // Field 1 with wire type 7, which does not exist.
    let unreadable = vec![0x0f, 0xff, 0x01];
    // One byte over the 16 MiB cap on a message between nodes.
    let oversized = vec![0u8; 16 * 1024 * 1024 + 1];
    let mut n = 0u8;
    for rpc in [
        "/auth.v1.RaftService/AppendStream",
        "/auth.v1.RaftService/ForwardStream",
    ] {
        for (what, bad, code, says) in [
            ("unreadable", &unreadable, Code::Internal, "decode"),
            ("oversized", &oversized, Code::OutOfRange, "too large"),
        ] {
            n += 1;
            let after = create(&format!("after-{n}"), n);
            let replies = auth_testing::raw_stream(ch.clone(), rpc, vec![bad.clone(), after]).await;
            assert_eq!(replies.len(), 1, "{rpc} {what}: {replies:?}");
            let e = replies.into_iter().next().unwrap().unwrap_err();
            assert_eq!(e.code(), code, "{rpc} {what}: {e:?}");
            assert!(e.message().contains(says), "{rpc} {what}: {e:?}");
        }
    }
    // The same connection still serves a well-formed stream, and a batch like those
    // that followed the bad messages is acted on.
    let replies = auth_testing::raw_stream(
        ch,
        "/auth.v1.RaftService/ForwardStream",
        vec![create("served", 99)],
    )
    .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    let result = pb::BatchResult::decode(replies[0].as_ref().unwrap().as_slice()).unwrap();
    assert_eq!(result.results.len(), 1, "{result:?}");
    let storage = cluster.storage(leader);
    assert!(
        storage
            .get_user_by_username("served")
            .await
            .unwrap()
            .is_some()
    );
    for k in 1..=n {
        let name = format!("after-{k}");
        assert!(
            storage.get_user_by_username(&name).await.unwrap().is_none(),
            "{name} was created from a stream that had already failed"
        );
    }
    cluster.shutdown().await;
}
