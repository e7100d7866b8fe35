//! One Raft node: opens the stores, runs openraft, batches writes (group commit),
//! forwards them to the leader, and serves linearizable reads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use auth_proto::v1 as pb;
use auth_proto::v1::raft_service_client::RaftServiceClient;
use auth_storage::StorageError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

use crate::clock::{NodeClock, TimeBounds};
use crate::convert::*;
use crate::network::Network;
use crate::snapshot_spool::SnapshotSpool;
use crate::state_machine::StateMachineStore;
use crate::tls::{PeerIdentity, PeerTls};
use crate::types::*;

/// Most commands in one log entry.
const MAX_BATCH: usize = 512;
/// Batches being committed at once; while they are, new writes queue and join the next.
const MAX_INFLIGHT_BATCHES: usize = 2;

/// How reads are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// Linearizable (default): before reading, the node learns the leader's commit
    /// index (openraft's read index, confirmed by a quorum) and waits until it has
    /// applied that far. A read sees every write acknowledged before it started.
    #[default]
    Linearizable,
    /// Read this node's state as it is: lower latency, but possibly stale. Risk: on a
    /// lagging node a logged-out session may still verify for a moment.
    Local,
}

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
    /// assert_eq!(config.read_consistency, ReadConsistency::Linearizable);
    /// // Then: config.tls = Some(PeerTls::load(..)?); RaftNode::start(config).await?
    /// ```
    pub fn new(id: NodeId, addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            cluster_id: DEFAULT_CLUSTER_ID.into(),
            initial_members: BTreeMap::new(),
            read_consistency: ReadConsistency::Linearizable,
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

struct Pending {
    cmd: pb::Command,
    reply: oneshot::Sender<Result<pb::CommandResult, StorageError>>,
}

pub(crate) struct NodeShared {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    pub(crate) cluster_id: String,
    pub(crate) raft: Raft,
    pub(crate) sm: StateMachineStore,
    db: crate::db::Db,
    pub(crate) read_consistency: ReadConsistency,
    pub(crate) request_timeout: Duration,
    clock: NodeClock,
    max_clock_skew: Option<Duration>,
    /// Clients of the peers, shared with openraft's network (one connection each).
    network: Network,
    batch_tx: mpsc::Sender<Pending>,
    reads: Mutex<ReadQueue>,
    /// `None`: no TLS on the peer listener (insecure mode).
    pub(crate) tls: Option<PeerTls>,
    pub(crate) snapshots: SnapshotSpool,
    /// Identities of client certificates already seen (DER → identity).
    pub(crate) identities: Mutex<HashMap<Vec<u8>, PeerIdentity>>,
    /// Set by [`RaftNode::hand_over`]: this node proposes nothing more; its writes
    /// wait for the next leader and go there.
    draining: std::sync::atomic::AtomicBool,
    /// Read-held by every local proposal; [`RaftNode::hand_over`] takes it for writing
    /// once draining, to wait out the proposals that started before.
    proposing: tokio::sync::RwLock<()>,
    /// The term this node last became leader in, and when it saw that.
    leader_since: Mutex<Option<(u64, Instant)>>,
}

/// Records when this node becomes leader, for [`RaftNode::hand_over`].
async fn watch_leadership(shared: std::sync::Weak<NodeShared>) {
    let Some(mut rx) = shared.upgrade().map(|s| s.raft.metrics()) else {
        return;
    };
    loop {
        {
            let Some(s) = shared.upgrade() else { return };
            let m = rx.borrow_and_update().clone();
            if m.current_leader == Some(s.id) {
                let mut since = s.leader_since.lock();
                if since.is_none_or(|(term, _)| term != m.current_term) {
                    *since = Some((m.current_term, Instant::now()));
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn unavailable(m: impl std::fmt::Display) -> StorageError {
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
        };
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
            read_consistency: cfg.read_consistency,
            request_timeout: cfg.request_timeout,
            clock: cfg.clock.clone(),
            max_clock_skew: cfg.max_clock_skew,
            network: network.clone(),
            batch_tx,
            reads: Mutex::new(ReadQueue::default()),
            tls: cfg.tls.clone(),
            snapshots: SnapshotSpool::new(&cfg.data_dir, cfg.max_snapshot_bytes),
            identities: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            proposing: tokio::sync::RwLock::new(()),
            leader_since: Mutex::new(None),
        });
        tokio::spawn(batch_loop(Arc::downgrade(&shared), batch_rx));
        tokio::spawn(watch_leadership(Arc::downgrade(&shared)));
        let smallest = cfg.initial_members.keys().next().copied();
        if smallest == Some(cfg.id) {
            let initialized = shared
                .raft
                .is_initialized()
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
            if !initialized {
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
        }
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

    /// Hands leadership over before this node stops (a SIGTERM, a rolling upgrade),
    /// instead of leaving the cluster to notice its silence and elect (a full election
    /// timeout plus the followers' leader lease, about 0.3–0.4 s of failed writes).
    ///
    /// From now on this node proposes nothing: writes it receives wait for the next
    /// leader and are forwarded there. Once a voter has matched this node's whole log
    /// (the most up to date; entries in flight settle first), this node sends it
    /// `TransferLeader` ("TimeoutNow"), and that voter starts an election at once.
    ///
    /// openraft 0.9 has no transfer RPC and its followers refuse votes while their
    /// leader lease (the longest election timeout since the leader's last message)
    /// holds. The leader's own vote is what carries the election: its lease dates
    /// from its own election, so it grants the vote to a candidate whose log is as
    /// long as its own, and steps down. In a 3-node cluster that vote and the
    /// candidate's own are a majority: leadership moves in about one round trip. In
    /// larger clusters the other followers' leases must lapse first (no message comes
    /// from a draining leader), so the election completes about one lease later.
    /// Safe throughout: the candidate wins only with votes Raft allows, and this node
    /// stops leading as it grants its vote.
    ///
    /// Returns the new leader; `Ok(None)` if this node did not lead or had no voter
    /// to hand to; an error if no new leader emerged within `timeout` (the cluster then
    /// elects one the usual way once this node stops).
    pub async fn hand_over(&self, timeout: Duration) -> Result<Option<NodeId>, String> {
        let s = &self.shared;
        if !s.is_leader() {
            return Ok(None);
        }
        let me = s.id;
        let voters: Vec<NodeId> = s
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != me)
            .collect();
        if voters.is_empty() {
            return Ok(None);
        }
        s.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        // A node on its way out never campaigns again: once it stops hearing from the
        // next leader it would otherwise run for election and, being up to date, win.
        s.raft.runtime_config().elect(false);
        let r = self.transfer_to_a_voter(voters, timeout).await;
        if r.is_err() {
            // Lead on until the process stops, rather than hold writes back.
            s.draining.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    /// The body of [`RaftNode::hand_over`], once draining.
    async fn transfer_to_a_voter(
        &self,
        voters: Vec<NodeId>,
        timeout: Duration,
    ) -> Result<Option<NodeId>, String> {
        let s = &self.shared;
        let me = s.id;
        let deadline = Instant::now() + timeout;
        // Nothing more is appended once the proposals under way are in the log (new ones
        // see `draining` and wait for the next leader): the log to hand over is final.
        // A voter that matched an earlier index would lose the election it is asked to
        // start, to this node's own vote and to any follower that has the rest.
        let settled = tokio::time::timeout_at(deadline.into(), self.shared.proposing.write())
            .await
            .map_err(|_| "proposals under way did not finish".to_string())?;
        drop(settled);
        // The voter that has matched the whole log (entries in flight included).
        let caught_up = |m: &openraft::RaftMetrics<NodeId, BasicNode>| -> Option<NodeId> {
            let last = m.last_log_index?;
            let replication = m.replication.as_ref()?;
            voters
                .iter()
                .copied()
                .find(|v| replication.get(v).and_then(|l| l.map(|l| l.index)) == Some(last))
        };
        let m = s
            .raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(|m| caught_up(m).is_some(), "a voter caught up")
            .await
            .map_err(|e| format!("no voter caught up: {e}"))?;
        // This node grants the candidate its vote only once its own lease, dating from
        // its election, has run out: a leader elected moments ago waits for that.
        let lease = Duration::from_millis(s.raft.config().election_timeout_max);
        let since = *s.leader_since.lock();
        if let Some((term, at)) = since
            && term == m.current_term
        {
            let ready = at + lease + Duration::from_millis(5);
            if ready > Instant::now() {
                tokio::time::sleep_until(ready.into()).await;
            }
        }
        let target = caught_up(&m).ok_or("no voter caught up")?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or("the chosen voter has no address")?;
        let mut client = s.network.client(target, &addr).map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(pb::TransferLeaderRequest {
            cluster_id: s.cluster_id.clone(),
            leader_id: me,
            term: m.current_term,
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        client
            .transfer_leader(req)
            .await
            .map_err(|e| format!("transfer to node {target}: {}", e.message()))?;
        // An election takes a round trip or, in a larger cluster, about one lease:
        // waiting much longer would only hold this node's writes back.
        let election = (lease * 2 + Duration::from_millis(200))
            .min(deadline.saturating_duration_since(Instant::now()));
        let m = s
            .raft
            .wait(Some(election))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "a new leader",
            )
            .await
            .map_err(|e| format!("no new leader: {e}"))?;
        Ok(m.current_leader)
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
        let _ = self.shared.raft.shutdown().await;
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

    /// The current leader and, if it is another node, a client for it.
    fn leader(&self) -> Option<(NodeId, Option<RaftServiceClient<Channel>>)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        if leader == self.id {
            // A leader handing over proposes nothing: its writes wait for the next one.
            return (!self.is_draining()).then_some((leader, None));
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        let client = self.network.client(leader, &addr).ok()?;
        Some((leader, Some(client)))
    }

    /// Proposes a batch on the leader (locally or by forwarding), retrying on leader
    /// changes until `request_timeout`. Retries re-send the same request ids, which the
    /// state machine applies once.
    async fn submit(&self, batch: pb::CommandBatch) -> Result<pb::BatchResult, StorageError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut attempt = 0u32;
        let mut last = String::from("no leader");
        'attempts: while Instant::now() < deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let leader = self.leader();
            // While handing over, wait for a leader other than this node.
            let tried = leader
                .as_ref()
                .map(|(id, _)| *id)
                .or_else(|| self.is_draining().then_some(self.id));
            match leader {
                Some((_, None)) => 'propose: {
                    // Held while proposing: a hand-over waits for every proposal under
                    // way before it picks its target, so the log it hands over is whole.
                    let _proposing = self.proposing.read().await;
                    if self.is_draining() {
                        break 'propose;
                    }
                    let (proposal, refused) = self.bound_times(&batch);
                    if proposal.commands.is_empty() {
                        return Ok(merge_refused(pb::BatchResult::default(), refused));
                    }
                    let proposed = Instant::now();
                    match tokio::time::timeout(remaining, self.raft.client_write(proposal)).await {
                        Ok(Ok(resp)) => {
                            metrics::histogram!(crate::metrics::COMMIT_SECONDS)
                                .record(proposed.elapsed().as_secs_f64());
                            return Ok(merge_refused(resp.data, refused));
                        }
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                            last = "leadership moved".into();
                        }
                        Ok(Err(e)) => last = e.to_string(),
                        Err(_) => break 'attempts,
                    }
                }
                Some((id, Some(mut client))) => {
                    let mut req = tonic::Request::new(pb::ForwardRequest {
                        batch: Some(batch.clone()),
                        cluster_id: self.cluster_id.clone(),
                    });
                    req.set_timeout(remaining);
                    match client.forward(req).await {
                        Ok(r) => return Ok(r.into_inner()),
                        Err(s) => last = format!("forward to node {id}: {}", s.message()),
                    }
                }
                None => {}
            }
            attempt += 1;
            self.await_leader_change(tried, attempt, deadline).await;
        }
        Err(unavailable(format!("write not committed in time: {last}")))
    }

    /// On the leader, just before proposing: the batch as it enters the log (stamped
    /// with this node's clock, each command's time checked and bounded, see
    /// [`crate::clock`]) and the results of the commands refused, by position. Every
    /// write passes here, whether proposed on this node or forwarded to it; the time a
    /// follower put in the batch is dropped.
    fn bound_times(
        &self,
        batch: &pb::CommandBatch,
    ) -> (pb::CommandBatch, Vec<(usize, pb::CommandResult)>) {
        let now_ms = self.clock.now_ms();
        let bounds = TimeBounds::new(now_ms, self.max_clock_skew, self.request_timeout);
        let mut proposal = pb::CommandBatch {
            proposed_at_ms: now_ms,
            commands: Vec::with_capacity(batch.commands.len()),
        };
        let mut refused = Vec::new();
        let mut first_reason = None;
        for (i, cmd) in batch.commands.iter().enumerate() {
            let mut cmd = cmd.clone();
            match bounds.map_or(Ok(()), |b| b.apply(&mut cmd)) {
                Ok(()) => proposal.commands.push(cmd),
                Err(reason) => {
                    first_reason.get_or_insert_with(|| reason.clone());
                    refused.push((i, crate::clock::refused(reason)));
                }
            }
        }
        if let Some(reason) = first_reason {
            tracing::warn!(refused = refused.len(), %reason, "commands refused");
        }
        (proposal, refused)
    }

    /// Queues one command for the next batch and waits for its result.
    pub(crate) async fn write(
        &self,
        op: pb::command::Op,
    ) -> Result<pb::CommandResult, StorageError> {
        let mut request_id = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut request_id);
        let rx = self
            .enqueue(pb::Command {
                request_id: request_id.to_vec(),
                op: Some(op),
            })
            .await?;
        rx.await
            .map_err(|_| unavailable("raft node is shutting down"))?
    }

    /// Puts a command in this node's batcher; the receiver yields its result.
    pub(crate) async fn enqueue(
        &self,
        cmd: pb::Command,
    ) -> Result<oneshot::Receiver<Result<pb::CommandResult, StorageError>>, StorageError> {
        let (reply, rx) = oneshot::channel();
        self.batch_tx
            .send(Pending { cmd, reply })
            .await
            .map_err(|_| unavailable("raft node is shutting down"))?;
        Ok(rx)
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

    /// True if this node currently leads.
    pub(crate) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Returns once this node has applied every write committed before the call
    /// (linearizable reads); immediately with [`ReadConsistency::Local`].
    ///
    /// Concurrent reads share read-index requests: a reader joins the queue, and one
    /// request at a time fetches the leader's commit index for everyone who queued
    /// before it started. That is still linearizable (the index was read after each
    /// of those reads began) and costs one quorum round per batch, not per read.
    pub(crate) async fn read_barrier(self: &Arc<Self>) -> Result<(), StorageError> {
        if self.read_consistency == ReadConsistency::Local {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.reads.lock();
            q.waiting.push(tx);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(read_index_loop(Arc::clone(self)));
        }
        let index = rx
            .await
            .map_err(|_| unavailable("raft node is shutting down"))??;
        self.raft
            .wait(Some(self.request_timeout))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| unavailable(format!("read barrier: {e}")))
    }

    /// The leader's current commit index, asked of the leader (retrying across leader
    /// changes until `request_timeout`).
    async fn fetch_read_index(&self) -> Result<Option<u64>, StorageError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut attempt = 0u32;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            let leader = self.leader();
            // While handing over, wait for a leader other than this node.
            let tried = leader
                .as_ref()
                .map(|(id, _)| *id)
                .or_else(|| self.is_draining().then_some(self.id));
            match leader {
                Some((_, None)) => match self.raft.get_read_log_id().await {
                    Ok((read, _)) => return Ok(read.map(|l| l.index)),
                    Err(e) => last = e.to_string(),
                },
                Some((id, Some(mut client))) => {
                    let mut req = tonic::Request::new(pb::ReadIndexRequest {
                        cluster_id: self.cluster_id.clone(),
                    });
                    req.set_timeout(deadline.saturating_duration_since(Instant::now()));
                    match client.read_index(req).await {
                        Ok(r) => match opt_log_id_from_pb(r.into_inner().read_log_id) {
                            Ok(l) => return Ok(l.map(|l| l.index)),
                            Err(e) => last = e.to_string(),
                        },
                        Err(s) => last = format!("read index from node {id}: {}", s.message()),
                    }
                }
                None => {}
            }
            attempt += 1;
            self.await_leader_change(tried, attempt, deadline).await;
        }
        Err(unavailable(format!("linearizable read timed out: {last}")))
    }
}

