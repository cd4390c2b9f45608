//! The controller manager: one file per controller, each a
//! `reconcile(key, ctx) -> Result<Action>` over shared informer caches,
//! writing only through the API with resourceVersion preconditions. `run`
//! elects a leader through a Lease and starts every controller.

mod error;
pub mod runtime;

pub use error::{ControllerError, ignore_conflict, ignore_not_found};
