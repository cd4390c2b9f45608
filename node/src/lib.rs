//! skiff-node: the node agent (skiff's kubelet). It registers a Node, renews
//! its Lease, runs the pods bound to it through a [`runtime::Runtime`], and
//! serves the kubelet API (logs, exec, port-forward, proxy, stats).
//!
//! Layout: `agent/` (registration, lease, the top-level `run`), `pods/` (pod
//! workers and their pure helpers), `logs/`, `server/` (the node HTTP server),
//! `runtime.rs` (the trait) and `runtime_wasm.rs` (its wasmtime implementation).

pub mod agent;
pub mod config;
pub mod error;
pub mod host;
pub mod logs;
pub mod pods;
pub mod runtime;
pub mod runtime_wasm;
pub mod server;

pub use agent::run;
pub use config::NodeConfig;
pub use error::NodeError;