/// Readers waiting for a read index, and whether a fetch is under way.
#[derive(Default)]
pub(crate) struct ReadQueue {
    running: bool,
    waiting: Vec<oneshot::Sender<Result<Option<u64>, StorageError>>>,
}

/// Serves queued readers one read-index fetch at a time until the queue is empty.
async fn read_index_loop(shared: Arc<NodeShared>) {
    loop {
        let batch = {
            let mut q = shared.reads.lock();
            if q.waiting.is_empty() {
                q.running = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let result = shared.fetch_read_index().await;
        for tx in batch {
            let _ = tx.send(result.clone());
        }
    }
}

/// The results of a whole batch: those of the proposed commands, in order, with the
/// refused commands' results put back at their positions. A short `accepted` yields a
/// short result, which the caller reports as a mismatch.
fn merge_refused(
    accepted: pb::BatchResult,
    refused: Vec<(usize, pb::CommandResult)>,
) -> pb::BatchResult {
    if refused.is_empty() {
        return accepted;
    }
    let total = accepted.results.len() + refused.len();
    let mut accepted = accepted.results.into_iter();
    let mut refused = refused.into_iter().peekable();
    let mut results = Vec::with_capacity(total);
    for i in 0..total {
        let next = match refused.next_if(|(at, _)| *at == i) {
            Some((_, r)) => Some(r),
            None => accepted.next(),
        };
        match next {
            Some(r) => results.push(r),
            None => break,
        }
    }
    pb::BatchResult { results }
}

/// Collects queued writes into batches: while up to `MAX_INFLIGHT_BATCHES` batches are
/// being committed, new writes wait and then go together in one log entry.
async fn batch_loop(weak: Weak<NodeShared>, mut rx: mpsc::Receiver<Pending>) {
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_BATCHES));
    while let Some(first) = rx.recv().await {
        // The bound is on proposals, on the leader. A follower's batches only wait for
        // the leader's answer: holding permits there could deadlock a hand-over, when
        // they wait on the old leader, which forwards them back here once this node
        // leads and its own batcher has no permit left.
        let leads = weak.upgrade().is_some_and(|s| s.is_leader());
        let permit = if leads {
            let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
                break;
            };
            Some(permit)
        } else {
            None
        };
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let Some(shared) = weak.upgrade() else { break };
        tokio::spawn(async move {
            let batch = pb::CommandBatch {
                // Informational only: the leader stamps its own clock when it proposes.
                proposed_at_ms: shared.clock.now_ms(),
                commands: pending.iter().map(|p| p.cmd.clone()).collect(),
            };
            let result = shared.submit(batch).await;
            drop(permit);
            match result {
                Ok(r) if r.results.len() == pending.len() => {
                    for (p, res) in pending.into_iter().zip(r.results) {
                        let _ = p.reply.send(Ok(res));
                    }
                }
                Ok(r) => {
                    let e = StorageError::Internal(format!(
                        "batch of {} got {} results",
                        pending.len(),
                        r.results.len()
                    ));
                    for p in pending {
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for p in pending {
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}
