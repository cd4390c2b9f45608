//! The `Runtime` trait: the CRI of skiff. The pod workers drive containers
//! only through it (pull, create, start, stop, wait/status, usage, exec);
//! `runtime_wasm.rs` implements it over wasmtime. Nothing here knows about
//! Kubernetes objects or wasmtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where a container's stdout or stderr bytes go (the node's log files, an exec stream).
pub type OutputSink = Box<dyn AsyncWrite + Send + Unpin>;
/// Where a container's stdin comes from.
pub type InputSource = Box<dyn AsyncRead + Send + Unpin>;

/// When to fetch an image again (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Kubernetes' default: `Always` for `:latest` or untagged OCI references, else `IfNotPresent`.
    pub fn from_k8s(policy: Option<&str>, image: &str) -> PullPolicy {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let last = image.rsplit('/').next().unwrap_or(image);
                let is_path =
                    image.ends_with(".wasm") || image.ends_with(".wat") || image.contains("://");
                if !is_path
                    && (!last.contains(':') || last.ends_with(":latest"))
                    && !image.contains('@')
                {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                }
            }
        }
    }
}

/// One image pull.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// The pod's `image:`.
    pub image: String,
    pub policy: PullPolicy,
    /// Registry credentials (user, password) from an imagePullSecret.
    pub auth: Option<(String, String)>,
    /// Forced runtime class (`runtimeClassName`), if any.
    pub runtime_class: Option<String>,
}

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image as the pod named it.
    pub image: String,
    /// Content id reported as `imageID` (e.g. `sha256:...`).
    pub image_id: String,
    /// Whether it serves HTTP (a listener per declared port) rather than running to completion.
    pub serves_http: bool,
}

/// A host directory the container sees at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Everything needed to create one container.
pub struct ContainerSpec {
    /// `ns/pod/container`, for logs and traces.
    pub name: String,
    /// The pulled image (from `Runtime::pull`).
    pub image: ImageInfo,
    /// argv: argv\[0\] is the container name, then command and args after `$(VAR)` expansion.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// Declared containerPorts (TCP) an HTTP-serving container answers on.
    pub ports: Vec<u16>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit_millicores: Option<u32>,
    /// The pod allows outbound connections (`skiff.dev/allow-outbound-network: "true"`).
    pub allow_outbound_network: bool,
    pub stdout: Option<OutputSink>,
    pub stderr: Option<OutputSink>,
}

/// An opaque container id handed out by `Runtime::create`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `start` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// containerPort → the host address really serving it.
    pub endpoints: Vec<(u16, SocketAddr)>,
}

/// Why a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Completed,
    Error,
    OOMKilled,
    Killed,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub kind: ExitKind,
    /// Termination message (a trap's text), possibly empty.
    pub message: String,
}

impl Exit {
    /// The Kubernetes `terminated.reason`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ExitKind::Completed => "Completed",
            ExitKind::OOMKilled => "OOMKilled",
            ExitKind::Error | ExitKind::Killed if self.code == 0 => "Completed",
            ExitKind::Error | ExitKind::Killed => "Error",
        }
    }
}

/// cpu and memory a container has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_time: Duration,
    pub memory_bytes: u64,
}

/// A command to run in a container's context (`kubectl exec`, exec probes).
pub struct ExecRequest {
    /// The module to run (already pulled); `None` runs the container's own image.
    pub module: Option<ImageInfo>,
    /// argv of the command.
    pub args: Vec<String>,
    pub stdin: Option<InputSource>,
    pub stdout: Option<OutputSink>,
    pub stderr: Option<OutputSink>,
    /// Killed when it runs longer (None: no limit).
    pub timeout: Option<Duration>,
}

