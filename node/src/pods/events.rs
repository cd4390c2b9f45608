//! Kubernetes Events (core/v1) for what happens to pods on this node:
//! Pulling, Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed, ...
//! Recording never waits on the API: events are queued, correlated and
//! written at kubelet's `--event-qps`/`--event-burst` by `skiff-events`.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use skiff_events::{Limits, Recorder, Source, new_event};

/// Records events about this node's pods as "kubelet".
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
    source: Source,
}

impl EventRecorder {
    /// Starts the writing task; it ends when all recorders are gone and the queue drained.
    pub fn start(client: kube::Client, node: String, limits: Limits) -> EventRecorder {
        EventRecorder {
            recorder: Recorder::start(client, limits),
            source: Source {
                component: "kubelet".into(),
                host: Some(node),
            },
        }
    }

    /// A recorder that drops everything (tests).
    pub fn disabled() -> EventRecorder {
        EventRecorder {
            recorder: Recorder::disabled(),
            source: Source::default(),
        }
    }

    /// Records an event about a pod (or one of its containers, via `field_path`).
    pub fn pod(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
    ) {
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: Some(
                pod.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        self.recorder.record(new_event(
            &self.source,
            involved,
            type_,
            reason,
            message.into(),
        ));
    }
}

/// The `fieldPath` of a container in a pod, as events name it.
pub fn container_field(name: &str, is_init: bool) -> Option<String> {
    Some(if is_init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    })
}
