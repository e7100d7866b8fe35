//! Conversions between openraft's types and their `raft.proto` mirrors.
//!
//! Decoding is total: a malformed message from the network is an error, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use auth_proto::v1 as pb;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LeaderId};

use crate::types::*;

/// A message that does not decode into a valid Raft type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed raft message: missing or invalid {0}")]
pub(crate) struct Malformed(pub &'static str);

fn need<T>(v: Option<T>, what: &'static str) -> Result<T, Malformed> {
    v.ok_or(Malformed(what))
}

pub(crate) fn leader_id_to_pb(l: &LeaderId<NodeId>) -> pb::LeaderIdPb {
    pb::LeaderIdPb {
        term: l.term,
        node_id: l.node_id,
    }
}

pub(crate) fn vote_to_pb(v: &Vote) -> pb::VotePb {
    pb::VotePb {
        leader_id: Some(leader_id_to_pb(&v.leader_id)),
        committed: v.committed,
    }
}

pub(crate) fn vote_from_pb(v: Option<pb::VotePb>) -> Result<Vote, Malformed> {
    let v = need(v, "vote")?;
    let l = need(v.leader_id, "vote.leader_id")?;
    Ok(if v.committed {
        Vote::new_committed(l.term, l.node_id)
    } else {
        Vote::new(l.term, l.node_id)
    })
}

pub(crate) fn log_id_to_pb(l: &LogId) -> pb::LogIdPb {
    pb::LogIdPb {
        leader_id: Some(pb::LeaderIdPb {
            term: l.leader_id.term,
            node_id: l.leader_id.node_id,
        }),
        index: l.index,
    }
}

pub(crate) fn opt_log_id_to_pb(l: &Option<LogId>) -> Option<pb::LogIdPb> {
    l.as_ref().map(log_id_to_pb)
}

pub(crate) fn log_id_from_pb(l: pb::LogIdPb) -> Result<LogId, Malformed> {
    let leader = need(l.leader_id, "log_id.leader_id")?;
    Ok(LogId::new(
        CommittedLeaderId::new(leader.term, leader.node_id),
        l.index,
    ))
}

pub(crate) fn opt_log_id_from_pb(l: Option<pb::LogIdPb>) -> Result<Option<LogId>, Malformed> {
    l.map(log_id_from_pb).transpose()
}

pub(crate) fn membership_to_pb(m: &Membership) -> pb::MembershipPb {
    pb::MembershipPb {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::NodeIdSet {
                ids: c.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, n)| pb::NodeAddr {
                id: *id,
                addr: n.addr.clone(),
            })
            .collect(),
    }
}

