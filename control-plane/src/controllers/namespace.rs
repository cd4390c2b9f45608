//! The Namespace controller: when a namespace is being deleted, delete
//! everything in it (every namespaced kind skiff serves), wait until it is
//! all gone, then remove the `kubernetes` finalizer through
//! `namespaces/{name}/finalize` so the API server can drop the namespace.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Action, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// (group, version, kind, plural) of every namespaced kind, workloads first.
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("batch", "v1", "CronJob", "cronjobs"),
    ("batch", "v1", "Job", "jobs"),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Service", "services"),
    ("", "v1", "Endpoints", "endpoints"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "ServiceAccount", "serviceaccounts"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("", "v1", "ResourceQuota", "resourcequotas"),
    ("", "v1", "LimitRange", "limitranges"),
    ("", "v1", "Event", "events"),
    ("apps", "v1", "ControllerRevision", "controllerrevisions"),
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
    ),
    ("coordination.k8s.io", "v1", "Lease", "leases"),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
    ),
];

/// The ApiResource of one entry of `KINDS`.
pub fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Subscribes the controller to namespaces.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.namespaces.feed_keys(queue.clone(), shutdown.clone());
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.namespaces.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("namespace", queue, workers, ctx, reconcile, sd).await
    })
}

/// Deletes every object in `ns`; true when nothing is left.
async fn purge(ctx: &Ctx, ns: &str) -> Result<bool, ControllerError> {
    let mut empty = true;
    for (g, v, k, p) in KINDS {
        let ar = api_resource(g, v, k, p);
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        let list = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
            Err(e) => return Err(e.into()),
        };
        for obj in list.items {
            empty = false;
            if obj.metadata.deletion_timestamp.is_none() {
                let name = obj.metadata.name.clone().unwrap_or_default();
                ignore_not_found(
                    api.delete(&name, &DeleteParams::background())
                        .await
                        .map(|_| ()),
                )?;
            }
        }
    }
    Ok(empty)
}

/// Reconciles one namespace.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let ns = match ctx.namespaces.cache().get(&key) {
        Some(ns) => (*ns).clone(),
        None => match api.get_opt(&key.name).await? {
            Some(ns) => ns,
            None => {
                // Already gone: make sure nothing was left behind.
                return Ok(if purge(&ctx, &key.name).await? {
                    Action::AwaitChange
                } else {
                    Action::RequeueAfter(Duration::from_secs(2))
                });
            }
        },
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::AwaitChange);
    }
    if !purge(&ctx, &key.name).await? {
        tracing::debug!("namespace still has content; waiting");
        return Ok(Action::RequeueAfter(Duration::from_secs(1)));
    }
    let has_finalizer = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == "kubernetes"));
    if has_finalizer {
        let mut done = ns.clone();
        if let Some(f) = done.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
            f.retain(|f| f != "kubernetes");
        }
        ignore_not_found(
            api.replace_subresource::<Namespace>(
                "finalize",
                &ns.name_any(),
                &PostParams::default(),
                &done,
            )
            .await,
        )?;
        tracing::info!("namespace emptied; finalized");
    }
    Ok(Action::AwaitChange)
}
