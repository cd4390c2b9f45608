//! The scheduling loop: keeps a `Snapshot` current from informers, pops
//! pending pods from the `SchedulingQueue`, runs the pure cycle, assumes the
//! result in the snapshot (so a burst never overcommits a node before the
//! watch catches up) and binds through `pods/binding` with bounded
//! concurrency. Pods some configured extender is interested in go through
//! `extender::schedule_with_extenders` instead, which awaits the extenders'
//! HTTP calls between filtering and scoring (serially, as kube-scheduler's
//! cycle). Failures become a FailedScheduling event and a PodScheduled=False
//! condition; an unschedulable pod is parked until the cluster changes, one
//! an extender failed for is retried after its back-off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::{SchedulerConfig, SchedulerError};
use super::extender::{CycleError, Extender, schedule_with_extenders};
use super::framework::{NodeName, Profile, schedule};
use super::preemption;
use super::queue::SchedulingQueue;
use super::snapshot::{ClaimInfo, NodeInfo, PodInfo, Snapshot, VolumeIndex};
use crate::controllers::runtime::{
    Change, EventRecorder, Informer, SharedInformers, Subscription, run_elected,
};

type Rx<K> = Subscription<K>;

/// Runs the scheduler until `shutdown`, acting only while it holds the
/// `kube-system/<lease>` Lease.
pub async fn run(
    client: Client,
    config: SchedulerConfig,
    informers: Arc<SharedInformers>,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let lease = config.lease.clone();
    run_elected(client.clone(), lease, shutdown, move |token| {
        let (client, config, informers) = (client.clone(), config.clone(), informers.clone());
        async move { run_leader(client, config, &informers, token).await }
    })
    .await
}

struct BindDone {
    key: String,
    node: String,
    error: Option<String>,
}

struct Informers {
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    namespaces: Informer<Namespace>,
    budgets: Informer<PodDisruptionBudget>,
}

struct Loop {
    client: Client,
    config: SchedulerConfig,
    profile: Profile,
    extenders: Vec<Extender>,
    snap: Snapshot,
    queue: SchedulingQueue,
    /// Pods placed by us whose binding the watch has not confirmed yet.
    assumed: HashMap<String, String>,
    inf: Informers,
    bind_tx: mpsc::UnboundedSender<BindDone>,
    binds: Arc<Semaphore>,
    events: EventRecorder,
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn bound_node(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

async fn run_leader(
    client: Client,
    config: SchedulerConfig,
    informers: &SharedInformers,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let extenders = config
        .extenders
        .iter()
        .map(Extender::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SchedulerError::Config(e.to_string()))?;
    let inf = Informers {
        pods: informers.all(),
        nodes: informers.all(),
        claims: informers.all(),
        volumes: informers.all(),
        classes: informers.all(),
        namespaces: informers.all(),
        budgets: informers.all(),
    };
    let (mut pod_rx, mut node_rx) = (inf.pods.subscribe(), inf.nodes.subscribe());
    let (mut pvc_rx, mut pv_rx) = (inf.claims.subscribe(), inf.volumes.subscribe());
    let (mut sc_rx, mut ns_rx) = (inf.classes.subscribe(), inf.namespaces.subscribe());
    inf.pods.wait_ready(&shutdown).await;
    inf.nodes.wait_ready(&shutdown).await;
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
    let component = config
        .scheduler_names
        .first()
        .cloned()
        .unwrap_or_else(|| "default-scheduler".into());
    let mut lp = Loop {
        events: EventRecorder::new(client.clone(), &component),
        binds: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        profile: config.profile.build(),
        extenders,
        queue: SchedulingQueue::new(config.queue.clone()),
        snap: Snapshot::default(),
        assumed: HashMap::new(),
        client,
        config,
        inf,
        bind_tx,
    };
    lp.rebuild();
    tracing::info!(
        nodes = lp.snap.nodes().len(),
        pending = lp.queue.active_len(),
        "scheduler started"
    );
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let mut changed = false;
        changed |= drain(&mut node_rx, |c| lp.on_node(c));
        changed |= drain(&mut pod_rx, |c| lp.on_pod(c));
        let vol = drain(&mut pvc_rx, |_| true)
            | drain(&mut pv_rx, |_| true)
            | drain(&mut sc_rx, |_| true);
        if vol {
            lp.rebuild_volumes();
        }
        if drain(&mut ns_rx, |_| true) {
            lp.rebuild_namespaces();
        }
        while let Ok(done) = bind_rx.try_recv() {
            lp.on_bound(done);
        }
        if changed || vol {
            lp.queue.cluster_changed();
        }
        lp.queue.tick(Instant::now());
        let mut n = 0;
        while n < 256 {
            let Some((key, pod)) = lp.queue.pop() else {
                break;
            };
            lp.schedule_one(key, pod).await;
            n += 1;
        }
        if n > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = pod_rx.recv() => if lp.on_recv(r, |lp, c| lp.on_pod(c)) { lp.queue.cluster_changed() },
            r = node_rx.recv() => if lp.on_recv(r, |lp, c| lp.on_node(c)) { lp.queue.cluster_changed() },
            Some(done) = bind_rx.recv() => lp.on_bound(done),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    // Let bindings in flight finish before handing over.
    let _ = lp
        .binds
        .acquire_many(lp.config.bind_concurrency.max(1) as u32)
        .await;
    Ok(())
}

/// Applies every queued change; true when any handler reported a cluster change.
fn drain<K>(rx: &mut Rx<K>, mut f: impl FnMut(&Change<K>) -> bool) -> bool {
    let mut changed = false;
    while let Some(c) = rx.try_recv() {
        changed |= f(&c);
    }
    changed
}

impl Loop {
    fn on_recv<K>(
        &mut self,
        r: Option<Arc<Change<K>>>,
        f: impl FnOnce(&mut Self, &Change<K>) -> bool,
    ) -> bool {
        r.is_some_and(|c| f(self, &c))
    }

    fn ours(&self, p: &Pod) -> bool {
        let name = p
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        self.config.scheduler_names.iter().any(|n| n == name)
    }

    /// Rebuilds the snapshot and queue from the caches (start, or a Resync).
    fn rebuild(&mut self) {
        let nodes: Vec<Node> = self
            .inf
            .nodes
            .cache()
            .list()
            .iter()
            .map(|n| (**n).clone())
            .collect();
        self.snap = Snapshot::new(&nodes, &[]);
        self.rebuild_volumes();
        self.rebuild_namespaces();
        for p in self.inf.pods.cache().list() {
            self.on_pod_upsert(&p);
        }
        let assumed: Vec<(String, String)> = self
            .assumed
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, node) in assumed {
            if self.snap.location(&key).is_none()
                && let Some((ns, name)) = key.split_once('/')
                && let Some(p) = self
                    .inf
                    .pods
                    .cache()
                    .get(&crate::controllers::runtime::ObjectKey::new(ns, name))
            {
                self.snap.place_pod(Arc::new(PodInfo::from_pod(&p)), &node);
            }
        }
        self.queue.cluster_changed();
    }

    fn rebuild_volumes(&mut self) {
        let mut idx = VolumeIndex::default();
        for c in self.inf.claims.cache().list() {
            let spec = c.spec.clone().unwrap_or_default();
            idx.claims.insert(
                pod_key_of(&c.namespace().unwrap_or_default(), &c.name_any()),
                ClaimInfo {
                    volume_name: spec.volume_name.filter(|v| !v.is_empty()),
                    storage_class: spec.storage_class_name,
                },
            );
        }
        for v in self.inf.volumes.cache().list() {
            let sel = v
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.clone());
            idx.volumes.insert(v.name_any(), sel);
        }
        for sc in self.inf.classes.cache().list() {
            idx.wait_for_first_consumer.insert(
                sc.name_any(),
                sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
            );
        }
        self.snap.volumes = idx;
    }

