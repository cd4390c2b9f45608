//! The runtime every controller and the scheduler build on: shared
//! informers (watch → cache → change feed, one per kind in a process), the
//! de-duplicating rate-limited work queue, the worker loop that calls
//! `reconcile(key, ctx)`, and Lease leader election. No controller logic lives here.

pub mod events;
pub mod feed;
pub mod informer;
pub mod key;
pub mod leader;
pub mod queue;
pub mod selector;
pub mod shared;
pub mod worker;

pub use events::EventRecorder;
pub use feed::Subscription;
pub use informer::{Cache, Change, Informer, changed_keys, owner_keys, watch_config};
pub use key::ObjectKey;
pub use leader::{LeaseConfig, run_elected};
pub use queue::WorkQueue;
pub use shared::SharedInformers;
pub use worker::{Action, run_workers};
