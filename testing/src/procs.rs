//! A Raft cluster of real `auth-backend serve --storage raft` processes on loopback,
//! for fault tests: nodes can be killed (SIGKILL), paused (SIGSTOP) and restarted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use auth_backend::RemoteOptions;
use auth_raft::tls::{PeerIdentity, PeerTls, write_private_file};
use auth_raft::{ClusterAdmin, NodeStatus};
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::{FIXTURE_DEADLINE, TestCa};

/// Writes a shared signing key (an HS256 secret, base64) to `path`, mode 0600, as
/// `auth-backend serve --signing-key-file` wants it.
pub fn write_signing_key(path: &Path) {
    write_private_file(path, b"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// One node of a [`ProcCluster`].
#[derive(Debug)]
pub struct ProcNode {
    /// Client listener (AuthService, TLS).
    pub addr: String,
    /// Peer listener (Raft and admin, mutual TLS).
    pub peer_addr: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl ProcNode {
    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A node of a [`ProcCluster`] about to start for the first time.
#[derive(Debug, Clone)]
pub struct SeedTarget {
    /// The node's id.
    pub id: u64,
    /// Its data directory (not created yet).
    pub data_dir: PathBuf,
    /// The `--peers` every node is started with.
    pub peers: String,
    /// The `--cluster-id` every node is started with.
    pub cluster_id: String,
}

/// `n` `auth-backend` processes forming one Raft cluster on loopback. Every node has a
/// client listener (TLS) and a peer listener (mutual TLS), with certificates from a
/// [`TestCa`] made for the cluster, hashes with cheap argon2 parameters and does not
/// throttle by source. Every node
/// still running is killed on drop.
#[derive(Debug)]
pub struct ProcCluster {
    /// The nodes, in id order from [`ProcCluster::first_id`].
    pub nodes: Vec<ProcNode>,
    /// The smallest node id (1 unless started with [`ProcCluster::start_seeded`]).
    pub first_id: u64,
    /// The cluster id every node was started with.
    pub cluster_id: String,
    /// The cluster CA (to trust, or to issue more certificates in tests).
    pub ca: TestCa,
    dir: TempDir,
    bin: PathBuf,
    admin: PeerTls,
}

fn free_port() -> u16 {
    crate::child_port()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

impl ProcCluster {
    /// Starts `n` nodes of the `auth-backend` binary at `bin` with the given extra
    /// `serve` flags (`{id}` in them becomes each node's id); returns once every node listens (a leader may not be known yet:
    /// see [`ProcCluster::leader`]).
    ///
    /// `bin` is `env!("CARGO_BIN_EXE_auth-backend")` in auth-backend's own tests.
    pub fn start(bin: impl AsRef<Path>, n: u64, extra: &[&str]) -> ProcCluster {
        Self::start_seeded(bin, 1, n, extra, |_| {})
    }

    /// As [`ProcCluster::start`], with node ids `first_id..first_id + n`, and `seed`
    /// called for every node before any starts (e.g. to run `auth-backend restore`
    /// into its data directory).
    pub fn start_seeded(
        bin: impl AsRef<Path>,
        first_id: u64,
        n: u64,
        extra: &[&str],
        mut seed: impl FnMut(&SeedTarget),
    ) -> ProcCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("signing.key");
        write_signing_key(&key);
        let mfa_key = dir.path().join("mfa.key");
        write_private_file(&mfa_key, b"bWZhLWtleS1tZmEta2V5LW1mYS1rZXktbWZhLWtleSE=")
            .unwrap_or_else(|e| panic!("write {}: {e}", mfa_key.display()));
        let ca = TestCa::new("proc cluster CA");
        let admin = ca.peer_tls(PeerIdentity::Admin("test".into()));
        let addrs: Vec<(String, String)> = (0..n)
            .map(|_| {
                (
                    format!("127.0.0.1:{}", free_port()),
                    format!("127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("{}={p}", first_id + i as u64))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = format!("proc-{}", std::process::id());
        let mut nodes = Vec::new();
        for (i, (addr, peer_addr)) in addrs.iter().enumerate() {
            let id = first_id + i as u64;
            let name = format!("node-{id}");
            ca.issue_files(PeerIdentity::Node(id), &name);
            let cert = ca.path(&format!("{name}.pem")).display().to_string();
            let cert_key = ca.path(&format!("{name}.key")).display().to_string();
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--storage".into(),
                "raft".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--peer-listen".into(),
                peer_addr.clone(),
                "--peers".into(),
                peers.clone(),
                "--data-dir".into(),
                dir.path().join(format!("n{id}")).display().to_string(),
                "--cluster-id".into(),
                cluster_id.clone(),
                "--signing-key-file".into(),
                key.display().to_string(),
                "--mfa-key-file".into(),
                mfa_key.display().to_string(),
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                cert_key.clone(),
                "--peer-cert-file".into(),
                cert,
                "--peer-key-file".into(),
                cert_key,
                "--peer-trusted-ca-file".into(),
                ca.ca_file().display().to_string(),
                "--argon2-memory-kib".into(),
                "64".into(),
                "--argon2-iterations".into(),
                "1".into(),
                // Fault tests drive many logins from one address: throttling by source
                // is tested elsewhere (auth-backend's binary tests).
                "--throttle".into(),
                "false".into(),
            ];
            args.extend(extra.iter().map(|s| s.replace("{id}", &id.to_string())));
            nodes.push(ProcNode {
                addr: addr.clone(),
                peer_addr: peer_addr.clone(),
                args,
                child: None,
            });
        }
        for id in first_id..first_id + n {
            seed(&SeedTarget {
                id,
                data_dir: dir.path().join(format!("n{id}")),
                peers: peers.clone(),
                cluster_id: cluster_id.clone(),
            });
        }
        let mut c = ProcCluster {
            nodes,
            first_id,
            cluster_id,
            ca,
            dir,
            bin: bin.as_ref().to_owned(),
            admin,
        };
        for id in first_id..first_id + n {
            c.restart(id);
        }
        c
    }

    /// `RemoteOptions` that speak TLS to the client listeners.
    pub fn remote_options(&self) -> RemoteOptions {
        RemoteOptions {
            tls: Some(self.ca.client_tls()),
            ..RemoteOptions::default()
        }
    }

    /// A client of node `i`'s client listener only (0-based, in node order), no
    /// failover, with a 5-second request timeout.
    pub fn node_client(&self, i: usize) -> auth_backend::RemoteAuth {
        auth_backend::RemoteAuth::new(
            [self.endpoints()[i].clone()],
            RemoteOptions {
                request_timeout: Duration::from_secs(5),
                ..self.remote_options()
            },
        )
        .expect("a client of one node")
    }

    /// A lazily connecting TLS channel to a client listener.
    pub fn client_channel(&self, addr: &str, connect_timeout: Duration) -> Channel {
        self.ca.channel(addr, connect_timeout)
    }

    /// The client listeners, in node order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Node `id`.
    pub fn node(&mut self, id: u64) -> &mut ProcNode {
        &mut self.nodes[(id - self.first_id) as usize]
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    /// Whether node `id` runs (it may be paused).
    pub fn is_up(&self, id: u64) -> bool {
        self.nodes[(id - self.first_id) as usize].child.is_some()
    }

    /// What node `id` logged so far (its stderr, across restarts): for a failing
    /// test's message.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{id}.log"))).unwrap_or_default()
    }

    /// Starts (or restarts) a node and waits (bounded) until it listens.
    pub fn restart(&mut self, id: u64) {
        let log = self.dir.path().join(format!("n{id}.log"));
        let bin = self.bin.clone();
        let node = self.node(id);
        assert!(node.child.is_none(), "node {id} is running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let mut child = Command::new(&bin)
            .args(&node.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(FIXTURE_DEADLINE).unwrap_or_else(|_| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "node {id} did not start; last lines of {}:\n{}",
                log.display(),
                tail.join("\n")
            )
        });
        assert!(line.starts_with("listening on"), "node {id}: {line}");
        node.child = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.node(id).child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (20 s at most) for a clean exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut c) = self.node(id).child.take() {
            signal(&c, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "node {id} exited with {status}");
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            panic!("node {id} did not stop within 20 s");
        }
    }

    /// SIGSTOP: the node stops answering but keeps its connections.
    pub fn pause(&mut self, id: u64) {
        if let Some(c) = &self.node(id).child {
            signal(c, libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`ProcCluster::pause`].
    pub fn resume(&mut self, id: u64) {
        if let Some(c) = &self.node(id).child {
            signal(c, libc::SIGCONT);
        }
    }

    /// An admin client for the peer listeners of the running nodes.
    pub fn admin(&self) -> ClusterAdmin {
        let up: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.peer_addr.clone())
            .collect();
        ClusterAdmin::new(up, Duration::from_millis(500)).with_tls(&self.admin)
    }

    /// Status of the running nodes that answer.
    pub async fn statuses(&self) -> Vec<NodeStatus> {
        self.admin()
            .status()
            .await
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .collect()
    }

    /// The leader's id, once the running nodes agree on one (deadline `timeout`).
    pub async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.statuses().await;
            if let Some(l) = st.iter().find(|s| s.role == "leader") {
                return l.id;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {timeout:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node has applied at least what the leader had
    /// applied when this was called (more exactly: at some look after the call, which
    /// covers every write acknowledged before it); returns that index. Under
    /// continuous writes the followers trail the leader by a few entries at any one
    /// instant, so the target is fixed at a look and met at a later one.
    pub async fn wait_caught_up(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut want: Option<u64> = None;
        loop {
            let st = self.statuses().await;
            let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
            if st.len() == running {
                if let Some(w) = want
                    && st.iter().all(|s| s.last_applied_index >= w)
                {
                    return w;
                }
                if want.is_none() {
                    want = st
                        .iter()
                        .find(|s| s.role == "leader")
                        .map(|l| l.last_applied_index);
                }
            }
            assert!(Instant::now() < deadline, "nodes did not catch up: {st:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                signal(&c, libc::SIGCONT);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // For a post-mortem: keep the nodes' data and logs.
        if std::env::var_os("AUTH_PROC_CLUSTER_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, TempDir::new().expect("tempdir"));
            eprintln!("proc cluster kept in {}", dir.keep().display());
        }
    }
}
