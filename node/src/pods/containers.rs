//! Starting a pod's containers (env, mounts, argv, log files, runtime
//! create/start, exit waiters, probes) and setting up its volumes (with the
//! ServiceAccount tokens projected into them, refreshed when due, and the
//! PersistentVolumeClaims they wait for, see `claims.rs`).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::claims::{ClaimsNotReady, claim_dirs};
use super::env::{PodFacts, container_argv, container_env};
use super::probes::{ProbeTarget, spawn_probes};
use super::resources::{cpu_limit_millis, memory_limit};
use super::state::CState;
use super::table::{ContainerView, PodView};
use super::tokens::{self, token_sources};
use super::volumes::{
    VolumeContext, VolumeError, container_mounts, projected_files, volume_dir, write_projection,
    write_projection_before_start,
};
use super::worker::{CtrKey, Report, Worker};
use crate::logs::{StreamKind, container_log_path};
use crate::runtime::{ContainerSpec, ImageInfo};

/// How long a pod waits for its claims quietly: a WaitForFirstConsumer
/// claim is bound moments after its pod, so a first miss is normal. After
/// that every failed attempt is a `FailedMount` event.
const CLAIM_EVENT_GRACE: Duration = Duration::from_secs(5);

/// Why the volumes step failed.
enum MountError {
    Claims(ClaimsNotReady),
    Volume(VolumeError),
}

impl Worker {
    /// The volumes step: tokens, claims, then directories and files. Until
    /// it succeeds the pod waits (ContainerCreating) and retries with
    /// back-off; returns whether the volumes are ready.
    pub(super) async fn mount_volumes(&mut self) -> bool {
        let since = *self.mount_waiting_since.get_or_insert_with(Instant::now);
        let (event, message) = match self.try_mount().await {
            Ok(()) => {
                self.volumes_ready = true;
                self.pod_message = None;
                self.mount_waiting_since = None;
                return true;
            }
            Err(MountError::Claims(e)) => {
                let quiet = since.elapsed() < CLAIM_EVENT_GRACE;
                ((!quiet).then(|| e.to_string()), e.to_string())
            }
            Err(MountError::Volume(e)) => (Some(format!("MountVolume.SetUp failed: {e}")), e.0),
        };
        let delay = self.mount_backoff.next_delay(Duration::ZERO);
        tracing::debug!(%message, retry_in = ?delay, "volumes are not ready; retrying");
        if let Some(event) = event {
            self.event(None, "Warning", "FailedMount", event);
        }
        self.pod_message = Some(message);
        self.retry_at = Some(Instant::now() + delay);
        false
    }

    async fn try_mount(&mut self) -> Result<(), MountError> {
        self.fetch_tokens().await.map_err(MountError::Volume)?;
        let volumes = self.pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
        self.claim_dirs = claim_dirs(
            &self.ctx.client,
            &self.ns,
            volumes.unwrap_or_default(),
            &self.ctx.config.data_dir,
        )
        .await
        .map_err(MountError::Claims)?;
        self.setup_volumes().map_err(MountError::Volume)
    }

    pub(super) fn facts(&self) -> (String, String) {
        (self.pod_ip.to_string(), self.ctx.host_ip.clone())
    }

