//! Being one member of several: forwarding writes and read-index requests
//! from a follower to the leader, membership (join as learner → promote to
//! voter; remove), and the view of the cluster ([`Member`], leader).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::http::MembershipOp;
use super::network::{TransportError, rpc};
use super::raft_types::{Command, NodeId, TxnOutcome};
use super::{Store, StoreError, fatal};

/// One member of the cluster as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    /// Where its Raft RPCs are reached.
    pub url: String,
    /// Whether it votes (false: a learner still catching up).
    pub voter: bool,
}

/// How long one forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// This member's Raft id.
    pub fn node_id(&self) -> u64 {
        self.inner.config.node_id
    }

    /// The current leader's id, if one is known.
    pub fn leader(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The members (voters and learners) of the cluster's current configuration.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                node_id: *id,
                url: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// Adds `node_id` (reached at `url`) as a learner, waits until it caught up, then makes it a voter.
    pub async fn add_member(&self, node_id: u64, url: &str) -> Result<(), StoreError> {
        self.change_membership(MembershipOp::Join {
            node_id,
            url: url.to_string(),
        })
        .await
    }

    /// Removes `node_id` from the cluster.
    pub async fn remove_member(&self, node_id: u64) -> Result<(), StoreError> {
        self.change_membership(MembershipOp::Remove { node_id })
            .await
    }

    /// Runs a membership change on the leader (forwarding it there if needed).
    pub(super) async fn change_membership(&self, op: MembershipOp) -> Result<(), StoreError> {
        let me = self.node_id();
        match self.leader() {
            Some(leader) if leader == me => self.change_membership_as_leader(op).await,
            Some(leader) => {
                let url = self
                    .members()
                    .into_iter()
                    .find(|m| m.node_id == leader)
                    .map(|m| m.url)
                    .ok_or_else(|| {
                        StoreError::Unavailable("the leader's address is unknown".into())
                    })?;
                let timeout = Duration::from_secs(120);
                rpc::<_, (), StoreError>(
                    &*self.inner.transport,
                    leader,
                    &url,
                    "membership",
                    &op,
                    timeout,
                )
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
            }
            None => Err(StoreError::Unavailable("no leader elected".into())),
        }
    }

    async fn change_membership_as_leader(&self, op: MembershipOp) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let map_err = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
            RaftError::Fatal(f) => fatal(&f),
            RaftError::APIError(e) => StoreError::Unavailable(e.to_string()),
        };
        match op {
            MembershipOp::Join { node_id, url } => {
                if self
                    .members()
                    .iter()
                    .any(|m| m.node_id == node_id && m.voter)
                {
                    return Ok(());
                }
                tracing::info!(node_id, %url, "adding a learner; it becomes a voter once caught up");
                raft.add_learner(node_id, BasicNode { addr: url }, true)
                    .await
                    .map_err(map_err)?;
                let voters = ChangeMembers::AddVoterIds(BTreeSet::from([node_id]));
                raft.change_membership(voters, false)
                    .await
                    .map_err(map_err)?;
            }
            MembershipOp::Remove { node_id } => {
                tracing::info!(node_id, "removing a member");
                let voters = ChangeMembers::RemoveVoters(BTreeSet::from([node_id]));
                raft.change_membership(voters, false)
                    .await
                    .map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// Commits a write only if this member leads (the target of forwarded writes).
    pub(super) async fn write_as_leader(
        &self,
        command: Command,
    ) -> Result<Vec<TxnOutcome>, StoreError> {
        match self.inner.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::Fatal(e)) => Err(fatal(&e)),
            Err(RaftError::APIError(e)) => {
                Err(StoreError::Unavailable(format!("not the leader: {e}")))
            }
        }
    }

    /// Sends a write to the leader; Ok(None) if it was not the leader any more (retry).
    pub(super) async fn forward_write(
        &self,
        leader: NodeId,
        url: &str,
        command: &Command,
    ) -> Result<Option<Vec<TxnOutcome>>, StoreError> {
        let transport = &*self.inner.transport;
        match rpc::<_, Vec<TxnOutcome>, StoreError>(
            transport,
            leader,
            url,
            "write",
            command,
            FORWARD_TIMEOUT,
        )
        .await
        {
            Ok(Ok(outcome)) => Ok(Some(outcome)),
            // The leader stepped down, is stopping or never got the request: retry.
            Ok(Err(StoreError::Unavailable(_) | StoreError::Shutdown)) => Ok(None),
            Err(TransportError::Unreachable(_)) => Ok(None),
            Ok(Err(StoreError::Storage(e))) => {
                Err(StoreError::Unavailable(format!("the leader failed: {e}")))
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StoreError::Unavailable(format!(
                "forwarding to the leader: {e}; the write's outcome is unknown"
            ))),
        }
    }

    /// Asks the leader for its read index and waits until this member applied
    /// it; Ok(false) if it was not the leader any more (retry).
    pub(super) async fn read_barrier_via_leader(
        &self,
        leader: NodeId,
        url: &str,
    ) -> Result<bool, StoreError> {
        let transport = &*self.inner.transport;
        let index = match rpc::<_, Option<u64>, StoreError>(
            transport,
            leader,
            url,
            "read-index",
            &(),
            FORWARD_TIMEOUT,
        )
        .await
        {
            Ok(Ok(index)) => index,
            // Reads are idempotent: on any trouble with the leader, retry.
            Ok(Err(_)) | Err(_) => return Ok(false),
        };
        self.inner
            .raft
            .wait(Some(self.inner.options.request_timeout))
            .applied_index_at_least(index, "read index applied")
            .await
            .map_err(|e| StoreError::Unavailable(format!("catching up to the read index: {e}")))?;
        Ok(true)
    }

    /// Asks the cluster at `url` to admit this member, retrying until it did or the store shuts down.
    pub(super) async fn join_until_admitted(self, url: String) {
        let op = MembershipOp::Join {
            node_id: self.node_id(),
            url: self.inner.config.advertise_url.clone(),
        };
        loop {
            let transport = &*self.inner.transport;
            let timeout = Duration::from_secs(120);
            match rpc::<_, (), StoreError>(transport, 0, &url, "membership", &op, timeout).await {
                Ok(Ok(())) => {
                    tracing::info!(%url, node_id = self.node_id(), "joined the cluster");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(%url, error = %e, "join refused; retrying"),
                Err(e) => tracing::warn!(%url, error = %e, "join failed; retrying"),
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}