/// Errors a runtime reports; each maps to the waiting reason a user sees.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Fetching failed (retried with back-off): `ErrImagePull`.
    #[error("{0}")]
    ImagePull(String),
    /// The image cannot be named or parsed: `InvalidImageName`.
    #[error("{0}")]
    InvalidImage(String),
    /// Pull policy Never and no local copy: `ErrImageNeverPull`.
    #[error("{0}")]
    NotPresent(String),
    /// This runtime cannot run the image (e.g. not wasm): `ErrImagePull`.
    #[error("{0}")]
    Unsupported(String),
    /// The container could not be created (compile error, bad spec): `CreateContainerError`.
    #[error("{0}")]
    Create(String),
    /// The container could not be started: `RunContainerError`.
    #[error("{0}")]
    Start(String),
    /// No such container.
    #[error("container {0} not found")]
    NotFound(String),
}

impl RuntimeError {
    /// The `waiting.reason` for a container that hit this error.
    pub fn waiting_reason(&self) -> &'static str {
        match self {
            RuntimeError::ImagePull(_) | RuntimeError::Unsupported(_) => "ErrImagePull",
            RuntimeError::InvalidImage(_) => "InvalidImageName",
            RuntimeError::NotPresent(_) => "ErrImageNeverPull",
            RuntimeError::Create(_) => "CreateContainerError",
            RuntimeError::Start(_) | RuntimeError::NotFound(_) => "RunContainerError",
        }
    }

    /// Whether the error came from fetching the image (so back-off shows `ImagePullBackOff`).
    pub fn is_pull_error(&self) -> bool {
        matches!(
            self,
            RuntimeError::ImagePull(_)
                | RuntimeError::Unsupported(_)
                | RuntimeError::NotPresent(_)
                | RuntimeError::InvalidImage(_)
        )
    }
}

/// A container runtime (wasm today, OCI later).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name, e.g. `wasm` (shown in container ids as `wasm://...`).
    fn name(&self) -> &'static str;
    /// Whether the image is already on this node (so `IfNotPresent` and
    /// `Never` need no pull).
    fn image_present(&self, image: &str) -> bool;
    /// Resolves and fetches an image per its pull policy.
    async fn pull(&self, request: &PullRequest) -> Result<ImageInfo, RuntimeError>;
    /// Prepares a container; nothing runs yet.
    async fn create(&self, spec: ContainerSpec) -> Result<ContainerId, RuntimeError>;
    /// Starts a created container.
    async fn start(&self, id: &ContainerId) -> Result<Started, RuntimeError>;
    /// Waits until a started container ends.
    async fn wait(&self, id: &ContainerId) -> Result<Exit, RuntimeError>;
    /// The exit of a container that has ended, `None` while it runs.
    fn status(&self, id: &ContainerId) -> Result<Option<Exit>, RuntimeError>;
    /// Stops a container, giving it up to `grace` to finish.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError>;
    /// Forgets a stopped container.
    async fn remove(&self, id: &ContainerId);
    /// cpu and memory used so far.
    fn usage(&self, id: &ContainerId) -> Option<Usage>;
    /// Runs a command in the container's context (env, mounts, limits) and
    /// returns its exit. Dropping the future stops the command (a client
    /// that hung up must not leave it running).
    async fn exec(&self, id: &ContainerId, request: ExecRequest) -> Result<Exit, RuntimeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policy_follows_kubernetes() {
        assert_eq!(PullPolicy::from_k8s(None, "nginx"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::from_k8s(None, "reg/app:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::from_k8s(None, "reg/app:v1"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::from_k8s(None, "samples/wasm/hello.wasm"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(PullPolicy::from_k8s(Some("Never"), "x"), PullPolicy::Never);
    }

    #[test]
    fn exit_reasons_match_kubernetes() {
        let exit = |code, kind| Exit {
            code,
            kind,
            message: String::new(),
        };
        assert_eq!(exit(0, ExitKind::Completed).reason(), "Completed");
        assert_eq!(exit(1, ExitKind::Error).reason(), "Error");
        assert_eq!(exit(137, ExitKind::OOMKilled).reason(), "OOMKilled");
        assert_eq!(exit(137, ExitKind::Killed).reason(), "Error");
    }
}
