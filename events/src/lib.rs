//! Event recording for skiff's components (scheduler, controllers, the node
//! agent), as client-go's `tools/record` does it for Kubernetes':
//!
//! - [`new_event`] builds a core/v1 Event about an object;
//! - [`Recorder`] queues it without waiting and writes it in the
//!   background, rate-limited (`sink.rs`);
//! - on the way, the correlator (`correlator.rs`) folds repeats into one
//!   Event with a count, combines floods of similar ones, and drops what
//!   one object would spam.
//!
//! A crate of its own because both `control-plane` and `node` record Events
//! and `node` never imports `control-plane`.

mod correlator;
mod rate;
mod sink;

pub use sink::{Limits, Recorder};

use correlator::unique_name;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

/// Who records: `component` ("kubelet", "default-scheduler", ...) and, for a
/// node agent, its node name.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub component: String,
    pub host: Option<String>,
}

/// A new core/v1 Event of `type_` ("Normal" or "Warning") about `involved`,
/// stamped now, named `<object>.<unique hex>` in the object's namespace
/// ("default" for cluster-scoped objects).
pub fn new_event(
    source: &Source,
    involved: ObjectReference,
    type_: &str,
    reason: &str,
    message: String,
) -> Event {
    let now = Timestamp::now();
    let namespace = involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let instance = source
        .host
        .clone()
        .unwrap_or_else(|| source.component.clone());
    Event {
        metadata: ObjectMeta {
            name: Some(unique_name(
                involved.name.as_deref().unwrap_or_default(),
                now,
            )),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        reporting_component: Some(source.component.clone()),
        reporting_instance: Some(instance),
        action: Some(reason.into()),
        source: Some(EventSource {
            component: Some(source.component.clone()),
            host: source.host.clone(),
        }),
        ..Default::default()
    }
}
