//! Pods on this node: the watch that feeds one worker per pod (`manager.rs`),
//! the per-pod state machine (`worker.rs`, `containers.rs`, `terminate.rs`,
//! `probes.rs`), what they share (`context.rs`, `table.rs`, `events.rs`),
//! the claims pods wait for (`claims.rs`), static pods from a manifest
//! directory (`static_pods.rs`), and the pure pieces (`state.rs`,
//! `status.rs`, `env.rs`, `volumes.rs`, ...).

pub mod backoff;
pub mod claims;
mod containers;
pub mod context;
pub mod env;
pub mod events;
pub mod exec_module;
pub mod ipam;
pub mod manager;
mod node_ended;
pub mod probes;
pub mod pull_secrets;
pub mod resources;
pub mod source;
pub mod state;
pub mod static_pods;
pub mod status;
pub mod status_writer;
pub mod table;
mod terminate;
pub mod tokens;
pub mod volumes;
pub mod worker;
