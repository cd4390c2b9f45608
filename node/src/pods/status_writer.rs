//! The node's pod status writer (kubelet's status manager): pod workers hand
//! it their pod's newest status and go on; it writes `pods/status`, at most
//! one write in flight per pod and a bounded number in all. A status that is
//! replaced while it waits is never written, only the newest one, so a pod
//! that passes through several states faster than the API answers costs one
//! write rather than one per state, and under load the writes shrink instead
//! of queueing up. On a busy node (statuses arriving faster than
//! [`BUSY_SUBMITS`] per [`RATE_WINDOW`]) a status of a pod that can end on
//! its own (restartPolicy Never or OnFailure) and is still starting or
//! running waits a few milliseconds before it is written ([`LINGER`]), so
//! that a short pod (a Job's wasm command ends within a millisecond of its
//! start) reports its end in one write instead of Running and then
//! Succeeded. A pod's final status, any status of a restartPolicy Always
//! pod (which never ends on its own, so a linger would only delay its
//! Running) and any status on a quiet node are written at once. Failed
//! writes are retried with back-off. Each patch names the pod's uid, so a
//! write meant for a deleted pod is refused (422) rather than landing on a
//! new pod of the same name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodStatus;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backoff::Backoff;
use crate::error::is_not_found;

/// Status writes in flight at once across the node.
const MAX_IN_FLIGHT: usize = 32;
/// How long a status that is not the pod's last waits for a newer one
/// before it is written: at most this much later in the API, in exchange
/// for one write instead of two for every pod that ends this soon after it
/// started (kubelet's status manager gets the same effect from syncing
/// through a channel that keeps only the newest status, and its PLEG
/// notices a container's start up to a second late). On a busy node a pod
/// whose command runs for a tenth of a millisecond still takes 8–60 ms
/// from its Running status to its final one (worker, log and runtime tasks
/// queue behind each other on a loaded runtime): at 2 ms, 43% of a Job's
/// pods still wrote Running first.
const LINGER: Duration = Duration::from_millis(50);
/// The node counts as busy, and non-final statuses linger, while more than
/// this many statuses were submitted in the current or the last window
/// (200 a second): below that, the writes a linger would save cost little
/// and a pod's Running is not held back.
const BUSY_SUBMITS: u32 = 20;
const RATE_WINDOW: Duration = Duration::from_millis(100);
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
    can_end: bool,
}

