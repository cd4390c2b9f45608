//! Ending a pod: the graceful path for a deleted pod (preStop hooks, grace
//! period, forced stop, sidecars last, then removal from the API with grace
//! 0), the immediate path for a pod that vanished or a node shutting down,
//! and cleaning up its IP, table entry and directories.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LifecycleHandler, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::time::Instant;
use tracing::{info, warn};

use super::state::{CState, Terminated};
use super::worker::{CtrKey, Worker};
use crate::error::{is_conflict, is_not_found};
use crate::runtime::ExecRequest;

impl Worker {
    fn grace_period(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0);
        Duration::from_secs(secs as u64)
    }

    /// The graceful termination of a deleted pod, ending with its removal from the API.
    pub(super) async fn terminate(&mut self) {
        let grace = self.grace_period();
        let deadline = Instant::now() + grace;
        info!(pod = %format!("{}/{}", self.ns, self.name), grace = ?grace, "terminating pod");
        let running: Vec<CtrKey> = (0..self.main.len())
            .map(CtrKey::Main)
            .filter(|k| self.is_running(*k))
            .collect();
        let hooks = running.iter().map(|k| self.pre_stop(*k, deadline));
        futures::future::join_all(hooks).await;
        self.stop_keys(&running, deadline).await;
        let sidecars: Vec<CtrKey> = (0..self.init.len())
            .rev()
            .map(CtrKey::Init)
            .filter(|k| self.is_running(*k))
            .collect();
        for key in sidecars {
            self.stop_keys(&[key], deadline).await;
        }
        self.stop_keys(
            &(0..self.init.len())
                .map(CtrKey::Init)
                .filter(|k| self.is_running(*k))
                .collect::<Vec<_>>(),
            Instant::now(),
        )
        .await;
        self.delete_from_api().await;
        self.cleanup().await;
    }

    fn is_running(&self, key: CtrKey) -> bool {
        match key {
            CtrKey::Init(i) => self.init.get(i).is_some_and(|c| c.is_running()),
            CtrKey::Main(i) => self.main.get(i).is_some_and(|c| c.is_running()),
        }
    }

    /// Runs a container's preStop hook (exec or httpGet), bounded by the deadline.
    async fn pre_stop(&self, key: CtrKey, deadline: Instant) {
        let c = match key {
            CtrKey::Init(i) => &self.init[i],
            CtrKey::Main(i) => &self.main[i],
        };
        let Some(hook) = c.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
            return;
        };
        let Some(id) = c.id.clone() else { return };
        let budget = deadline.saturating_duration_since(Instant::now());
        let ctx = self.ctx.clone();
        let spec = c.spec.clone();
        let pod_ip = IpAddr::V4(self.pod_ip);
        let mounts = self
            .ctx
            .table
            .get(&self.ns, &self.name)
            .and_then(|v| v.containers.get(&spec.name).map(|c| c.mounts.clone()))
            .unwrap_or_default();
        let run = async move {
            match hook {
                LifecycleHandler { exec: Some(e), .. } => {
                    let command = e.command.unwrap_or_default();
                    if let Ok((module, args)) = super::exec_module::resolve(
                        ctx.runtime.as_ref(),
                        &command,
                        &mounts,
                        ctx.config.exec_toolbox.as_deref(),
                    )
                    .await
                    {
                        let _ = ctx
                            .runtime
                            .exec(
                                &id,
                                ExecRequest {
                                    module,
                                    args,
                                    stdin: None,
                                    stdout: None,
                                    stderr: None,
                                    timeout: Some(budget),
                                },
                            )
                            .await;
                    }
                }
                LifecycleHandler {
                    http_get: Some(h), ..
                } => {
                    let port = match &h.port {
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                            Some(*n as u16)
                        }
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                            spec.ports
                                .iter()
                                .flatten()
                                .find(|p| p.name.as_deref() == Some(s.as_str()))
                                .map(|p| p.container_port as u16)
                        }
                    };
                    if let Some(addr) = port.and_then(|p| ctx.table.port(pod_ip, p)) {
                        let path = h.path.unwrap_or_else(|| "/".into());
                        let _ = super::probes::run_probe_http(addr, &path).await;
                    }
                }
                LifecycleHandler { sleep: Some(s), .. } => {
                    tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await
                }
                _ => {}
            }
        };
        let _ = tokio::time::timeout(budget, run).await;
    }

    /// Stops containers: asks the runtime to stop within the remaining grace, waits, then forces.
    async fn stop_keys(&mut self, keys: &[CtrKey], deadline: Instant) {
        let runtime = self.ctx.runtime.clone();
        let mut waits = Vec::new();
        for key in keys {
            let Some(c) = self.ctr_mut(*key) else {
                continue;
            };
            let Some(id) = c.id.clone() else { continue };
            c.done = true;
            c.restart_at = None;
            if let Some(t) = c.probes.take() {
                t.cancel();
            }
            let name = c.spec.name.clone();
            self.event(
                Some(*key),
                "Normal",
                "Killing",
                format!("Stopping container {name}"),
            );
            let rt = runtime.clone();
            waits.push(async move {
                let grace = deadline.saturating_duration_since(Instant::now());
                let _ = rt.stop(&id, grace).await;
                let exit = match tokio::time::timeout(grace + Duration::from_secs(2), rt.wait(&id))
                    .await
                {
                    Ok(Ok(exit)) => Some(exit),
                    _ => None,
                };
                (*key, exit)
            });
        }
        for (key, exit) in futures::future::join_all(waits).await {
            let log = self.log_path_of(key);
            if let Some(c) = self.ctr_mut(key) {
                let started_at = match &c.state {
                    CState::Running { started_at } => Some(started_at.clone()),
                    _ => None,
                };
                let exit_code = exit.as_ref().map(|e| e.code).unwrap_or(137);
                c.state = CState::Terminated(Terminated {
                    exit_code,
                    reason: exit
                        .as_ref()
                        .map(|e| e.reason())
                        .unwrap_or("Error")
                        .to_string(),
                    message: None,
                    started_at,
                    finished_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    ),
                    container_id: None,
                });
                c.ready = false;
            }
            if let Some(path) = log {
                self.ctx.logs.close(&path);
            }
        }
    }

    /// Stops every container at once (node shutdown or a vanished pod).
    pub(super) async fn stop_all(&mut self, grace: Duration) {
        let keys: Vec<CtrKey> = (0..self.main.len())
            .map(CtrKey::Main)
            .chain((0..self.init.len()).map(CtrKey::Init))
            .filter(|k| self.is_running(*k))
            .collect();
        self.stop_keys(&keys, Instant::now() + grace).await;
    }

    async fn delete_from_api(&self) {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&self.name, &params).await {
            Ok(_) => info!(pod = %format!("{}/{}", self.ns, self.name), "pod removed from the API"),
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => {
                warn!(pod = %format!("{}/{}", self.ns, self.name), error = %e, "removing pod from the API failed")
            }
        }
    }

    /// Releases everything the pod held on this node.
    pub(super) async fn cleanup(&mut self) {
        let runtime = self.ctx.runtime.clone();
        for c in self.init.iter().chain(self.main.iter()) {
            if let Some(id) = &c.id {
                runtime.remove(id).await;
            }
            if let Some(path) = &c.log_path {
                self.ctx.logs.close(path);
            }
        }
        self.ctx.table.remove(&self.ns, &self.name, &self.uid);
        self.ctx.ipam.release(&self.uid);
        let (pod_dir, memory_root, uid) = (
            self.pod_dir.clone(),
            self.ctx.memory_root.clone(),
            self.uid.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            super::volumes::remove_pod_volumes(&pod_dir, memory_root.as_deref(), &uid);
            let _ = std::fs::remove_dir_all(&pod_dir);
        })
        .await;
    }
}
