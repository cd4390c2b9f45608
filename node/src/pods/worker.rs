//! One pod's worker: a task that drives the pod through image pull →
//! volumes → init containers one by one → containers → running →
//! terminating, reacting to pod updates, container exits, probe results and
//! back-off timers (no polling), and reports status through `pods/status`.
//! Starting containers lives in `containers.rs`, termination in `terminate.rs`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::backoff::Backoff;
use super::context::NodeContext;
use super::events::container_field;
use super::state::{AfterExit, CState, Ctr, Terminated, after_exit};
use super::status::{PodFactsForStatus, pod_status};
use super::tokens::PodTokens;
use super::volumes::ProjectedFile;
use crate::logs::pod_log_dir;
use crate::runtime::{Exit, PullPolicy, PullRequest};

/// Volume set-up is retried after 0.5 s, doubling up to 10 s.
const MOUNT_RETRY_INITIAL: Duration = Duration::from_millis(500);
const MOUNT_RETRY_MAX: Duration = Duration::from_secs(10);

/// Messages from the pod manager to a worker.
#[derive(Debug)]
pub enum Control {
    /// A ConfigMap or Secret in the pod's namespace changed.
    ObjectsChanged,
    /// The pod is gone from the API: stop everything now and clean up.
    Gone,
}

/// Reports from a pod's containers and probes.
#[derive(Debug)]
pub enum Report {
    Exited {
        key: CtrKey,
        generation: u64,
        exit: Exit,
    },
    Probe {
        key: CtrKey,
        generation: u64,
        kind: ProbeKind,
        ok: bool,
        message: String,
    },
}

/// A container of the pod: init (by index) or regular (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrKey {
    Init(usize),
    Main(usize),
}

/// Which probe reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

/// The state of one pod's worker.
pub struct Worker {
    pub(super) ctx: Arc<NodeContext>,
    pub(super) pod: Arc<Pod>,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) pod_ip: Ipv4Addr,
    pub(super) pod_dir: PathBuf,
    pub(super) start_time: Time,
    pub(super) init: Vec<Ctr>,
    pub(super) main: Vec<Ctr>,
    pub(super) images_ready: bool,
    pub(super) pull_backoff: Backoff,
    pub(super) retry_at: Option<Instant>,
    pub(super) volumes_ready: bool,
    /// The pod finished and its volumes were removed (see `tear_down_volumes`).
    pub(super) volumes_torn_down: bool,
    /// Back-off between attempts to set up the volumes, and since when they are awaited.
    pub(super) mount_backoff: Backoff,
    pub(super) mount_waiting_since: Option<Instant>,
    /// The directories of the pod's bound PersistentVolumeClaims, by volume name.
    pub(super) claim_dirs: BTreeMap<String, PathBuf>,
    pub(super) volume_dirs: BTreeMap<String, PathBuf>,
    pub(super) projections: HashMap<String, Vec<ProjectedFile>>,
    /// Tokens of the pod's `serviceAccountToken` projections.
    pub(super) tokens: PodTokens,
    pub(super) init_failed: bool,
    pub(super) pod_message: Option<String>,
    pub(super) reports_tx: mpsc::Sender<Report>,
    pub(super) last_status: Option<PodStatus>,
    /// Already finished before this worker started (agent restart): never run again.
    pub(super) finished_before: bool,
    /// The reason the node ended the pod with (`node_ended.rs`); it never runs again.
    pub(super) node_ended: Option<&'static str>,
    /// When the limited emptyDirs were last measured.
    pub(super) size_checked_at: Instant,
}