impl Pending {
    /// Whether this is the pod's last status (Succeeded or Failed): it is not
    /// held back by [`LINGER`].
    fn is_final(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// Whether a newer, final status may soon replace this one.
    fn may_be_replaced_by_final(&self) -> bool {
        self.can_end && !self.is_final()
    }
}

/// One pod's entry: the status waiting to be written, if any. The entry
/// exists while a writer task owns the pod; it is removed when that task
/// finds nothing more to write.
#[derive(Default)]
struct Slot {
    pending: Option<Pending>,
    /// Woken when a final status arrives, ending a linger early.
    final_arrived: Arc<Notify>,
}

/// Statuses submitted in the current and the previous [`RATE_WINDOW`].
struct SubmitRate {
    window_start: Instant,
    current: u32,
    previous: u32,
}

impl SubmitRate {
    fn new() -> SubmitRate {
        SubmitRate {
            window_start: Instant::now(),
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            self.previous = if elapsed < RATE_WINDOW * 2 {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.window_start = now;
        }
    }

    fn record(&mut self, now: Instant) {
        self.roll(now);
        self.current = self.current.saturating_add(1);
    }

    fn busy(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.current.max(self.previous) > BUSY_SUBMITS
    }
}

struct Shared {
    client: kube::Client,
    slots: Mutex<HashMap<PodKey, Slot>>,
    rate: Mutex<SubmitRate>,
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
                rate: Mutex::new(SubmitRate::new()),
                permits: Semaphore::new(MAX_IN_FLIGHT),
                shutdown,
            }),
        }
    }

    /// Queues `status` as the pod's newest; replaces one not yet written.
    /// `can_end`: the pod's restartPolicy is Never or OnFailure, so it may
    /// reach Succeeded or Failed on its own.
    pub fn submit(&self, namespace: &str, name: &str, uid: &str, status: PodStatus, can_end: bool) {
        let key = PodKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let pending = Pending {
            uid: uid.to_string(),
            status,
            can_end,
        };
        self.shared.rate().record(Instant::now());
        let start_task = {
            let mut slots = self.shared.lock();
            let owned = slots.contains_key(&key);
            let slot = slots.entry(key.clone()).or_default();
            if pending.is_final() {
                slot.final_arrived.notify_one();
            }
            slot.pending = Some(pending);
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

    fn rate(&self) -> std::sync::MutexGuard<'_, SubmitRate> {
        // Two counters; a panicking holder leaves them merely approximate.
        self.rate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the node is busy and the pending status of `key` may soon be
    /// replaced by a final one: what wakes its linger early.
    fn linger_for(&self, key: &PodKey) -> Option<Arc<Notify>> {
        if !self.rate().busy(Instant::now()) {
            return None;
        }
        let slots = self.lock();
        let slot = slots.get(key)?;
        match &slot.pending {
            Some(p) if p.may_be_replaced_by_final() => Some(slot.final_arrived.clone()),
            _ => None,
        }
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

/// The response form of a write whose caller needs none of the object.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// The one task writing `key`'s statuses until none is left.
async fn write_pod(shared: Arc<Shared>, key: PodKey) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX, Duration::MAX);
    loop {
        if let Some(final_arrived) = shared.linger_for(&key) {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = final_arrived.notified() => {}
                _ = shared.shutdown.cancelled() => {}
            }
        }
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

/// One `pods/status` merge patch; false when it should be retried. Nothing
/// here uses the response, so it is asked for as PartialObjectMetadata: the
/// server encodes the pod's metadata only, not its spec and status.
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
            .header(http::header::ACCEPT, METADATA_ONLY)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// The phases the API server was sent, with when (virtual time).
    type Writes = Arc<Mutex<Vec<(String, Instant)>>>;

    /// A client whose every request is recorded and answered 200 `{}`.
    fn recording_client() -> (kube::Client, Writes) {
        let writes: Writes = Arc::default();
        let seen = writes.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                use http_body_util::BodyExt as _;
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let body: serde_json::Value =
                    serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
                let phase = body["status"]["phase"].as_str().unwrap_or("").to_string();
                seen.lock().unwrap().push((phase, Instant::now()));
                Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"{}"),
                )))
            }
        });
        (kube::Client::new(service, "default"), writes)
    }

    fn status(phase: &str) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }
    }

    async fn wait_for_writes(writes: &Writes, n: usize) {
        for _ in 0..1000 {
            if writes.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{n} writes never came: {:?}", writes.lock().unwrap());
    }

    /// Makes the node busy: final statuses of other pods, written at once.
    async fn busy_node(writer: &StatusWriter, writes: &Writes) {
        let n = BUSY_SUBMITS as usize + 1;
        for i in 0..n {
            writer.submit(
                "ns",
                &format!("other-{i}"),
                "uid",
                status("Succeeded"),
                true,
            );
        }
        wait_for_writes(writes, n).await;
        writes.lock().unwrap().clear();
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_busy_node_a_pod_that_ends_while_its_running_status_lingers_is_written_once() {
        let (client, writes) = recording_client();
        let writer = StatusWriter::start(client, CancellationToken::new());
        busy_node(&writer, &writes).await;
        let began = Instant::now();
        writer.submit("ns", "p", "uid-1", status("Running"), true);
        tokio::time::sleep(Duration::from_millis(1)).await;
        writer.submit("ns", "p", "uid-1", status("Succeeded"), true);
        wait_for_writes(&writes, 1).await;
        tokio::time::sleep(LINGER * 4).await;
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert_eq!(writes[0].0, "Succeeded");
        // The final status ended the linger: written at once, not LINGER later.
        assert!(writes[0].1 - began < LINGER, "{:?}", writes[0].1 - began);
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_busy_node_a_running_status_waits_out_the_linger() {
        let (client, writes) = recording_client();
        let writer = StatusWriter::start(client, CancellationToken::new());
        busy_node(&writer, &writes).await;
        let began = Instant::now();
        writer.submit("ns", "p", "uid-1", status("Running"), true);
        wait_for_writes(&writes, 1).await;
        let writes = writes.lock().unwrap();
        assert_eq!(writes[0].0, "Running");
        assert!(writes[0].1 - began >= LINGER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_that_restarts_always_never_lingers() {
        let (client, writes) = recording_client();
        let writer = StatusWriter::start(client, CancellationToken::new());
        busy_node(&writer, &writes).await;
        let began = Instant::now();
        writer.submit("ns", "web", "uid-1", status("Running"), false);
        wait_for_writes(&writes, 1).await;
        let writes = writes.lock().unwrap();
        assert_eq!(writes[0].0, "Running");
        assert!(writes[0].1 - began < LINGER, "{:?}", writes[0].1 - began);
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_quiet_node_every_status_is_written_at_once() {
        let (client, writes) = recording_client();
        let writer = StatusWriter::start(client, CancellationToken::new());
        let began = Instant::now();
        writer.submit("ns", "p", "uid-1", status("Running"), true);
        wait_for_writes(&writes, 1).await;
        writer.submit("ns", "p", "uid-1", status("Succeeded"), true);
        wait_for_writes(&writes, 2).await;
        let writes = writes.lock().unwrap();
        assert_eq!(
            (writes[0].0.as_str(), writes[1].0.as_str()),
            ("Running", "Succeeded")
        );
        assert!(writes[1].1 - began < LINGER, "{:?}", writes[1].1 - began);
    }

    #[test]
    fn the_submit_rate_forgets_windows_that_are_over() {
        let t0 = Instant::now();
        let mut rate = SubmitRate::new();
        for _ in 0..=BUSY_SUBMITS {
            rate.record(t0);
        }
        assert!(rate.busy(t0));
        assert!(rate.busy(t0 + RATE_WINDOW), "the last window still counts");
        assert!(!rate.busy(t0 + RATE_WINDOW * 3));
    }
}
