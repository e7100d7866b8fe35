//! `auth-backend cluster`: a local Raft cluster of `auth-backend serve --storage raft`
//! child processes, for trying fail-over by hand (kill any two, see it still works).
//!
//! Everything a secure cluster needs is created under the data directory on first use:
//! the cluster id, a shared signing key, and in `tls/` a CA with a certificate per node
//! (peer mutual TLS and client-listener TLS) and an admin certificate for `authctl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use auth_raft::tls::PeerIdentity;
use base64::Engine as _;
use clap::Args;
use rand::RngCore;

use crate::certs::{self, CertDirs};

/// Flags of `auth-backend cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: u16,
    /// Host the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Client port of node 1; node N listens on base + (N-1) × step for clients and on
    /// the next port for peers.
    #[arg(long, default_value_t = 50051)]
    pub base_port: u16,
    /// Distance between the nodes' ports (at least 2).
    #[arg(long, default_value_t = 10)]
    pub port_step: u16,
    /// Directory for every node's data, logs, the cluster id and the shared signing key.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// No TLS anywhere (`serve --insecure`): for measuring what TLS costs, never for a
    /// cluster anyone else can reach.
    #[arg(long)]
    pub insecure: bool,
    /// Serve each node's Prometheus metrics (`serve --metrics-listen`) on its client
    /// port + 2, behind a bearer token the cluster creates in `DIR/metrics.token`
    /// (needs --port-step 3 or more).
    #[arg(long)]
    pub metrics: bool,
    /// Extra `serve` flags for every node, after `--` (e.g. `-- --argon2-memory-kib 4096`).
    #[arg(last = true)]
    pub node_args: Vec<String>,
}

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Node id (1-based).
    pub id: u64,
    /// Client listen address.
    pub addr: String,
    /// Peer listen address.
    pub peer_addr: String,
    /// Log file (the node's stdout and stderr).
    pub log: PathBuf,
    /// Arguments of `auth-backend` for this node.
    pub args: Vec<String>,
}

/// The `/metrics` bearer token of `cluster --metrics`, in the data dir.
pub const METRICS_TOKEN: &str = "metrics.token";

/// Reads `DIR/NAME`, or creates it with `make()` (mode 0600).
fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err(format!(
            "{} is empty (a crash while it was created?): remove it to make a new one",
            path.display()
        )),
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written whole to a private temporary file, synced, then linked into place:
            // a crash never leaves a short value behind, and of two creators racing
            // the second reads the first's.
            let value = make();
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".tmp-{}", std::process::id()));
            let tmp = PathBuf::from(tmp);
            let failed = |what: &str, e: std::io::Error| {
                let _ = std::fs::remove_file(&tmp);
                format!("cannot {what} {}: {e}", path.display())
            };
            // A crash's leftover of this name goes first: the file is created fresh
            // (mode 0600, never through a symlink or with an older file's mode).
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("cannot remove {}: {e}", tmp.display()));
                }
                _ => {}
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(|e| failed("create", e))?;
            std::io::Write::write_all(&mut f, value.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| failed("write", e))?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                    }
                    Ok(value)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(path)
                        .map(|s| s.trim().to_owned())
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
                Err(e) => Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The TLS files of a cluster made by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The admin certificate and key, for `authctl cluster …`.
    pub admin_cert: PathBuf,
    /// The admin key.
    pub admin_key: PathBuf,
}

