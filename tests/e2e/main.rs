//! End-to-end tests of the `skiff` binary: each test starts its own `skiff up`
//! (own data directory, ports picked by the OS) as a child process and drives
//! it with real clients — kubectl, kube-rs, the Python client, curl-like HTTP.
//! One test binary keeps link time down (wasmtime's `tests/all` pattern).

mod adoption;
mod api_errors;
mod autoscaling_volumes;
mod control_plane_join;
mod drain;
mod harness;
mod image_pull;
mod jobs;
mod kube_rs_watcher;
mod kubectl_scenario;
mod node_agent;
mod node_streams;
mod pod_lifecycle;
mod python_client;
mod rollout;
mod scheduler_extender;
mod service_account_token;
mod static_pods;
mod store_backup;
mod wasm_pods;
mod workload_sets;
