//! The StatefulSet controller (apps/v1): pods `<set>-0..N-1` with stable
//! names, hostnames (subdomain = serviceName) and per-ordinal PVCs from the
//! volumeClaimTemplates (created before the pod, kept on scale-down and
//! deletion unless the persistentVolumeClaimRetentionPolicy says Delete, then
//! left to the garbage collector through owner references); OrderedReady
//! (one at a time, each waiting for the previous to be Running and Ready,
//! scale-down in reverse) or Parallel; RollingUpdate (highest ordinal
//! first, down to the partition) or OnDelete, with revisions as
//! ControllerRevisions and the `controller-revision-hash` label; the status
//! `kubectl rollout status sts/x` reads. Pods named `<set>-<ordinal>` that
//! match the selector without a controller are adopted, and owned pods that
//! stop matching released (`controller_ref.rs`). The decisions live in
//! `statefulset_plan.rs`; this file reads the caches and writes through the API.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::controller_ref::{claim, claim_keys, selects};
use super::controller_revision::{self, revision_template};
use super::pods::{controlled_by, is_available, is_ready};
use super::runtime::{Action, ObjectKey, WorkQueue, run_workers};
use super::statefulset_plan::{
    POD_INDEX, POD_NAME, Params, Revision, Step, claim_name, claim_owner, counts, deletes_claims,
    new_claims, new_pod, ordinal_of, plan, pod_name, pod_revision,
};
use super::{ControllerError, Ctx, Started, ignore_conflict, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "statefulset-controller";

/// Subscribes the controller to StatefulSets, their pods and revisions.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.stateful_sets.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.stateful_sets.cache().clone();
    ctx.pods.feed(queue.clone(), shutdown.clone(), move |c| {
        claim_keys(c, "StatefulSet", &cache, is_member)
    });
    let cache = ctx.stateful_sets.cache().clone();
    ctx.controller_revisions
        .feed(queue.clone(), shutdown.clone(), move |c| {
            claim_keys(
                c,
                "StatefulSet",
                &cache,
                |o: &StatefulSet, r: &ControllerRevision| {
                    selects(o.spec.as_ref().map(|s| &s.selector), r.labels())
                },
            )
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.stateful_sets.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("statefulset", queue, workers, ctx, reconcile, sd).await
    })
}

/// True when the pod belongs to the set: picked by its selector and named
/// `<set>-<ordinal>` (upstream's isMemberOf).
fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    selects(set.spec.as_ref().map(|s| &s.selector), pod.labels())
        && ordinal_of(&set.name_any(), &pod.name_any()).is_some()
}

/// The pods of the set's namespace claimed for it (adopting matching
/// orphans, releasing strays): the pods it now controls.
async fn claim_pods(ctx: &Ctx, set: &StatefulSet) -> Result<Vec<Arc<Pod>>, ControllerError> {
    let candidates = ctx
        .pods
        .cache()
        .list_namespace(&set.namespace().unwrap_or_default());
    claim(&ctx.client, set, ctx.pods.cache(), candidates, |p| {
        is_member(set, p)
    })
    .await
}

/// The pods a StatefulSet controls, from the cache.
fn owned_pods(ctx: &Ctx, set: &StatefulSet) -> Vec<Arc<Pod>> {
    let uid = set.uid().unwrap_or_default();
    ctx.pods
        .cache()
        .list_namespace(&set.namespace().unwrap_or_default())
        .into_iter()
        .filter(|p| controlled_by(p.as_ref(), &uid))
        .collect()
}

/// The templates of the current and update revisions, with their names.
struct Revisions {
    current: (String, PodTemplateSpec),
    update: (String, PodTemplateSpec),
}

