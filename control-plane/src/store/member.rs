//! Opening a member (bootstrap a fresh single-member cluster, restart from
//! disk, or join an existing cluster), the tuning knobs ([`StoreOptions`]),
//! and the background task that compacts history and sends watch progress.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, SnapshotPolicy};
use tokio_util::sync::CancellationToken;

use super::log_store::LogStore;
use super::network::{HttpTransport, Network, Transport};
use super::raft_types::Raft;
use super::state_machine::{SmShared, StateMachine, now_ms};
use super::{Inner, Store, StoreConfig, StoreError};

/// Tuning and cluster options beyond [`StoreConfig`].
#[derive(Clone)]
pub struct StoreOptions {
    /// How to reach other members; default HTTP(S) trusting `peer_ca_pem`.
    pub transport: Option<Arc<dyn Transport>>,
    /// The cluster CA (PEM) that peers' https certificates chain to.
    pub peer_ca_pem: Option<String>,
    /// The member secret: sent as a bearer token on every RPC to a peer and
    /// required on every RPC received (None: no authentication, tests only).
    pub peer_token: Option<String>,
    /// Join an existing cluster through this member URL instead of
    /// bootstrapping a new one (only used on a fresh data dir).
    pub join: Option<String>,
    /// Revisions each watcher may have queued before it is cut off.
    pub watch_buffer: usize,
    /// At most this many past revisions are kept, whatever their age.
    pub max_history: usize,
    /// How often idle watchers get progress events and history is compacted.
    pub progress_interval: Duration,
    /// How long a read or write waits for a leader before Unavailable.
    pub request_timeout: Duration,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout (min; max is twice this).
    pub election_timeout: Duration,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_every: u64,
    /// Log entries kept behind the last snapshot (lagging members further
    /// behind than this catch up by snapshot).
    pub log_keep: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            transport: None,
            peer_ca_pem: None,
            peer_token: None,
            join: None,
            watch_buffer: 4096,
            max_history: 20_000,
            progress_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_every: 10_000,
            log_keep: 1000,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("join", &self.join)
            .field("watch_buffer", &self.watch_buffer)
            .field("max_history", &self.max_history)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a member with explicit options (see [`StoreOptions`]).
    pub async fn open_with(
        config: StoreConfig,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Storage(format!("creating data dir {}: {e}", dir.display()))
        })?;
        let log = LogStore::open(&dir.join("raft-log.redb"))?;
        let sm = StateMachine::open(&dir.join("snapshot.redb"), options.watch_buffer)?;
        let shared = sm.shared();
        let raft_config = openraft::Config {
            cluster_name: "skiff".into(),
            heartbeat_interval: options.heartbeat.as_millis() as u64,
            election_timeout_min: options.election_timeout.as_millis() as u64,
            election_timeout_max: 2 * options.election_timeout.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            max_in_snapshot_log_to_keep: options.log_keep,
            // Entries may be batches of up to ~1 MiB (see `batcher`): keep
            // an AppendEntries request well under the RPC body limit.
            max_payload_entries: 64,
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| StoreError::Storage(format!("raft config: {e}")))?,
        );
        let transport = match &options.transport {
            Some(t) => t.clone(),
            None => Arc::new(
                HttpTransport::new(options.peer_ca_pem.as_deref())?
                    .with_token(options.peer_token.clone()),
            ),
        };
        let network = Network::new(transport.clone());
        let (log_handle, sm_handle) = (log.clone(), sm.clone());
        let raft = Raft::new(config.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| StoreError::Storage(format!("starting raft: {e}")))?;
        let (batcher, batch_queue) = super::batcher::channel();
        let store = Store {
            inner: Arc::new(Inner {
                raft,
                sm: shared,
                log: log_handle,
                sm_store: sm_handle,
                transport,
                config,
                options,
                shutdown: CancellationToken::new(),
                batcher,
            }),
        };
        super::batcher::spawn(Arc::downgrade(&store.inner), batch_queue);
        let fresh = !store
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| super::fatal(&e))?;
        store.bootstrap().await?;
        store.apply_restore_seed().await?;
        if let (true, Some(url)) = (fresh, store.inner.options.join.clone()) {
            tokio::spawn(store.clone().join_until_admitted(url));
        }
        tokio::spawn(maintenance(
            store.inner.sm.clone(),
            store.inner.config.history_window,
            store.inner.options.clone(),
            store.inner.shutdown.clone(),
        ));
        Ok(store)
    }

    /// Initializes a fresh single-member cluster, then waits for this member to lead it.
    async fn bootstrap(&self) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let initialized = raft.is_initialized().await.map_err(|e| super::fatal(&e))?;
        if !initialized && self.inner.options.join.is_none() {
            let me = BasicNode {
                addr: self.inner.config.advertise_url.clone(),
            };
            let members = BTreeMap::from([(self.inner.config.node_id, me)]);
            raft.initialize(members)
                .await
                .map_err(|e| StoreError::Storage(format!("initializing the cluster: {e}")))?;
        }
        let single = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            voters == [self.inner.config.node_id]
        };
        if single {
            let deadline = Instant::now() + self.inner.options.request_timeout;
            let me = self.inner.config.node_id;
            raft.wait(Some(deadline.saturating_duration_since(Instant::now())))
                .metrics(|m| m.current_leader == Some(me), "single member leads")
                .await
                .map_err(|e| StoreError::Unavailable(format!("waiting to lead: {e}")))?;
        }
        Ok(())
    }
}

/// Compacts history past the window and sends progress to idle watchers, until shutdown.
async fn maintenance(
    sm: Arc<SmShared>,
    window: Duration,
    options: StoreOptions,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(options.progress_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = now_ms().saturating_sub(window.as_millis() as u64);
        let mut state = sm.write();
        state.mvcc.compact(cutoff, options.max_history);
        let revision = state.mvcc.revision();
        state.hub.progress(revision);
    }
}
