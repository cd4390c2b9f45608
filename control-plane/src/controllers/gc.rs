//! The garbage collector: deletes objects whose owners (ownerReferences)
//! are all gone (confirmed with a live GET, so a lagging cache never causes
//! a wrong delete), implements foreground deletion (owner carries the
//! `foregroundDeletion` finalizer until its dependents are gone) and
//! orphaning (the `orphan` finalizer: dependents lose the owner reference,
//! then the owner goes). It watches the kinds that own or are owned in
//! practice, as metadata-only dynamic objects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::namespace::api_resource;
use super::runtime::{Action, Change, Informer, ObjectKey, WorkQueue, run_workers, watch_config};
use super::{ControllerError, Ctx, Started, ignore_not_found};

const GC_KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Pod", "pods", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
    ),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    ("", "v1", "Service", "services", true),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    ("", "v1", "ConfigMap", "configmaps", true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
];

/// An object as the collector sees it: its metadata only. Its informers
/// and requests ask the API server for PartialObjectMetadata, so no spec or
/// status is encoded or decoded for it (kube-controller-manager's collector
/// uses metadata informers too).
type Meta = PartialObjectMeta<DynamicObject>;

/// One watched kind.
struct Kind {
    ar: ApiResource,
    namespaced: bool,
    informer: Informer<Meta>,
}

/// The collector's state: one informer per kind.
pub struct GarbageCollector {
    client: Client,
    kinds: Vec<Kind>,
}

/// A work item: an object of one watched kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GcKey {
    kind: usize,
    key: ObjectKey,
}

impl fmt::Display for GcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.key, self.kind)
    }
}

impl GarbageCollector {
    /// Starts the collector's informers.
    pub fn start(client: Client, shutdown: &CancellationToken) -> Arc<Self> {
        let kinds = GC_KINDS
            .iter()
            .map(|(g, v, k, p, namespaced)| {
                let ar = api_resource(g, v, k, p);
                let api: Api<Meta> = Api::all_with(client.clone(), &ar);
                Kind {
                    informer: Informer::spawn(api, watch_config(), shutdown.clone()),
                    ar,
                    namespaced: *namespaced,
                }
            })
            .collect();
        Arc::new(Self { client, kinds })
    }

    fn api(&self, kind: usize, ns: &str) -> Api<Meta> {
        let k = &self.kinds[kind];
        if k.namespaced && !ns.is_empty() {
            Api::namespaced_with(self.client.clone(), ns, &k.ar)
        } else {
            Api::all_with(self.client.clone(), &k.ar)
        }
    }

    fn kind_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.kinds
            .iter()
            .position(|k| k.ar.kind == kind && k.ar.group == group)
    }

    /// Objects (of any watched kind) that name `uid` as an owner.
    fn dependents(&self, ns: &str, uid: &str) -> Vec<(usize, Arc<Meta>)> {
        let mut out = Vec::new();
        for (i, k) in self.kinds.iter().enumerate() {
            let objs = if ns.is_empty() {
                k.informer.cache().list()
            } else {
                k.informer.cache().list_namespace(ns)
            };
            for o in objs {
                if o.owner_references().iter().any(|r| r.uid == uid) {
                    out.push((i, o));
                }
            }
        }
        out
    }

    /// True when the owner exists (live GET when the cache says otherwise).
    async fn owner_exists(
        &self,
        ns: &str,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<bool, ControllerError> {
        let Some(kind) = self.kind_of(&r.api_version, &r.kind) else {
            return Ok(true);
        };
        let owner_ns = if self.kinds[kind].namespaced { ns } else { "" };
        if let Some(o) = self.kinds[kind]
            .informer
            .cache()
            .get(&ObjectKey::new(owner_ns, r.name.clone()))
            && o.uid().as_deref() == Some(r.uid.as_str())
        {
            return Ok(true);
        }
        let live = self.api(kind, owner_ns).get_opt(&r.name).await?;
        Ok(live.is_some_and(|o| o.uid().as_deref() == Some(r.uid.as_str())))
    }
}

