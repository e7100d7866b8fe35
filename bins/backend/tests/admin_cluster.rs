//! Administration on a 3-node Raft cluster of real `auth-backend` processes: the
//! first administrator is created with `auth-backend bootstrap-admin` through the peer
//! listeners and an admin certificate (a second run, and a node certificate, are
//! refused); a non-admin is refused every admin RPC on every node; and an
//! administrator's lock, force logout and delete, each made through one node, take
//! effect on every node at once (the next request to any node sees them).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use auth_raft::tls::PeerIdentity;
use auth_testing::ProcCluster;

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const PW: &str = "password-1";
const ADMIN_PW: &str = "an administrator's password";

/// A client of one node only.
fn node(c: &ProcCluster, i: usize) -> RemoteAuth {
    c.node_client(i)
}

/// Runs `auth-backend bootstrap-admin NAME` with `cert` (a file pair in the cluster
/// CA's directory) and the password on stdin; (exit code, stdout + stderr).
fn bootstrap(c: &ProcCluster, name: &str, cert: &str) -> (i32, String) {
    let peers: Vec<String> = c.nodes.iter().map(|n| n.peer_addr.clone()).collect();
    let mut child = Command::new(BIN)
        .args([
            "bootstrap-admin",
            name,
            "--peer-endpoints",
            &peers.join(","),
        ])
        .arg("--cacert")
        .arg(c.ca.ca_file())
        .arg("--cert")
        .arg(c.ca.path(&format!("{cert}.pem")))
        .arg("--key")
        .arg(c.ca.path(&format!("{cert}.key")))
        .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bootstrap-admin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ADMIN_PW}\n").as_bytes())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("bootstrap-admin finished within a minute")
        .expect("bootstrap-admin ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn login(api: &RemoteAuth, name: &str, password: &str) -> TokenPair {
    api.login(LoginRequest {
        username: name.into(),
        password: password.into(),
        client: None,
    })
    .await
    .unwrap_or_else(|e| panic!("login {name}: {e}"))
    .into_tokens()
    .unwrap()
}

async fn register(api: &RemoteAuth, name: &str) {
    api.register(RegisterRequest {
        username: name.into(),
        password: PW.into(),
        client: None,
    })
    .await
    .unwrap_or_else(|e| panic!("register {name}: {e}"));
}

fn target(token: &TokenPair, user: &str) -> AdminUserRequest {
    AdminUserRequest {
        access_token: token.access_token.clone(),
        user: user.into(),
        client: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_actions_take_effect_on_every_node_at_once() {
    let c = ProcCluster::start(BIN, 3, &[]);
    c.leader(Duration::from_secs(30)).await;
    let nodes: Vec<RemoteAuth> = (0..3).map(|i| node(&c, i)).collect();

    // The bootstrap: an admin certificate creates the account once.
    c.ca.issue_files(PeerIdentity::Admin("ops".into()), "ops");
    let (code, out) = bootstrap(&c, "root", "ops");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created administrator root"), "{out}");
    let (code, out) = bootstrap(&c, "root", "ops");
    assert_eq!(code, 1, "a second bootstrap of the name is refused: {out}");
    assert!(out.contains("already_exists"), "{out}");
    // A node's certificate is not an operator's.
    c.ca.issue_files(PeerIdentity::Node(7), "node-7");
    let (code, out) = bootstrap(&c, "mallory", "node-7");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("permission_denied"), "{out}");

    let root = login(&nodes[0], "root", ADMIN_PW).await;
    for name in ["alice", "bob", "carol"] {
        register(&nodes[1], name).await;
    }

    // A non-admin is refused on every node.
    let bob = login(&nodes[2], "bob", PW).await;
    for n in &nodes {
        let e = n.admin_lock_user(target(&bob, "alice")).await.unwrap_err();
        assert_eq!(e.code(), "permission_denied");
        let e = n
            .admin_list_users(AdminListUsersRequest {
                access_token: bob.access_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "permission_denied");
    }

    // The cluster as each node sees it: three reachable members, one leader, the
    // serving node named; bob may not look.
    for (i, n) in nodes.iter().enumerate() {
        let e = n
            .admin_cluster(AdminClusterRequest {
                access_token: bob.access_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "permission_denied");
        let view = n
            .admin_cluster(AdminClusterRequest {
                access_token: root.access_token.clone(),
            })
            .await
            .unwrap();
        assert_eq!(view.storage, "raft");
        assert_eq!(view.serving_node, i as u64 + 1);
        assert_eq!(view.cluster_id, c.cluster_id);
        let ids: Vec<u64> = view.nodes.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(view.nodes.iter().all(|m| m.reachable), "{view:?}");
        let leaders = view.nodes.iter().filter(|m| m.role == "leader").count();
        assert_eq!(leaders, 1, "{view:?}");
        assert!(view.nodes.iter().all(|m| m.applied_index > 0 && m.term > 0));
    }

    // Lock through node 1: alice's session is gone on every node, and every node
    // refuses her sign-in, on the very next request.
    let alice = login(&nodes[2], "alice", PW).await;
    let r = nodes[0]
        .admin_lock_user(target(&root, "alice"))
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 1);
    for n in &nodes {
        let e = n
            .verify(VerifyRequest {
                access_token: alice.access_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "session_ended");
        let e = n
            .login(LoginRequest {
                username: "alice".into(),
                password: PW.into(),
                client: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "account_disabled");
    }
    nodes[1]
        .admin_unlock_user(target(&root, "alice"))
        .await
        .unwrap();
    login(&nodes[2], "alice", PW).await;

    // Force logout through node 2: bob's sessions end everywhere.
    let bob2 = login(&nodes[0], "bob", PW).await;
    let r = nodes[1]
        .admin_logout_user(target(&root, "bob"))
        .await
        .unwrap();
    assert_eq!(r.sessions_ended, 2);
    for n in &nodes {
        for t in [&bob, &bob2] {
            let e = n
                .verify(VerifyRequest {
                    access_token: t.access_token.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), "session_ended");
        }
    }

    // Delete through node 3: carol is unknown everywhere.
    let carol = login(&nodes[0], "carol", PW).await;
    nodes[2]
        .admin_delete_user(target(&root, "carol"))
        .await
        .unwrap();
    for n in &nodes {
        let e = n
            .verify(VerifyRequest {
                access_token: carol.access_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "session_ended");
        let e = n
            .login(LoginRequest {
                username: "carol".into(),
                password: PW.into(),
                client: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_credentials");
        let e = n.admin_get_user(target(&root, "carol")).await.unwrap_err();
        assert_eq!(e.code(), "not_found");
    }
}
