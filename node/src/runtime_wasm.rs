//! `Runtime` over skiff-runtime-wasm (wasmtime): maps the CRI-style calls
//! onto `WasmRuntime::pull/run/exec` and `Instance`, and keeps the table of
//! containers this node created. The only file in the agent that names wasm types.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use skiff_runtime_wasm::{
    Artifact, ArtifactKind, ExitReason, ExitStatus, HttpListen, Instance, InstanceSpec, Preopen,
    PullOptions, WasmError, WasmRuntime,
};

use crate::runtime::{
    ContainerId, ContainerSpec, ExecRequest, Exit, ExitKind, ImageInfo, PullPolicy, PullRequest,
    Runtime, RuntimeError, Started, Usage,
};

/// The wasm implementation of [`Runtime`].
pub struct WasmContainerRuntime {
    wasm: WasmRuntime,
    base_dir: PathBuf,
    images: Mutex<HashMap<String, Artifact>>,
    containers: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
}

struct Entry {
    artifact: Artifact,
    env: Vec<(String, String)>,
    preopens: Vec<Preopen>,
    memory_limit_bytes: Option<u64>,
    cpu_limit_millicores: Option<u32>,
    /// The pod allows outbound network; commands exec'd in it get the same.
    allow_outbound_network: bool,
    /// The spec's parts consumed by `start`.
    pending: Option<ContainerSpec>,
    instance: Option<Instance>,
}

