//! The DaemonSet controller (apps/v1): one pod per eligible node, pinned to
//! it with a `metadata.name` node affinity so the default scheduler binds
//! it; follows nodes joining, changing and leaving (pods on nodes that are
//! gone are deleted without grace, as no kubelet will finish them); rolls
//! template changes with RollingUpdate (maxUnavailable, or maxSurge: the new
//! pod starts beside the old one, which goes once the new one is available)
//! or OnDelete, tracking
//! revisions with ControllerRevisions and the `controller-revision-hash`
//! label; adopts matching orphan pods and releases owned pods that stop
//! matching (`controller_ref.rs`); reports the status `kubectl rollout
//! status ds/x` reads. The
//! decisions live in `daemonset_plan.rs`; this file reads the caches and
//! writes through the API.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetStatus, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::controller_ref::{claim, claim_keys, selects};
use super::controller_revision::{self, REVISION_HASH};
use super::daemonset_plan::{
    Counts, Fit, Surge, counts, daemon_pod_spec, is_updated, manage, node_fit, pod_for_node,
    rolling_deletions, surge_rolling, target_node, template_generation,
};
use super::deployment::resolve;
use super::pods::{controlled_by, is_available, is_ready, phase};
use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "daemonset-controller";

/// Subscribes the controller to DaemonSets, their pods and revisions, and nodes.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.daemon_sets.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.daemon_sets.cache().clone();
    ctx.pods.feed(queue.clone(), shutdown.clone(), move |c| {
        claim_keys(c, "DaemonSet", &cache, |ds: &DaemonSet, p: &Pod| {
            selects(ds.spec.as_ref().map(|s| &s.selector), p.labels())
        })
    });
    let cache = ctx.daemon_sets.cache().clone();
    ctx.controller_revisions
        .feed(queue.clone(), shutdown.clone(), move |c| {
            claim_keys(
                c,
                "DaemonSet",
                &cache,
                |o: &DaemonSet, r: &ControllerRevision| {
                    selects(o.spec.as_ref().map(|s| &s.selector), r.labels())
                },
            )
        });
    let cache = ctx.daemon_sets.cache().clone();
    ctx.nodes
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert {
                old: Some(old),
                new,
            } if !node_changed(old, new) => Vec::new(),
            _ => cache.keys(),
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.daemon_sets.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("daemonset", queue, workers, ctx, reconcile, sd).await
    })
}

/// True when a node update can change where daemon pods belong (labels,
/// taints, cordon, condition statuses), not for a mere heartbeat.
fn node_changed(old: &Node, new: &Node) -> bool {
    let conditions = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect::<Vec<_>>()
            })
    };
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    old.labels() != new.labels() || spec(old) != spec(new) || conditions(old) != conditions(new)
}

/// The DaemonSet's pods by the node they are bound or pinned to (finished
/// pods that are being deleted are left out, as upstream).
fn by_node(pods: impl IntoIterator<Item = Arc<Pod>>) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in pods {
        let finished = matches!(phase(&p), "Succeeded" | "Failed");
        if finished && p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node(&p) {
            by_node.entry(node).or_default().push(p);
        }
    }
    by_node
}

/// The DaemonSet's pods in the cache, by node.
fn daemon_pods(ctx: &Ctx, ds: &DaemonSet) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let uid = ds.uid().unwrap_or_default();
    let ns = ds.namespace().unwrap_or_default();
    by_node(
        ctx.pods
            .cache()
            .list_namespace(&ns)
            .into_iter()
            .filter(|p| controlled_by(p.as_ref(), &uid)),
    )
}

/// Claims the pods of the DaemonSet's namespace (adopting matching orphans,
/// releasing strays) and returns those it now controls, by node.
async fn claim_daemon_pods(
    ctx: &Ctx,
    ds: &DaemonSet,
) -> Result<BTreeMap<String, Vec<Arc<Pod>>>, ControllerError> {
    let ns = ds.namespace().unwrap_or_default();
    let selector = ds.spec.as_ref().map(|s| &s.selector);
    let candidates = ctx.pods.cache().list_namespace(&ns);
    let claimed = claim(&ctx.client, ds, ctx.pods.cache(), candidates, |p| {
        selects(selector, p.labels())
    })
    .await?;
    Ok(by_node(claimed))
}

/// maxSurge resolved against the desired count (rounded up); 0 when unset.
fn max_surge(ru: Option<&RollingUpdateDaemonSet>, desired: i32) -> i32 {
    ru.and_then(|r| r.max_surge.as_ref())
        .map_or(0, |v| resolve(Some(v), 0, desired, true).max(0))
}

/// True when a RollingUpdate surges (upstream's AllowsSurge: maxSurge
/// resolved against one node is not 0).
fn allows_surge(ru: Option<&RollingUpdateDaemonSet>) -> bool {
    max_surge(ru, 1) > 0
}

/// maxUnavailable resolved against the desired count (rounded up; at least 1).
fn max_unavailable(ru: Option<&RollingUpdateDaemonSet>, desired: i32) -> i32 {
    match ru.and_then(|r| r.max_unavailable.as_ref()) {
        None => 1,
        Some(v) => resolve(Some(v), 0, desired, true).max(1),
    }
}

