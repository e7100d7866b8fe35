//! `authctl` over TLS: AuthService calls to a backend served with a certificate from a
//! test CA (`--cacert`, `--cert`, `--key`), and cluster commands to a peer listener that
//! requires an admin certificate (`--peer-endpoints`). Certificates are issued in the
//! test by an `auth_testing::TestCa` and written to its temporary directory.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use auth_proto::v1 as pb;
use auth_proto::v1::cluster_admin_server::{ClusterAdmin, ClusterAdminServer};
use auth_raft::tls::{PeerIdentity, identity_of};
use auth_testing::TestCa;
use common::*;
use tonic::{Request, Response, Status};

/// A test CA and the certificates the tests use, as files in its temporary directory:
/// `ca.pem`, `admin.{pem,key}`, `client.{pem,key}`, and from another CA `other-ca.pem`
/// and `foreign-admin.{pem,key}`. Servers present node certificates of the test CA.
struct Pki {
    ca: TestCa,
}

impl Pki {
    fn new() -> Self {
        let ca = TestCa::new("authctl test CA");
        let other = TestCa::new("another CA");
        std::fs::write(ca.path("other-ca.pem"), other.cert_pem()).unwrap();
        ca.issue_files(PeerIdentity::Admin("ops".into()), "admin");
        ca.issue_files(PeerIdentity::Client("cli".into()), "client");
        other
            .issue(PeerIdentity::Admin("ops".into()))
            .write(ca.dir(), "foreign-admin")
            .unwrap();
        Self { ca }
    }

    fn path(&self, name: &str) -> String {
        self.ca.path(name).display().to_string()
    }
}

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    [head, tail].concat()
}