    fn rebuild_namespaces(&mut self) {
        self.snap.namespace_labels = self
            .inf
            .namespaces
            .cache()
            .list()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
    }

    fn on_node(&mut self, c: &Change<Node>) -> bool {
        match c {
            Change::Upsert { new, .. } => self.snap.upsert_node(NodeInfo::from_node(new)),
            Change::Delete(n) => self.snap.remove_node(&n.name_any()),
            Change::Resync => self.rebuild(),
        }
        true
    }

    fn on_pod(&mut self, c: &Change<Pod>) -> bool {
        match c {
            Change::Resync => {
                self.rebuild();
                true
            }
            Change::Upsert { new, .. } => self.on_pod_upsert(new),
            Change::Delete(p) => {
                let key = pod_key(p);
                self.queue.remove(&key);
                self.assumed.remove(&key);
                self.snap
                    .unplace_pod(&p.namespace().unwrap_or_default(), &p.name_any())
                    .is_some()
            }
        }
    }

    /// Returns true when resources were freed (a cluster change).
    fn on_pod_upsert(&mut self, p: &Arc<Pod>) -> bool {
        let key = pod_key(p);
        if let Some(node) = bound_node(p) {
            self.queue.remove(&key);
            self.assumed.remove(&key);
            if terminal(p) {
                let ns = p.namespace().unwrap_or_default();
                return self.snap.unplace_pod(&ns, &p.name_any()).is_some();
            }
            if self.snap.location(&key) != Some(node) {
                self.snap.place_pod(Arc::new(PodInfo::from_pod(p)), node);
            }
            return false;
        }
        if self.assumed.contains_key(&key) {
            return false;
        }
        if p.metadata.deletion_timestamp.is_some() || terminal(p) || !self.ours(p) {
            self.queue.remove(&key);
        } else {
            self.queue.upsert(key, p.clone());
        }
        false
    }