/// Reconciles one DaemonSet.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(ds) = ctx.daemon_sets.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let old_collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let selector = ds.spec.as_ref().map(|s| &s.selector);
    controller_revision::claim_revisions(&ctx, ds.as_ref(), selector).await?;
    let mut collisions = old_collisions.unwrap_or(0);
    let cur = match controller_revision::current(&ctx, ds.as_ref(), &spec.template, &mut collisions)
        .await
    {
        Ok(cur) => cur,
        Err(e) => {
            if collisions != old_collisions.unwrap_or(0) {
                let mut status = ds.status.clone().unwrap_or_default();
                status.collision_count = Some(collisions);
                write_status(&ctx, &ds, status).await?;
            }
            return Err(e);
        }
    };
    let hash = cur.labels().get(REVISION_HASH).cloned().unwrap_or_default();
    let generation = template_generation(&ds);
    let updated = |p: &Pod| is_updated(p, &hash, generation.as_deref());
    let pod_spec = daemon_pod_spec(&spec.template);
    let fits: BTreeMap<String, Fit> = ctx
        .nodes
        .cache()
        .list()
        .iter()
        .map(|n| (n.name_any(), node_fit(&pod_spec, n)))
        .collect();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let by_node = claim_daemon_pods(&ctx, &ds).await?;
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let ru = strategy.rolling_update.as_ref().filter(|_| rolling);
    let surge = allows_surge(ru).then_some(Surge {
        updated: &updated,
        min_ready_seconds: min_ready,
        now,
    });
    let mut plan = manage(&fits, &by_node, surge.as_ref());
    if rolling {
        let desired = fits.values().filter(|f| f.should_run).count() as i32;
        let deletions = if surge.is_some() {
            let max = max_surge(ru, desired);
            let step = surge_rolling(&fits, &by_node, updated, max, min_ready, now);
            plan.create.extend(step.create);
            step.delete
        } else {
            let max = max_unavailable(ru, desired);
            rolling_deletions(&fits, &by_node, updated, max, min_ready, now)
        };
        for p in deletions {
            if !plan.delete.iter().any(|d| d.name_any() == p.name_any()) {
                plan.delete.push(p);
            }
        }
    }
    let mut errors = Vec::new();
    errors.extend(create_pods(&ctx, &ds, &pod_spec, &plan.create, &hash).await);
    errors.extend(delete_pods(&ctx, &ds, &plan.delete, false).await);
    errors.extend(delete_orphans(&ctx, &ds, &plan.orphaned).await);

    let by_node = daemon_pods(&ctx, &ds);
    let hashes: HashSet<String> = by_node
        .values()
        .flatten()
        .filter_map(|p| p.labels().get(REVISION_HASH).cloned())
        .collect();
    let live = |r: &ControllerRevision| {
        r.name_any() == cur.name_any()
            || r.labels()
                .get(REVISION_HASH)
                .is_some_and(|h| hashes.contains(h))
    };
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let ns = key.namespace.clone();
    controller_revision::prune(&ctx, &ns, &ds.uid().unwrap_or_default(), live, limit).await?;

    let c = counts(&fits, &by_node, updated, min_ready, now);
    write_status(&ctx, &ds, status_of(&ds, &c, collisions)).await?;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let pending_available = min_ready > 0
        && by_node
            .values()
            .flatten()
            .any(|p| is_ready(p) && !is_available(p, min_ready, now));
    Ok(if pending_available {
        Action::RequeueAfter(Duration::from_secs(1))
    } else {
        Action::AwaitChange
    })
}

fn status_of(ds: &DaemonSet, c: &Counts, collisions: i32) -> DaemonSetStatus {
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        collision_count: (collisions > 0 || old.collision_count.is_some()).then_some(collisions),
        conditions: old.conditions,
        current_number_scheduled: c.current,
        desired_number_scheduled: c.desired,
        number_available: Some(c.available),
        number_misscheduled: c.misscheduled,
        number_ready: c.ready,
        number_unavailable: Some((c.desired - c.available).max(0)),
        observed_generation: ds.metadata.generation,
        updated_number_scheduled: Some(c.updated),
    }
}

/// Creates one pod per node in batches of 1, 2, 4, ... (stopping at the
/// first error), writing each through to the cache.
async fn create_pods(
    ctx: &Ctx,
    ds: &DaemonSet,
    spec: &PodSpec,
    nodes: &[String],
    hash: &str,
) -> Option<ControllerError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let pp = PostParams::default();
    let (mut done, mut batch) = (0, 1);
    let mut first_err = None;
    while done < nodes.len() && first_err.is_none() {
        let chunk = &nodes[done..(done + batch).min(nodes.len())];
        let results = join_all(chunk.iter().map(|n| {
            let (api, pp) = (&api, &pp);
            async move { (n, api.create(pp, &pod_for_node(ds, spec, n, hash)).await) }
        }))
        .await;
        for (node, r) in results {
            match r {
                Ok(p) => {
                    tracing::info!(pod = %p.name_any(), node = %node, "created daemon pod");
                    let msg = format!("Created pod: {}", p.name_any());
                    ctx.pods
                        .cache()
                        .write_through(ObjectKey::of(&p), Arc::new(p));
                    ctx.events(EVENT_SOURCE)
                        .record(ds, "Normal", "SuccessfulCreate", &msg);
                }
                Err(e) => {
                    let msg = format!("Error creating: {e}");
                    ctx.events(EVENT_SOURCE)
                        .record(ds, "Warning", "FailedCreate", &msg);
                    first_err.get_or_insert(e.into());
                }
            }
        }
        done += chunk.len();
        batch *= 2;
    }
    first_err
}

