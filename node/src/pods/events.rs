//! Kubernetes Events (core/v1) for what happens to pods on this node:
//! Pulling, Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed, ...
//! Posting is asynchronous (a bounded queue drained by one task) so a pod's
//! progress never waits on an Event write.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Sends Events to the API in the background.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Event>,
    node: String,
}

impl EventRecorder {
    /// Starts the posting task; it ends on shutdown after the queue drains or when all recorders are gone.
    pub fn start(client: kube::Client, node: String, shutdown: CancellationToken) -> EventRecorder {
        let (tx, mut rx) = mpsc::channel::<Event>(4096);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = rx.recv() => match e { Some(e) => e, None => return },
                    _ = shutdown.cancelled() => return,
                };
                let ns = event
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    debug!(error = %e, "posting event failed; dropped");
                }
            }
        });
        EventRecorder { tx, node }
    }

    /// A recorder that drops everything (tests).
    pub fn disabled() -> EventRecorder {
        EventRecorder {
            tx: mpsc::channel(1).0,
            node: String::new(),
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
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let unique = format!(
            "{:x}",
            now.as_nanosecond() as u64 ^ rand::random::<u32>() as u64
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{unique}")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(ns),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path,
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            action: Some(reason.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            ..Default::default()
        };
        let _ = self.tx.try_send(event);
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