#[test]
fn authservice_calls_use_tls_with_cacert() {
    let pki = Pki::new();
    let b = tls_backend(&pki.ca);
    let ep = b.endpoint();
    let ca = pki.path("ca.pem");
    let tls = ["--cacert", ca.as_str()];

    let out = ok(ctl(&ep, &args(&tls, &["register", "alice"]), PW));
    assert!(
        out.stdout.starts_with("registered alice (user "),
        "{}",
        out.stdout
    );
    let v = ok(ctl(&ep, &args(&tls, &["--json", "login", "alice"]), PW)).json();
    let access = v["tokens"]["access_token"].as_str().unwrap().to_owned();
    let out = ok(ctl(&ep, &args(&tls, &["health"]), ""));
    assert_eq!(out.stdout, format!("https://{ep}: serving\n"));

    // A client certificate is presented when given.
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let with_identity = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let v = ok(ctl(
        &ep,
        &args(&with_identity, &["--json", "verify", &access]),
        "",
    ))
    .json();
    assert_eq!(v["username"], "alice");

    // The environment variables work like the flags.
    let mut cmd = command();
    cmd.args(["--endpoints", &ep, "login", "alice"])
        .env("AUTHCTL_CACERT", &ca)
        .env("AUTHCTL_CERT", &cert)
        .env("AUTHCTL_KEY", &key);
    let out = ok(run(cmd, PW));
    assert!(
        out.stdout.starts_with("logged in as alice"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_tls_backend_is_unreachable_without_the_right_ca() {
    let pki = Pki::new();
    let b = tls_backend(&pki.ca);
    let ep = b.endpoint();

    // Plaintext against the TLS port.
    let out = ctl(&ep, &["register", "bob"], PW);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("[unavailable]"), "{}", out.stderr);

    // A CA that did not issue the backend's certificate.
    let other = pki.path("other-ca.pem");
    let out = ctl(&ep, &["--cacert", &other, "register", "bob"], PW);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("[unavailable]"), "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    let out = ctl(&ep, &["--cacert", &other, "--json", "health"], "");
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert_eq!(out.json()["endpoints"][0]["serving"], false);

    // An https:// endpoint without a CA to check it against.
    let out = ctl(&format!("https://{ep}"), &["register", "bob"], PW);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--cacert"), "{}", out.stderr);

    // Nothing above reached the backend: with the right CA, bob is still free.
    let ca = pki.path("ca.pem");
    ok(ctl(&ep, &["--cacert", &ca, "register", "bob"], PW));
}

#[test]
fn unusable_tls_flags_and_files_are_usage_errors_naming_the_file() {
    let pki = Pki::new();
    let ep = dead_endpoint();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );

    // --cert and --key go together (flags or environment).
    let out = ctl(&ep, &["--cacert", &ca, "--cert", &cert, "health"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--key"), "{}", out.stderr);
    let out = ctl(&ep, &["--cacert", &ca, "--key", &key, "health"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--cert"), "{}", out.stderr);
    let mut cmd = command();
    cmd.args(["--endpoints", &ep, "--cacert", &ca, "health"])
        .env("AUTHCTL_CERT", &cert);
    let out = run(cmd, "");
    assert_eq!(out.code, 2, "{}", out.stderr);

    // A client certificate without a CA to check the server.
    let out = ctl(&ep, &["--cert", &cert, "--key", &key, "health"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("need --cacert"), "{}", out.stderr);

    // Missing or malformed CA file.
    let missing = pki.path("missing.pem");
    let out = ctl(&ep, &["--cacert", &missing, "health"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(&missing), "{}", out.stderr);
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let out = ctl(&ep, &["--json", "--cacert", &garbage, "health"], "");
    assert_eq!(out.code, 2, "{}", out.stdout);
    let e = &out.json()["error"];
    assert_eq!(e["code"], "usage");
    assert!(e["message"].as_str().unwrap().contains(&garbage), "{e}");

    // A private key others can read is refused, with the fix.
    let open_key = pki.path("open.key");
    std::fs::copy(&key, &open_key).unwrap();
    set_mode(Path::new(&open_key), 0o644);
    let out = ctl(
        &ep,
        &[
            "--cacert", &ca, "--cert", &cert, "--key", &open_key, "health",
        ],
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("chmod 600 {open_key}")),
        "{}",
        out.stderr
    );
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// A stand-in for a node's peer listener: `ClusterAdmin` over mutual TLS (the node
/// certificate, client certificates from the test CA), answering admins only.
#[derive(Default, Clone)]
struct FakeNode {
    learners: Arc<Mutex<Vec<(u64, String)>>>,
}

fn admin_only<T>(req: &Request<T>) -> Result<(), Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    match identity_of(leaf.as_ref()) {
        Ok(PeerIdentity::Admin(_)) => Ok(()),
        Ok(other) => Err(Status::permission_denied(format!(
            "{other} is not an admin"
        ))),
        Err(e) => Err(Status::unauthenticated(e)),
    }
}

fn at_index(index: u64) -> Response<pb::MembershipResponse> {
    Response::new(pb::MembershipResponse {
        log_id: Some(pb::LogIdPb {
            leader_id: None,
            index,
        }),
    })
}

#[tonic::async_trait]
impl ClusterAdmin for FakeNode {
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        admin_only(&req)?;
        Ok(Response::new(pb::StatusResponse {
            id: 1,
            addr: "127.0.0.1:7001".into(),
            role: "leader".into(),
            term: 2,
            leader_id: 1,
            last_log_index: 5,
            last_applied_index: 5,
            cluster_id: "test".into(),
            ..Default::default()
        }))
    }

    async fn init(
        &self,
        _: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        admin_only(&req)?;
        let node = req
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("no node"))?;
        self.learners.lock().unwrap().push((node.id, node.addr));
        Ok(at_index(7))
    }

    async fn change_membership(
        &self,
        _: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        admin_only(&req)?;
        match req.into_inner().id {
            4 => Ok(at_index(8)),
            id => Err(Status::invalid_argument(format!(
                "node {id} is not a member"
            ))),
        }
    }

    async fn create_user(
        &self,
        _: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type SaveBackupStream = tonic::codegen::Pin<
        Box<
            dyn tonic::codegen::tokio_stream::Stream<Item = Result<pb::BackupChunk, Status>> + Send,
        >,
    >;

    /// A backup of a store of three users, in 100-byte chunks.
    async fn save_backup(
        &self,
        req: Request<pb::SaveBackupRequest>,
    ) -> Result<Response<Self::SaveBackupStream>, Status> {
        admin_only(&req)?;
        let mut tables = auth_storage::memory::Tables::new();
        for name in ["ann", "bob", "cy"] {
            tables
                .create_user(pb::User {
                    id: format!("{name:0>32}"),
                    username: name.into(),
                    username_key: name.into(),
                    password_hash: "$argon2id$x".into(),
                    ..Default::default()
                })
                .unwrap();
        }
        let header = pb::BackupHeader {
            source: "raft".into(),
            cluster_id: "test".into(),
            applied_index: 5,
            applied_term: 2,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        auth_storage::backup::write_tables(&tables, header, &mut bytes).unwrap();
        let chunks: Vec<Result<pb::BackupChunk, Status>> = bytes
            .chunks(100)
            .map(|c| Ok(pb::BackupChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tonic::codegen::tokio_stream::iter(
            chunks,
        ))))
    }
}

/// [`FakeNode`] served on 127.0.0.1:0 on its own runtime, stopped on drop.
struct PeerListener {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    node: FakeNode,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl PeerListener {
    fn start(pki: &Pki) -> Self {
        let tls = pki.ca.peer_tls(PeerIdentity::Node(1));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let node = FakeNode::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let service = ClusterAdminServer::new(node.clone());
        let (addr, server) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .tls_config(tls.server_config())
                    .map_err(|e| e.to_string())?
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        async move {
                            let _ = rx.await;
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())
            });
            (addr, server)
        });
        Self {
            runtime,
            addr,
            node,
            stop: Some(tx),
            server: Some(server),
        }
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let joined = self
                .runtime
                .block_on(async { tokio::time::timeout(DEADLINE, server).await });
            if !std::thread::panicking() {
                assert!(
                    matches!(joined, Ok(Ok(Ok(())))),
                    "peer listener did not shut down cleanly: {joined:?}"
                );
            }
        }
    }
}

#[test]
fn cluster_commands_use_the_peer_listener_with_an_admin_certificate() {
    let pki = Pki::new();
    let peer = PeerListener::start(&pki);
    let peers = peer.addr.to_string();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("admin.pem"),
        pki.path("admin.key"),
    );
    let admin = [
        "--peer-endpoints",
        &peers,
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--timeout",
        "5s",
    ];

    let v = ok(ctl("", &args(&admin, &["--json", "cluster", "status"]), "")).json();
    let node = &v["nodes"][0];
    assert_eq!(node["reachable"], true, "{v}");
    assert_eq!(node["id"], 1);
    assert_eq!(node["role"], "leader");
    assert_eq!(node["endpoint"], peers.as_str());

    let out = ok(ctl(
        "",
        &args(&admin, &["cluster", "add-learner", "4", "127.0.0.1:7004"]),
        "",
    ));
    assert_eq!(
        out.stdout,
        "node 4 (127.0.0.1:7004) added as a learner at log index 7\n"
    );
    assert_eq!(
        *peer.node.learners.lock().unwrap(),
        vec![(4, "127.0.0.1:7004".to_owned())]
    );
    let v = ok(ctl(
        "",
        &args(&admin, &["--json", "cluster", "remove", "4"]),
        "",
    ))
    .json();
    assert_eq!(v["removed"], 4);
    assert_eq!(v["log_index"], 8);
    let out = ctl("", &args(&admin, &["cluster", "remove", "9"]), "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[invalid_argument]"), "{}", out.stderr);

    // The environment variable works like the flag.
    let mut cmd = command();
    cmd.args(["--cacert", &ca, "--cert", &cert, "--key", &key])
        .args(["cluster", "status"])
        .env("AUTHCTL_PEER_ENDPOINTS", &peers);
    let out = ok(run(cmd, ""));
    assert!(out.stdout.contains("leader"), "{}", out.stdout);
}

