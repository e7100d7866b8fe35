//! Backup and restore with the real binaries: fill a 3-node cluster, save a backup from
//! its leader, destroy the cluster, seed a new one with other node ids through
//! `auth-backend restore`, and check that every user logs in and every live session
//! (and no ended one) refreshes there.

mod common;

use std::process::Command;
use std::time::Duration;

use auth_core::AuthApi;
use auth_proto::v1::{LogoutRequest, RefreshRequest};
use auth_raft::ClusterAdmin;
use auth_raft::tls::PeerIdentity;
use auth_storage::backup::{Backup, BackupError};
use auth_testing::{ProcCluster, SeedTarget};
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const USERS: usize = 24;

fn refresh(token: &str) -> RefreshRequest {
    RefreshRequest {
        refresh_token: token.into(),
        client: None,
    }
}

fn restore(file: &std::path::Path, target: &SeedTarget) -> std::process::Output {
    Command::new(BIN)
        .args(["restore", "--from"])
        .arg(file)
        .arg("--data-dir")
        .arg(&target.data_dir)
        .args(["--id", &target.id.to_string()])
        .args(["--peers", &target.peers])
        .args(["--cluster-id", &target.cluster_id])
        .output()
        .expect("run auth-backend restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_cluster_with_other_node_ids_serves_every_user_and_live_session() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("cluster.backup");

    // Fill a cluster: users, a session each, some rotated, some ended.
    let mut live = Vec::new(); // (username, current refresh token)
    let mut ended = Vec::new(); // refresh tokens that must stay dead
    {
        let c = ProcCluster::start(BIN, 3, &[]);
        c.leader(Duration::from_secs(30)).await;
        let api = auth_backend::RemoteAuth::new(c.endpoints(), c.remote_options()).unwrap();
        for i in 0..USERS {
            let name = format!("user{i}");
            let password = format!("password-{i}");
            api.register(register_req(&name, &password)).await.unwrap();
            let tokens = api
                .login(login_req(&name, &password))
                .await
                .unwrap()
                .tokens
                .unwrap();
            match i % 3 {
                // Rotated once: the new token is the live one, the old one is spent.
                0 => {
                    let next = api
                        .refresh(refresh(&tokens.refresh_token))
                        .await
                        .unwrap()
                        .tokens
                        .unwrap();
                    live.push((name, next.refresh_token));
                }
                // Logged out: the session is gone.
                1 => {
                    api.logout(LogoutRequest {
                        access_token: String::new(),
                        refresh_token: tokens.refresh_token.clone(),
                        client: None,
                    })
                    .await
                    .unwrap();
                    ended.push(tokens.refresh_token);
                }
                _ => live.push((name, tokens.refresh_token)),
            }
        }

        // Only an admin certificate may take a backup: a member node's or a client's
        // is refused by every node (the file holds every password hash).
        for who in [PeerIdentity::Node(2), PeerIdentity::Client("web".into())] {
            let tls = c.ca.peer_tls(who.clone());
            let peers: Vec<String> = c.nodes.iter().map(|n| n.peer_addr.clone()).collect();
            for peer in peers {
                let admin = ClusterAdmin::new(vec![peer], Duration::from_secs(5)).with_tls(&tls);
                let mut sink = Vec::new();
                let e = admin.save_backup(&mut sink).await.unwrap_err();
                assert_eq!(e.code(), "permission_denied", "{who}: {e}");
                assert!(sink.is_empty());
            }
        }

        // The last write was acknowledged before the save started: it is in the file.
        let mut bytes = Vec::new();
        let written = c.admin().save_backup(&mut bytes).await.unwrap();
        assert_eq!(written as usize, bytes.len());
        std::fs::write(&file, &bytes).unwrap();
        let backup = Backup::read_from(bytes.as_slice()).unwrap();
        assert_eq!(backup.header.source, "raft");
        assert_eq!(backup.header.cluster_id, c.cluster_id);
        assert_eq!(backup.users.len(), USERS);
        assert_eq!(backup.sessions.len(), live.len());
        assert!(backup.header.applied_index > 0);

        // A damaged copy is refused by restore, and leaves no store behind.
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        let damaged = work.path().join("damaged.backup");
        std::fs::write(&damaged, &flipped).unwrap();
        let target = SeedTarget {
            id: 1,
            data_dir: work.path().join("refused"),
            peers: "1=127.0.0.1:1".into(),
            cluster_id: "x".into(),
        };
        let out = restore(&damaged, &target);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("checksum_mismatch"), "{stderr}");
        assert!(!target.data_dir.join("raft.redb").exists());
        // Cut short: truncated, not a partial state.
        assert!(matches!(
            Backup::read_from(&bytes[..bytes.len() - 40]),
            Err(BackupError::Truncated)
        ));
        // The cluster is destroyed here: processes killed, data directories removed.
    }

    // A new cluster, nodes 12 and 13 seeded by `auth-backend restore`, and node 11
    // (the smallest id, which initialises a cluster it finds uninitialised) left
    // empty, as an operator who forgot one member would: it must not impose an empty
    // state on the others, and it gets the restored one from the leader.
    let c = ProcCluster::start_seeded(BIN, 11, 3, &[], |target| {
        if target.id == 11 {
            return;
        }
        let out = restore(&file, target);
        assert!(
            out.status.success(),
            "restore of node {}: {}",
            target.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("restored {USERS} users")),
            "restore said: {said}"
        );
    });
    let leader = c.leader(Duration::from_secs(30)).await;
    assert!(
        (12..=13).contains(&leader),
        "a seeded member leads, not {leader}"
    );
    c.wait_caught_up(Duration::from_secs(30)).await;
    let api = auth_backend::RemoteAuth::new(c.endpoints(), c.remote_options()).unwrap();
    for i in 0..USERS {
        let name = format!("user{i}");
        api.login(login_req(&name, &format!("password-{i}")))
            .await
            .unwrap_or_else(|e| panic!("{name} cannot log in after the restore: {e}"));
    }
    for (name, token) in &live {
        api.refresh(refresh(token))
            .await
            .unwrap_or_else(|e| panic!("{name}'s live session does not refresh: {e}"));
    }
    for token in &ended {
        let e = api.refresh(refresh(token)).await.unwrap_err();
        assert!(
            matches!(e.code(), "invalid_token" | "session_ended"),
            "an ended session came back: {e}"
        );
    }
    // Every node of the new cluster has the whole state, and it takes writes.
    api.register(register_req("after-restore", "password-x"))
        .await
        .unwrap();
    for i in 0..3 {
        c.node_client(i)
            .login(login_req("user0", "password-0"))
            .await
            .unwrap();
    }
    // The member that started empty holds the whole restored state.
    let unseeded = c.node_client(0);
    for i in 0..USERS {
        unseeded
            .login(login_req(&format!("user{i}"), &format!("password-{i}")))
            .await
            .unwrap_or_else(|e| panic!("user{i} on node 11: {e}"));
    }
    // A seeded directory is never seeded again.
    let again = restore(
        &file,
        &SeedTarget {
            id: 12,
            data_dir: c.data_dir(12),
            peers: "12=127.0.0.1:1".into(),
            cluster_id: c.cluster_id.clone(),
        },
    );
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already_exists"), "{stderr}");
    // Nor is one that holds a Raft log without its store (a half-wiped directory).
    let leftover = tempfile::tempdir().unwrap();
    std::fs::create_dir(leftover.path().join("log")).unwrap();
    std::fs::write(leftover.path().join("log/00000000000000000000.wal"), b"x").unwrap();
    let again = restore(
        &file,
        &SeedTarget {
            id: 12,
            data_dir: leftover.path().to_path_buf(),
            peers: "12=127.0.0.1:1".into(),
            cluster_id: c.cluster_id.clone(),
        },
    );
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already_exists"), "{stderr}");
}
