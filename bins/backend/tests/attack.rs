//! The cluster takeover from issue 7, tried against real `auth-backend` processes:
//! forged Raft and admin RPCs on every port of every node, with every kind of missing or
//! wrong credential; a node speaking for another; an admin on the client port; a huge
//! snapshot offset; and start-up with bad certificates.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use auth_proto::v1 as pb;
use auth_proto::v1::cluster_admin_client::ClusterAdminClient;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use auth_raft::pki::CertRequest;
use auth_raft::tls::PeerIdentity;
use auth_testing::{ProcCluster, TestCa, write_signing_key};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");

const PW: &str = "victim-password-1";
/// A well-formed refresh token of the attacker's choosing.
const FORGED_REFRESH: &str =
    "0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// How the attacker connects.
#[derive(Debug, Clone, Copy)]
enum Cred {
    Plaintext,
    TlsWithoutCertificate,
    ForeignCaCertificate,
}

fn endpoint(addr: &str, tls: Option<ClientTlsConfig>) -> Channel {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut e = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        e = e.tls_config(tls).unwrap();
    }
    e.connect_lazy()
}

fn attacker_channel(c: &ProcCluster, addr: &str, cred: Cred, foreign: &TestCa) -> Channel {
    let trust = c.ca.client_tls_config();
    match cred {
        Cred::Plaintext => endpoint(addr, None),
        Cred::TlsWithoutCertificate => endpoint(addr, Some(trust)),
        Cred::ForeignCaCertificate => {
            // A node certificate (and an admin one would fare the same) from another CA.
            let forged = foreign.identity(PeerIdentity::Node(1));
            endpoint(addr, Some(trust.identity(forged)))
        }
    }
}

fn vote(term: u64, node_id: u64) -> Option<pb::VotePb> {
    Some(pb::VotePb {
        leader_id: Some(pb::LeaderIdPb { term, node_id }),
        committed: true,
    })
}

fn forged_session(victim: &str) -> pb::Session {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    pb::Session {
        id: FORGED_REFRESH[..32].into(),
        user_id: victim.into(),
        refresh_hash: Sha256::digest(FORGED_REFRESH.as_bytes()).to_vec(),
        created_at_ms: now,
        last_used_at_ms: now,
        expires_at_ms: now + 3_600_000,
        absolute_expires_at_ms: now + 3_600_000,
        ..Default::default()
    }
}

fn forward(cluster_id: &str, op: pb::command::Op) -> pb::ForwardRequest {
    pb::ForwardRequest {
        batch: Some(pb::CommandBatch {
            proposed_at_ms: 0,
            commands: vec![pb::Command {
                request_id: vec![7; 16],
                op: Some(op),
            }],
        }),
        cluster_id: cluster_id.into(),
    }
}

