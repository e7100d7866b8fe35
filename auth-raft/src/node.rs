//! One Raft node: opens the stores, runs openraft, batches writes (group commit),
//! forwards them to the leader, and serves linearizable reads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_proto::v1 as pb;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use auth_storage::StorageError;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::transport::Channel;

pub use crate::batcher::WriteStats;
use crate::batcher::{Pending, batch_loop};
use crate::clock::NodeClock;
use crate::convert::*;
use crate::network::Network;
pub use crate::network::PeerRequestStats;
use crate::reads::{LeaseState, ReadCounters, ReadQueue};
pub use crate::reads::{ReadConsistency, ReadStats};
use crate::snapshot_spool::SnapshotSpool;
use crate::state_machine::StateMachineStore;
use crate::tls::{PeerIdentity, PeerTls};
use crate::types::*;

/// Configuration of one node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The address other nodes reach this node's peer listener at (`host:port`).
    pub addr: String,
    /// Where the log, vote and snapshots are kept.
    pub data_dir: PathBuf,
    /// Identifies the cluster; a node refuses data dirs and messages of other clusters.
    pub cluster_id: String,
    /// The initial members (id → address), this node included. The member with the
    /// smallest id initialises the cluster on first start.
    pub initial_members: BTreeMap<NodeId, String>,
    /// Read consistency of [`RaftStorage`](crate::RaftStorage) reads.
    pub read_consistency: ReadConsistency,
    /// How long a write or a linearizable read may take before `unavailable`.
    pub request_timeout: Duration,
    /// Raft heartbeat interval. Default 30 ms.
    pub heartbeat: Duration,
    /// Election timeout range lower bound (upper = 2×). Default 100 ms: a dead leader is
    /// replaced in about half a second on loaded 2-core machines.
    pub election_timeout: Duration,
    /// Build a snapshot (and compact the log) every this many entries. Default 10 000.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little
    /// (further behind, they get the snapshot). Default 1 000.
    pub logs_to_keep: u64,
    /// Mutual TLS on the peer listener: this node's certificate (which must name
    /// [`RaftConfig::id`]) and the cluster CA. `None` runs without TLS, where anyone who
    /// reaches the peer port can act as any node or as an admin: for tests and
    /// throw-away clusters only.
    pub tls: Option<PeerTls>,
    /// Largest snapshot accepted from a leader, in bytes. Default 1 GiB.
    pub max_snapshot_bytes: u64,
    /// Where this node reads the time: the system clock unless a test injects one.
    /// While this node leads, its clock is the cluster's: it stamps every proposed
    /// batch (which ages the de-duplication table) and bounds the time commands carry.
    pub clock: NodeClock,
    /// How far the time in a command may differ from the leader's clock. The leader
    /// checks it before the command enters the log, so that one node's clock cannot
    /// expire sessions cluster-wide: a session sweep (`delete_expired_sessions`) ahead
    /// by more is refused, and within the bound never reaches past the leader's clock;
    /// a rotation or a new session whose time is ahead by more, or behind by more plus
    /// [`RaftConfig::request_timeout`] (a write's time in transit), is refused. A
    /// refusal is `StorageError::Unavailable` naming clock skew. Users' times are record
    /// data and not checked. `None` accepts any time (the proposers' clocks are
    /// trusted): for tests with synthetic clocks only. Default 2 s
    /// ([`DEFAULT_MAX_CLOCK_SKEW`]): far above what NTP keeps, far below any token
    /// lifetime.
    pub max_clock_skew: Option<Duration>,
}

/// Default [`RaftConfig::cluster_id`].
pub const DEFAULT_CLUSTER_ID: &str = "auth-sdk";
/// Default [`RaftConfig::snapshot_every`].
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// Default [`RaftConfig::logs_to_keep`].
pub const DEFAULT_LOGS_TO_KEEP: u64 = 1_000;
/// Default [`RaftConfig::max_snapshot_bytes`].
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Default [`RaftConfig::max_clock_skew`].
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);

