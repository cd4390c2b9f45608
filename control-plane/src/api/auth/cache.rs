//! Keeps the in-memory RBAC policy current with the store: list everything
//! under the RBAC prefix, then watch from that revision; re-list whenever the
//! watch breaks (compaction, lag, leader change). Level-triggered: the policy
//! is rebuilt from the store's state, never from remembered events.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rbac::{RBAC_PREFIX, RbacPolicy};
use crate::store::{RangeRequest, Revision, Store, StoreError, WatchEvent};

/// The shared policy and the store revision it reflects.
#[derive(Clone)]
pub struct PolicyCache {
    pub policy: Arc<RwLock<RbacPolicy>>,
    pub revision: watch::Receiver<Revision>,
}

/// Loads the policy and spawns the task that keeps it current until `shutdown`.
/// A store without a leader yet (a member still joining) starts with an
/// empty policy (only `system:masters` is allowed) and loads it once it can.
pub async fn start(store: Store, shutdown: CancellationToken) -> Result<PolicyCache, StoreError> {
    let policy = Arc::new(RwLock::new(RbacPolicy::default()));
    let first = match list_into(&store, &policy).await {
        Ok(revision) => Some(revision),
        Err(StoreError::Unavailable(reason)) => {
            tracing::warn!(%reason, "RBAC policy not loaded yet (store unavailable); retrying");
            None
        }
        Err(err) => return Err(err),
    };
    let (tx, rx) = watch::channel(first.unwrap_or(0));
    let task_policy = policy.clone();
    tokio::spawn(async move {
        let mut after = first;
        loop {
            if let Some(revision) = after {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = follow(&store, &task_policy, revision, &tx) => match result {
                        Ok(()) | Err(StoreError::Shutdown) => return,
                        Err(err) => tracing::warn!(%err, "RBAC watch broke; re-listing"),
                    },
                }
            }
            // Re-list until it works; each success restarts the watch there.
            loop {
                match list_into(&store, &task_policy).await {
                    Ok(rev) => {
                        after = Some(rev);
                        tx.send_replace(rev);
                        break;
                    }
                    Err(StoreError::Shutdown) => return,
                    Err(err) => {
                        tracing::warn!(%err, "RBAC re-list failed; retrying in 1s");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    });
    Ok(PolicyCache {
        policy,
        revision: rx,
    })
}

/// Replaces the policy with the store's current RBAC objects; returns the revision read.
async fn list_into(store: &Store, policy: &RwLock<RbacPolicy>) -> Result<Revision, StoreError> {
    let response = store
        .range(RangeRequest {
            prefix: RBAC_PREFIX.to_string(),
            ..Default::default()
        })
        .await?;
    let mut fresh = RbacPolicy::default();
    for kv in &response.kvs {
        fresh.apply(&kv.key, Some(&kv.value));
    }
    if let Ok(mut guard) = policy.write() {
        *guard = fresh;
    }
    Ok(response.revision)
}

/// Applies watch events until the watch ends (Ok) or breaks (Err).
async fn follow(
    store: &Store,
    policy: &RwLock<RbacPolicy>,
    after: Revision,
    applied: &watch::Sender<Revision>,
) -> Result<(), StoreError> {
    let mut events = store.watch(RBAC_PREFIX, after).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        if let Ok(mut guard) = policy.write() {
            match &event {
                WatchEvent::Put { kv, .. } => guard.apply(&kv.key, Some(&kv.value)),
                WatchEvent::Delete { prev, .. } => guard.apply(&prev.key, None),
                WatchEvent::Progress { .. } => {}
            }
        }
        applied.send_replace(event.revision());
    }
    Ok(())
}
