//! The pod manager: watches the pods bound to this node (fieldSelector
//! `spec.nodeName=<node>`) and keeps one worker task per pod uid; watches
//! ConfigMaps and Secrets into caches the workers read, and tells the workers
//! of a namespace when one changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::context::NodeContext;
use super::source::ObjectSource;
use super::worker::{Control, run_worker};

/// ConfigMaps and Secrets from watch caches.
pub struct CachedObjects {
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
}

impl ObjectSource for CachedObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
        self.config_maps
            .get(&ObjectRef::new(name).within(namespace))
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(&ObjectRef::new(name).within(namespace))
    }
}

/// Starts the ConfigMap and Secret caches; changes are reported as namespaces on `changed`.
pub async fn start_object_caches(
    client: &kube::Client,
    changed: mpsc::Sender<String>,
    shutdown: CancellationToken,
) -> CachedObjects {
    let (cm_reader, cm_writer) = reflector::store::<ConfigMap>();
    let (secret_reader, secret_writer) = reflector::store::<Secret>();
    let cm_stream = reflector::reflector(
        cm_writer,
        watcher(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .map(|r| r.ok().and_then(|o| o.metadata.namespace.clone()));
    let secret_stream = reflector::reflector(
        secret_writer,
        watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .map(|r| r.ok().and_then(|o| o.metadata.namespace.clone()));
    let mut merged = futures::stream::select(cm_stream.boxed(), secret_stream.boxed());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = merged.next() => match next {
                    Some(Some(ns)) => { let _ = changed.send(ns).await; }
                    Some(None) => {}
                    None => return,
                }
            }
        }
    });
    let ready = futures::future::join(
        cm_reader.wait_until_ready(),
        secret_reader.wait_until_ready(),
    );
    if tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .is_err()
    {
        warn!("ConfigMap/Secret cache not ready after 10s; continuing");
    }
    CachedObjects {
        config_maps: cm_reader,
        secrets: secret_reader,
    }
}

struct WorkerHandle {
    namespace: String,
    pod: watch::Sender<Arc<Pod>>,
    control: mpsc::Sender<Control>,
}

/// Runs the pod manager until shutdown; `changed` carries namespaces whose ConfigMaps/Secrets changed.
pub async fn run_pod_manager(
    ctx: Arc<NodeContext>,
    mut changed: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    let node = ctx.config.name.clone();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut finished: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let workers_done = CancellationToken::new();
    info!(node = %node, "watching pods bound to this node");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                finished.insert(uid);
            }
            Some(ns) = changed.recv() => {
                for w in workers.values().filter(|w| w.namespace == ns) {
                    let _ = w.control.try_send(Control::ObjectsChanged);
                }
            }
            event = events.next() => {
                let Some(event) = event else { break };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, "pod watch failed; retrying with back-off");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => listing = Some(HashSet::new()),
                    watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node.as_str()) {
                            continue;
                        }
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(uid.clone());
                        }
                        if finished.contains(&uid) {
                            continue;
                        }
                        let pod = Arc::new(pod);
                        match workers.get(&uid) {
                            Some(w) => { w.pod.send_replace(pod); }
                            None => {
                                let (pod_tx, pod_rx) = watch::channel(pod.clone());
                                let (ctl_tx, ctl_rx) = mpsc::channel(8);
                                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                                debug!(pod = %format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or_default()), "starting pod worker");
                                let ctx = ctx.clone();
                                let done = done_tx.clone();
                                let token = workers_done.clone();
                                let worker_uid = uid.clone();
                                tokio::spawn(async move {
                                    run_worker(ctx, pod_rx, ctl_rx, token).await;
                                    let _ = done.send(worker_uid);
                                });
                                workers.insert(uid, WorkerHandle { namespace, pod: pod_tx, control: ctl_tx });
                            }
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        finished.remove(&uid);
                        if let Some(w) = workers.remove(&uid) {
                            let _ = w.control.send(Control::Gone).await;
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some(seen) = listing.take() {
                            let gone: Vec<String> = workers.keys().filter(|u| !seen.contains(*u)).cloned().collect();
                            for uid in gone {
                                if let Some(w) = workers.remove(&uid) {
                                    let _ = w.control.send(Control::Gone).await;
                                }
                            }
                            finished.retain(|u| seen.contains(u));
                        }
                    }
                }
            }
        }
    }
    // Stop every pod's containers and wait for the workers to finish.
    workers_done.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !workers.is_empty() {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(uid)) => {
                workers.remove(&uid);
            }
            _ => break,
        }
    }
}
