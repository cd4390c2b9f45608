//! Recording core/v1 Events (what `kubectl describe` shows) for the
//! scheduler and controllers. Recording never waits: events are queued,
//! correlated (repeats counted, floods combined, spam dropped) and written
//! in the background at a bounded rate by `skiff-events`.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Client, Resource};
use skiff_events::{Limits, Recorder, Source, new_event};

/// Writes Events on behalf of one component.
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
    source: Source,
}

/// A reference to `obj` for an Event's involvedObject.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: obj.meta().namespace.clone(),
        name: obj.meta().name.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}

impl EventRecorder {
    /// A recorder reporting as `component` (e.g. "default-scheduler"),
    /// writing at most 50 events per second after a burst of 100.
    /// Starts its writing task on the current tokio runtime.
    pub fn new(client: Client, component: &str) -> Self {
        Self {
            recorder: Recorder::start(client, Limits::default()),
            source: Source {
                component: component.into(),
                host: None,
            },
        }
    }

    /// A recorder sharing this one's queue and rate limit, reporting as
    /// `component`.
    pub fn for_component(&self, component: &str) -> EventRecorder {
        EventRecorder {
            recorder: self.recorder.clone(),
            source: Source {
                component: component.into(),
                host: self.source.host.clone(),
            },
        }
    }

    /// Records a Normal or Warning event about `obj`.
    pub fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        self.recorder.record(new_event(
            &self.source,
            object_ref(obj),
            type_,
            reason,
            message.into(),
        ));
    }
}