impl RaftConfig {
    /// A configuration with defaults for everything but identity and placement.
    ///
    /// ```
    /// use auth_raft::{RaftConfig, ReadConsistency};
    ///
    /// let mut config = RaftConfig::new(1, "10.0.0.1:7001", "/var/lib/auth/node-1");
    /// config.initial_members = [
    ///     (1, "10.0.0.1:7001".to_owned()),
    ///     (2, "10.0.0.2:7001".to_owned()),
    ///     (3, "10.0.0.3:7001".to_owned()),
    /// ]
    /// .into();
    /// config.cluster_id = "prod-auth".into();
    /// assert_eq!(config.read_consistency, ReadConsistency::Lease);
    /// // Then: config.tls = Some(PeerTls::load(..)?); RaftNode::start(config).await?
    /// ```
    pub fn new(id: NodeId, addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            cluster_id: DEFAULT_CLUSTER_ID.into(),
            initial_members: BTreeMap::new(),
            read_consistency: ReadConsistency::Lease,
            request_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_millis(30),
            election_timeout: Duration::from_millis(100),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            logs_to_keep: DEFAULT_LOGS_TO_KEEP,
            tls: None,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            clock: NodeClock::system(),
            max_clock_skew: Some(DEFAULT_MAX_CLOCK_SKEW),
        }
    }
}

impl From<crate::db::DbError> for StartError {
    fn from(e: crate::db::DbError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Failure to start a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("raft config: {0}")]
    Config(String),
    /// The data directory could not be used (the message names it and why).
    #[error("{0}")]
    Store(String),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

pub(crate) struct NodeShared {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    pub(crate) cluster_id: String,
    pub(crate) raft: Raft,
    pub(crate) sm: StateMachineStore,
    pub(crate) db: crate::db::Db,
    /// The log's files (closed with the database on shutdown).
    pub(crate) wal: Arc<crate::wal::Wal>,
    pub(crate) read_consistency: ReadConsistency,
    pub(crate) request_timeout: Duration,
    pub(crate) clock: NodeClock,
    pub(crate) max_clock_skew: Option<Duration>,
    /// Clients of the peers, shared with openraft's network (one connection each).
    pub(crate) network: Network,
    pub(crate) batch_tx: mpsc::Sender<Pending>,
    pub(crate) reads: Mutex<ReadQueue>,
    /// The leader lease of [`ReadConsistency::Lease`].
    pub(crate) lease: Mutex<LeaseState>,
    pub(crate) read_stats: ReadCounters,
    /// What the batcher sent.
    pub(crate) write_stats: crate::batcher::WriteCounters,
    /// When this node started: it grants no vote before one vote lease after, having
    /// forgotten whose lease it may have been part of (see [`ReadConsistency::Lease`]).
    pub(crate) started: Instant,
    /// `None`: no TLS on the peer listener (insecure mode).
    pub(crate) tls: Option<PeerTls>,
    pub(crate) snapshots: SnapshotSpool,
    /// Identities of client certificates already seen (DER → identity).
    pub(crate) identities: Mutex<HashMap<Vec<u8>, PeerIdentity>>,
    /// Set by [`RaftNode::hand_over`]: this node proposes nothing more; its writes
    /// wait for the next leader and go there.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Read-held by every local proposal; [`RaftNode::hand_over`] takes it for writing
    /// once draining, to wait out the proposals that started before.
    pub(crate) proposing: tokio::sync::RwLock<()>,
    /// The term this node last became leader in, and when it saw that.
    pub(crate) leader_since: Mutex<Option<(u64, Instant)>>,
    /// When a leader's AppendEntries (or snapshot) last reached this node as a
    /// follower; see [`crate::elections`].
    pub(crate) leader_contact: Mutex<Option<Instant>>,
    /// Notified (one permit) at each such contact: ends a restarted member's hold.
    pub(crate) leader_heard: Arc<tokio::sync::Notify>,
    /// Read-held while an AppendEntries is handled; written while deciding to
    /// campaign (see [`crate::elections`]).
    pub(crate) campaign_gate: tokio::sync::RwLock<()>,
    /// Set once [`RaftNode::shutdown`] begins: ends every request stream open to
    /// this node, however it is served.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

/// Sends the followers a heartbeat (with the commit index) each time this node's flush
/// releases a commit index that was held back from them (see
/// [`crate::durable::Durability::commit_released`]), until the node shuts down.
async fn release_commits(
    raft: Raft,
    released: Arc<tokio::sync::Notify>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stopping| *stopping) => return,
            () = released.notified() => {}
        }
        if raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

/// Attempts at a request to the leader, across leader changes, until
/// [`RaftConfig::request_timeout`]:
///
/// ```text
/// let mut retry = shared.leader_retry();
/// while let Some(leader) = retry.next().await {
///     match attempt(leader, retry.remaining()).await {
///         Ok(v) => return Ok(v),
///         Err(why) => retry.failed(why),
///     }
/// }
/// Err(retry.error("write not committed in time"))
/// ```
pub(crate) struct LeaderRetry<'a> {
    shared: &'a NodeShared,
    deadline: Instant,
    /// The leader the last attempt went to (this node while it hands over).
    tried: Option<NodeId>,
    tries: u32,
    last: String,
}