/// Creates (once) the CA, one certificate per node valid for `hosts`, and an admin
/// certificate, in `dir`.
fn make_tls(dir: &Path, ids: &[u64], hosts: &[String]) -> Result<ClusterTls, String> {
    let dirs = CertDirs {
        certs_dir: dir.to_owned(),
        ca_key: None,
        overwrite: false,
        lifetime: None,
    };
    let ca = if dir.join("ca.pem").exists() {
        certs::load_ca(&dirs)?
    } else {
        certs::create_ca(&dirs)?
    };
    for id in ids {
        if !dir.join(format!("node-{id}.pem")).exists() {
            certs::issue(
                &ca,
                &dirs,
                PeerIdentity::Node(*id),
                hosts,
                &format!("node-{id}"),
            )?;
        }
    }
    if !dir.join("admin.pem").exists() {
        certs::issue(
            &ca,
            &dirs,
            PeerIdentity::Admin("admin".into()),
            &[],
            "admin",
        )?;
    }
    Ok(ClusterTls {
        ca: dir.join("ca.pem"),
        admin_cert: dir.join("admin.pem"),
        admin_key: dir.join("admin.key"),
    })
}

/// Lays out the cluster: ports, data dirs, a cluster id, one signing key and one MFA
/// key shared by every node (so a token from any node verifies on all, and a TOTP
/// secret sealed on one opens on all), and the TLS certificates, created on first use.
pub fn plan(args: &ClusterArgs) -> Result<(Vec<NodePlan>, ClusterTls), String> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if args.port_step < 2 {
        return Err("--port-step must be at least 2 (each node has two ports)".into());
    }
    if args.metrics && args.port_step < 3 {
        return Err("--metrics needs --port-step 3 or more (a third port per node)".into());
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot protect {}: {e}", args.data_dir.display()))?;
    }
    let cluster_id = read_or_create(&args.data_dir.join("cluster-id"), || {
        let mut b = [0u8; 6];
        rand::rng().fill_bytes(&mut b);
        format!(
            "auth-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    })?;
    let random_key = || {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let key_file = args.data_dir.join("signing.key");
    read_or_create(&key_file, random_key)?;
    let mfa_key_file = args.data_dir.join("mfa.key");
    read_or_create(&mfa_key_file, random_key)?;
    let metrics_token_file = args.data_dir.join(METRICS_TOKEN);
    if args.metrics {
        read_or_create(&metrics_token_file, random_key)?;
    }
    let mut ports = BTreeMap::new();
    for i in 0..args.nodes {
        let port = u32::from(args.base_port) + u32::from(i) * u32::from(args.port_step);
        let client = u16::try_from(port).map_err(|_| "ports run past 65535".to_string())?;
        let peer = client
            .checked_add(1)
            .ok_or_else(|| "ports run past 65535".to_string())?;
        if args.metrics && client.checked_add(2).is_none() {
            return Err("ports run past 65535".into());
        }
        ports.insert(
            u64::from(i) + 1,
            (
                format!("{}:{client}", args.host),
                format!("{}:{peer}", args.host),
            ),
        );
    }
    let mut hosts = vec![args.host.clone()];
    for h in ["127.0.0.1", "localhost"] {
        if !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_owned());
        }
    }
    let tls_dir = args.data_dir.join("tls");
    let ids: Vec<u64> = ports.keys().copied().collect();
    let tls = make_tls(&tls_dir, &ids, &hosts)?;
    let peer_list = ports
        .iter()
        .map(|(id, (_, peer))| format!("{id}={peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let path = |p: PathBuf| p.display().to_string();
    let nodes = ports
        .iter()
        .map(|(id, (addr, peer))| {
            let cert = path(tls_dir.join(format!("node-{id}.pem")));
            let key = path(tls_dir.join(format!("node-{id}.key")));
            let mut a: Vec<String> = [
                "serve",
                "--storage",
                "raft",
                "--id",
                &id.to_string(),
                "--listen",
                addr,
                "--peer-listen",
                peer,
                "--peers",
                &peer_list,
                "--cluster-id",
                &cluster_id,
                "--signing-key-id",
                "cluster",
                "--data-dir",
                &path(args.data_dir.join(format!("node-{id}"))),
                "--signing-key-file",
                &path(key_file.clone()),
                "--mfa-key-file",
                &path(mfa_key_file.clone()),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if args.metrics {
                a.push("--metrics-listen".into());
                a.push(metrics_addr(&args.host, addr));
                a.push("--metrics-token-file".into());
                a.push(path(metrics_token_file.clone()));
            }
            if args.insecure {
                a.push("--insecure".into());
            } else {
                let ca = path(tls.ca.clone());
                for (flag, value) in [
                    ("--tls-cert", &cert),
                    ("--tls-key", &key),
                    ("--peer-cert-file", &cert),
                    ("--peer-key-file", &key),
                    ("--peer-trusted-ca-file", &ca),
                ] {
                    a.push(flag.into());
                    a.push(value.clone());
                }
            }
            // The web site whose flags `cluster` prints runs on this machine: the nodes
            // believe the end users' addresses it sends (unless told otherwise).
            if !args
                .node_args
                .iter()
                .any(|a| a.starts_with("--trusted-frontends"))
            {
                a.push("--trusted-frontends".into());
                a.push("127.0.0.1".into());
            }
            a.extend(args.node_args.iter().cloned());
            NodePlan {
                id: *id,
                addr: addr.clone(),
                peer_addr: peer.clone(),
                log: args.data_dir.join(format!("node-{id}.log")),
                args: a,
            }
        })
        .collect();
    Ok((nodes, tls))
}

/// A node's metrics address under `cluster --metrics`: its client port + 2.
fn metrics_addr(host: &str, client: &str) -> String {
    let port = client
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u32>().ok())
        .map_or(0, |p| p + 2);
    format!("{host}:{port}")
}

fn spawn(exe: &Path, node: &NodePlan) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .map_err(|e| format!("cannot open {}: {e}", node.log.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", node.log.display()))?;
    Command::new(exe)
        .args(&node.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start node {}: {e}", node.id))
}

fn terminate(child: &Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: sending a signal to a child process we own; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// How long `cluster` waits for its nodes to elect a leader and commit.
const SERVING_TIMEOUT: Duration = Duration::from_secs(60);

/// An admin client of the nodes' peer listeners, with the cluster's admin certificate.
fn cluster_admin(
    plan: &[NodePlan],
    tls: &ClusterTls,
    insecure: bool,
) -> Result<auth_raft::ClusterAdmin, String> {
    let peers = plan.iter().map(|n| n.peer_addr.clone()).collect();
    let admin = auth_raft::ClusterAdmin::new(peers, Duration::from_millis(500));
    if insecure {
        return Ok(admin);
    }
    let files = auth_raft::tls::TlsFiles {
        ca: tls.ca.clone(),
        cert: tls.admin_cert.clone(),
        key: tls.admin_key.clone(),
    };
    let admin_tls = auth_raft::tls::PeerTls::load(&files, None).map_err(|e| e.to_string())?;
    Ok(admin.with_tls(&admin_tls))
}

/// Waits until the cluster serves: every node answers and names the same leader, and
/// that leader has applied its whole log, the entry that opens its term included, so
/// a write through any node commits. Returns the leader; an error once a node exits
/// or `timeout` passes.
async fn wait_until_serving(
    admin: &auth_raft::ClusterAdmin,
    children: &mut [(NodePlan, Option<Child>)],
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        for (n, slot) in children.iter_mut() {
            if let Some(c) = slot
                && let Ok(Some(status)) = c.try_wait()
            {
                *slot = None;
                return Err(format!("node {} exited: {status}", n.id));
            }
        }
        let statuses = admin.status().await;
        let mut leaders = Vec::new();
        for (endpoint, r) in &statuses {
            match r {
                Ok(s) => leaders.push((s.leader_id, s)),
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        if leaders.len() == statuses.len() {
            let leader = leaders.first().map_or(0, |(l, _)| *l);
            let settled = leader != 0
                && leaders.iter().all(|(l, _)| *l == leader)
                && leaders.iter().any(|(_, s)| {
                    s.id == leader
                        && s.role == "leader"
                        && s.last_log_index > 0
                        && s.last_applied_index == s.last_log_index
                });
            if settled {
                return Ok(leader);
            }
            last = if leader == 0 {
                "no leader elected yet".into()
            } else {
                format!("node {leader} leads; not every node knows it, or it has not committed yet")
            };
        }
        if Instant::now() >= deadline {
            return Err(format!("not within {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops every running node: SIGTERM, then SIGKILL for any still up after 15 s.
async fn stop_all(children: &mut [(NodePlan, Option<Child>)]) {
    for (_, c) in children
        .iter()
        .filter_map(|(n, c)| c.as_ref().map(|c| (n, c)))
    {
        terminate(c);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (_, slot) in children.iter_mut() {
        if let Some(c) = slot {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// `auth-backend cluster`: starts the nodes, prints their id, pid and address, reports
/// nodes that exit, and stops them all on SIGINT/SIGTERM.
pub fn main_cluster(args: &ClusterArgs) -> ExitCode {
    let (plan, tls) = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("auth-backend cluster: {e}");
            return ExitCode::from(crate::app::EXIT_CONFIG);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("auth-backend cluster: cannot find own executable: {e}");
            return ExitCode::from(crate::app::EXIT_RUNTIME);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("auth-backend cluster: {e}");
            return ExitCode::from(crate::app::EXIT_RUNTIME);
        }
    };
    runtime.block_on(async {
        let shutdown = match crate::app::shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("auth-backend cluster: {e}");
                return ExitCode::from(crate::app::EXIT_RUNTIME);
            }
        };
        let mut children: Vec<(NodePlan, Option<Child>)> = Vec::new();
        for node in &plan {
            match spawn(&exe, node) {
                Ok(c) => children.push((node.clone(), Some(c))),
                Err(e) => {
                    eprintln!("auth-backend cluster: {e}");
                    for (_, c) in children
                        .iter()
                        .filter_map(|(n, c)| c.as_ref().map(|c| (n, c)))
                    {
                        terminate(c);
                    }
                    return ExitCode::from(crate::app::EXIT_RUNTIME);
                }
            }
        }
        // The table comes once the cluster can serve: a load started on seeing it must
        // not meet an election, or a follower that does not know the leader yet.
        let admin = match cluster_admin(&plan, &tls, args.insecure) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("auth-backend cluster: {e}");
                stop_all(&mut children).await;
                return ExitCode::from(crate::app::EXIT_RUNTIME);
            }
        };
        tokio::pin!(shutdown);
        let ready = tokio::select! {
            () = &mut shutdown => Err("interrupted".to_owned()),
            r = wait_until_serving(&admin, &mut children, SERVING_TIMEOUT) => r,
        };
        let leader = match ready {
            Ok(leader) => leader,
            Err(e) => {
                eprintln!("auth-backend cluster: not serving: {e}; logs are in {}", args.data_dir.display());
                stop_all(&mut children).await;
                return ExitCode::from(crate::app::EXIT_RUNTIME);
            }
        };
        println!(
            "auth-backend cluster: {} nodes, node {leader} leads and writes are accepted; data in {}",
            plan.len(),
            args.data_dir.display()
        );
        println!(
            "{:>4}  {:>8}  {:<22}  {:<22}  log",
            "id", "pid", "client (TLS)", "peer (mutual TLS)"
        );
        for (n, c) in &children {
            let pid = c.as_ref().map_or(0, Child::id);
            println!(
                "{:>4}  {:>8}  {:<22}  {:<22}  {}",
                n.id,
                pid,
                n.addr,
                n.peer_addr,
                n.log.display()
            );
        }
        let endpoints: Vec<&str> = plan.iter().map(|n| n.addr.as_str()).collect();
        let peers: Vec<&str> = plan.iter().map(|n| n.peer_addr.as_str()).collect();
        println!("endpoints: {}", endpoints.join(","));
        println!("peer endpoints: {}", peers.join(","));
        if args.metrics {
            let m: Vec<String> = plan
                .iter()
                .map(|n| format!("http://{}/metrics", metrics_addr(&args.host, &n.addr)))
                .collect();
            println!("metrics: {}", m.join(" "));
            println!(
                "metrics bearer token: {}",
                args.data_dir.join(METRICS_TOKEN).display()
            );
        }
        if args.insecure {
            println!("WARNING: --insecure: no TLS on any listener; anyone who can reach the");
            println!("peer ports can take the cluster over. For measurements only.");
        }
        println!("authctl settings for this cluster:");
        println!("  export AUTHCTL_ENDPOINTS={}", endpoints.join(","));
        println!("  export AUTHCTL_PEER_ENDPOINTS={}", peers.join(","));
        if !args.insecure {
            println!("  export AUTHCTL_CACERT={}", tls.ca.display());
            println!("  export AUTHCTL_CERT={}", tls.admin_cert.display());
            println!("  export AUTHCTL_KEY={}", tls.admin_key.display());
        }
        let scheme = if args.insecure { "http" } else { "https" };
        let web_backends = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect::<Vec<_>>()
            .join(",");
        if args.insecure {
            println!("auth-web: --backend {web_backends}");
        } else {
            println!(
                "auth-web: --backend {web_backends} --backend-cacert {}",
                tls.ca.display()
            );
        }
        println!(
            "stop a node with `kill PID`; restart it with the `# restart node` line in its log"
        );
        println!("Ctrl-C stops every node.");
        for n in &plan {
            let line = format!(
                "# restart node {}: {} {}\n",
                n.id,
                exe.display(),
                n.args.join(" ")
            );
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&n.log) {
                let _ = std::io::Write::write_all(&mut f, line.as_bytes());
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    for (n, slot) in &mut children {
                        if let Some(c) = slot
                            && let Ok(Some(status)) = c.try_wait()
                        {
                            println!("node {} (pid {}) exited: {status}", n.id, c.id());
                            *slot = None;
                        }
                    }
                }
            }
        }
        println!(
            "stopping {} nodes",
            children.iter().filter(|(_, c)| c.is_some()).count()
        );
        stop_all(&mut children).await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_value_is_whole_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.token");
        // A crash's leftover of this very name, readable by all, changes nothing.
        let leftover = dir
            .path()
            .join(format!("metrics.token.tmp-{}", std::process::id()));
        std::fs::write(&leftover, "shor").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let made = read_or_create(&path, || "a-long-random-value".into()).unwrap();
        assert_eq!(made, "a-long-random-value");
        let again = read_or_create(&path, || panic!("made twice")).unwrap();
        assert_eq!(again, made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!leftover.exists(), "no temporary file left");
        // An empty file (an older version's crash) is refused, not used as a key.
        let empty = dir.path().join("signing.key");
        std::fs::write(&empty, "\n").unwrap();
        let e = read_or_create(&empty, || panic!("must not replace it")).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn plan_gives_each_node_its_port_dir_and_the_shared_key() {
        let dir = std::env::temp_dir().join(format!("auth-cluster-plan-{}", std::process::id()));
        let args = ClusterArgs {
            nodes: 5,
            host: "127.0.0.1".into(),
            base_port: 50051,
            port_step: 10,
            data_dir: dir.clone(),
            insecure: false,
            metrics: false,
            node_args: vec!["--argon2-memory-kib".into(), "64".into()],
        };
        let (p, tls) = plan(&args).unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[4].addr, "127.0.0.1:50091");
        assert_eq!(p[4].peer_addr, "127.0.0.1:50092");
        let peers = p[0].args.iter().position(|a| a == "--peers").unwrap();
        assert_eq!(
            p[0].args[peers + 1],
            "1=127.0.0.1:50052,2=127.0.0.1:50062,3=127.0.0.1:50072,4=127.0.0.1:50082,5=127.0.0.1:50092"
        );
        // Every node's certificate names it; the admin certificate is an admin's.
        for n in &p {
            let files = auth_raft::tls::TlsFiles {
                ca: tls.ca.clone(),
                cert: dir.join("tls").join(format!("node-{}.pem", n.id)),
                key: dir.join("tls").join(format!("node-{}.key", n.id)),
            };
            auth_raft::tls::PeerTls::load(&files, Some(&PeerIdentity::Node(n.id))).unwrap();
        }
        let admin = auth_raft::tls::TlsFiles {
            ca: tls.ca.clone(),
            cert: tls.admin_cert.clone(),
            key: tls.admin_key.clone(),
        };
        let admin = auth_raft::tls::PeerTls::load(&admin, None).unwrap();
        assert_eq!(admin.identity(), &PeerIdentity::Admin("admin".into()));
        let ca_before = std::fs::read_to_string(&tls.ca).unwrap();
        assert!(
            p[2].args
                .ends_with(&["--argon2-memory-kib".to_string(), "64".to_string()])
        );
        // The local web site is a trusted front end, unless the node flags say who is.
        let trusted = |plan: &NodePlan| {
            let i = plan.args.iter().position(|a| a == "--trusted-frontends")?;
            plan.args.get(i + 1).cloned()
        };
        assert_eq!(trusted(&p[0]).as_deref(), Some("127.0.0.1"));
        let own = ClusterArgs {
            node_args: vec!["--trusted-frontends".into(), "web".into()],
            ..args.clone()
        };
        let (p2, _) = plan(&own).unwrap();
        assert_eq!(trusted(&p2[0]).as_deref(), Some("web"));
        assert_eq!(
            p2[0]
                .args
                .iter()
                .filter(|a| *a == "--trusted-frontends")
                .count(),
            1
        );
        // The cluster id, key and CA are created once and reused.
        let id1 = std::fs::read_to_string(dir.join("cluster-id")).unwrap();
        let key1 = std::fs::read_to_string(dir.join("signing.key")).unwrap();
        plan(&args).unwrap();
        assert_eq!(ca_before, std::fs::read_to_string(&tls.ca).unwrap());
        assert_eq!(
            id1,
            std::fs::read_to_string(dir.join("cluster-id")).unwrap()
        );
        assert_eq!(
            key1,
            std::fs::read_to_string(dir.join("signing.key")).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("signing.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let too_many = ClusterArgs {
            base_port: 65530,
            ..args.clone()
        };
        assert!(plan(&too_many).is_err());
        let overlapping = ClusterArgs {
            port_step: 1,
            ..args.clone()
        };
        assert!(plan(&overlapping).is_err());
        // --metrics: each node's client port + 2, which needs a third port per node.
        let with_metrics = ClusterArgs {
            metrics: true,
            ..args.clone()
        };
        let (p3, _) = plan(&with_metrics).unwrap();
        let listen = p3[1]
            .args
            .iter()
            .position(|a| a == "--metrics-listen")
            .unwrap();
        assert_eq!(p3[1].args[listen + 1], "127.0.0.1:50063");
        // ... behind a private token the cluster created, the same for every node.
        let token = p3[1]
            .args
            .iter()
            .position(|a| a == "--metrics-token-file")
            .unwrap();
        assert_eq!(
            PathBuf::from(&p3[1].args[token + 1]),
            dir.join(METRICS_TOKEN)
        );
        assert!(
            std::fs::read_to_string(dir.join(METRICS_TOKEN))
                .unwrap()
                .len()
                >= 32
        );
        assert!(!p[1].args.iter().any(|a| a == "--metrics-listen"));
        let cramped = ClusterArgs {
            port_step: 2,
            ..with_metrics
        };
        assert!(plan(&cramped).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
