//! The cluster state store, the etcd of skiff: an MVCC key-value map with one
//! global revision, watches and compaction, replicated with openraft and kept
//! on disk in redb. This module is the only interface the API server sees;
//! openraft and redb types never leave it.
//!
//! Parts: `batcher` (concurrent writes share one Raft entry), `log_store`
//! (the Raft log, group commit), `state_machine` (applies
//! to `mvcc`, feeds `watch`), `network` + `http` (Raft RPCs and forwarding
//! between members), `member` (opening, membership, background tasks),
//! `backup` (snapshot save/restore files).

mod backup;
mod batcher;
mod cluster;
mod http;
mod log_store;
mod member;
mod mvcc;
mod network;
mod raft_types;
mod state_machine;
mod types;
mod watch;

#[cfg(test)]
mod suite_tests;

#[cfg(test)]
mod mvcc_props;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError};
use tokio_util::sync::CancellationToken;

pub use cluster::Member;
pub use member::StoreOptions;
pub use network::{HttpTransport, Transport, TransportError};
pub use types::*;
pub use watch::Watch;

use raft_types::{Command, NodeId, Raft, TxnOutcome};
use state_machine::SmShared;

/// A handle to this member's store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    sm: Arc<SmShared>,
    log: log_store::LogStore,
    sm_store: state_machine::StateMachine,
    transport: Arc<dyn Transport>,
    config: StoreConfig,
    options: StoreOptions,
    shutdown: CancellationToken,
    /// Where writes go to be proposed, alone or together (see `batcher`).
    batcher: batcher::Batcher,
}

impl StoreConfig {
    /// A single-member config for `data_dir` with node id 1 and the default history window.
    pub fn new(
        data_dir: impl Into<std::path::PathBuf>,
        advertise_url: impl Into<String>,
    ) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            node_id: 1,
            advertise_url: advertise_url.into(),
            history_window: Duration::from_secs(300),
        }
    }
}

fn fatal(e: &Fatal<NodeId>) -> StoreError {
    match e {
        Fatal::Stopped => StoreError::Shutdown,
        Fatal::StorageError(e) => StoreError::Storage(e.to_string()),
        Fatal::Panicked => {
            StoreError::Storage("the raft core panicked; this member stopped".into())
        }
    }
}