impl LeaderRetry<'_> {
    /// The leader for the next attempt: at once the first time, later as soon as
    /// another leader is known or after a short backoff; `None` once out of time.
    pub(crate) async fn next(&mut self) -> Option<Leader> {
        loop {
            if self.tries > 0 {
                self.shared
                    .await_leader_change(self.tried, self.tries, self.deadline)
                    .await;
            }
            self.tries += 1;
            if Instant::now() >= self.deadline {
                return None;
            }
            let leader = self.shared.leader();
            // While handing over, wait for a leader other than this node.
            self.tried = match &leader {
                Some(Leader::Local) => Some(self.shared.id),
                Some(Leader::Remote(id, _, _)) => Some(*id),
                None => self.shared.is_draining().then_some(self.shared.id),
            };
            if leader.is_some() {
                return leader;
            }
        }
    }

    /// The time left for this attempt.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Records why an attempt failed, for the final error.
    pub(crate) fn failed(&mut self, why: String) {
        self.last = why;
    }

    /// The error once out of time: `what`, and why the last attempt failed.
    pub(crate) fn error(self, what: &str) -> StorageError {
        unavailable(format!("{what}: {}", self.last))
    }
}

/// Where the leader is: see [`LeaderRetry`].
pub(crate) enum Leader {
    /// This node leads (and is not handing over).
    Local,
    /// Another node leads: its id, its peer listener's address, and a client for it.
    Remote(NodeId, String, RaftServiceClient<Channel>),
}

pub(crate) fn unavailable(m: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(m.to_string())
}

/// A running node. Dropping it does not stop Raft: call [`RaftNode::shutdown`].
#[derive(Clone)]
pub struct RaftNode {
    pub(crate) shared: Arc<NodeShared>,
}