/// Subscribes the collector to every watched kind.
pub fn start(gc: Arc<GarbageCollector>, ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue: WorkQueue<GcKey> = WorkQueue::default();
    for (i, k) in gc.kinds.iter().enumerate() {
        let (gc2, cache) = (gc.clone(), k.informer.cache().clone());
        k.informer
            .feed(queue.clone(), shutdown.clone(), move |c| match c {
                Change::Upsert { new, .. } => {
                    let mut keys = vec![GcKey {
                        kind: i,
                        key: ObjectKey::of(new.as_ref()),
                    }];
                    if new.metadata.deletion_timestamp.is_some() {
                        let uid = new.uid().unwrap_or_default();
                        let ns = new.namespace().unwrap_or_default();
                        keys.extend(gc2.dependents(&ns, &uid).into_iter().map(|(k, o)| GcKey {
                            kind: k,
                            key: ObjectKey::of(o.as_ref()),
                        }));
                    }
                    keys
                }
                Change::Delete(o) => {
                    let uid = o.uid().unwrap_or_default();
                    let ns = o.namespace().unwrap_or_default();
                    gc2.dependents(&ns, &uid)
                        .into_iter()
                        .map(|(k, o)| GcKey {
                            kind: k,
                            key: ObjectKey::of(o.as_ref()),
                        })
                        .collect()
                }
                Change::Resync => cache
                    .keys()
                    .into_iter()
                    .map(|key| GcKey { kind: i, key })
                    .collect(),
            });
    }
    let (sd, workers) = (shutdown.clone(), ctx.config.workers);
    Started::new(async move {
        for k in &gc.kinds {
            k.informer.wait_ready(&sd).await;
        }
        for (i, k) in gc.kinds.iter().enumerate() {
            for key in k.informer.cache().keys() {
                queue.add(GcKey { kind: i, key });
            }
        }
        run_workers("garbage-collector", queue, workers, gc, reconcile, sd).await
    })
}

async fn remove_finalizer(
    gc: &GarbageCollector,
    kind: usize,
    obj: &Meta,
    name: &str,
) -> Result<(), ControllerError> {
    let finalizers: Vec<&String> = obj.finalizers().iter().filter(|f| *f != name).collect();
    patch_metadata(
        gc,
        kind,
        obj,
        serde_json::json!({ "finalizers": finalizers }),
    )
    .await
}

/// A merge patch of `obj`'s metadata, guarded by the resourceVersion it was
/// seen at (a conflict fails the item, which is retried from the cache).
async fn patch_metadata(
    gc: &GarbageCollector,
    kind: usize,
    obj: &Meta,
    mut metadata: serde_json::Value,
) -> Result<(), ControllerError> {
    metadata["resourceVersion"] = serde_json::json!(obj.resource_version());
    let ns = obj.namespace().unwrap_or_default();
    ignore_not_found(
        gc.api(kind, &ns)
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": metadata })),
            )
            .await,
    )?;
    Ok(())
}

/// Handles one object: its own dangling owners, and its dependents when it
/// is being deleted in the foreground or with orphaning.
pub async fn reconcile(item: GcKey, gc: Arc<GarbageCollector>) -> Result<Action, ControllerError> {
    let Some(obj) = gc.kinds[item.kind].informer.cache().get(&item.key) else {
        return Ok(Action::AwaitChange);
    };
    let ns = item.key.namespace.clone();
    let uid = obj.uid().unwrap_or_default();
    if obj.metadata.deletion_timestamp.is_some() {
        let fins = obj.finalizers().to_vec();
        if fins.iter().any(|f| f == "orphan") {
            for (k, dep) in gc.dependents(&ns, &uid) {
                let refs: Vec<_> = dep
                    .owner_references()
                    .iter()
                    .filter(|r| r.uid != uid)
                    .collect();
                patch_metadata(&gc, k, &dep, serde_json::json!({ "ownerReferences": refs }))
                    .await?;
            }
            remove_finalizer(&gc, item.kind, &obj, "orphan").await?;
            tracing::info!("orphaned dependents");
            return Ok(Action::AwaitChange);
        }
        if fins.iter().any(|f| f == "foregroundDeletion") {
            let deps = gc.dependents(&ns, &uid);
            if deps.is_empty() {
                remove_finalizer(&gc, item.kind, &obj, "foregroundDeletion").await?;
                tracing::info!("dependents gone; foreground deletion finished");
                return Ok(Action::AwaitChange);
            }
            for (k, dep) in deps {
                if dep.metadata.deletion_timestamp.is_none() {
                    let dns = dep.namespace().unwrap_or_default();
                    let dp = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Foreground),
                        ..Default::default()
                    };
                    ignore_not_found(
                        gc.api(k, &dns)
                            .delete(&dep.name_any(), &dp)
                            .await
                            .map(|_| ()),
                    )?;
                }
            }
            return Ok(Action::RequeueAfter(Duration::from_millis(500)));
        }
        return Ok(Action::AwaitChange);
    }
    let refs = obj.owner_references().to_vec();
    if refs.is_empty() {
        return Ok(Action::AwaitChange);
    }
    for r in &refs {
        if gc.owner_exists(&ns, r).await? {
            return Ok(Action::AwaitChange);
        }
    }
    tracing::info!("all owners are gone; deleting");
    ignore_not_found(
        gc.api(item.kind, &ns)
            .delete(&obj.name_any(), &DeleteParams::background())
            .await
            .map(|_| ()),
    )?;
    Ok(Action::AwaitChange)
}