impl Store {
    /// Opens (or creates, as a single-member cluster) the store in `config.data_dir`.
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(config, StoreOptions::default()).await
    }

    /// The latest value of `key` (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.read_barrier().await?;
        Ok(self.inner.sm.read().mvcc.get(key))
    }

    /// The value of `key` as of `revision` (within the history window).
    pub async fn get_at(
        &self,
        key: &str,
        revision: Revision,
    ) -> Result<Option<KeyValue>, StoreError> {
        if revision > self.current_revision() {
            self.read_barrier().await?;
        }
        self.inner.sm.read().mvcc.get_at(key, revision)
    }

    /// Keys under a prefix, paged.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, StoreError> {
        match request.revision {
            Some(revision) if revision <= self.current_revision() => {}
            _ => self.read_barrier().await?,
        }
        self.inner.sm.read().mvcc.range(&request)
    }

    /// Creates `key`; AlreadyExists if present.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let txn = Txn {
            compares: vec![Compare::ModRevision {
                key: key.to_string(),
                equals: 0,
            }],
            success: vec![TxnOp::Put {
                key: key.to_string(),
                value,
            }],
            failure: vec![],
        };
        let outcome = self.write(txn).await?;
        if !outcome.succeeded {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        after_put(key, outcome)
    }

    /// Replaces `key` if its mod_revision is `expected_mod_revision`; Conflict or NotFound otherwise.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue, StoreError> {
        let txn = Txn {
            compares: vec![Compare::ModRevision {
                key: key.to_string(),
                equals: expected_mod_revision,
            }],
            success: vec![TxnOp::Put {
                key: key.to_string(),
                value,
            }],
            failure: vec![],
        };
        let outcome = self.write(txn).await?;
        if !outcome.succeeded {
            return Err(guard_failed(key, expected_mod_revision, &outcome));
        }
        after_put(key, outcome)
    }

    /// Deletes `key` (guarded when `expected_mod_revision` is Some); returns
    /// the deleted value and the revision of the delete.
    pub async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        let txn = Txn {
            compares: expected_mod_revision
                .map(|equals| Compare::ModRevision {
                    key: key.to_string(),
                    equals,
                })
                .into_iter()
                .collect(),
            success: vec![TxnOp::Delete {
                key: key.to_string(),
            }],
            failure: vec![],
        };
        let outcome = self.write(txn).await?;
        if !outcome.succeeded {
            return Err(guard_failed(
                key,
                expected_mod_revision.unwrap_or(0),
                &outcome,
            ));
        }
        match outcome.prev.into_iter().next().flatten() {
            Some(prev) => Ok((prev, outcome.revision)),
            None => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    /// A multi-key transaction committed at one revision.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let outcome = self.write(txn).await?;
        Ok(TxnResponse {
            succeeded: outcome.succeeded,
            revision: outcome.revision,
            prev: outcome.prev,
        })
    }

    /// Every event under `prefix` with revision > `after_revision`, then live ones.
    pub async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<Watch, StoreError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(StoreError::Shutdown);
        }
        let mut state = self.inner.sm.write();
        let backlog = state.mvcc.events_after(prefix, after_revision)?;
        let current = state.mvcc.revision();
        Ok(state.hub.register(prefix, after_revision, current, backlog))
    }

    /// The revision of the last committed write applied on this member.
    pub fn current_revision(&self) -> Revision {
        self.inner.sm.read().mvcc.revision()
    }

    /// Revisions at or below this have been compacted away.
    pub fn compacted_revision(&self) -> Revision {
        self.inner.sm.read().mvcc.compacted()
    }

    /// A digest of the live key-values and the revision; equal on members that applied the same writes.
    pub fn state_hash(&self) -> String {
        self.inner.sm.read().mvcc.state_hash()
    }

    /// Raft RPC endpoints (and follower→leader write forwarding) for the
    /// control-plane port; the API server mounts this under `/internal/raft`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Stops Raft and flushes storage.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.inner.shutdown.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        self.inner.sm.write().hub.close_all();
        let (log, sm) = (self.inner.log.clone(), self.inner.sm_store.clone());
        let _ = tokio::task::spawn_blocking(move || {
            log.close();
            sm.close();
        })
        .await;
    }

    /// Waits until this member may serve a linearizable read of the latest state.
    async fn read_barrier(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.inner.options.request_timeout;
        loop {
            let attempt =
                tokio::time::timeout_at(deadline.into(), self.inner.raft.ensure_linearizable());
            let Ok(result) = attempt.await else {
                return Err(StoreError::Unavailable(
                    "timed out waiting for a quorum to confirm the read".into(),
                ));
            };
            match result {
                Ok(_) => return Ok(()),
                Err(RaftError::Fatal(e)) => return Err(fatal(&e)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    if let (Some(id), Some(node)) = (f.leader_id, f.leader_node)
                        && self.read_barrier_via_leader(id, &node.addr).await?
                    {
                        return Ok(());
                    }
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {}
            }
            self.wait_for_leader(deadline).await?;
        }
    }

    /// Commits a transaction through Raft (forwarded to the leader when needed).
    async fn write(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.inner.batcher.write(self, txn).await
    }

    /// Commits a command through Raft (forwarded to the leader when needed).
    /// One outcome per transaction of `command`.
    async fn propose(&self, command: Command) -> Result<Vec<TxnOutcome>, StoreError> {
        let deadline = Instant::now() + self.inner.options.request_timeout;
        loop {
            let attempt = tokio::time::timeout_at(
                deadline.into(),
                self.inner.raft.client_write(command.clone()),
            );
            let Ok(result) = attempt.await else {
                return Err(StoreError::Unavailable(
                    "timed out waiting for the write to commit; its outcome is unknown".into(),
                ));
            };
            match result {
                Ok(response) => return Ok(response.data),
                Err(RaftError::Fatal(e)) => return Err(fatal(&e)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let (Some(id), Some(node)) = (f.leader_id, f.leader_node)
                        && let Some(outcome) = self.forward_write(id, &node.addr, &command).await?
                    {
                        return Ok(outcome);
                    }
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    return Err(StoreError::Unavailable(e.to_string()));
                }
            }
            self.wait_for_leader(deadline).await?;
        }
    }

    /// Waits (until `deadline`) for the leader to change or appear.
    async fn wait_for_leader(&self, deadline: Instant) -> Result<(), StoreError> {
        let mut metrics = self.inner.raft.metrics();
        let seen = metrics.borrow().current_leader;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(StoreError::Unavailable("no leader elected".into()));
        }
        let wait = metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != seen);
        let _ = tokio::time::timeout(remaining.min(Duration::from_millis(200)), wait).await;
        Ok(())
    }
}

/// The key-value a successful single-put transaction wrote.
fn after_put(key: &str, outcome: TxnOutcome) -> Result<KeyValue, StoreError> {
    outcome
        .after
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| StoreError::Storage(format!("put of {key} returned no value")))
}

/// NotFound or Conflict for a failed single-key guard.
fn guard_failed(key: &str, expected: Revision, outcome: &TxnOutcome) -> StoreError {
    let actual = outcome.compare_actual.first().copied().unwrap_or(0);
    if actual == 0 {
        StoreError::NotFound {
            key: key.to_string(),
        }
    } else {
        StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual,
        }
    }
}

/// Page cache of each redb file. redb's default is 1 GiB per database, kept
/// resident once touched, so a long-running member's log and snapshot
/// writes alone would grow it towards 2 GiB. The Raft log is read back
/// only at start-up and the snapshot file only when sending or restoring a
/// snapshot (the MVCC map lives in memory), so a few MiB are enough.
const REDB_CACHE_BYTES: usize = 8 << 20;

/// Opens (or creates) one of the store's redb files with a bounded cache.
fn open_redb(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(REDB_CACHE_BYTES)
        .create(path)
}
