//! skiff's control plane: the Raft-replicated MVCC store (`store`), the
//! Kubernetes API server in front of it (`api`), the scheduler and the
//! controllers. The API server is the only component that touches the store;
//! the scheduler and controllers talk to the API over HTTP like any client.

pub mod api;
pub mod controllers;
pub mod duration;
pub mod join;
pub mod pki;
pub mod scheduler;
pub mod store;
