//! The scheduler, shaped like kube-scheduler's framework: plugins
//! (`plugins/`) implement Filter or Score over an immutable `Snapshot`;
//! `framework::schedule` is the pure cycle; the loop (`run`) keeps the
//! snapshot current from watches, queues pending pods by priority, and
//! binds through `pods/binding`. Configured extenders (`extender/`) are
//! HTTP calls the loop makes between the pure filter and score halves of
//! the cycle; binding and they are the only I/O.

mod config;
pub mod cycle_state;
pub mod extender;
pub mod framework;
pub mod index;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
mod runner;
pub mod snapshot;

pub use config::{SchedulerConfig, SchedulerError, SchedulerFile};
pub use extender::{ExtenderConfig, ManagedResource};
pub use runner::run;

pub use framework::{NodeName, Profile, Unschedulable, schedule};
pub use plugins::{ProfileConfig, ScoringStrategy};
pub use snapshot::{NodeInfo, PodInfo, Snapshot};
