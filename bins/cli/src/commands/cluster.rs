//! `authctl cluster …`: Raft cluster status and membership changes, through the nodes'
//! peer listeners (`--peer-endpoints`). In a TLS cluster they need `--cacert` and an
//! admin certificate (`--cert`, `--key`); without `--cacert` they speak plaintext, which
//! only nodes started with `--insecure` accept.

use std::time::Duration;

use auth_raft::{AdminError, ClusterAdmin, NodeStatus};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::io::Io;
use crate::tls::TlsArgs;
use crate::{EXIT_OK, EXIT_UNREACHABLE, Failure};

/// Cluster administration (Raft storage only).
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCmd {
    /// For every endpoint: id, address, role, term, leader, last log and applied index,
    /// reachable or not.
    Status,
    /// Add a node as a learner; returns once it has caught up.
    AddLearner {
        /// The new node's id.
        id: u64,
        /// The new node's peer address (`host:port`, its `--peer-listen`), which the
        /// other nodes replicate to.
        addr: String,
    },
    /// Make a learner a voting member.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
}

fn status_json(endpoint: &str, r: &Result<NodeStatus, AdminError>) -> Value {
    match r {
        Ok(s) => json!({
            "endpoint": endpoint, "reachable": true, "id": s.id, "addr": s.addr,
            "role": s.role, "term": s.term, "leader": s.leader_id,
            "last_log_index": s.last_log_index, "applied_index": s.last_applied_index,
            "snapshot_index": s.snapshot_index, "cluster_id": s.cluster_id,
            "voters": s.membership.as_ref().and_then(|m| m.configs.last()).map(|c| c.ids.clone()).unwrap_or_default(),
        }),
        Err(e) => json!({
            "endpoint": endpoint, "reachable": false,
            "error": { "code": e.code(), "message": e.to_string() },
        }),
    }
}

fn status_text(rows: &[(String, Result<NodeStatus, AdminError>)]) -> String {
    let mut out = format!(
        "{:<4} {:<22} {:<10} {:>6} {:>7} {:>9} {:>9}  {}\n",
        "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "LAST LOG", "APPLIED", "REACHABLE"
    );
    for (endpoint, r) in rows {
        match r {
            Ok(s) => out.push_str(&format!(
                "{:<4} {:<22} {:<10} {:>6} {:>7} {:>9} {:>9}  yes\n",
                s.id, s.addr, s.role, s.term, s.leader_id, s.last_log_index, s.last_applied_index
            )),
            Err(e) => out.push_str(&format!(
                "{:<4} {:<22} {:<10} {:>6} {:>7} {:>9} {:>9}  no ({})\n",
                "-",
                endpoint,
                "-",
                "-",
                "-",
                "-",
                "-",
                e.code()
            )),
        }
    }
    out
}

/// The admin client for `--peer-endpoints`: mutual TLS with the admin certificate
/// when `--cacert` is given, plaintext otherwise.
pub fn admin(
    peer_endpoints: &[String],
    timeout: Duration,
    tls: &TlsArgs,
) -> Result<ClusterAdmin, Failure> {
    let endpoints = crate::endpoint_list(peer_endpoints);
    if endpoints.is_empty() {
        return Err(Failure::Usage(
            "cluster commands talk to the nodes' peer listeners: give them with \
             --peer-endpoints HOST:PORT,... (or AUTHCTL_PEER_ENDPOINTS)"
                .into(),
        ));
    }
    crate::check_timeout(timeout)?;
    let admin = ClusterAdmin::new(endpoints, timeout);
    Ok(match tls.admin_tls()? {
        Some(tls) => admin.with_tls(&tls),
        None => admin,
    })
}

/// Runs one cluster command.
pub async fn execute(
    cmd: ClusterCmd,
    admin: &ClusterAdmin,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let (value, text) = match cmd {
        ClusterCmd::Status => {
            let rows = admin.status().await;
            let all = rows.iter().all(|(_, r)| r.is_ok());
            let value = json!({
                "nodes": rows.iter().map(|(e, r)| status_json(e, r)).collect::<Vec<_>>(),
            });
            crate::io::emit(io, json, value, || status_text(&rows))?;
            return Ok(if all { EXIT_OK } else { EXIT_UNREACHABLE });
        }
        ClusterCmd::AddLearner { id, addr } => {
            let index = admin.add_learner(id, &addr).await.map_err(Failure::Admin)?;
            (
                json!({ "added_learner": id, "addr": addr, "log_index": index }),
                format!("node {id} ({addr}) added as a learner at log index {index}\n"),
            )
        }
        ClusterCmd::Promote { id } => {
            let index = admin.promote(id).await.map_err(Failure::Admin)?;
            (
                json!({ "promoted": id, "log_index": index }),
                format!("node {id} is now a voter (log index {index})\n"),
            )
        }
        ClusterCmd::Remove { id } => {
            let index = admin.remove(id).await.map_err(Failure::Admin)?;
            (
                json!({ "removed": id, "log_index": index }),
                format!("node {id} removed (log index {index})\n"),
            )
        }
    };
    crate::io::emit(io, json, value, || text)
}