/// Reconciles one StatefulSet.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(set) = ctx.stateful_sets.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let spec = set.spec.clone().unwrap_or_default();
    let old = set.status.clone().unwrap_or_default();
    let selector = set.spec.as_ref().map(|s| &s.selector);
    controller_revision::claim_revisions(&ctx, set.as_ref(), selector).await?;
    let mut collisions = old.collision_count.unwrap_or(0);
    let update =
        match controller_revision::current(&ctx, set.as_ref(), &spec.template, &mut collisions)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                if collisions != old.collision_count.unwrap_or(0) {
                    let mut status = old.clone();
                    status.collision_count = Some(collisions);
                    write_status(&ctx, &set, status).await?;
                }
                return Err(e);
            }
        };
    let uid = set.uid().unwrap_or_default();
    let revs = controller_revision::owned(&ctx, &key.namespace, &uid);
    let current = old
        .current_revision
        .as_ref()
        .and_then(|n| revs.iter().find(|r| r.name_any() == *n))
        .cloned()
        .unwrap_or_else(|| update.clone());
    let revisions = Revisions {
        current: (
            current.name_any(),
            revision_template(&current).unwrap_or_else(|| spec.template.clone()),
        ),
        update: (update.name_any(), spec.template.clone()),
    };
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let params = Params {
        set: key.name.clone(),
        replicas: spec.replicas.unwrap_or(1).max(0),
        start: spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        on_delete: strategy.type_.as_deref() == Some("OnDelete"),
        partition: strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0),
        current_revision: revisions.current.0.clone(),
        update_revision: revisions.update.0.clone(),
    };
    let now = Timestamp::now();
    let mut result = Ok(true);
    for step in plan(&params, &claim_pods(&ctx, &set).await?, now) {
        result = apply(&ctx, &set, &revisions, step).await;
        if !matches!(result, Ok(true)) {
            break;
        }
    }

    let pods = owned_pods(&ctx, &set);
    let live: HashSet<String> = pods
        .iter()
        .filter_map(|p| pod_revision(p).map(String::from))
        .chain([
            params.current_revision.clone(),
            params.update_revision.clone(),
        ])
        .collect();
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let is_live = |r: &ControllerRevision| live.contains(&r.name_any());
    controller_revision::prune(&ctx, &key.namespace, &uid, is_live, limit).await?;

    let c = counts(&params, &pods, now);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: c.replicas,
        ready_replicas: Some(c.ready),
        available_replicas: Some(c.available),
        current_replicas: Some(c.current),
        updated_replicas: Some(c.updated),
        current_revision: Some(params.current_revision.clone()),
        update_revision: Some(params.update_revision.clone()),
        collision_count: Some(collisions),
        conditions: old.conditions.clone(),
    };
    // A finished rolling update makes the update revision current.
    if !params.on_delete && c.updated == c.replicas && c.ready == c.replicas {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    write_status(&ctx, &set, status).await?;
    let waiting = match result {
        Err(e) => return Err(e),
        Ok(go_on) => !go_on,
    };
    let pending_available = params.min_ready_seconds > 0
        && pods
            .iter()
            .any(|p| is_ready(p) && !is_available(p, params.min_ready_seconds, now));
    Ok(if waiting || pending_available {
        Action::RequeueAfter(Duration::from_secs(1))
    } else {
        Action::AwaitChange
    })
}

/// Performs one step; `Ok(false)` when it has to wait (a claim is still being deleted).
async fn apply(
    ctx: &Ctx,
    set: &StatefulSet,
    revisions: &Revisions,
    step: Step,
) -> Result<bool, ControllerError> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let name = set.name_any();
    match step {
        Step::Create(ordinal, revision) => {
            let (rev, template) = match revision {
                Revision::Current => &revisions.current,
                Revision::Update => &revisions.update,
            };
            if !ensure_claims(ctx, set, ordinal).await? {
                return Ok(false);
            }
            let pod = new_pod(set, template, rev, ordinal);
            match api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    tracing::info!(pod = %p.name_any(), revision = %rev, "created pod");
                    let msg = format!(
                        "create Pod {} in StatefulSet {name} successful",
                        p.name_any()
                    );
                    ctx.pods
                        .cache()
                        .write_through(ObjectKey::of(&p), Arc::new(p));
                    ctx.events(EVENT_SOURCE)
                        .record(set, "Normal", "SuccessfulCreate", &msg);
                }
                Err(e) => {
                    let msg = format!(
                        "create Pod {} in StatefulSet {name} failed error: {e}",
                        pod_name(&name, ordinal)
                    );
                    ctx.events(EVENT_SOURCE)
                        .record(set, "Warning", "FailedCreate", &msg);
                    return Err(e.into());
                }
            }
        }
        Step::Delete(pod) => delete_pod(ctx, set, &api, &pod).await?,
        Step::Condemn(pod) => {
            if deletes_claims(set, true) {
                disown_claims(ctx, set, &pod).await?;
            }
            delete_pod(ctx, set, &api, &pod).await?;
        }
        Step::Relabel(pod, ordinal) => {
            let mut next = (*pod).clone();
            let labels = next.labels_mut();
            labels.insert(POD_NAME.into(), pod_name(&name, ordinal));
            labels.insert(POD_INDEX.into(), ordinal.to_string());
            let written = api
                .replace(&pod.name_any(), &PostParams::default(), &next)
                .await?;
            ctx.pods
                .cache()
                .write_through(ObjectKey::of(&written), Arc::new(written));
        }
    }
    Ok(true)
}