impl Worker {
    fn new(
        ctx: Arc<NodeContext>,
        pod: Arc<Pod>,
        reports_tx: mpsc::Sender<Report>,
    ) -> Result<Worker, crate::error::NodeError> {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let preferred = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
        let pod_ip = ctx.ipam.allocate(&uid, preferred)?;
        let spec = pod.spec.clone().unwrap_or_default();
        let cfg = &ctx.config;
        let backoff = || Backoff::new(cfg.backoff_initial, cfg.backoff_max, cfg.backoff_reset);
        let restarts = |list: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                        n: &str| {
            list.iter()
                .flatten()
                .find(|s| s.name == n)
                .map(|s| s.restart_count.max(0) as u32)
                .unwrap_or(0)
        };
        let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let mut ctr = Ctr::new(c.clone(), true, backoff(), "PodInitializing");
                ctr.restart_count = restarts(&status.init_container_statuses, &c.name);
                ctr
            })
            .collect();
        let main = spec
            .containers
            .iter()
            .map(|c| {
                let mut ctr = Ctr::new(
                    c.clone(),
                    false,
                    backoff(),
                    if has_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    },
                );
                ctr.restart_count = restarts(&status.container_statuses, &c.name);
                ctr
            })
            .collect();
        let finished_before = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        let status_before = pod.status.clone();
        Ok(Worker {
            pod_dir: pod_log_dir(&ctx.config.data_dir, &ns, &name, &uid),
            start_time: status
                .start_time
                .clone()
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
            pull_backoff: backoff(),
            ctx,
            pod,
            ns,
            name,
            uid,
            pod_ip,
            init,
            main,
            images_ready: false,
            retry_at: None,
            volumes_ready: false,
            volumes_torn_down: false,
            mount_backoff: Backoff::new(MOUNT_RETRY_INITIAL, MOUNT_RETRY_MAX, Duration::MAX),
            mount_waiting_since: None,
            claim_dirs: BTreeMap::new(),
            volume_dirs: BTreeMap::new(),
            projections: HashMap::new(),
            tokens: PodTokens::default(),
            init_failed: false,
            pod_message: None,
            node_ended: None,
            size_checked_at: Instant::now(),
            reports_tx,
            last_status: if finished_before { status_before } else { None },
            finished_before,
        })
    }

    pub(super) fn ctr_mut(&mut self, key: CtrKey) -> Option<&mut Ctr> {
        match key {
            CtrKey::Init(i) => self.init.get_mut(i),
            CtrKey::Main(i) => self.main.get_mut(i),
        }
    }

    pub(super) fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    pub(super) fn event(
        &self,
        key: Option<CtrKey>,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
    ) {
        let field = key.and_then(|k| match k {
            CtrKey::Init(i) => self
                .init
                .get(i)
                .and_then(|c| container_field(c.name(), true)),
            CtrKey::Main(i) => self
                .main
                .get(i)
                .and_then(|c| container_field(c.name(), false)),
        });
        self.ctx
            .events
            .pod(&self.pod, field, type_, reason, message);
    }

    /// Pulls every image the pod needs; false (with waiting reasons set) while one fails.
    async fn pull_images(&mut self) -> bool {
        let runtime_class = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone());
        let keys: Vec<CtrKey> = (0..self.init.len())
            .map(CtrKey::Init)
            .chain((0..self.main.len()).map(CtrKey::Main))
            .collect();
        for key in keys {
            let Some(c) = self.ctr_mut(key) else { continue };
            if c.image_id.is_some() {
                continue;
            }
            let image = c.spec.image.clone().unwrap_or_default();
            let request = PullRequest {
                policy: PullPolicy::from_k8s(c.spec.image_pull_policy.as_deref(), &image),
                auth: super::pull_secrets::credentials_for(
                    &self.pod,
                    &image,
                    self.ctx.objects.as_ref(),
                ),
                image: image.clone(),
                runtime_class: runtime_class.clone(),
            };
            // As kubelet: an image already on the node (and not `Always`) is
            // not pulled, and says so in one Pulled event.
            let present =
                request.policy != PullPolicy::Always && self.ctx.runtime.image_present(&image);
            if !present {
                self.event(
                    Some(key),
                    "Normal",
                    "Pulling",
                    format!("Pulling image \"{image}\""),
                );
            }
            let began = std::time::Instant::now();
            match self.ctx.runtime.pull(&request).await {
                Ok(info) => {
                    let message = if present {
                        format!("Container image \"{image}\" already present on machine")
                    } else {
                        format!(
                            "Successfully pulled image \"{image}\" in {:?}",
                            began.elapsed()
                        )
                    };
                    self.event(Some(key), "Normal", "Pulled", message);
                    if let Some(c) = self.ctr_mut(key) {
                        c.image_id = Some(info.image_id);
                    }
                }
                Err(e) => {
                    let first = self.pull_backoff.current().is_zero();
                    let delay = self.pull_backoff.next_delay(Duration::ZERO);
                    self.retry_at = Some(Instant::now() + delay);
                    let reason = if first || !e.is_pull_error() {
                        e.waiting_reason()
                    } else {
                        "ImagePullBackOff"
                    };
                    self.event(
                        Some(key),
                        "Warning",
                        "Failed",
                        format!("Failed to pull image \"{image}\": {e}"),
                    );
                    if !first {
                        self.event(
                            Some(key),
                            "Normal",
                            "BackOff",
                            format!("Back-off pulling image \"{image}\""),
                        );
                    }
                    if let Some(c) = self.ctr_mut(key) {
                        c.state = CState::Waiting {
                            reason: reason.into(),
                            message: Some(e.to_string()),
                        };
                    }
                    return false;
                }
            }
        }
        true
    }

    /// One pass of the state machine: does whatever is due now.
    async fn step(&mut self) {
        if self.finished_before || self.init_failed || self.node_ended.is_some() {
            return;
        }
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.retry_at = None;
        if !self.images_ready {
            if !self.pull_images().await {
                return;
            }
            self.images_ready = true;
        }
        if !self.volumes_ready && !self.mount_volumes().await {
            return;
        }
        let now = Instant::now();
        let due = |c: &Ctr| !c.done && !c.is_running() && c.restart_at.is_none_or(|t| t <= now);
        for i in 0..self.init.len() {
            let c = &self.init[i];
            if c.sidecar {
                if due(c) {
                    self.start_container(CtrKey::Init(i)).await;
                }
                let c = &self.init[i];
                if !(c.is_running() && c.started) {
                    return;
                }
            } else {
                if c.init_succeeded() {
                    continue;
                }
                if due(c) {
                    self.start_container(CtrKey::Init(i)).await;
                }
                return;
            }
        }
        for i in 0..self.main.len() {
            if due(&self.main[i]) {
                self.start_container(CtrKey::Main(i)).await;
            }
        }
        if !self.main.is_empty() && self.main.iter().all(|c| c.done) {
            self.stop_sidecars().await;
        }
    }

    async fn stop_sidecars(&mut self) {
        for i in (0..self.init.len()).rev() {
            if self.init[i].sidecar && !self.init[i].done {
                self.init[i].done = true;
                self.init[i].restart_at = None;
                if let Some(id) = self.init[i].id.clone()
                    && self.init[i].is_running()
                {
                    self.event(
                        Some(CtrKey::Init(i)),
                        "Normal",
                        "Killing",
                        format!("Stopping container {}", self.init[i].name()),
                    );
                    let _ = self.ctx.runtime.stop(&id, Duration::ZERO).await;
                }
            }
        }
    }

    /// Applies an exit or probe report.
    async fn handle(&mut self, report: Report) {
        match report {
            Report::Exited {
                key,
                generation,
                exit,
            } => self.on_exit(key, generation, exit),
            Report::Probe {
                key,
                generation,
                kind,
                ok,
                message,
            } => self.on_probe(key, generation, kind, ok, message).await,
        }
    }

    fn on_exit(&mut self, key: CtrKey, generation: u64, exit: Exit) {
        let policy = self.restart_policy();
        let pod_ip = IpAddr::V4(self.pod_ip);
        let ctx = self.ctx.clone();
        let name = self.name.clone();
        let (ns, uid) = (self.ns.clone(), self.uid.clone());
        let Some(c) = self.ctr_mut(key) else { return };
        if c.generation != generation || !c.is_running() {
            return;
        }
        let ran = c.started_instant.map(|t| t.elapsed()).unwrap_or_default();
        if let Some(token) = c.probes.take() {
            token.cancel();
        }
        for p in c.spec.ports.iter().flatten() {
            ctx.table.clear_port(pod_ip, p.container_port as u16);
        }
        let started_at = match &c.state {
            CState::Running { started_at } => Some(started_at.clone()),
            _ => None,
        };
        let term = Terminated {
            exit_code: exit.code,
            reason: exit.reason().to_string(),
            message: Some(exit.message.clone()).filter(|m| !m.is_empty()),
            started_at,
            finished_at: Time(k8s_openapi::jiff::Timestamp::now()),
            container_id: c
                .id
                .as_ref()
                .map(|id| format!("{}://{id}", ctx.runtime.name())),
        };
        c.ready = false;
        c.started = false;
        info!(pod = %format!("{ns}/{name}"), container = %c.spec.name, code = exit.code, reason = %term.reason, "container exited");
        let decision = if c.done {
            AfterExit::Done
        } else {
            after_exit(&policy, c.is_init, c.sidecar, &exit, ran, &mut c.backoff)
        };
        match decision {
            AfterExit::Restart(delay) => {
                c.last_state = Some(term);
                c.restart_at = Some(Instant::now() + delay);
                c.state = CState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container={} pod={name}_{ns}({uid})",
                        delay.as_secs(),
                        c.spec.name
                    )),
                };
                let msg = format!(
                    "Back-off restarting failed container {} in pod {name}_{ns}({uid})",
                    c.spec.name
                );
                self.event(Some(key), "Warning", "BackOff", msg);
            }
            AfterExit::Done => {
                c.state = CState::Terminated(term);
                c.done = true;
            }
            AfterExit::FailPod => {
                c.state = CState::Terminated(term);
                c.done = true;
                self.init_failed = true;
            }
        }
        if let Some(path) = self.log_path_of(key) {
            self.ctx.logs.close(&path);
        }
    }

    async fn on_probe(
        &mut self,
        key: CtrKey,
        generation: u64,
        kind: ProbeKind,
        ok: bool,
        message: String,
    ) {
        let Some(c) = self.ctr_mut(key) else { return };
        if c.generation != generation || !c.is_running() {
            return;
        }
        let has_readiness = c.spec.readiness_probe.is_some();
        match (kind, ok) {
            (ProbeKind::Startup, true) => {
                c.started = true;
                c.ready = !has_readiness;
            }
            (ProbeKind::Readiness, ok) => c.ready = ok && c.started,
            (ProbeKind::Liveness, true) => {}
            (ProbeKind::Startup | ProbeKind::Liveness, false) => {
                let what = if kind == ProbeKind::Startup {
                    "Startup"
                } else {
                    "Liveness"
                };
                let name = c.spec.name.clone();
                let id = c.id.clone();
                self.event(
                    Some(key),
                    "Warning",
                    "Unhealthy",
                    format!("{what} probe failed: {message}"),
                );
                self.event(
                    Some(key),
                    "Normal",
                    "Killing",
                    format!(
                        "Container {name} failed {} probe, will be restarted",
                        what.to_lowercase()
                    ),
                );
                if let Some(id) = id {
                    let _ = self.ctx.runtime.stop(&id, Duration::ZERO).await;
                }
                return;
            }
        }
        if !ok && kind == ProbeKind::Readiness {
            self.event(
                Some(key),
                "Warning",
                "Unhealthy",
                format!("Readiness probe failed: {message}"),
            );
        }
    }

    /// The earliest back-off or retry deadline.
    fn next_wake(&self) -> Option<Instant> {
        let ctrs = self.init.iter().chain(self.main.iter());
        ctrs.filter(|c| !c.done && !c.is_running())
            .filter_map(|c| c.restart_at)
            .chain(self.retry_at)
            .chain(self.next_size_check())
            .chain(self.active_deadline())
            .chain(
                self.keeps_tokens_fresh()
                    .then(|| self.tokens.next_refresh())
                    .flatten(),
            )
            .min()
    }

    /// Hands the pod's status to the node's status writer when it changed.
    fn publish(&mut self) {
        if self.finished_before {
            return;
        }
        let qos = self
            .pod
            .spec
            .as_ref()
            .map(super::resources::qos_class)
            .unwrap_or("BestEffort");
        let pod_ip = self.pod_ip.to_string();
        let facts = PodFactsForStatus {
            pod_ip: Some(&pod_ip),
            host_ip: &self.ctx.host_ip,
            start_time: &self.start_time,
            qos_class: qos,
            runtime: self.ctx.runtime.name(),
            sandbox_ready: self.volumes_ready,
            init_failed: self.init_failed,
            message: self.pod_message.clone(),
            reason: self.node_ended.map(str::to_string),
        };
        let status = pod_status(&facts, &self.init, &self.main, self.last_status.as_ref());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let can_end = self.restart_policy() != "Always";
        self.ctx
            .status
            .submit(&self.ns, &self.name, &self.uid, status.clone(), can_end);
        self.last_status = Some(status);
    }

    pub(super) fn log_path_of(&self, key: CtrKey) -> Option<PathBuf> {
        match key {
            CtrKey::Init(i) => self.init.get(i)?.log_path.clone(),
            CtrKey::Main(i) => self.main.get(i)?.log_path.clone(),
        }
    }
}