    /// Creates the pod's volume directories and writes projected volumes.
    pub(super) fn setup_volumes(&mut self) -> Result<(), VolumeError> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let vctx = VolumeContext {
            pod_dir: &self.pod_dir,
            memory_root: self.ctx.memory_root.as_deref(),
            claim_dirs: &self.claim_dirs,
            allow_host_path: self.ctx.config.allow_host_path,
        };
        let (pod_ip, host_ip) = self.facts();
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: &pod_ip,
            host_ip: &host_ip,
            node_cpu: self.ctx.node_cpu,
            node_memory: self.ctx.node_memory,
        };
        for v in spec.volumes.iter().flatten() {
            let dir = volume_dir(v, &self.ns, &self.uid, &vctx)?;
            match projected_files(v, &facts, self.ctx.objects.as_ref(), &self.tokens)? {
                Some(files) => {
                    let previous = self.projections.get(&v.name).cloned().unwrap_or_default();
                    write_projection_before_start(&dir, &files, &previous)?;
                    self.projections.insert(v.name.clone(), files);
                }
                None => std::fs::create_dir_all(&dir)
                    .map_err(|e| VolumeError(format!("creating {}: {e}", dir.display())))?,
            }
            self.volume_dirs.insert(v.name.clone(), dir);
        }
        Ok(())
    }

    /// Requests the tokens the pod's `serviceAccountToken` sources need and
    /// does not hold yet (or holds past their refresh time).
    pub(super) async fn fetch_tokens(&mut self) -> Result<(), VolumeError> {
        let wanted = token_sources(&self.pod);
        for key in self.tokens.due(&wanted, Instant::now()) {
            let (token, after) = tokens::request(&self.ctx.client, &self.pod, &key)
                .await
                .map_err(|e| VolumeError(format!("failed to fetch token: {e}")))?;
            self.tokens.insert(key, token, Instant::now() + after);
        }
        Ok(())
    }

    /// Whether the pod's tokens are kept fresh: its volumes are set up and
    /// its containers have not all finished.
    pub(super) fn keeps_tokens_fresh(&self) -> bool {
        let finished = !self.main.is_empty() && self.main.iter().all(|c| c.done);
        self.volumes_ready && !self.volumes_torn_down && !finished
    }

    /// Once the pod has reached Succeeded or Failed, its volumes go, as
    /// kubelet unmounts a terminated pod's (without
    /// `--keep-terminated-pod-volumes`): in-memory ones would otherwise hold
    /// their memory until the pod is deleted, which for a finished Job's pods
    /// may be never. The logs stay, for `kubectl logs`, until the pod is deleted.
    pub(super) async fn tear_down_volumes(&mut self) {
        if self.volumes_torn_down || !self.volumes_ready {
            return;
        }
        let phase = self.last_status.as_ref().and_then(|s| s.phase.as_deref());
        if !matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        self.volumes_torn_down = true;
        self.projections.clear();
        self.volume_dirs.clear();
        let (pod_dir, memory_root, uid) = (
            self.pod_dir.clone(),
            self.ctx.memory_root.clone(),
            self.uid.clone(),
        );
        let removed = tokio::task::spawn_blocking(move || {
            super::volumes::remove_pod_volumes(&pod_dir, memory_root.as_deref(), &uid)
        });
        let _ = removed.await;
        tracing::debug!("volumes torn down");
    }

    /// Replaces tokens past 80% of their lifetime and rewrites their files;
    /// a failed refresh keeps the current token and retries shortly.
    pub(super) async fn rotate_tokens(&mut self) {
        if !self.keeps_tokens_fresh() {
            return;
        }
        let wanted = token_sources(&self.pod);
        let due = self.tokens.due(&wanted, Instant::now());
        if due.is_empty() {
            return;
        }
        let mut changed = false;
        for key in due {
            match tokens::request(&self.ctx.client, &self.pod, &key).await {
                Ok((token, after)) => {
                    self.tokens.insert(key, token, Instant::now() + after);
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, audience = %key.audience, "could not refresh a ServiceAccount token; keeping the current one and retrying");
                    self.tokens.postpone(&key, Instant::now());
                }
            }
        }
        if changed {
            tracing::debug!("ServiceAccount tokens refreshed");
            self.refresh_projections();
        }
    }

    /// Re-writes configMap/secret/downwardAPI volumes after their sources changed.
    pub(super) fn refresh_projections(&mut self) {
        if !self.volumes_ready || self.volumes_torn_down {
            // A mount waiting for a missing source tries again now; a failed
            // image pull keeps its back-off (the deadline is the pull's
            // until the images are in).
            if self.images_ready {
                self.retry_at = None;
            }
            return;
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let (pod_ip, host_ip) = self.facts();
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: &pod_ip,
            host_ip: &host_ip,
            node_cpu: self.ctx.node_cpu,
            node_memory: self.ctx.node_memory,
        };
        for v in spec.volumes.iter().flatten() {
            let Some(dir) = self.volume_dirs.get(&v.name) else {
                continue;
            };
            if let Ok(Some(files)) =
                projected_files(v, &facts, self.ctx.objects.as_ref(), &self.tokens)
            {
                let previous = self.projections.get(&v.name).cloned().unwrap_or_default();
                if files != previous && write_projection(dir, &files, &previous).is_ok() {
                    self.projections.insert(v.name.clone(), files);
                }
            }
        }
    }

    /// Publishes this pod to the node server's table.
    pub(super) fn register_view(&self) {
        let pod = self.pod.clone();
        let uid = self.uid.clone();
        let ip = IpAddr::V4(self.pod_ip);
        self.ctx.table.upsert(&self.ns, &self.name, |current| {
            let containers = current
                .filter(|v| v.uid == uid)
                .map(|v| v.containers)
                .unwrap_or_default();
            PodView {
                pod,
                uid,
                pod_ip: Some(ip),
                containers,
            }
        });
    }

    fn set_waiting(&mut self, key: CtrKey, reason: &str, message: String, retry: bool) {
        let Some(c) = self.ctr_mut(key) else { return };
        c.state = CState::Waiting {
            reason: reason.into(),
            message: Some(message),
        };
        if retry {
            let delay = c.backoff.next_delay(Duration::ZERO);
            c.restart_at = Some(Instant::now() + delay);
        }
    }

    /// Creates and starts one container; failures leave it waiting with a reason and a retry time.
    pub(super) async fn start_container(&mut self, key: CtrKey) {
        let Some(c) = self.ctr_mut(key) else { return };
        let spec = c.spec.clone();
        let image = ImageInfo {
            image: spec.image.clone().unwrap_or_default(),
            image_id: c.image_id.clone().unwrap_or_default(),
            serves_http: false,
        };
        let (pod_ip, host_ip) = self.facts();
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: &pod_ip,
            host_ip: &host_ip,
            node_cpu: self.ctx.node_cpu,
            node_memory: self.ctx.node_memory,
        };
        let env = match container_env(&facts, &spec, self.ctx.objects.as_ref()) {
            Ok(env) => env,
            Err(e) => {
                self.event(Some(key), "Warning", "Failed", format!("Error: {e}"));
                self.set_waiting(key, "CreateContainerConfigError", e.0, true);
                return;
            }
        };
        let mounts = match container_mounts(&spec, &self.volume_dirs) {
            Ok(m) => m,
            Err(e) => {
                self.event(Some(key), "Warning", "Failed", format!("Error: {e}"));
                self.set_waiting(key, "CreateContainerConfigError", e.0, true);
                return;
            }
        };
        let Some(c) = self.ctr_mut(key) else { return };
        if c.generation > 0 {
            c.restart_count += 1;
        }
        let restart = c.restart_count;
        let log_path = container_log_path(&self.pod_dir, &spec.name, restart);
        let cfg = &self.ctx.config;
        let log = match self
            .ctx
            .logs
            .open(log_path.clone(), cfg.log_max_bytes, cfg.log_max_files)
        {
            Ok(l) => l,
            Err(e) => {
                self.set_waiting(
                    key,
                    "CreateContainerError",
                    format!("opening log {}: {e}", log_path.display()),
                    true,
                );
                return;
            }
        };
        let container_spec = ContainerSpec {
            name: format!("{}/{}/{}", self.ns, self.name, spec.name),
            image,
            args: container_argv(&spec, &env),
            env,
            mounts: mounts.clone(),
            ports: spec
                .ports
                .iter()
                .flatten()
                .map(|p| p.container_port as u16)
                .collect(),
            memory_limit_bytes: memory_limit(&spec),
            cpu_limit_millicores: cpu_limit_millis(&spec),
            allow_outbound_network: allows_outbound_network(&self.pod),
            stdout: Some(Box::new(log.stream(StreamKind::Stdout))),
            stderr: Some(Box::new(log.stream(StreamKind::Stderr))),
        };
        let runtime = self.ctx.runtime.clone();
        let id = match runtime.create(container_spec).await {
            Ok(id) => id,
            Err(e) => {
                self.ctx.logs.close(&log_path);
                self.event(Some(key), "Warning", "Failed", format!("Error: {e}"));
                self.set_waiting(key, e.waiting_reason(), e.to_string(), true);
                return;
            }
        };
        self.event(
            Some(key),
            "Normal",
            "Created",
            format!("Created container {}", spec.name),
        );
        let started = match runtime.start(&id).await {
            Ok(s) => s,
            Err(e) => {
                self.ctx.logs.close(&log_path);
                runtime.remove(&id).await;
                self.event(Some(key), "Warning", "Failed", format!("Error: {e}"));
                self.set_waiting(key, e.waiting_reason(), e.to_string(), true);
                return;
            }
        };
        self.event(
            Some(key),
            "Normal",
            "Started",
            format!("Started container {}", spec.name),
        );
        let ip = IpAddr::V4(self.pod_ip);
        for (port, addr) in &started.endpoints {
            self.ctx.table.set_port(ip, *port, *addr);
        }
        let token = CancellationToken::new();
        let tx = self.reports_tx.clone();
        let Some(c) = self.ctr_mut(key) else { return };
        if let Some(old) = c.id.replace(id.clone())
            && old != id
        {
            let rt = runtime.clone();
            tokio::spawn(async move { rt.remove(&old).await });
        }
        c.generation += 1;
        c.state = CState::Running {
            started_at: Time(k8s_openapi::jiff::Timestamp::now()),
        };
        c.started_instant = Some(Instant::now());
        c.restart_at = None;
        c.started = c.spec.startup_probe.is_none();
        c.ready = c.started && c.spec.readiness_probe.is_none();
        c.probes = Some(token.clone());
        let previous_log = c.log_path.replace(log_path.clone());
        let generation = c.generation;
        let waiter_id = id.clone();
        let waiter_rt = runtime.clone();
        let waiter_tx = tx.clone();
        tokio::spawn(async move {
            let exit = match waiter_rt.wait(&waiter_id).await {
                Ok(exit) => exit,
                Err(e) => crate::runtime::Exit {
                    code: 128,
                    kind: crate::runtime::ExitKind::Error,
                    message: e.to_string(),
                },
            };
            let _ = waiter_tx
                .send(Report::Exited {
                    key,
                    generation,
                    exit,
                })
                .await;
        });
        let target = ProbeTarget {
            pod_ip: ip,
            host_ip: self.ctx.host_ip.clone(),
            container: id.clone(),
            key,
            generation,
        };
        spawn_probes(
            self.ctx.clone(),
            self.pod.clone(),
            spec.clone(),
            target,
            tx,
            token,
        );
        let view = ContainerView {
            id: Some(id),
            restart_count: restart,
            log_path: Some(log_path),
            previous_log_path: previous_log,
            mounts,
            is_init: matches!(key, CtrKey::Init(_)),
        };
        let name = spec.name.clone();
        self.ctx.table.upsert(&self.ns, &self.name, |current| {
            let mut v = current.unwrap_or_else(|| PodView {
                pod: self.pod.clone(),
                uid: self.uid.clone(),
                pod_ip: Some(ip),
                containers: Default::default(),
            });
            v.containers.insert(name, view);
            v
        });
    }
}

/// The annotation by which a pod asks for outbound network (denied by default).
pub const OUTBOUND_ANNOTATION: &str = "skiff.dev/allow-outbound-network";

/// True when the pod's `skiff.dev/allow-outbound-network` annotation is `"true"`.
pub fn allows_outbound_network(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OUTBOUND_ANNOTATION))
        .is_some_and(|v| v == "true")
}