impl RaftNode {
    /// Opens the data directory, starts Raft and, on the member with the smallest id
    /// of a fresh cluster, initialises it with `initial_members`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use auth_raft::pki::{CertAuthority, CertRequest};
    /// # use auth_raft::tls::{PeerIdentity, PeerTls};
    /// use auth_raft::{RaftConfig, RaftNode};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ca = CertAuthority::generate("CA", Duration::from_secs(3600))?;
    /// # let cert = ca.issue(&CertRequest::new(PeerIdentity::Node(1), ["127.0.0.1"]))?;
    /// let mut config = RaftConfig::new(1, "127.0.0.1:7001", dir.path());
    /// config.initial_members = [(1, "127.0.0.1:7001".to_owned())].into();
    /// config.tls = Some(PeerTls::from_pem(ca.cert_pem(), &cert.cert_pem, &cert.key_pem, None)?);
    /// let node = RaftNode::start(config).await?;
    /// assert_eq!(node.id(), 1);
    /// // Serve its peer listener (`serve_peer`), then give `node.storage()` to `Auth::new`.
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(cfg: RaftConfig) -> Result<Self, StartError> {
        if cfg.id == 0 {
            return Err(StartError::Config("node id must be non-zero".into()));
        }
        if !cfg.initial_members.is_empty() {
            match cfg.initial_members.get(&cfg.id) {
                Some(a) if *a == cfg.addr => {}
                Some(a) => {
                    return Err(StartError::Config(format!(
                        "node {} is listed at {a} but listens at {}",
                        cfg.id, cfg.addr
                    )));
                }
                None => {
                    return Err(StartError::Config(format!(
                        "node {} is not in the member list",
                        cfg.id
                    )));
                }
            }
        }
        let (db, log, sm) = crate::open_all(&cfg.data_dir, &cfg.cluster_id, cfg.id)?;
        let heartbeat = cfg.heartbeat.as_millis().max(1) as u64;
        let election = cfg.election_timeout.as_millis().max(heartbeat as u128 * 3) as u64;
        let raft_config = openraft::Config {
            cluster_name: cfg.cluster_id.clone(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            // openraft's 200 ms default cannot move a large snapshot; a timed-out
            // transfer restarts from scratch and would loop.
            install_snapshot_timeout: 30_000,
            snapshot_max_chunk_size: 1024 * 1024,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: cfg.logs_to_keep,
            max_payload_entries: 64,
            // Until `elections::enable_after_start` decides (a restarted member waits
            // to hear from a leader first).
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        if let Some(tls) = &cfg.tls
            && *tls.identity() != PeerIdentity::Node(cfg.id)
        {
            return Err(StartError::Config(format!(
                "the peer certificate is for {}, not for node {}",
                tls.identity(),
                cfg.id
            )));
        }
        let client_tls = cfg.tls.as_ref().map(PeerTls::client_config);
        let network = Network {
            id: cfg.id,
            cluster_id: cfg.cluster_id.clone(),
            tls: client_tls.clone(),
            clients: Arc::default(),
            durable: log.durability(),
            stats: Arc::default(),
        };
        let wal = log.wal();
        let raft = match openraft::Raft::new(
            cfg.id,
            Arc::new(raft_config),
            network.clone(),
            log,
            sm.clone(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                db.close();
                return Err(StartError::Raft(e.to_string()));
            }
        };
        let (batch_tx, batch_rx) = mpsc::channel(16 * 1024);
        let shared = Arc::new(NodeShared {
            id: cfg.id,
            addr: cfg.addr.clone(),
            cluster_id: cfg.cluster_id.clone(),
            raft,
            sm,
            db,
            wal,
            read_consistency: cfg.read_consistency,
            request_timeout: cfg.request_timeout,
            clock: cfg.clock.clone(),
            max_clock_skew: cfg.max_clock_skew,
            network: network.clone(),
            batch_tx,
            reads: Mutex::new(ReadQueue::default()),
            lease: Mutex::new(LeaseState::default()),
            read_stats: ReadCounters::default(),
            write_stats: Default::default(),
            started: Instant::now(),
            tls: cfg.tls.clone(),
            snapshots: SnapshotSpool::new(&cfg.data_dir, cfg.max_snapshot_bytes),
            identities: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            proposing: tokio::sync::RwLock::new(()),
            leader_since: Mutex::new(None),
            leader_contact: Mutex::new(None),
            leader_heard: Arc::default(),
            campaign_gate: tokio::sync::RwLock::new(()),
            stopping: tokio::sync::watch::Sender::new(false),
        });
        // A member of a cluster that existed before this start (its log or snapshot
        // holds a membership), not one just created.
        let restarted = shared
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        tokio::spawn(batch_loop(Arc::downgrade(&shared), batch_rx));
        tokio::spawn(crate::handover::watch_leadership(Arc::downgrade(&shared)));
        tokio::spawn(release_commits(
            shared.raft.clone(),
            shared.network.durable.commit_released(),
            shared.stopping.subscribe(),
        ));
        let smallest = cfg.initial_members.keys().next().copied();
        if smallest == Some(cfg.id) && !restarted {
            let members: BTreeMap<NodeId, BasicNode> = cfg
                .initial_members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            if let Err(e) = shared.raft.initialize(members).await {
                tracing::warn!(error = %e, "cluster initialisation skipped");
            } else {
                tracing::info!(members = cfg.initial_members.len(), "cluster initialised");
            }
        }
        crate::elections::enable_after_start(&shared, restarted);
        Ok(Self { shared })
    }

    /// The [`Storage`](auth_storage::Storage) view of this node.
    pub fn storage(&self) -> crate::RaftStorage {
        crate::RaftStorage {
            shared: Arc::clone(&self.shared),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// A snapshot of this node's Raft state.
    pub fn status(&self) -> pb::StatusResponse {
        self.shared.status()
    }

    /// How this node, while leading, confirmed the read indexes of linearizable reads
    /// (its own and those its followers asked for) since it started.
    pub fn read_stats(&self) -> ReadStats {
        self.shared.read_stats.get()
    }

    /// What this node's write batcher sent since it started: how many writes it
    /// queued (on the leader, followers' forwarded writes too) in how many batches, and
    /// how many forwards to the leader.
    pub fn write_stats(&self) -> WriteStats {
        self.shared.write_stats.get()
    }

    /// How this node's requests to its peers went out since it started: AppendEntries
    /// (as a leader) and forwarded writes (as a follower), each as streams opened,
    /// messages sent on them, and calls to peers without streams.
    pub fn peer_request_stats(&self) -> PeerRequestStats {
        self.shared.network.stats.get()
    }

    /// Sets this node's Raft gauges (term, leader, log and applied index, follower
    /// lag on the leader) from its current state; a metrics endpoint calls it before
    /// each scrape. See [`crate::metrics`].
    pub fn record_metrics(&self) {
        crate::metrics::record(&self.shared.raft.metrics().borrow());
    }

    /// Every member's status as this node can learn it now: its own, and each other
    /// member's from that member's `ClusterAdmin.Status`, asked with this node's
    /// certificate, in parallel, each within `timeout`. In member id order; an
    /// unreachable member comes with why.
    pub async fn member_statuses(
        &self,
        timeout: Duration,
    ) -> Vec<(NodeId, String, Result<pb::StatusResponse, String>)> {
        let s = &self.shared;
        let members: Vec<(NodeId, String)> = s
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let mut asks = tokio::task::JoinSet::new();
        for (id, addr) in members {
            let shared = Arc::clone(s);
            asks.spawn(async move {
                if id == shared.id {
                    return (id, addr, Ok(shared.status()));
                }
                let mut admin = crate::ClusterAdmin::new(vec![addr.clone()], timeout);
                if let Some(tls) = &shared.tls {
                    admin = admin.with_tls(tls);
                }
                let r = match admin.status().await.pop() {
                    Some((_, r)) => r.map_err(|e| e.to_string()),
                    None => Err("no answer".to_owned()),
                };
                (id, addr, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = asks.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out.sort_by_key(|(id, _, _)| *id);
        out
    }

    /// Waits until some node is known as leader, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        self.shared
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }

    /// Asks this node to build a snapshot now (and compact its log).
    pub async fn trigger_snapshot(&self) -> Result<(), StorageError> {
        self.shared
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(unavailable)
    }

    /// Stops Raft on this node and closes its data directory; later storage calls on
    /// this node fail with `unavailable`.
    pub async fn shutdown(&self) {
        self.shared.stopping.send_replace(true);
        let _ = self.shared.raft.shutdown().await;
        // Entries this node wrote as leader and had not flushed yet.
        let _ = self.shared.wal.sync();
        self.shared.wal.close();
        self.shared.db.close();
    }
}

impl NodeShared {
    pub(crate) fn status(&self) -> pb::StatusResponse {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        pb::StatusResponse {
            id: self.id,
            addr: self.addr.clone(),
            role: role.into(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            membership: Some(membership_to_pb(m.membership_config.membership())),
            cluster_id: self.cluster_id.clone(),
            purged_index: m.purged.map_or(0, |l| l.index),
        }
    }

    /// A copy of this node's state as it is now, and the header of its backup file
    /// (see [`auth_storage::backup`]). Applying waits only for the copy; encoding it
    /// happens after, off the lock.
    pub(crate) fn backup_source(&self) -> (auth_storage::memory::Tables, pb::BackupHeader) {
        let state = self.sm.state.read();
        let header = pb::BackupHeader {
            source: "raft".into(),
            cluster_id: self.cluster_id.clone(),
            applied_index: state.last_applied.map_or(0, |l| l.index),
            applied_term: state.last_applied.map_or(0, |l| l.leader_id.term),
            created_at_ms: self.clock.now_ms(),
            ..Default::default()
        };
        (state.tables.clone(), header)
    }

    /// Where the leader is, as this node sees it now; `None` while no leader is known,
    /// or while this node leads but is handing over (its requests wait for the next).
    fn leader(&self) -> Option<Leader> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        if leader == self.id {
            return (!self.is_draining()).then_some(Leader::Local);
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        let client = self.network.client(leader, &addr).ok()?;
        Some(Leader::Remote(leader, addr, client))
    }

    /// The one retry loop of requests that must reach the leader (writes and read
    /// indexes): see [`LeaderRetry`].
    pub(crate) fn leader_retry(&self) -> LeaderRetry<'_> {
        self.leader_retry_since(Instant::now())
    }

    /// [`NodeShared::leader_retry`] for a request that arrived at `since`: its time
    /// runs out `request_timeout` after that.
    pub(crate) fn leader_retry_since(&self, since: Instant) -> LeaderRetry<'_> {
        LeaderRetry {
            shared: self,
            deadline: since + self.request_timeout,
            tried: None,
            tries: 0,
            last: String::from("no leader"),
        }
    }

    /// After a failed attempt against `tried`: returns as soon as this node learns of
    /// another leader, or after a short backoff, whichever is first. Waking on the
    /// change (not on a timer) is what keeps the write gap after a leader dies close to
    /// the election time.
    async fn await_leader_change(&self, tried: Option<NodeId>, attempt: u32, deadline: Instant) {
        let backoff = Duration::from_millis((5 * u64::from(attempt)).min(100));
        let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
        let _ = self
            .raft
            .wait(Some(wait))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != tried,
                "leader change",
            )
            .await;
    }

    /// True once [`RaftNode::hand_over`] began.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that the leader's AppendEntries or snapshot just reached this node.
    pub(crate) fn heard_from_leader(&self) {
        *self.leader_contact.lock() = Some(Instant::now());
        self.leader_heard.notify_one();
    }

    /// True if no leader's message reached this node for `d` (counting from start
    /// if none ever did).
    pub(crate) fn leader_silent_for(&self, d: Duration) -> bool {
        let last = (*self.leader_contact.lock()).unwrap_or(self.started);
        last.elapsed() > d
    }

    /// True if this node currently leads.
    pub(crate) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }
}
