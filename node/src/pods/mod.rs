//! Pods on this node: the watch that feeds one worker per pod (`manager.rs`),
//! the per-pod state machine (`worker.rs`), and the pure pieces they use.

pub mod backoff;
pub mod env;
pub mod ipam;
pub mod resources;
pub mod source;
pub mod volumes;