    async fn schedule_one(&mut self, key: String, pod: Arc<Pod>) {
        let info = PodInfo::from_pod(&pod);
        let span = tracing::debug_span!("schedule", pod = %key);
        let decision = self.decide(&pod, &info).instrument(span.clone()).await;
        let _g = span.enter();
        match decision {
            Ok(node) => {
                self.queue.succeeded(&key);
                self.snap.place_pod(Arc::new(info), &node);
                self.assumed.insert(key.clone(), node.clone());
                self.spawn_bind(key, pod, node);
            }
            Err(CycleError::Unschedulable(u)) => {
                let message = u.to_string();
                tracing::debug!(%message, "pod is unschedulable");
                if self.config.preemption
                    && let Some(plan) =
                        preemption::plan(&info, &self.snap, &self.profile, &u, &self.pdbs())
                {
                    preemption::spawn_execute(
                        self.client.clone(),
                        self.events.clone(),
                        pod.clone(),
                        plan,
                    );
                }
                self.spawn_report_failure(pod, "Unschedulable", message);
                self.queue.park(key, true);
            }
            Err(CycleError::Extender(e)) => {
                let message = e.to_string();
                tracing::info!(%message, "extender failed; retrying after back-off");
                self.spawn_report_failure(pod, "SchedulerError", message);
                self.queue.park(key, false);
            }
        }
    }

    /// The cycle: the pure one, or the one with extenders when one wants the pod.
    async fn decide(&self, pod: &Pod, info: &PodInfo) -> Result<NodeName, CycleError> {
        if !self.extenders.iter().any(|e| e.is_interested(pod)) {
            return schedule(info, &self.snap, &self.profile).map_err(CycleError::Unschedulable);
        }
        let nodes = self.inf.nodes.cache();
        schedule_with_extenders(pod, info, &self.snap, &self.profile, &self.extenders, nodes).await
    }

    fn pdbs(&self) -> Vec<preemption::Budget> {
        self.inf
            .budgets
            .cache()
            .list()
            .iter()
            .map(|b| preemption::Budget {
                namespace: b.namespace().unwrap_or_default(),
                selector: b
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default(),
                disruptions_allowed: b.status.as_ref().map_or(0, |s| s.disruptions_allowed),
            })
            .collect()
    }

    fn on_bound(&mut self, done: BindDone) {
        match done.error {
            None => {
                // The watch confirms it; keep the assumption until then.
                tracing::debug!(pod = %done.key, node = %done.node, "bound");
            }
            Some(e) => {
                tracing::info!(pod = %done.key, node = %done.node, error = %e, "binding failed; retrying");
                if self.assumed.remove(&done.key).is_some()
                    && self.snap.location(&done.key) == Some(done.node.as_str())
                    && let Some((ns, name)) = done.key.split_once('/')
                {
                    self.snap.unplace_pod(ns, name);
                }
                self.queue.park(done.key, false);
            }
        }
    }

    fn spawn_bind(&self, key: String, pod: Arc<Pod>, node: String) {
        let client = self.client.clone();
        let tx = self.bind_tx.clone();
        let sem = self.binds.clone();
        let events = self.events.clone();
        let unbound: Vec<String> = {
            let info_claims = pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.clone());
            let ns = pod.namespace().unwrap_or_default();
            info_claims
                .filter(|c| {
                    self.snap
                        .volumes
                        .claims
                        .get(&pod_key_of(&ns, c))
                        .is_some_and(|ci| ci.volume_name.is_none())
                })
                .collect()
        };
        tokio::spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            let error = bind(&client, &pod, &node, &unbound)
                .await
                .err()
                .map(|e| e.to_string());
            if error.is_none() {
                let msg = format!("Successfully assigned {key} to {node}");
                events.record(pod.as_ref(), "Normal", "Scheduled", &msg);
            }
            let _ = tx.send(BindDone { key, node, error });
        });
    }

    /// Records FailedScheduling and sets PodScheduled=False with `reason`
    /// (Unschedulable, or SchedulerError when an extender failed).
    fn spawn_report_failure(&self, pod: Arc<Pod>, reason: &'static str, message: String) {
        let client = self.client.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            events.record(pod.as_ref(), "Warning", "FailedScheduling", &message);
            if let Err(e) = set_unschedulable(&client, &pod, reason, &message).await {
                tracing::debug!(pod = %pod_key(&pod), error = %e, "could not write PodScheduled condition");
            }
        });
    }
}

fn pod_key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Binds `pod` to `node` (after pointing unbound WaitForFirstConsumer claims at the node).
async fn bind(
    client: &Client,
    pod: &Pod,
    node: &str,
    unbound_claims: &[String],
) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let name = pod.name_any();
    if !unbound_claims.is_empty() {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": node}}});
        for c in unbound_claims {
            pvcs.patch(c, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        &name,
        &PostParams::default(),
        &binding,
    )
    .await?;
    Ok(())
}

/// Writes PodScheduled=False with `reason` and `message` (resourceVersion-guarded).
async fn set_unschedulable(
    client: &Client,
    pod: &Pod,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let mut pod = pod.clone();
    let status = pod.status.get_or_insert_with(Default::default);
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if conds.iter().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    }) {
        return Ok(());
    }
    conds.retain(|c| c.type_ != "PodScheduled");
    conds.push(PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..Default::default()
    });
    if status.phase.is_none() {
        status.phase = Some("Pending".into());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    api.replace_status(&pod.name_any(), &PostParams::default(), &pod)
        .await?;
    Ok(())
}