pub(crate) fn membership_from_pb(m: Option<pb::MembershipPb>) -> Result<Membership, Malformed> {
    let m = need(m, "membership")?;
    let configs: Vec<BTreeSet<NodeId>> = m
        .configs
        .into_iter()
        .map(|c| c.ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<NodeId, BasicNode> = m
        .nodes
        .into_iter()
        .map(|n| (n.id, BasicNode { addr: n.addr }))
        .collect();
    // Every voter must have an address, or openraft would panic building the membership.
    if configs.is_empty() || configs.iter().flatten().any(|id| !nodes.contains_key(id)) {
        return Err(Malformed("membership.nodes"));
    }
    Ok(Membership::new(configs, nodes))
}

pub(crate) fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembershipPb {
    pb::StoredMembershipPb {
        log_id: opt_log_id_to_pb(m.log_id()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub(crate) fn stored_membership_from_pb(
    m: Option<pb::StoredMembershipPb>,
) -> Result<StoredMembership, Malformed> {
    let m = need(m, "stored_membership")?;
    let membership = match m.membership {
        // An empty membership is valid before initialisation.
        Some(pb::MembershipPb { configs, nodes }) if configs.is_empty() && nodes.is_empty() => {
            Membership::default()
        }
        other => membership_from_pb(other)?,
    };
    Ok(StoredMembership::new(
        opt_log_id_from_pb(m.log_id)?,
        membership,
    ))
}

pub(crate) fn entry_to_pb(e: &Entry) -> pb::EntryPb {
    let payload = match &e.payload {
        EntryPayload::Blank => pb::entry_pb::Payload::Blank(true),
        EntryPayload::Normal(batch) => pb::entry_pb::Payload::Normal(batch.clone()),
        EntryPayload::Membership(m) => pb::entry_pb::Payload::Membership(membership_to_pb(m)),
    };
    pb::EntryPb {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

/// [`entry_to_pb`] without copying the commands.
pub(crate) fn entry_into_pb(e: Entry) -> pb::EntryPb {
    let payload = match e.payload {
        EntryPayload::Normal(batch) => pb::entry_pb::Payload::Normal(batch),
        EntryPayload::Blank => pb::entry_pb::Payload::Blank(true),
        EntryPayload::Membership(m) => pb::entry_pb::Payload::Membership(membership_to_pb(&m)),
    };
    pb::EntryPb {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

pub(crate) fn entry_from_pb(e: pb::EntryPb) -> Result<Entry, Malformed> {
    let log_id = log_id_from_pb(need(e.log_id, "entry.log_id")?)?;
    let payload = match need(e.payload, "entry.payload")? {
        pb::entry_pb::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry_pb::Payload::Normal(b) => EntryPayload::Normal(b),
        pb::entry_pb::Payload::Membership(m) => {
            EntryPayload::Membership(membership_from_pb(Some(m))?)
        }
    };
    Ok(Entry { log_id, payload })
}

pub(crate) fn snapshot_meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMetaPb {
    pb::SnapshotMetaPb {
        last_log_id: opt_log_id_to_pb(&m.last_log_id),
        last_membership: Some(stored_membership_to_pb(&m.last_membership)),
        snapshot_id: m.snapshot_id.clone(),
    }
}

pub(crate) fn snapshot_meta_from_pb(
    m: Option<pb::SnapshotMetaPb>,
) -> Result<SnapshotMeta, Malformed> {
    let m = need(m, "snapshot_meta")?;
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(m.last_log_id)?,
        last_membership: stored_membership_from_pb(m.last_membership)?,
        snapshot_id: m.snapshot_id,
    })
}

pub(crate) fn append_to_pb(
    r: &AppendEntriesRequest<TypeConfig>,
    cluster_id: &str,
) -> pb::AppendEntriesRequestPb {
    pb::AppendEntriesRequestPb {
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: opt_log_id_to_pb(&r.prev_log_id),
        entries: r.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(&r.leader_commit),
        cluster_id: cluster_id.to_owned(),
    }
}

pub(crate) fn append_from_pb(
    r: pb::AppendEntriesRequestPb,
) -> Result<AppendEntriesRequest<TypeConfig>, Malformed> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(r.vote)?,
        prev_log_id: opt_log_id_from_pb(r.prev_log_id)?,
        entries: r
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_pb(r.leader_commit)?,
    })
}

pub(crate) fn append_resp_to_pb(r: &AppendEntriesResponse<NodeId>) -> pb::AppendEntriesResponsePb {
    use pb::append_entries_response_pb::Kind;
    let mut out = pb::AppendEntriesResponsePb::default();
    match r {
        AppendEntriesResponse::Success => out.kind = Kind::Success as i32,
        AppendEntriesResponse::PartialSuccess(l) => {
            out.kind = Kind::PartialSuccess as i32;
            out.partial_success = opt_log_id_to_pb(l);
        }
        AppendEntriesResponse::Conflict => out.kind = Kind::Conflict as i32,
        AppendEntriesResponse::HigherVote(v) => {
            out.kind = Kind::HigherVote as i32;
            out.higher_vote = Some(vote_to_pb(v));
        }
    }
    out
}

pub(crate) fn append_resp_from_pb(
    r: pb::AppendEntriesResponsePb,
) -> Result<AppendEntriesResponse<NodeId>, Malformed> {
    use pb::append_entries_response_pb::Kind;
    Ok(match Kind::try_from(r.kind) {
        Ok(Kind::Success) => AppendEntriesResponse::Success,
        Ok(Kind::PartialSuccess) => {
            AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(r.partial_success)?)
        }
        Ok(Kind::Conflict) => AppendEntriesResponse::Conflict,
        Ok(Kind::HigherVote) => AppendEntriesResponse::HigherVote(vote_from_pb(r.higher_vote)?),
        _ => return Err(Malformed("append_entries_response.kind")),
    })
}

pub(crate) fn vote_req_to_pb(r: &VoteRequest<NodeId>, cluster_id: &str) -> pb::VoteRequestPb {
    pb::VoteRequestPb {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: opt_log_id_to_pb(&r.last_log_id),
        cluster_id: cluster_id.to_owned(),
    }
}

pub(crate) fn vote_req_from_pb(r: pb::VoteRequestPb) -> Result<VoteRequest<NodeId>, Malformed> {
    Ok(VoteRequest {
        vote: vote_from_pb(r.vote)?,
        last_log_id: opt_log_id_from_pb(r.last_log_id)?,
    })
}

pub(crate) fn vote_resp_to_pb(r: &VoteResponse<NodeId>) -> pb::VoteResponsePb {
    pb::VoteResponsePb {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_to_pb(&r.last_log_id),
    }
}

pub(crate) fn vote_resp_from_pb(r: pb::VoteResponsePb) -> Result<VoteResponse<NodeId>, Malformed> {
    Ok(VoteResponse {
        vote: vote_from_pb(r.vote)?,
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_from_pb(r.last_log_id)?,
    })
}

pub(crate) fn snapshot_req_to_pb(
    r: &InstallSnapshotRequest<TypeConfig>,
    cluster_id: &str,
) -> pb::InstallSnapshotRequestPb {
    pb::InstallSnapshotRequestPb {
        vote: Some(vote_to_pb(&r.vote)),
        meta: Some(snapshot_meta_to_pb(&r.meta)),
        offset: r.offset,
        data: r.data.clone(),
        done: r.done,
        cluster_id: cluster_id.to_owned(),
    }
}

pub(crate) fn snapshot_req_from_pb(
    r: pb::InstallSnapshotRequestPb,
) -> Result<InstallSnapshotRequest<TypeConfig>, Malformed> {
    Ok(InstallSnapshotRequest {
        vote: vote_from_pb(r.vote)?,
        meta: snapshot_meta_from_pb(r.meta)?,
        offset: r.offset,
        data: r.data,
        done: r.done,
    })
}

pub(crate) fn snapshot_resp_from_pb(
    r: pb::InstallSnapshotResponsePb,
) -> Result<InstallSnapshotResponse<NodeId>, Malformed> {
    Ok(InstallSnapshotResponse {
        vote: vote_from_pb(r.vote)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let lid = LogId::new(CommittedLeaderId::new(3, 2), 17);
        let nodes: BTreeMap<NodeId, BasicNode> =
            [(1, BasicNode::new("a:1")), (2, BasicNode::new("b:2"))].into();
        let m = Membership::new(vec![[1, 2].into()], nodes);
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(pb::CommandBatch {
                proposed_at_ms: 5,
                commands: vec![],
            }),
            EntryPayload::Membership(m),
        ] {
            let e = Entry {
                log_id: lid,
                payload,
            };
            let back = entry_from_pb(entry_to_pb(&e)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(vote_from_pb(None).is_err());
        assert!(vote_from_pb(Some(pb::VotePb::default())).is_err());
        assert!(entry_from_pb(pb::EntryPb::default()).is_err());
        // A voter without an address.
        let bad = pb::MembershipPb {
            configs: vec![pb::NodeIdSet { ids: vec![9] }],
            nodes: vec![],
        };
        assert!(membership_from_pb(Some(bad)).is_err());
        assert!(append_resp_from_pb(pb::AppendEntriesResponsePb::default()).is_err());
    }
}