#[test]
fn snapshot_save_streams_a_checked_owner_only_file_and_status_reads_it() {
    let pki = Pki::new();
    let peer = PeerListener::start(&pki);
    let peers = peer.addr.to_string();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("admin.pem"),
        pki.path("admin.key"),
    );
    let admin = [
        "--peer-endpoints",
        &peers,
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--timeout",
        "5s",
    ];
    let dir = pki.ca.dir().to_path_buf();
    let file = dir.join("b.backup");
    let file_arg = file.display().to_string();
    let v = ok(ctl(
        "",
        &args(
            &admin,
            &["--json", "cluster", "snapshot", "save", &file_arg],
        ),
        "",
    ))
    .json();
    assert_eq!(v["users"], 3, "{v}");
    assert_eq!(v["applied_index"], 5);
    assert_eq!(v["cluster_id"], "test");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup holds password hashes");
    }
    assert!(!dir.join("b.backup.part").exists());

    // status needs no cluster.
    let out = ok(ctl("", &["cluster", "snapshot", "status", &file_arg], ""));
    assert!(out.stdout.contains("checksum ok"), "{}", out.stdout);
    assert!(out.stdout.contains("3 users"), "{}", out.stdout);

    // A damaged file: exit 1, the stable code, in text and JSON.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let out = ctl("", &["cluster", "snapshot", "status", &file_arg], "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("[checksum_mismatch]"), "{}", out.stderr);
    let out = ctl(
        "",
        &["--json", "cluster", "snapshot", "status", &file_arg],
        "",
    );
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("checksum_mismatch") || out.stderr.contains("checksum_mismatch"));

    // A client certificate is not an admin's: refused before any call, and nothing
    // is written.
    let refused = dir.join("refused.backup");
    let client = [
        "--peer-endpoints",
        &peers,
        "--cacert",
        &ca,
        "--cert",
        &pki.path("client.pem"),
        "--key",
        &pki.path("client.key"),
        "--timeout",
        "5s",
    ];
    let out = ctl(
        "",
        &args(
            &client,
            &[
                "cluster",
                "snapshot",
                "save",
                &refused.display().to_string(),
            ],
        ),
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("not an admin certificate"),
        "{}",
        out.stderr
    );
    assert!(!refused.exists());
    assert!(!dir.join("refused.backup.part").exists());
}

