//! A Raft cluster of real `auth-backend serve --storage raft` processes on loopback,
//! for fault tests: nodes can be killed (SIGKILL), paused (SIGSTOP) and restarted.
//! Every node has a client listener (TLS) and a peer listener (mutual TLS), with
//! certificates from a CA made for the cluster. Shared by `tests/raft_process.rs`,
//! `tests/attack.rs` and `examples/failover.rs`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use auth_backend::{ClientTls, RemoteOptions};
use auth_raft::pki::{CertAuthority, CertRequest};
use auth_raft::tls::{PeerIdentity, PeerTls, TlsFiles, write_private_file};
use auth_raft::{ClusterAdmin, NodeStatus};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The `auth-backend` binary: cargo's for this package's tests, else `$AUTH_BACKEND_BIN`,
/// else the release build (for the failover benchmark in `examples/`).
fn bin() -> String {
    option_env!("CARGO_BIN_EXE_auth-backend")
        .map(str::to_owned)
        .or_else(|| std::env::var("AUTH_BACKEND_BIN").ok())
        .unwrap_or_else(|| "target/release/auth-backend".into())
}

pub struct ProcNode {
    /// Client listener (AuthService, TLS).
    pub addr: String,
    /// Peer listener (Raft and admin, mutual TLS).
    pub peer_addr: String,
    args: Vec<String>,
    pub child: Option<Child>,
}

pub struct ProcCluster {
    pub dir: TempDir,
    pub nodes: Vec<ProcNode>,
    pub cluster_id: String,
    /// The cluster CA (to issue more certificates in tests).
    pub ca: CertAuthority,
    admin: PeerTls,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

impl ProcCluster {
    /// Starts `n` nodes with cheap hashing and the given extra flags; returns once
    /// every node listens and a leader is known.
    pub fn start(n: u64, extra: &[&str]) -> ProcCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("signing.key");
        write_private_file(&key, b"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==").expect("key");
        let ca = CertAuthority::generate("proc cluster CA", Duration::from_secs(3600)).expect("ca");
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        std::fs::write(tls.join("ca.pem"), ca.cert_pem()).expect("ca.pem");
        let admin = ca
            .issue(&CertRequest::new(
                PeerIdentity::Admin("test".into()),
                Vec::<String>::new(),
            ))
            .expect("admin cert");
        admin.write(&tls, "admin").expect("admin files");
        let admin = PeerTls::load(
            &TlsFiles {
                ca: tls.join("ca.pem"),
                cert: tls.join("admin.pem"),
                key: tls.join("admin.key"),
            },
            None,
        )
        .expect("admin tls");
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
            .map(|(i, (_, p))| format!("{}={p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = format!("proc-{}", std::process::id());
        let mut nodes = Vec::new();
        for (i, (addr, peer_addr)) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            ca.issue(&CertRequest::new(
                PeerIdentity::Node(id),
                ["127.0.0.1", "localhost"],
            ))
            .expect("node cert")
            .write(&tls, &format!("node-{id}"))
            .expect("node files");
            let f = |name: &str| tls.join(name).display().to_string();
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
                "--tls-cert".into(),
                f(&format!("node-{id}.pem")),
                "--tls-key".into(),
                f(&format!("node-{id}.key")),
                "--peer-cert-file".into(),
                f(&format!("node-{id}.pem")),
                "--peer-key-file".into(),
                f(&format!("node-{id}.key")),
                "--peer-trusted-ca-file".into(),
                f("ca.pem"),
                "--argon2-memory-kib".into(),
                "64".into(),
                "--argon2-iterations".into(),
                "1".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            nodes.push(ProcNode {
                addr: addr.clone(),
                peer_addr: peer_addr.clone(),
                args,
                child: None,
            });
        }
        let mut c = ProcCluster {
            dir,
            nodes,
            cluster_id,
            ca,
            admin,
        };
        for id in 1..=n {
            c.restart(id);
        }
        c
    }

    /// The CA file every client needs.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    /// `RemoteOptions` that speak TLS to the client listeners.
    pub fn remote_options(&self) -> RemoteOptions {
        RemoteOptions {
            tls: Some(ClientTls::from_ca_file(&self.ca_file()).expect("ca file")),
            ..RemoteOptions::default()
        }
    }

    /// A lazily connecting TLS channel to a client listener.
    pub fn client_channel(&self, addr: &str, connect_timeout: Duration) -> Channel {
        Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .connect_timeout(connect_timeout)
            .tls_config(
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.ca.cert_pem())),
            )
            .expect("tls")
            .connect_lazy()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn node(&mut self, id: u64) -> &mut ProcNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].child.is_some()
    }

    /// Starts (or restarts) a node and waits until it listens.
    pub fn restart(&mut self, id: u64) {
        let log = self.dir.path().join(format!("n{id}.log"));
        let node = self.node(id);
        assert!(node.child.is_none(), "node {id} is running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let mut child = Command::new(bin())
            .args(&node.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn auth-backend");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("node {id} did not start; see {}", log.display()));
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

    /// SIGTERM and wait for a clean exit.
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

    pub fn pause(&mut self, id: u64) {
        if let Some(c) = &self.node(id).child {
            signal(c, libc::SIGSTOP);
        }
    }

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

    /// Waits until every running node has applied at least what the leader has.
    pub async fn wait_caught_up(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.statuses().await;
            let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
            if let Some(l) = st.iter().find(|s| s.role == "leader") {
                let want = l.last_applied_index;
                if st.len() == running && st.iter().all(|s| s.last_applied_index >= want) {
                    return want;
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
    }
}
