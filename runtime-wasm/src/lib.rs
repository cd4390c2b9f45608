//! skiff's wasm runtime: wasmtime 48 running WASI p1 command modules, WASI p2
//! command components and `wasi:http/incoming-handler` components for pods.
//!
//! The node agent drives it through three calls:
//! [`WasmRuntime::pull`] (resolve an `image:` to a compiled, cached
//! [`Artifact`]), [`WasmRuntime::run`] (start a container as an [`Instance`])
//! and [`WasmRuntime::exec`] (run a command module in a pod's context, for
//! `kubectl exec` and exec probes). This file holds the public types; the
//! engine, fetching, caching, limits and HTTP serving live in the modules
//! below. Nothing here knows about Kubernetes objects.

mod command;
mod compile;
mod engine;
mod host;
mod http;
mod image;
mod instance;
mod limits;
mod oci;
mod runtime;
mod stdio;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// Bytes a guest writes to stdout or stderr go here (the node's log file,
/// an exec WebSocket, ...).
pub type OutputSink = Box<dyn AsyncWrite + Send + Unpin>;

/// Bytes a guest reads from stdin come from here (exec with `stdin=true`).
pub type InputSource = Box<dyn AsyncRead + Send + Unpin>;

/// Node-wide settings of the wasm runtime.
#[derive(Debug, Clone)]
pub struct WasmRuntimeConfig {
    /// Directory for downloaded images and serialized compiled artifacts.
    pub cache_dir: PathBuf,
    /// Instances (running command containers plus in-flight HTTP requests)
    /// the pooling allocator is sized for.
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to, whatever its limit.
    pub max_memory_bytes: u64,
    /// Period of the epoch ticker that drives interruption and cpu limits.
    pub epoch_tick: Duration,
    /// Use the pooling allocator (falls back to on-demand when the address
    /// space cannot be reserved).
    pub pooling: bool,
    /// Registries (host or host:port) reached over plain HTTP; loopback
    /// registries (`localhost`, `127.0.0.1`) always are.
    pub insecure_registries: Vec<String>,
}

/// When to fetch an image again (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Fetch every time (a cached compiled artifact with the same digest is still reused).
    Always,
    /// Use the local copy when there is one.
    #[default]
    IfNotPresent,
    /// Never fetch; fail when there is no local copy.
    Never,
}

/// How one `pull` fetches its image.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `imagePullPolicy`.
    pub policy: PullPolicy,
    /// Registry credentials (user, password) from an imagePullSecret.
    pub auth: Option<(String, String)>,
    /// Directory relative image paths are resolved against (default: the
    /// process's working directory).
    pub base_dir: Option<PathBuf>,
}

/// What kind of workload an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A core module importing WASI preview 1, run from `_start`.
    P1Module,
    /// A component exporting `wasi:cli/run`.
    P2Command,
    /// A component exporting `wasi:http/incoming-handler`; served per request.
    HttpHandler,
}

/// One container's start-up description.
pub struct InstanceSpec {
    /// Name used in logs and traces, e.g. `ns/pod/container`.
    pub name: String,
    /// argv; argv\[0\] is the container name by convention.
    pub args: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Preopened directories (volume mounts).
    pub preopens: Vec<Preopen>,
    /// Where stdout goes (discarded when `None`).
    pub stdout: Option<OutputSink>,
    /// Where stderr goes (discarded when `None`).
    pub stderr: Option<OutputSink>,
    /// stdin (empty when `None`).
    pub stdin: Option<InputSource>,
    /// Linear memory bound; growing past it ends the instance as OOMKilled.
    pub memory_limit_bytes: Option<u64>,
    /// cpu bound in millicores (1000 = one core), enforced by time slicing.
    pub cpu_limit_millicores: Option<u32>,
    /// Allow sockets, name lookups and outgoing HTTP (denied by default).
    pub allow_outbound_network: bool,
    /// For an [`ArtifactKind::HttpHandler`]: where to serve HTTP/1.1.
    pub listen: Option<HttpListen>,
}

/// A host directory visible to the guest.
#[derive(Debug, Clone)]
pub struct Preopen {
    /// Directory on the host.
    pub host_path: PathBuf,
    /// Path the guest sees (e.g. `/config`).
    pub guest_path: String,
    /// Guest may only read.
    pub read_only: bool,
}

/// Where an HTTP handler instance accepts connections.
#[derive(Debug)]
pub enum HttpListen {
    /// Bind this address.
    Addr(SocketAddr),
    /// Use an already bound listener.
    Listener(std::net::TcpListener),
}

/// Why an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Exited with code 0 (or an HTTP handler stopped by [`Instance::stop`]).
    Completed,
    /// Non-zero exit, or a trap (then `message` holds the trap text).
    Error,
    /// Tried to grow memory past its limit (exit code 137).
    OOMKilled,
    /// Stopped by [`Instance::stop`] (exit code 137).
    Killed,
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// Process-style exit code (0 ok; 137 killed / OOMKilled; 1 for a trap).
    pub exit_code: i32,
    /// Kubernetes-style reason.
    pub reason: ExitReason,
    /// Termination message (trap text for errors), possibly empty.
    pub message: String,
}

/// Resource use of an instance so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// cpu time spent running guest code (all requests, for HTTP handlers).
    pub cpu_time: Duration,
    /// Linear memory currently held (summed over live stores).
    pub memory_bytes: u64,
}

/// Errors of the wasm runtime.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The image reference cannot be parsed or names nothing wasm.
    #[error("invalid image {image:?}: {reason}")]
    InvalidImage { image: String, reason: String },
    /// Fetching failed (network, registry, auth, missing file): ErrImagePull.
    #[error("pulling {image:?} failed: {reason}")]
    Pull { image: String, reason: String },
    /// `PullPolicy::Never` and no local copy.
    #[error("image {image:?} is not present and pull policy is Never")]
    NotPresent { image: String },
    /// The content does not match its declared digest.
    #[error("digest mismatch for {image:?}: expected {expected}, got {actual}")]
    DigestMismatch {
        image: String,
        expected: String,
        actual: String,
    },
    /// Not valid wasm, or imports/exports skiff cannot run.
    #[error("cannot compile {image:?}: {reason}")]
    Compile { image: String, reason: String },
    /// The spec does not fit the artifact (e.g. HTTP handler without listen).
    #[error("invalid instance spec: {0}")]
    InvalidSpec(String),
    /// Instantiation failed (missing import, pool exhausted, ...).
    #[error("cannot start instance: {0}")]
    Instantiate(String),
    /// Binding the HTTP listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// The image is an OCI image without a wasm layer (a container image).
    #[error("image {image:?} has no wasm layer")]
    NotWasm { image: String },
    /// Engine set-up failed.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// Local I/O (cache directory, files).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// The node's wasm runtime: one Engine, its Linkers and caches. Cheap to clone.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<runtime::RuntimeInner>,
}

/// A compiled, ready-to-instantiate image. Cheap to clone.
#[derive(Clone)]
pub struct Artifact {
    inner: Arc<runtime::ArtifactInner>,
}

/// A running container. Cheap to clone; all clones control the same instance.
#[derive(Clone)]
pub struct Instance {
    inner: Arc<instance::Shared>,
}

impl Default for WasmRuntimeConfig {
    fn default() -> Self {
        WasmRuntimeConfig {
            cache_dir: std::env::temp_dir().join("skiff-wasm-cache"),
            max_instances: 10_000,
            max_memory_bytes: 4 << 30,
            epoch_tick: Duration::from_millis(2),
            pooling: true,
            insecure_registries: Vec::new(),
        }
    }
}