/// Creates the ordinal's missing claims; false while one is still being deleted.
async fn ensure_claims(
    ctx: &Ctx,
    set: &StatefulSet,
    ordinal: i32,
) -> Result<bool, ControllerError> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for claim in new_claims(set, ordinal) {
        let cname = claim.name_any();
        match api.get_opt(&cname).await? {
            Some(c) if c.metadata.deletion_timestamp.is_some() => {
                tracing::info!(claim = %cname, "waiting for the old claim to be deleted");
                return Ok(false);
            }
            Some(mut c) => {
                // Owner references follow the retention policy (and undo a
                // whenScaled hand-over to a pod when the ordinal comes back).
                if c.metadata.owner_references != claim.metadata.owner_references {
                    c.metadata.owner_references = claim.metadata.owner_references.clone();
                    api.replace(&cname, &PostParams::default(), &c).await?;
                }
            }
            None => {
                ignore_conflict(api.create(&PostParams::default(), &claim).await)?;
                let msg = format!(
                    "create Claim {cname} Pod {} in StatefulSet {} success",
                    pod_name(&set.name_any(), ordinal),
                    set.name_any()
                );
                ctx.events(EVENT_SOURCE)
                    .record(set, "Normal", "SuccessfulCreate", &msg);
            }
        }
    }
    Ok(true)
}

/// whenScaled Delete: makes the condemned pod the only owner of its claims,
/// so the garbage collector deletes them once the pod is gone.
async fn disown_claims(ctx: &Ctx, set: &StatefulSet, pod: &Pod) -> Result<(), ControllerError> {
    let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
        return Ok(());
    };
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = claim_owner(pod);
    for t in set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
    {
        let cname = claim_name(&t.name_any(), &set.name_any(), ordinal);
        let Some(mut claim) = api.get_opt(&cname).await? else {
            continue;
        };
        if claim.owner_references() == std::slice::from_ref(&owner) {
            continue;
        }
        claim.metadata.owner_references = Some(vec![owner.clone()]);
        api.replace(&cname, &PostParams::default(), &claim).await?;
    }
    Ok(())
}

async fn delete_pod(
    ctx: &Ctx,
    set: &StatefulSet,
    api: &Api<Pod>,
    pod: &Pod,
) -> Result<(), ControllerError> {
    let gone = ignore_not_found(api.delete(&pod.name_any(), &DeleteParams::default()).await)?;
    tracing::info!(pod = %pod.name_any(), "deleted pod");
    if let Some(dying) = gone.and_then(|e| e.left())
        && dying.metadata.deletion_timestamp.is_some()
    {
        ctx.pods
            .cache()
            .write_through(ObjectKey::of(&dying), Arc::new(dying));
    }
    let msg = format!(
        "delete Pod {} in StatefulSet {} successful",
        pod.name_any(),
        set.name_any()
    );
    ctx.events(EVENT_SOURCE)
        .record(set, "Normal", "SuccessfulDelete", &msg);
    Ok(())
}

/// Writes the status through the status subresource and into the cache, unless unchanged.
async fn write_status(
    ctx: &Ctx,
    set: &StatefulSet,
    status: StatefulSetStatus,
) -> Result<(), ControllerError> {
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut next = set.clone();
    next.status = Some(status);
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    let written = api
        .replace_status(&set.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.stateful_sets
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written));
    Ok(())
}