impl WasmContainerRuntime {
    /// Wraps a wasm runtime; relative image paths resolve against `base_dir`.
    pub fn new(wasm: WasmRuntime, base_dir: PathBuf) -> Self {
        WasmContainerRuntime {
            wasm,
            base_dir,
            images: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn artifact(&self, image: &str) -> Option<Artifact> {
        lock(&self.images).get(image).cloned()
    }

    fn instance(&self, id: &ContainerId) -> Result<Option<Instance>, RuntimeError> {
        let containers = lock(&self.containers);
        let entry = containers
            .get(&id.0)
            .ok_or_else(|| RuntimeError::NotFound(id.0.clone()))?;
        Ok(entry.instance.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn map_pull_error(image: &str, err: WasmError) -> RuntimeError {
    match err {
        WasmError::InvalidImage { reason, .. } => RuntimeError::Unsupported(format!(
            "image {image:?} cannot run on this node: it is not a wasm artifact ({reason})"
        )),
        WasmError::NotPresent { .. } => RuntimeError::NotPresent(format!(
            "container image {image:?} is not present with pull policy of Never"
        )),
        WasmError::Compile { reason, .. } => {
            RuntimeError::Create(format!("cannot compile {image:?}: {reason}"))
        }
        other => RuntimeError::ImagePull(format!("failed to pull image {image:?}: {other}")),
    }
}

fn map_exit(status: ExitStatus) -> Exit {
    Exit {
        code: status.exit_code,
        kind: match status.reason {
            ExitReason::Completed => ExitKind::Completed,
            ExitReason::Error => ExitKind::Error,
            ExitReason::OOMKilled => ExitKind::OOMKilled,
            ExitReason::Killed => ExitKind::Killed,
        },
        message: status.message,
    }
}

fn image_info(image: &str, artifact: &Artifact) -> ImageInfo {
    ImageInfo {
        image: image.to_string(),
        image_id: artifact.digest().to_string(),
        serves_http: artifact.kind() == ArtifactKind::HttpHandler,
    }
}

/// The runtimeClassNames that mean wasmtime, as the scheduler's
/// RuntimeSupport filter reads them.
const WASM_RUNTIME_CLASSES: &[&str] = &["wasm", "wasmtime"];

#[async_trait]
impl Runtime for WasmContainerRuntime {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn image_present(&self, image: &str) -> bool {
        self.artifact(image).is_some()
    }

    async fn pull(&self, request: &PullRequest) -> Result<ImageInfo, RuntimeError> {
        if let Some(class) = request.runtime_class.as_deref()
            && !WASM_RUNTIME_CLASSES.contains(&class)
            && !class.is_empty()
        {
            return Err(RuntimeError::Unsupported(format!(
                "runtimeClassName {class:?} is not offered by this node (it runs wasm only)"
            )));
        }
        if request.policy != PullPolicy::Always
            && let Some(artifact) = self.artifact(&request.image)
        {
            return Ok(image_info(&request.image, &artifact));
        }
        let options = PullOptions {
            policy: match request.policy {
                PullPolicy::Always => skiff_runtime_wasm::PullPolicy::Always,
                PullPolicy::IfNotPresent => skiff_runtime_wasm::PullPolicy::IfNotPresent,
                PullPolicy::Never => skiff_runtime_wasm::PullPolicy::Never,
            },
            auth: request.auth.clone(),
            base_dir: Some(self.base_dir.clone()),
        };
        let artifact = self
            .wasm
            .pull(&request.image, &options)
            .await
            .map_err(|e| map_pull_error(&request.image, e))?;
        let info = image_info(&request.image, &artifact);
        lock(&self.images).insert(request.image.clone(), artifact);
        Ok(info)
    }

    async fn create(&self, spec: ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let artifact = self.artifact(&spec.image.image).ok_or_else(|| {
            RuntimeError::Create(format!("image {:?} has not been pulled", spec.image.image))
        })?;
        let id = format!("{:016x}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let preopens = spec
            .mounts
            .iter()
            .map(|m| Preopen {
                host_path: m.host_path.clone(),
                guest_path: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect();
        let entry = Entry {
            artifact,
            env: spec.env.clone(),
            preopens,
            memory_limit_bytes: spec.memory_limit_bytes,
            cpu_limit_millicores: spec.cpu_limit_millicores,
            allow_outbound_network: spec.allow_outbound_network,
            pending: Some(spec),
            instance: None,
        };
        lock(&self.containers).insert(id.clone(), entry);
        Ok(ContainerId(id))
    }

    async fn start(&self, id: &ContainerId) -> Result<Started, RuntimeError> {
        let (artifact, spec, preopens) = {
            let mut containers = lock(&self.containers);
            let entry = containers
                .get_mut(&id.0)
                .ok_or_else(|| RuntimeError::NotFound(id.0.clone()))?;
            let spec = entry.pending.take().ok_or_else(|| {
                RuntimeError::Start(format!("container {id} was already started"))
            })?;
            (entry.artifact.clone(), spec, entry.preopens.clone())
        };
        let http = artifact.kind() == ArtifactKind::HttpHandler;
        let listen = http.then(|| HttpListen::Addr(([127, 0, 0, 1], 0).into()));
        let instance_spec = InstanceSpec {
            name: spec.name,
            args: spec.args,
            env: spec.env,
            preopens,
            stdout: spec.stdout,
            stderr: spec.stderr,
            stdin: None,
            memory_limit_bytes: spec.memory_limit_bytes,
            cpu_limit_millicores: spec.cpu_limit_millicores,
            allow_outbound_network: spec.allow_outbound_network,
            listen,
        };
        let instance = self
            .wasm
            .run(&artifact, instance_spec)
            .await
            .map_err(|e| match e {
                WasmError::Compile { reason, .. } => RuntimeError::Create(reason),
                other => RuntimeError::Start(other.to_string()),
            })?;
        let endpoints = match instance.local_addr() {
            Some(addr) if spec.ports.is_empty() => vec![(addr.port(), addr)],
            Some(addr) => spec.ports.iter().map(|p| (*p, addr)).collect(),
            None => Vec::new(),
        };
        if let Some(entry) = lock(&self.containers).get_mut(&id.0) {
            entry.instance = Some(instance);
        }
        Ok(Started { endpoints })
    }

    async fn wait(&self, id: &ContainerId) -> Result<Exit, RuntimeError> {
        let instance = self
            .instance(id)?
            .ok_or_else(|| RuntimeError::Start(format!("container {id} is not started")))?;
        Ok(map_exit(instance.wait().await))
    }

    fn status(&self, id: &ContainerId) -> Result<Option<Exit>, RuntimeError> {
        Ok(self
            .instance(id)?
            .and_then(|i| i.try_status())
            .map(map_exit))
    }

    async fn stop(&self, id: &ContainerId, _grace: Duration) -> Result<(), RuntimeError> {
        // A wasm guest gets no signal it could handle, so there is nothing to
        // wait for: interrupt it now (epoch interruption stops even tight loops).
        if let Some(instance) = self.instance(id)? {
            instance.stop();
        }
        Ok(())
    }

    async fn remove(&self, id: &ContainerId) {
        let entry = lock(&self.containers).remove(&id.0);
        if let Some(instance) = entry.and_then(|e| e.instance) {
            instance.stop();
        }
    }

    fn usage(&self, id: &ContainerId) -> Option<Usage> {
        let instance = self.instance(id).ok()??;
        let u = instance.usage();
        Some(Usage {
            cpu_time: u.cpu_time,
            memory_bytes: u.memory_bytes,
        })
    }

    async fn exec(&self, id: &ContainerId, request: ExecRequest) -> Result<Exit, RuntimeError> {
        let (own, env, preopens, memory, cpu, outbound) = {
            let containers = lock(&self.containers);
            let e = containers
                .get(&id.0)
                .ok_or_else(|| RuntimeError::NotFound(id.0.clone()))?;
            (
                e.artifact.clone(),
                e.env.clone(),
                e.preopens.clone(),
                e.memory_limit_bytes,
                e.cpu_limit_millicores,
                e.allow_outbound_network,
            )
        };
        let artifact = match &request.module {
            Some(module) => self.artifact(&module.image).ok_or_else(|| {
                RuntimeError::Create(format!(
                    "exec module {:?} has not been pulled",
                    module.image
                ))
            })?,
            None => own,
        };
        if artifact.kind() == ArtifactKind::HttpHandler {
            return Err(RuntimeError::Start(format!(
                "{} is an HTTP handler component, not a command; exec runs command modules",
                artifact.image()
            )));
        }
        let spec = InstanceSpec {
            name: format!("exec:{id}"),
            args: request.args,
            env,
            preopens,
            stdout: request.stdout,
            stderr: request.stderr,
            stdin: request.stdin,
            memory_limit_bytes: memory,
            cpu_limit_millicores: cpu,
            allow_outbound_network: outbound,
            listen: None,
        };
        let instance = self
            .wasm
            .exec(&artifact, spec)
            .await
            .map_err(|e| RuntimeError::Start(e.to_string()))?;
        let guard = StopOnDrop(instance.clone());
        let exit = match request.timeout {
            None => Ok(map_exit(instance.wait().await)),
            Some(limit) => match tokio::time::timeout(limit, instance.wait()).await {
                Ok(status) => Ok(map_exit(status)),
                Err(_) => {
                    instance.stop();
                    let _ = instance.wait().await;
                    Ok(Exit {
                        code: 137,
                        kind: ExitKind::Killed,
                        message: format!("command timed out after {limit:?}"),
                    })
                }
            },
        };
        drop(guard);
        exit
    }
}

/// Stops an exec'd command when its caller stops waiting for it (the
/// `exec` future is dropped: a client hung up, a worker went away); the
/// guest runs on a task of its own and would otherwise run on.
struct StopOnDrop(Instance);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.0.try_status().is_none() {
            tracing::info!("nobody waits for the exec'd command any more; stopping it");
            self.0.stop();
        }
    }
}
