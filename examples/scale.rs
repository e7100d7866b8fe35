//! How the Raft store's cost grows with its size (issue 12): for each size, a fresh
//! 3-node cluster in this process (plaintext peers on 127.0.0.1, data under a temporary
//! directory) is loaded with that many users and one session each through the storage
//! layer (`RaftStorage`, group-committed writes from many tasks), then measured:
//!
//! - load rate, and write throughput at that size (new users from 64 tasks for
//!   `--secs`);
//! - memory: this process's resident set before and after, per node (a third of the
//!   growth: all three nodes hold the whole state) and per user;
//! - snapshot build on the leader, the longest single write meanwhile (one client
//!   writing throughout: how long the build held writes up), and how far the resident
//!   set rose above where it stood at the start of the build (sampled every 5 ms);
//! - snapshot install: a fourth node added as a learner (`ClusterAdmin::add_learner`),
//!   until it has applied everything, and the same peak rise (which includes the
//!   learner's own copy of the state);
//! - restart: a follower stopped and started again from its data dir, until it has
//!   applied everything.
//!
//! `cargo run --release --example scale --features raft -- --sizes 10000,100000,1000000`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auth_sdk::raft::net::ListenerLimits;
use auth_sdk::storage::{Session, User};
use auth_sdk::{RaftConfig, RaftNode, Storage};
use clap::Parser;
use tokio::net::TcpListener;

type Error = Box<dyn std::error::Error>;

#[derive(Parser)]
struct Args {
    /// Users (and sessions) to load, one cluster per size.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<u64>,
    /// Seconds of the write load at each size.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Tasks writing at once while loading.
    #[arg(long, default_value_t = 512)]
    load_tasks: u64,
    /// Build a snapshot every this many log entries (`RaftConfig::snapshot_every`).
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
}

