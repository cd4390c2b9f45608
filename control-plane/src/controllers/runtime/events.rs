//! Recording core/v1 Events (what `kubectl describe` shows) for the
//! scheduler and controllers. Best effort: a failed write is logged, never
//! fatal.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

/// Writes Events on behalf of one component.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
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
    /// A recorder reporting as `component` (e.g. "default-scheduler").
    pub fn new(client: Client, component: &str) -> Self {
        Self {
            client,
            component: component.into(),
        }
    }

    /// Records a Normal or Warning event about `obj`.
    pub async fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let involved = object_ref(obj);
        let ns = obj.namespace().unwrap_or_else(|| "default".into());
        let now = Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    obj.name_any(),
                    now.as_nanosecond() as u64 ^ rand::random::<u32>() as u64
                )),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(reason.into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!(reason, error = %e, "could not record event");
        }
    }
}
