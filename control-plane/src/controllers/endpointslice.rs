//! The EndpointSlice controller: one `discovery.k8s.io/v1` EndpointSlice per
//! selector Service (named after it, labelled
//! `kubernetes.io/service-name`), with ready/serving/terminating
//! conditions per pod, owned by the Service so the GC removes it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::endpoints::{Backend, backends, hostname_for, pod_ref, services_of_pod};
use super::pods::owner_ref;
use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started};

/// Label linking a slice to its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";

/// The slice content for `svc` (pure).
pub fn desired_slice(svc: &Service, backends: &[Backend]) -> EndpointSlice {
    let name = svc.name_any();
    let ports = backends.iter().find(|b| !b.ports.is_empty()).map(|b| {
        b.ports
            .iter()
            .map(|(n, port, proto)| EndpointPort {
                name: n.clone(),
                port: Some(*port),
                protocol: Some(proto.clone()),
                ..Default::default()
            })
            .collect()
    });
    let v6 = backends.first().is_some_and(|b| b.ip.contains(':'));
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: svc.namespace(),
            labels: Some(
                [
                    (SERVICE_NAME.to_string(), name.clone()),
                    (MANAGED_BY.to_string(), MANAGER.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner_ref(svc)]),
            ..Default::default()
        },
        address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
        endpoints: backends
            .iter()
            .map(|b| Endpoint {
                addresses: vec![b.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(b.ready && !b.terminating),
                    serving: Some(b.ready),
                    terminating: Some(b.terminating),
                }),
                hostname: hostname_for(&b.pod, &name),
                node_name: b.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(pod_ref(&b.pod)),
                ..Default::default()
            })
            .collect(),
        ports,
    }
}

/// Subscribes the controller to Services, pods and slices.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.services.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.services.cache().clone();
    ctx.endpoint_slices
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Resync => cache.keys(),
            Change::Upsert { new, .. } => slice_service(new),
            Change::Delete(s) => slice_service(s),
        });
    let c2 = ctx.clone();
    ctx.pods.feed(queue.clone(), shutdown.clone(), move |c| {
        services_of_pod(&c2, c)
    });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.services.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("endpointslice", queue, workers, ctx, reconcile, sd).await
    })
}

fn slice_service(s: &EndpointSlice) -> Vec<ObjectKey> {
    s.labels()
        .get(SERVICE_NAME)
        .map(|n| vec![ObjectKey::new(s.namespace().unwrap_or_default(), n.clone())])
        .unwrap_or_default()
}

/// Reconciles the slice of one Service (deletion is left to the GC).
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(svc) = ctx.services.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none_or(|s| s.is_empty())
    {
        return Ok(Action::AwaitChange);
    }
    let pods = ctx.pods.cache().list_namespace(&key.namespace);
    let want = desired_slice(&svc, &backends(&svc, &pods));
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &key.namespace);
    match ctx.endpoint_slices.cache().get(&key) {
        Some(have)
            if have.endpoints == want.endpoints
                && have.ports == want.ports
                && have.address_type == want.address_type =>
        {
            Ok(Action::AwaitChange)
        }
        Some(have) => {
            let mut next = (*have).clone();
            next.endpoints = want.endpoints;
            next.ports = want.ports;
            next.address_type = want.address_type;
            let s = api
                .replace(&key.name, &PostParams::default(), &next)
                .await?;
            ctx.endpoint_slices.cache().insert(key, Arc::new(s));
            Ok(Action::AwaitChange)
        }
        None => {
            let s = api.create(&PostParams::default(), &want).await?;
            ctx.endpoint_slices.cache().insert(key, Arc::new(s));
            Ok(Action::AwaitChange)
        }
    }
}