struct Member {
    node: Option<RaftNode>,
    cfg: RaftConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Member {
    async fn start(cfg: RaftConfig, listener: TcpListener) -> Result<Self, Error> {
        let node = RaftNode::start(cfg.clone()).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve = node.serve_peer(listener, ListenerLimits::default(), async {
            let _ = rx.await;
        })?;
        let server = tokio::spawn(async move {
            let _ = serve.await;
        });
        Ok(Self {
            node: Some(node),
            cfg,
            stop: Some(tx),
            server: Some(server),
        })
    }

    fn node(&self) -> &RaftNode {
        self.node.as_ref().expect("running")
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }

    async fn restart(&mut self) -> Result<(), Error> {
        let listener = TcpListener::bind(&self.cfg.addr).await?;
        *self = Self::start(self.cfg.clone(), listener).await?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A user as `Auth::register` stores it (an argon2id hash's length, a normalised name).
fn user(i: u64) -> User {
    let now = now_ms();
    User {
        id: format!("{i:032x}"),
        username: format!("user{i:08}"),
        username_key: format!("user{i:08}"),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${i:022}${:043}", i),
        created_at_ms: now,
        updated_at_ms: now,
        ..User::default()
    }
}

/// A session as `Auth::login` stores it.
fn session(i: u64, tag: u64) -> Session {
    let now = now_ms();
    Session {
        id: format!("{tag:08x}{i:024x}"),
        user_id: format!("{i:032x}"),
        // A SHA-256 digest's 32 bytes.
        refresh_hash: [u128::from(i), u128::from(tag)]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        created_at_ms: now,
        last_used_at_ms: now,
        expires_at_ms: now + 30 * 86_400_000,
        absolute_expires_at_ms: now + 90 * 86_400_000,
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) scale/1.0".into(),
        ip: "192.0.2.7".into(),
        ..Default::default()
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Samples the process's resident set every 5 ms until dropped; [`PeakRss::extra`] is
/// the most it rose above where it started (the transient memory of what ran meanwhile).
struct PeakRss {
    start: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<u64>>,
}

impl PeakRss {
    fn start() -> Self {
        let start = rss_bytes();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        Self {
            start,
            stop,
            sampler: Some(sampler),
        }
    }

    /// MiB above the start, at the peak.
    fn extra(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.sampler.take().and_then(|h| h.join().ok()).unwrap_or(0);
        peak.saturating_sub(self.start) as f64 / 1048576.0
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Waits (up to `limit`) until member `i` has applied `index`.
async fn applied(members: &[Member], i: usize, index: u64, limit: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    while members[i].node().status().last_applied_index < index {
        if Instant::now() > deadline {
            return Err(format!("node {} did not apply {index} in {limit:?}", i + 1).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `n` users and a session each, from `tasks` tasks, through `storage`.
async fn load(storage: auth_sdk::RaftStorage, from: u64, n: u64, tasks: u64) -> Result<(), Error> {
    let next = Arc::new(AtomicU64::new(from));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (s, next) = (storage.clone(), Arc::clone(&next));
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= from + n {
                    return Ok::<_, auth_sdk::StorageError>(());
                }
                s.create_user(user(i)).await?;
                s.create_session(session(i, 0), 0).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

async fn measure(size: u64, args: &Args) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        peers.insert(id, l.local_addr()?.to_string());
        listeners.push(l);
    }
    let rss_before = rss_bytes();
    let mut members = Vec::new();
    for (id, l) in (1..=3u64).zip(listeners) {
        let mut cfg = RaftConfig::new(id, &peers[&id], dir.path().join(format!("n{id}")));
        cfg.cluster_id = "scale".into();
        cfg.initial_members = peers.clone();
        cfg.snapshot_every = args.snapshot_every;
        members.push(Member::start(cfg, l).await?);
    }
    let leader = members[0]
        .node()
        .wait_for_leader(Duration::from_secs(10))
        .await
        .ok_or("no leader")?;
    let li = (leader - 1) as usize;
    let storage = members[li].node().storage();

    let started = Instant::now();
    load(storage.clone(), 0, size, args.load_tasks).await?;
    let load_secs = started.elapsed().as_secs_f64();
    let last = members[li].node().status().last_log_index;
    for i in 0..3 {
        applied(&members, i, last, Duration::from_secs(120)).await?;
    }
    let rss_after = rss_bytes();
    let per_node = rss_after.saturating_sub(rss_before) / 3;

    // Throughput at this size: new users (and sessions) from 64 tasks.
    let extra = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(args.secs);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..64u64 {
        let (s, extra) = (storage.clone(), Arc::clone(&extra));
        set.spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                let id = size + 1_000_000_000 + t * 100_000_000 + i;
                if s.create_user(user(id)).await.is_ok() {
                    extra.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
    }
    while set.join_next().await.is_some() {}
    let writes_per_sec = extra.load(Ordering::Relaxed) as f64 / args.secs as f64;

    // Snapshot build on the leader, while one client writes one user at a time: the
    // longest of those writes is how long the build held writes up.
    let last = members[li].node().status().last_applied_index;
    let building = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = tokio::spawn({
        let (s, building) = (storage.clone(), Arc::clone(&building));
        async move {
            let (mut longest, mut i) = (Duration::ZERO, 0u64);
            while building.load(Ordering::Relaxed) {
                let t = Instant::now();
                s.create_user(user(size + 8_000_000_000 + i)).await?;
                longest = longest.max(t.elapsed());
                i += 1;
            }
            Ok::<_, auth_sdk::StorageError>(longest)
        }
    });
    // A trigger while a periodic build is under way does nothing: once that one
    // finishes (short of `last`), trigger again and time that build alone.
    let mut seen = members[li].node().status().snapshot_index;
    let build_rss = PeakRss::start();
    let mut started = Instant::now();
    members[li].node().trigger_snapshot().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let index = members[li].node().status().snapshot_index;
        if index >= last {
            break;
        }
        if index != seen {
            seen = index;
            started = Instant::now();
            members[li].node().trigger_snapshot().await?;
        }
        if Instant::now() > deadline {
            return Err("snapshot not built in 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let snapshot_secs = started.elapsed().as_secs_f64();
    let build_extra = build_rss.extra();
    building.store(false, Ordering::Relaxed);
    let stall_ms = writer.await??.as_secs_f64() * 1000.0;

    // Snapshot install: a new node joins as a learner; the leader's log is compacted,
    // so it gets the snapshot, then the log after it.
    let learner_listener = TcpListener::bind("127.0.0.1:0").await?;
    let learner_addr = learner_listener.local_addr()?.to_string();
    let mut cfg = RaftConfig::new(4, &learner_addr, dir.path().join("n4"));
    cfg.cluster_id = "scale".into();
    cfg.snapshot_every = args.snapshot_every;
    let learner = Member::start(cfg, learner_listener).await?;
    let last = members[li].node().status().last_log_index;
    let install_rss = PeakRss::start();
    let started = Instant::now();
    auth_sdk::raft::ClusterAdmin::new(vec![peers[&leader].clone()], Duration::from_secs(600))
        .add_learner(4, &learner_addr)
        .await?;
    members.push(learner);
    applied(&members, 3, last, Duration::from_secs(600)).await?;
    let install_secs = started.elapsed().as_secs_f64();
    let install_extra = install_rss.extra();
    let disk = dir_bytes(&members[3].cfg.data_dir);

    // Restart of the other follower from its data dir.
    let other = (0..3).find(|i| *i != li).unwrap_or(0);
    let last = members[li].node().status().last_log_index;
    members[other].stop().await;
    let started = Instant::now();
    members[other].restart().await?;
    applied(&members, other, last, Duration::from_secs(600)).await?;
    let restart_secs = started.elapsed().as_secs_f64();

    println!(
        "users={size} load={:.1}s ({:.0} users+sessions/s) writes_at_size={writes_per_sec:.0}/s \
         rss_per_node={:.1}MiB bytes_per_user={} snapshot_build={snapshot_secs:.2}s \
         longest_write_during_build={stall_ms:.0}ms peak_rss_rise_during_build={build_extra:.0}MiB \
         snapshot_install={install_secs:.2}s peak_rss_rise_during_install={install_extra:.0}MiB \
         node_disk={:.1}MiB restart={restart_secs:.2}s",
        load_secs,
        size as f64 / load_secs,
        per_node as f64 / 1048576.0,
        per_node / size.max(1),
        disk as f64 / 1048576.0,
    );
    for m in &mut members {
        m.stop().await;
    }
    Ok(())
}

// Three nodes share this process, where a deployment gives each its own: two workers
// per node, so that one node blocked in a long apply (a table growing past a million
// entries rehashes under the state lock) does not stall the other two as well.
#[tokio::main(flavor = "multi_thread", worker_threads = 6)]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let [size] = args.sizes[..] {
        return measure(size, &args).await;
    }
    // One process per size: memory a smaller run freed stays with the allocator and
    // would count against the next.
    let exe = std::env::current_exe()?;
    for size in &args.sizes {
        let status = std::process::Command::new(&exe)
            .args(["--sizes", &size.to_string()])
            .args(["--secs", &args.secs.to_string()])
            .args(["--load-tasks", &args.load_tasks.to_string()])
            .args(["--snapshot-every", &args.snapshot_every.to_string()])
            .status()?;
        if !status.success() {
            return Err(format!("size {size}: {status}").into());
        }
    }
    Ok(())
}