#[test]
fn cluster_commands_refuse_missing_peers_and_non_admin_certificates() {
    let pki = Pki::new();
    let peer = PeerListener::start(&pki);
    let peers = peer.addr.to_string();
    let ca = pki.path("ca.pem");

    // --endpoints (client listeners) is not where cluster commands go.
    let out = ctl(&peers, &["cluster", "status"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--peer-endpoints"), "{}", out.stderr);

    let with = |cert: &str, key: &str, ca: &str| {
        ctl(
            "",
            &[
                "--peer-endpoints",
                &peers,
                "--cacert",
                ca,
                "--cert",
                &pki.path(cert),
                "--key",
                &pki.path(key),
                "cluster",
                "status",
            ],
            "",
        )
    };
    // A client certificate of the right CA is not an admin certificate.
    let out = with("client.pem", "client.key", &ca);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{} is not an admin certificate",
            pki.path("client.pem")
        )),
        "{}",
        out.stderr
    );
    // An admin certificate of another CA.
    let out = with("foreign-admin.pem", "foreign-admin.key", &ca);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&pki.path("foreign-admin.pem")),
        "{}",
        out.stderr
    );
    // The CA file of another CA.
    let out = with("admin.pem", "admin.key", &pki.path("other-ca.pem"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("other-ca.pem"), "{}", out.stderr);
    // --cacert without a certificate.
    let out = ctl(
        "",
        &[
            "--peer-endpoints",
            &peers,
            "--cacert",
            &ca,
            "cluster",
            "status",
        ],
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("need an admin certificate"),
        "{}",
        out.stderr
    );

    // Plaintext (no --cacert) cannot reach a TLS peer listener.
    let out = ctl(
        "",
        &[
            "--peer-endpoints",
            &peers,
            "--timeout",
            "5s",
            "--json",
            "cluster",
            "status",
        ],
        "",
    );
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert_eq!(out.json()["nodes"][0]["reachable"], false);
    let out = ctl(
        "",
        &[
            "--peer-endpoints",
            &peers,
            "--timeout",
            "5s",
            "cluster",
            "add-learner",
            "5",
            "127.0.0.1:7005",
        ],
        "",
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(peer.node.learners.lock().unwrap().is_empty());
}
