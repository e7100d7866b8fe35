//! The client of `ClusterAdmin`: status of every node, and membership changes (add a
//! learner, promote it to voter, remove a node), sent to the leader. It talks to the
//! nodes' peer listeners and, in a TLS cluster, needs an admin certificate.

use std::collections::BTreeSet;
use std::time::Duration;

use auth_proto::v1 as pb;
use auth_proto::v1::cluster_admin_client::ClusterAdminClient;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::LEADER_ADDR_KEY;
use crate::tls::{PeerTls, peer_channel};

/// One node's Raft state, as `authctl cluster status` shows it.
pub type NodeStatus = pb::StatusResponse;

/// Why an admin call failed, with a stable [`AdminError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No node could be reached, or none could do it now (no leader, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request is invalid (unknown node, last voter, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The node refused the caller's credentials.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The record to create exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The client is misconfigured (bad endpoint, bad TLS files).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Writing what the cluster sent failed (a backup file).
    #[error("i/o: {0}")]
    Io(String),
}

impl AdminError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Unavailable(_) => "unavailable",
            AdminError::InvalidArgument(_) => "invalid_argument",
            AdminError::PermissionDenied(_) => "permission_denied",
            AdminError::AlreadyExists(_) => "already_exists",
            AdminError::InvalidConfig(_) => "invalid_config",
            AdminError::Io(_) => "io",
        }
    }

    fn from_status(addr: &str, s: &tonic::Status) -> Self {
        match s.code() {
            tonic::Code::InvalidArgument => AdminError::InvalidArgument(s.message().to_owned()),
            tonic::Code::AlreadyExists => AdminError::AlreadyExists(s.message().to_owned()),
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                AdminError::PermissionDenied(format!("{addr}: {}", s.message()))
            }
            _ => AdminError::Unavailable(format!("{addr}: {}", s.message())),
        }
    }
}

fn unavailable(m: impl std::fmt::Display) -> AdminError {
    AdminError::Unavailable(m.to_string())
}

/// Talks to the `ClusterAdmin` service of a set of nodes.
#[derive(Debug, Clone)]
pub struct ClusterAdmin {
    endpoints: Vec<String>,
    timeout: Duration,
    tls: Option<ClientTlsConfig>,
}