/// Runs one pod's worker until the pod is deleted (and removed from the API),
/// disappears, or the node shuts down.
pub async fn run_worker(
    ctx: Arc<NodeContext>,
    mut pods: watch::Receiver<Arc<Pod>>,
    mut control: mpsc::Receiver<Control>,
    shutdown: CancellationToken,
) {
    let pod = pods.borrow_and_update().clone();
    let (tx, mut reports) = mpsc::channel(64);
    let mut w = match Worker::new(ctx, pod.clone(), tx) {
        Ok(w) => w,
        Err(e) => {
            warn!(pod = ?pod.metadata.name, error = %e, "cannot run pod");
            return;
        }
    };
    let span = tracing::info_span!("pod", pod = %format!("{}/{}", w.ns, w.name));
    async move {
        w.register_view();
        loop {
            if w.pod.metadata.deletion_timestamp.is_some() {
                w.terminate().await;
                return;
            }
            w.rotate_tokens().await;
            w.enforce_size_limits().await;
            w.enforce_active_deadline().await;
            w.step().await;
            w.publish();
            w.tear_down_volumes().await;
            let wake = w.next_wake();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    w.stop_all(Duration::ZERO).await;
                    return;
                }
                changed = pods.changed() => {
                    if changed.is_err() {
                        w.stop_all(Duration::ZERO).await;
                        w.cleanup().await;
                        return;
                    }
                    w.pod = pods.borrow_and_update().clone();
                    w.register_view();
                    w.refresh_projections();
                }
                msg = control.recv() => match msg {
                    Some(Control::ObjectsChanged) => w.refresh_projections(),
                    Some(Control::Gone) | None => {
                        w.stop_all(Duration::ZERO).await;
                        w.cleanup().await;
                        return;
                    }
                },
                Some(report) = reports.recv() => w.handle(report).await,
                _ = async { match wake { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
            }
        }
    }
    .instrument(span)
    .await;
}
