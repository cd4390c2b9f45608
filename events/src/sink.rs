//! The recorder a component holds, and the task that writes its events.
//!
//! Recording never waits: an event goes into a bounded queue (1,000, as
//! client-go's broadcaster) and is dropped when the queue is full. One task
//! per recorder takes events off the queue, correlates them
//! (`correlator.rs`) and writes them at no more than `qps` per second after
//! a `burst` (kubelet's `--event-qps 50 --event-burst 100`). Under a storm of
//! pods most events are therefore dropped, as in Kubernetes: Events are a
//! best-effort record, and the API server's capacity belongs to the objects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tracing::debug;

use crate::correlator::{Correlator, Outcome};
use crate::rate::TokenBucket;

/// How fast a recorder may write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Event writes per second after the burst; 0 means no limit.
    pub qps: f64,
    /// Writes allowed at once.
    pub burst: u32,
    /// Events waiting to be written before new ones are dropped.
    pub queue: usize,
}

impl Default for Limits {
    /// kubelet's defaults: 50 per second, bursts of 100, 1,000 queued.
    fn default() -> Self {
        Self {
            qps: 50.0,
            burst: 100,
            queue: 1000,
        }
    }
}

/// Queues events for writing; cheap to clone. The writing task ends when
/// every clone is gone, after the queue drains.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    /// Events dropped because the queue was full (logged at powers of two).
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writing task (on the current tokio runtime).
    pub fn start(client: kube::Client, limits: Limits) -> Recorder {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(write_events(client, rx, limits));
        Recorder {
            tx,
            dropped: Arc::default(),
        }
    }

    /// A recorder that drops everything (tests).
    pub fn disabled() -> Recorder {
        Recorder {
            tx: mpsc::channel(1).0,
            dropped: Arc::default(),
        }
    }

    /// Queues `event`; drops it if the queue is full.
    pub fn record(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                debug!(dropped = n, "event queue full; events dropped so far");
            }
        }
    }
}

async fn write_events(client: kube::Client, mut rx: mpsc::Receiver<Event>, limits: Limits) {
    let mut correlator = Correlator::default();
    let mut bucket = (limits.qps > 0.0)
        .then(|| TokenBucket::new(limits.qps, f64::from(limits.burst.max(1)), Instant::now()));
    while let Some(event) = rx.recv().await {
        let outcome = correlator.correlate(event, Instant::now(), Timestamp::now());
        if outcome == Outcome::Drop {
            continue;
        }
        if let Some(bucket) = bucket.as_mut() {
            loop {
                let wait = bucket.wait(Instant::now());
                if wait.is_zero() && bucket.try_take(Instant::now()) {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        write(&client, outcome).await;
    }
}

async fn write(client: &kube::Client, outcome: Outcome) {
    let (event, patch) = match outcome {
        Outcome::Create(event) => (event, None),
        Outcome::Patch { event, patch } => (event, Some(patch)),
        Outcome::Drop => return,
    };
    let ns = event.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let reason = event.reason.clone().unwrap_or_default();
    if let (Some(patch), Some(name)) = (patch, event.metadata.name.as_deref()) {
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            // Gone (expired or deleted): write it anew.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                debug!(reason, error = %e, "could not update event; dropped");
                return;
            }
        }
    }
    let mut event = event;
    event.metadata.resource_version = None;
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        debug!(reason, error = %e, "could not write event; dropped");
    }
}