impl ClusterAdmin {
    /// An admin client for these peer listeners (`host:port`), without TLS (only for
    /// nodes started with `--insecure`). With TLS, give it an admin certificate:
    ///
    /// ```no_run
    /// use std::path::PathBuf;
    /// use std::time::Duration;
    /// use auth_raft::ClusterAdmin;
    /// use auth_raft::tls::{PeerTls, TlsFiles};
    ///
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let files = TlsFiles {
    ///     ca: PathBuf::from("tls/ca.pem"),
    ///     cert: PathBuf::from("tls/admin.pem"),
    ///     key: PathBuf::from("tls/admin.key"),
    /// };
    /// let admin = ClusterAdmin::new(vec!["10.0.0.1:7001".into()], Duration::from_secs(5))
    ///     .with_tls(&PeerTls::load(&files, None)?);
    /// for (endpoint, status) in admin.status().await {
    ///     println!("{endpoint}: {status:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        Self {
            endpoints,
            timeout,
            tls: None,
        }
    }

    /// Speaks mutual TLS with `admin`'s certificate (it must name an admin).
    pub fn with_tls(mut self, admin: &PeerTls) -> Self {
        self.tls = Some(admin.client_config());
        self
    }

    fn client(&self, addr: &str) -> Result<ClusterAdminClient<Channel>, AdminError> {
        let channel = peer_channel(addr, self.timeout, self.tls.as_ref())
            .map_err(AdminError::InvalidConfig)?;
        Ok(ClusterAdminClient::new(channel))
    }

    /// Every endpoint's status, or why it could not be asked.
    pub async fn status(&self) -> Vec<(String, Result<NodeStatus, AdminError>)> {
        let mut out = Vec::new();
        for e in &self.endpoints {
            let r = match self.client(e) {
                Ok(mut c) => {
                    let mut req = tonic::Request::new(pb::StatusRequest {});
                    req.set_timeout(self.timeout);
                    match tokio::time::timeout(self.timeout, c.status(req)).await {
                        Ok(r) => r
                            .map(|r| r.into_inner())
                            .map_err(|s| AdminError::from_status(e, &s)),
                        Err(_) => Err(unavailable(format!("{e}: timed out"))),
                    }
                }
                Err(e) => Err(e),
            };
            out.push((e.clone(), r));
        }
        out
    }

    /// Runs `call` on the leader: tries each endpoint, following leader hints.
    async fn on_leader<T, F, Fut>(&self, call: F) -> Result<T, AdminError>
    where
        F: Fn(ClusterAdminClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut candidates: Vec<String> = self.endpoints.clone();
        let mut tried = BTreeSet::new();
        let mut last = unavailable("no endpoint answered");
        while let Some(addr) = candidates.pop() {
            if !tried.insert(addr.clone()) {
                continue;
            }
            let outcome = tokio::time::timeout(self.timeout, call(self.client(&addr)?)).await;
            let Ok(outcome) = outcome else {
                last = unavailable(format!("{addr}: timed out"));
                continue;
            };
            match outcome {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => {
                    if let Some(leader) = s
                        .metadata()
                        .get(LEADER_ADDR_KEY)
                        .and_then(|v| v.to_str().ok())
                    {
                        candidates.push(leader.to_owned());
                    }
                    last = AdminError::from_status(&addr, &s);
                }
            }
        }
        Err(last)
    }

    /// Adds a node as a learner (it replicates but does not vote) and waits until it
    /// has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<u64, AdminError> {
        let node = pb::NodeAddr {
            id,
            addr: addr.to_owned(),
        };
        let r = self
            .on_leader(|mut c| {
                let node = node.clone();
                async move {
                    c.add_learner(pb::AddLearnerRequest { node: Some(node) })
                        .await
                }
            })
            .await?;
        Ok(r.log_id.map_or(0, |l| l.index))
    }

    /// The current voter ids, from the first node that answers.
    async fn voters(&self) -> Result<BTreeSet<u64>, AdminError> {
        for (_, r) in self.status().await {
            if let Ok(st) = r
                && let Some(m) = st.membership
                && let Some(last) = m.configs.last()
            {
                return Ok(last.ids.iter().copied().collect());
            }
        }
        Err(unavailable("no node reported its membership"))
    }

    /// Makes a learner a voter.
    pub async fn promote(&self, id: u64) -> Result<u64, AdminError> {
        let mut voters = self.voters().await?;
        voters.insert(id);
        let voters: Vec<u64> = voters.into_iter().collect();
        let r = self
            .on_leader(|mut c| {
                let voters = voters.clone();
                async move {
                    c.change_membership(pb::ChangeMembershipRequest { voters })
                        .await
                }
            })
            .await?;
        Ok(r.log_id.map_or(0, |l| l.index))
    }

    /// Creates `user` (a complete record, password already hashed) if its id and
    /// username are free: [`AdminError::AlreadyExists`] otherwise.
    pub async fn create_user(&self, user: pb::User) -> Result<pb::User, AdminError> {
        let r = self
            .on_leader(|mut c| {
                let user = user.clone();
                async move {
                    c.create_user(pb::CreateUserRequest { user: Some(user) })
                        .await
                }
            })
            .await?;
        r.user
            .ok_or_else(|| unavailable("create_user answered without the user"))
    }

    /// Streams a backup from the leader into `out` (see [`auth_storage::backup`]): the
    /// state once everything acknowledged before the call is applied. Returns the
    /// bytes written. The caller checks the file with
    /// [`Backup::read_from`](auth_storage::backup::Backup::read_from) before trusting
    /// it; `authctl cluster snapshot save` does.
    pub async fn save_backup<W: std::io::Write>(&self, out: &mut W) -> Result<u64, AdminError> {
        let mut stream = self
            .on_leader(|mut c| async move { c.save_backup(pb::SaveBackupRequest {}).await })
            .await?;
        let mut written = 0u64;
        loop {
            let next = tokio::time::timeout(self.timeout, stream.message())
                .await
                .map_err(|_| unavailable("the backup stream stalled"))?
                .map_err(|s| AdminError::from_status("leader", &s))?;
            let Some(chunk) = next else { break };
            out.write_all(&chunk.data)
                .map_err(|e| AdminError::Io(format!("cannot write the backup: {e}")))?;
            written += chunk.data.len() as u64;
        }
        Ok(written)
    }

    /// Removes a node from the cluster.
    pub async fn remove(&self, id: u64) -> Result<u64, AdminError> {
        let r = self
            .on_leader(|mut c| async move { c.remove_node(pb::RemoveNodeRequest { id }).await })
            .await?;
        Ok(r.log_id.map_or(0, |l| l.index))
    }
}
