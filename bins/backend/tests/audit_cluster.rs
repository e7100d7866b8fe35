//! The audit trail on a 3-node Raft cluster of real `auth-backend` processes, each
//! writing its own JSON-lines file (`--audit-log-file`): every event of a workload
//! spread over the nodes appears exactly once across the three files, in the file of
//! the node that served it, stamped with that node's name; never once per replica.

use std::path::Path;
use std::time::{Duration, Instant};

use auth_core::AuthApi;
use auth_core::api::*;
use auth_core::audit::{AuditEvent, AuditKind, Outcome};
use auth_testing::ProcCluster;

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const PW: &str = "password-1";

fn events(dir: &Path, id: u64) -> Vec<AuditEvent> {
    std::fs::read_to_string(dir.join(format!("audit-{id}.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one event"))
        .collect()
}

fn login(name: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: name.into(),
        password: password.into(),
        client: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_event_is_recorded_once_by_the_node_that_served_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit-{id}.jsonl");
    let c = ProcCluster::start(BIN, 3, &["--audit-log-file", file.to_str().unwrap()]);
    c.leader(Duration::from_secs(30)).await;
    let nodes: Vec<_> = (0..3).map(|i| c.node_client(i)).collect();

    // Node 1 registers, node 2 sees a wrong password, node 3 a right one, node 1 the
    // logout.
    nodes[0]
        .register(RegisterRequest {
            username: "nadia".into(),
            password: PW.into(),
            client: None,
        })
        .await
        .unwrap();
    assert!(
        nodes[1]
            .login(login("nadia", "not the password"))
            .await
            .is_err()
    );
    let t = nodes[2]
        .login(login("nadia", PW))
        .await
        .unwrap()
        .into_tokens()
        .unwrap();
    nodes[0]
        .logout(LogoutRequest {
            access_token: t.access_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let want = [
        (1, AuditKind::Registered, Outcome::Success),
        (2, AuditKind::LoginFailed, Outcome::Failure),
        (3, AuditKind::LoginSucceeded, Outcome::Success),
        (1, AuditKind::Logout, Outcome::Success),
    ];
    // The files are written by a thread of each node: wait (bounded) for them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all: Vec<(u64, AuditEvent)> = (1..=3)
            .flat_map(|id| events(dir.path(), id).into_iter().map(move |e| (id, e)))
            .collect();
        if all.len() >= want.len() || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut got: Vec<(u64, AuditKind, Outcome)> =
        all.iter().map(|(id, e)| (*id, e.kind, e.outcome)).collect();
    got.sort_by_key(|(_, k, _)| k.as_str());
    let mut want = want.to_vec();
    want.sort_by_key(|(_, k, _)| k.as_str());
    assert_eq!(got, want, "each event once, from its node: {all:#?}");
    for (id, e) in &all {
        assert_eq!(e.node, format!("node-{id}"));
        assert!(!e.user_id.is_empty(), "{e:?}");
        assert_eq!(e.source, "127.0.0.1", "{e:?}");
    }
}