/// Every step of the takeover through `ch`; each must be refused.
async fn try_takeover(ch: Channel, cluster_id: &str, victim: &str, term: u64, what: &str) {
    let mut raft = RaftServiceClient::new(ch.clone());
    let mut admin = ClusterAdminClient::new(ch);
    let mut answered = Vec::new();
    if admin.status(pb::StatusRequest {}).await.is_ok() {
        answered.push("Status");
    }
    let create = pb::command::Op::CreateSession(forged_session(victim));
    if raft
        .forward(forward(cluster_id, create.clone()))
        .await
        .is_ok()
    {
        answered.push("Forward(CreateSession)");
    }
    let streamed = tokio_stream::iter(vec![forward(cluster_id, create)]);
    if let Ok(replies) = raft.forward_stream(streamed).await
        && let Ok(Some(_)) = replies.into_inner().message().await
    {
        answered.push("ForwardStream(CreateSession)");
    }
    let wipe = pb::command::Op::DeleteExpired(pb::DeleteExpiredCommand {
        now_ms: i64::MAX / 2,
        limit: 1_000_000,
    });
    if raft.forward(forward(cluster_id, wipe)).await.is_ok() {
        answered.push("Forward(DeleteExpired)");
    }
    let learner = pb::AddLearnerRequest {
        node: Some(pb::NodeAddr {
            id: 66,
            addr: "127.0.0.1:9".into(),
        }),
    };
    if admin.add_learner(learner).await.is_ok() {
        answered.push("AddLearner");
    }
    if admin
        .change_membership(pb::ChangeMembershipRequest { voters: vec![1] })
        .await
        .is_ok()
    {
        answered.push("ChangeMembership");
    }
    if admin
        .remove_node(pb::RemoveNodeRequest { id: 2 })
        .await
        .is_ok()
    {
        answered.push("RemoveNode");
    }
    let append = pb::AppendEntriesRequestPb {
        vote: vote(term + 100, 1),
        cluster_id: cluster_id.into(),
        ..Default::default()
    };
    if raft.append_entries(append.clone()).await.is_ok() {
        answered.push("AppendEntries");
    }
    // The same on a stream: refused when it opens, or its message is.
    if let Ok(replies) = raft.append_stream(tokio_stream::iter(vec![append])).await
        && let Ok(Some(_)) = replies.into_inner().message().await
    {
        answered.push("AppendStream");
    }
    let vote_req = pb::VoteRequestPb {
        vote: vote(term + 100, 1),
        last_log_id: None,
        cluster_id: cluster_id.into(),
    };
    if raft.vote(vote_req).await.is_ok() {
        answered.push("Vote");
    }
    assert!(answered.is_empty(), "{what}: answered {answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_takeover_is_refused_on_every_port_with_any_wrong_credential() {
    let c = ProcCluster::start(BIN, 3, &[]);
    c.leader(Duration::from_secs(10)).await;
    let api = RemoteAuth::new(c.endpoints(), c.remote_options()).unwrap();
    api.register(RegisterRequest {
        username: "victim".into(),
        password: PW.into(),
        client: None,
    })
    .await
    .unwrap();
    let tokens = api
        .login(LoginRequest {
            username: "victim".into(),
            password: PW.into(),
            client: None,
        })
        .await
        .unwrap()
        .tokens
        .unwrap();
    let me = api
        .verify(VerifyRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap();
    let term = c.statuses().await.iter().map(|s| s.term).max().unwrap_or(0);
    let foreign = TestCa::new("attacker CA");
    for node in &c.nodes {
        for addr in [&node.addr, &node.peer_addr] {
            for cred in [
                Cred::Plaintext,
                Cred::TlsWithoutCertificate,
                Cred::ForeignCaCertificate,
            ] {
                let ch = attacker_channel(&c, addr, cred, &foreign);
                let what = format!("{addr} with {cred:?}");
                try_takeover(ch, &c.cluster_id, &me.user_id, term, &what).await;
            }
        }
    }
    // The forged refresh token opens nothing; the victim's session and the
    // membership are as they were.
    let e = api
        .refresh(RefreshRequest {
            refresh_token: FORGED_REFRESH.into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_token", "{e}");
    let sessions = api
        .list_sessions(ListSessionsRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(sessions.sessions.len(), 1);
    api.refresh(RefreshRequest {
        refresh_token: tokens.refresh_token,
        client: None,
    })
    .await
    .unwrap();
    for st in c.statuses().await {
        let m = st.membership.unwrap();
        assert_eq!(m.configs.last().unwrap().ids, vec![1, 2, 3]);
        assert_eq!(m.nodes.len(), 3, "no learner was added");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_bind_identity_and_the_client_port_serves_no_raft_or_admin() {
    let c = ProcCluster::start(BIN, 3, &["--max-snapshot-bytes", "100000"]);
    let leader = c.leader(Duration::from_secs(10)).await;
    let st = c.statuses().await;
    let term = st.iter().map(|s| s.term).max().unwrap_or(0);
    let issue = |who: PeerIdentity| c.ca.client_tls_config_as(who);
    // Node 2's certificate, claiming to be leader 3 / candidate 3, at node 1.
    let target = &c.nodes[0].peer_addr;
    let mut as2 = RaftServiceClient::new(endpoint(target, Some(issue(PeerIdentity::Node(2)))));
    let e = as2
        .append_entries(pb::AppendEntriesRequestPb {
            vote: vote(term + 1, 3),
            cluster_id: c.cluster_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // And on an AppendEntries stream, which node 2's certificate may open.
    let mut replies = as2
        .append_stream(tokio_stream::iter(vec![pb::AppendEntriesRequestPb {
            vote: vote(term + 1, 3),
            cluster_id: c.cluster_id.clone(),
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    let e = replies.message().await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = as2
        .install_snapshot(pb::InstallSnapshotRequestPb {
            vote: vote(term + 1, 3),
            cluster_id: c.cluster_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = as2
        .vote(pb::VoteRequestPb {
            vote: Some(pb::VotePb {
                leader_id: Some(pb::LeaderIdPb {
                    term: term + 1,
                    node_id: 3,
                }),
                committed: false,
            }),
            last_log_id: None,
            cluster_id: c.cluster_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // TransferLeader ("elect yourself now") only from the current leader in its term:
    // another node's certificate claiming to be the leader is refused, and a real
    // member that does not lead (or names a stale term) moves nothing.
    let e = as2
        .transfer_leader(pb::TransferLeaderRequest {
            cluster_id: c.cluster_id.clone(),
            leader_id: leader,
            term,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    let mut as_follower = RaftServiceClient::new(endpoint(
        &c.nodes[usize::try_from(other - 1).unwrap()].peer_addr,
        Some(issue(PeerIdentity::Node(follower))),
    ));
    for (claimed, claimed_term) in [(follower, term), (leader, term.saturating_sub(1))] {
        let e = as_follower
            .transfer_leader(pb::TransferLeaderRequest {
                cluster_id: c.cluster_id.clone(),
                leader_id: claimed,
                term: claimed_term,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e.code(), Code::PermissionDenied | Code::FailedPrecondition),
            "{e:?}"
        );
    }
    let after = c.statuses().await;
    assert!(
        after
            .iter()
            .all(|s| s.term == term && s.leader_id == leader),
        "no election was started: {after:?}"
    );

    // A node's certificate is not an admin's.
    let mut node_admin =
        ClusterAdminClient::new(endpoint(target, Some(issue(PeerIdentity::Node(1)))));
    let e = node_admin
        .add_learner(pb::AddLearnerRequest {
            node: Some(pb::NodeAddr {
                id: 66,
                addr: "127.0.0.1:9".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // An admin's certificate on a client port reaches no admin or Raft RPC.
    let admin_tls = issue(PeerIdentity::Admin("ops".into()));
    let client_port = endpoint(&c.nodes[0].addr, Some(admin_tls.clone()));
    let e = ClusterAdminClient::new(client_port.clone())
        .status(pb::StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    let e = RaftServiceClient::new(client_port)
        .read_index(pb::ReadIndexRequest {
            cluster_id: c.cluster_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // ...while on the peer port it may read the status.
    ClusterAdminClient::new(endpoint(target, Some(admin_tls)))
        .status(pb::StatusRequest {})
        .await
        .unwrap();

    // A snapshot chunk claiming offset 2^40, with the real leader's certificate, sent to
    // a follower: refused at once, and the follower's memory does not grow.
    let follower = (1..=3u64).find(|id| *id != leader).unwrap();
    let pid = c.nodes[(follower - 1) as usize].pid().unwrap();
    let before = rss_kib(pid);
    let mut as_leader = RaftServiceClient::new(endpoint(
        &c.nodes[(follower - 1) as usize].peer_addr,
        Some(issue(PeerIdentity::Node(leader))),
    ));
    let leader_term = c
        .statuses()
        .await
        .iter()
        .find(|s| s.id == leader)
        .map(|s| s.term)
        .unwrap();
    let e = as_leader
        .install_snapshot(pb::InstallSnapshotRequestPb {
            vote: vote(leader_term, leader),
            meta: Some(pb::SnapshotMetaPb {
                last_log_id: None,
                last_membership: Some(pb::StoredMembershipPb {
                    log_id: None,
                    membership: Some(pb::MembershipPb::default()),
                }),
                snapshot_id: "huge".into(),
            }),
            offset: 1 << 40,
            data: vec![0xAB; 64 * 1024],
            done: false,
            cluster_id: c.cluster_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    // In order, but beyond --max-snapshot-bytes: refused, and the spool is dropped.
    let chunk = |offset: u64| pb::InstallSnapshotRequestPb {
        vote: vote(leader_term, leader),
        meta: Some(pb::SnapshotMetaPb {
            last_log_id: None,
            last_membership: Some(pb::StoredMembershipPb {
                log_id: None,
                membership: Some(pb::MembershipPb::default()),
            }),
            snapshot_id: "big".into(),
        }),
        offset,
        data: vec![0xCD; 64 * 1024],
        done: false,
        cluster_id: c.cluster_id.clone(),
    };
    as_leader.install_snapshot(chunk(0)).await.unwrap();
    let e = as_leader
        .install_snapshot(chunk(64 * 1024))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // On the streams: a message a byte over the 16 MiB cap, and an unreadable one,
    // each end their stream with the reason; nothing after them is read.
    let as_leader_ch = endpoint(
        &c.nodes[(follower - 1) as usize].peer_addr,
        Some(issue(PeerIdentity::Node(leader))),
    );
    for rpc in [
        "/auth.v1.RaftService/AppendStream",
        "/auth.v1.RaftService/ForwardStream",
    ] {
        for (bad, code, says) in [
            (
                vec![0u8; 16 * 1024 * 1024 + 1],
                Code::OutOfRange,
                "too large",
            ),
            (vec![0x0f, 0xff, 0x01], Code::Internal, "decode"),
        ] {
            let replies =
                auth_testing::raw_stream(as_leader_ch.clone(), rpc, vec![bad, Vec::new()]).await;
            assert!(
                matches!(replies.as_slice(),
                    [Err(e)] if e.code() == code && e.message().contains(says)),
                "{rpc}: {replies:?}"
            );
        }
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// Resident set size of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn backend() -> Command {
    let mut c = Command::new(BIN);
    c.stdin(Stdio::null());
    c
}

/// `auth-backend serve` for node 1 of a one-node cluster with these peer TLS files;
/// returns (exit code, stderr). Bad files make it exit before it binds anything.
fn serve_with(dir: &std::path::Path, cert: &str, key: &str, ca: &str) -> (Option<i32>, String) {
    let p = |f: &str| dir.join(f).display().to_string();
    let out = backend()
        .args([
            "serve",
            "--storage",
            "raft",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1",
            "--data-dir",
            &p("data"),
            "--signing-key-file",
            &p("signing.key"),
            "--peer-cert-file",
            &p(cert),
            "--peer-key-file",
            &p(key),
            "--peer-trusted-ca-file",
            &p(ca),
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_certificates_are_start_up_errors_naming_the_file() {
    // ca.pem, and in the same directory everything else.
    let ca = TestCa::new("ca");
    let d = ca.dir();
    write_signing_key(&d.join("signing.key"));
    let other = TestCa::new("other");
    std::fs::write(d.join("other-ca.pem"), other.cert_pem()).unwrap();
    ca.issue_files(PeerIdentity::Node(1), "good");
    ca.issue_files(PeerIdentity::Node(2), "node2");
    let mut expired = CertRequest::new(PeerIdentity::Node(1), ["127.0.0.1"]);
    expired.not_before = SystemTime::now() - Duration::from_secs(7200);
    expired.not_after = SystemTime::now() - Duration::from_secs(3600);
    ca.authority()
        .issue(&expired)
        .unwrap()
        .write(d, "expired")
        .unwrap();

    for (cert, key, ca_file, file, why) in [
        (
            "expired.pem",
            "expired.key",
            "ca.pem",
            "expired.pem",
            "expired",
        ),
        (
            "good.pem",
            "good.key",
            "other-ca.pem",
            "good.pem",
            "not issued by",
        ),
        ("node2.pem", "node2.key", "ca.pem", "node2.pem", "node 2"),
        (
            "good.pem",
            "node2.key",
            "ca.pem",
            "node2.key",
            "does not match",
        ),
    ] {
        let (code, stderr) = serve_with(d, cert, key, ca_file);
        assert_eq!(code, Some(2), "{cert}/{key}: {stderr}");
        assert!(
            stderr.contains(file) && stderr.contains(why),
            "{cert}/{key}/{ca_file}: {stderr}"
        );
    }
    // A key others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("good.key"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let (code, stderr) = serve_with(d, "good.pem", "good.key", "ca.pem");
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("chmod 600") && stderr.contains("good.key"),
            "{stderr}"
        );
    }
    // Raft without TLS files and without --insecure is refused.
    let out = backend()
        .args([
            "serve",
            "--storage",
            "raft",
            "--id",
            "1",
            "--peer-listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1",
            "--data-dir",
            d.join("data").to_str().unwrap(),
            "--signing-key-file",
            d.join("signing.key").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn insecure_mode_warns_on_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_signing_key(&d.join("signing.key"));
    let peer_addr = format!("127.0.0.1:{}", auth_testing::child_port());
    for _ in 0..2 {
        let mut child = backend()
            .args([
                "serve",
                "--storage",
                "raft",
                "--insecure",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--peer-listen",
                &peer_addr,
                "--peers",
                &format!("1={peer_addr}"),
                "--data-dir",
                d.join("data").to_str().unwrap(),
                "--signing-key-file",
                d.join("signing.key").to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait (bounded) for "listening on", then stop it and read what it logged.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(line.starts_with("listening on"), "{line}");
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--insecure") && stderr.contains("WARN"),
            "{stderr}"
        );
    }
}