/// Deletes pods (without grace when `force`); a pod the API keeps while it
/// terminates goes into the cache as it now is. Returns the first error.
async fn delete_pods(
    ctx: &Ctx,
    ds: &DaemonSet,
    pods: &[Arc<Pod>],
    force: bool,
) -> Option<ControllerError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let dp = if force {
        DeleteParams::default().grace_period(0)
    } else {
        DeleteParams::default()
    };
    let results = join_all(pods.iter().map(|p| {
        let (api, dp) = (&api, &dp);
        async move { api.delete(&p.name_any(), dp).await }
    }))
    .await;
    let mut first_err = None;
    for (p, r) in pods.iter().zip(results) {
        match ignore_not_found(r) {
            Ok(left) => {
                let node = target_node(p).unwrap_or_default();
                tracing::info!(pod = %p.name_any(), node = %node, force, "deleted daemon pod");
                if let Some(dying) = left.and_then(|e| e.left())
                    && dying.metadata.deletion_timestamp.is_some()
                {
                    ctx.pods
                        .cache()
                        .write_through(ObjectKey::of(&dying), Arc::new(dying));
                }
                let msg = format!("Deleted pod: {}", p.name_any());
                ctx.events(EVENT_SOURCE)
                    .record(ds, "Normal", "SuccessfulDelete", &msg);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err
}

/// Deletes, without grace, the pods of nodes a live read confirms are gone.
async fn delete_orphans(ctx: &Ctx, ds: &DaemonSet, pods: &[Arc<Pod>]) -> Option<ControllerError> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut gone: BTreeMap<String, bool> = BTreeMap::new();
    let mut doomed = Vec::new();
    for p in pods {
        let node = target_node(p).unwrap_or_default();
        let is_gone = match gone.get(&node) {
            Some(g) => *g,
            None => match nodes.get_opt(&node).await {
                Ok(n) => *gone.entry(node).or_insert(n.is_none()),
                Err(e) => return Some(e.into()),
            },
        };
        if is_gone {
            doomed.push(p.clone());
        }
    }
    if doomed.is_empty() {
        return None;
    }
    delete_pods(ctx, ds, &doomed, true).await
}

/// Writes the status through the status subresource and into the cache, unless unchanged.
async fn write_status(
    ctx: &Ctx,
    ds: &DaemonSet,
    status: DaemonSetStatus,
) -> Result<(), ControllerError> {
    if ds.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut next = ds.clone();
    next.status = Some(status);
    let api: Api<DaemonSet> =
        Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let written = api
        .replace_status(&ds.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.daemon_sets
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn max_unavailable_defaults_and_rounds_up() {
        assert_eq!(max_unavailable(None, 10), 1);
        let ru = |v: IntOrString| RollingUpdateDaemonSet {
            max_unavailable: Some(v),
            max_surge: None,
        };
        assert_eq!(max_unavailable(Some(&ru(IntOrString::Int(3))), 10), 3);
        assert_eq!(
            max_unavailable(Some(&ru(IntOrString::String("25%".into()))), 10),
            3
        );
        assert_eq!(max_unavailable(Some(&ru(IntOrString::Int(0))), 10), 1);
    }

    #[test]
    fn max_surge_rounds_up_and_decides_the_mode() {
        let ru = |s: IntOrString, u: i32| RollingUpdateDaemonSet {
            max_surge: Some(s),
            max_unavailable: Some(IntOrString::Int(u)),
        };
        assert_eq!(max_surge(None, 10), 0);
        assert!(!allows_surge(None));
        assert!(!allows_surge(Some(&ru(IntOrString::Int(0), 1))));
        let pct = ru(IntOrString::String("10%".into()), 0);
        assert!(allows_surge(Some(&pct)));
        assert_eq!(max_surge(Some(&pct), 15), 2);
        assert_eq!(max_surge(Some(&ru(IntOrString::Int(2), 0)), 15), 2);
    }

    #[test]
    fn heartbeats_are_not_node_changes() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "labels": {"a": "1"}},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "lastHeartbeatTime": "2025-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let mut beat = node.clone();
        beat.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_heartbeat_time = None;
        assert!(!node_changed(&node, &beat));
        let mut relabelled = node.clone();
        relabelled.labels_mut().insert("b".into(), "2".into());
        assert!(node_changed(&node, &relabelled));
        let mut not_ready = node.clone();
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        assert!(node_changed(&node, &not_ready));
    }
}
