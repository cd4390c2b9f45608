//! The node's pod status writer (kubelet's status manager): pod workers hand
//! it their pod's newest status and go on; it writes `pods/status`, at most
//! one write in flight per pod and a bounded number in all. A status that is
//! replaced while it waits is never written, only the newest one, so a pod
//! that passes through several states faster than the API answers costs one
//! write rather than one per state, and under load the writes shrink instead
//! of queueing up. Failed writes are retried with back-off. Each patch names
//! the pod's uid, so a write meant for a deleted pod is refused (422) rather
//! than landing on a new pod of the same name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodStatus;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backoff::Backoff;
use crate::error::is_not_found;

/// Status writes in flight at once across the node.
const MAX_IN_FLIGHT: usize = 32;
/// First and longest wait before retrying a failed write.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct PodKey {
    namespace: String,
    name: String,
}

struct Pending {
    uid: String,
    status: PodStatus,
}

/// One pod's entry: the status waiting to be written, if any. The entry
/// exists while a writer task owns the pod; it is removed when that task
/// finds nothing more to write.
#[derive(Default)]
struct Slot {
    pending: Option<Pending>,
}

struct Shared {
    client: kube::Client,
    slots: Mutex<HashMap<PodKey, Slot>>,
    permits: Semaphore,
    shutdown: CancellationToken,
}

/// Hands pod statuses to the writer; cheap to clone.
#[derive(Clone)]
pub struct StatusWriter {
    shared: Arc<Shared>,
}

impl StatusWriter {
    pub fn start(client: kube::Client, shutdown: CancellationToken) -> StatusWriter {
        StatusWriter {
            shared: Arc::new(Shared {
                client,
                slots: Mutex::new(HashMap::new()),
                permits: Semaphore::new(MAX_IN_FLIGHT),
                shutdown,
            }),
        }
    }

    /// Queues `status` as the pod's newest; replaces one not yet written.
    pub fn submit(&self, namespace: &str, name: &str, uid: &str, status: PodStatus) {
        let key = PodKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let pending = Pending {
            uid: uid.to_string(),
            status,
        };
        let start_task = {
            let mut slots = self.shared.lock();
            let owned = slots.contains_key(&key);
            slots.entry(key.clone()).or_default().pending = Some(pending);
            !owned
        };
        if start_task {
            tokio::spawn(write_pod(self.shared.clone(), key));
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, Slot>> {
        // A plain map of pending values: nothing a panicking holder leaves half done.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next status to write for `key`, or None (and the entry dropped,
    /// ending this pod's task) when there is none.
    fn take(&self, key: &PodKey) -> Option<Pending> {
        let mut slots = self.lock();
        let next = slots.get_mut(key).and_then(|s| s.pending.take());
        if next.is_none() {
            slots.remove(key);
        }
        next
    }

    /// Puts back a status whose write failed, unless a newer one arrived meanwhile.
    fn put_back(&self, key: &PodKey, pending: Pending) {
        let mut slots = self.lock();
        let slot = slots.entry(key.clone()).or_default();
        if slot.pending.is_none() {
            slot.pending = Some(pending);
        }
    }
}

/// The one task writing `key`'s statuses until none is left.
async fn write_pod(shared: Arc<Shared>, key: PodKey) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX, Duration::MAX);
    loop {
        // The permit first, then the status: one replaced while this pod
        // waited for a permit is never written, only the newest.
        let Ok(permit) = shared.permits.acquire().await else {
            shared.lock().remove(&key);
            return;
        };
        let Some(pending) = shared.take(&key) else {
            return;
        };
        if shared.shutdown.is_cancelled() {
            shared.lock().remove(&key);
            return;
        }
        let written = write(&shared.client, &key, &pending).await;
        drop(permit);
        if !written {
            shared.put_back(&key, pending);
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay(Duration::ZERO)) => {}
                _ = shared.shutdown.cancelled() => {
                    shared.lock().remove(&key);
                    return;
                }
            }
        }
    }
}

/// One `pods/status` merge patch; false when it should be retried. The
/// response (the whole pod) is read but not decoded: nothing here uses it.
async fn write(client: &kube::Client, key: &PodKey, pending: &Pending) -> bool {
    let patch = serde_json::json!({
        "metadata": { "uid": pending.uid },
        "status": pending.status,
    });
    let pod = format!("{}/{}", key.namespace, key.name);
    let request = serde_json::to_vec(&patch)
        .map_err(kube::Error::SerdeError)
        .and_then(|body| {
            http::Request::patch(format!(
                "/api/v1/namespaces/{}/pods/{}/status",
                key.namespace, key.name
            ))
            .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(body)
            .map_err(kube::Error::HttpError)
        });
    let result = match request {
        Ok(request) => client.request_text(request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            debug!(%pod, phase = ?pending.status.phase, "status updated");
            true
        }
        // Gone, or replaced by a pod of the same name (uid mismatch): nothing to write to.
        Err(e) if is_not_found(&e) || matches!(&e, kube::Error::Api(s) if s.code == 422) => {
            debug!(%pod, error = %e, "status not written: the pod is gone");
            true
        }
        Err(e) => {
            warn!(%pod, error = %e, "status update failed; retrying");
            false
        }
    }
}
