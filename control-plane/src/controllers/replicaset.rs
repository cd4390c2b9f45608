//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the
//! selector and controlled by the ReplicaSet (adopting matching orphans and
//! releasing pods that stopped matching, through `controller_ref.rs`;
//! creating from the template or deleting the most disposable), and reports
//! replicas, fullyLabeled, ready and available counts. Created and deleted pods are written through to
//! the cache so a burst of reconciles never over-creates.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::controller_ref::{claim, claim_keys, selects};
use super::pods::{deletion_rank, is_active, is_available, is_ready, owner_ref};
use super::runtime::selector::selector_matches;
use super::runtime::{Action, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "replicaset-controller";

/// Most pods created or deleted in one reconcile.
const BURST: usize = 500;

/// Subscribes the controller to ReplicaSets and their pods.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.replica_sets.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.replica_sets.cache().clone();
    ctx.pods.feed(queue.clone(), shutdown.clone(), move |c| {
        claim_keys(c, "ReplicaSet", &cache, |rs: &ReplicaSet, p: &Pod| {
            selects(rs.spec.as_ref().map(|s| &s.selector), p.labels())
        })
    });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.replica_sets.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("replicaset", queue, workers, ctx, reconcile, sd).await
    })
}

/// The active pods a ReplicaSet controls once it has claimed the active
/// pods of its namespace (adopting matching orphans, releasing strays).
pub async fn claim_pods(ctx: &Ctx, rs: &ReplicaSet) -> Result<Vec<Arc<Pod>>, ControllerError> {
    let active: Vec<Arc<Pod>> = ctx
        .pods
        .cache()
        .list_namespace(&rs.namespace().unwrap_or_default())
        .into_iter()
        .filter(|p| is_active(p))
        .collect();
    let selector = rs.spec.as_ref().map(|s| &s.selector);
    claim(&ctx.client, rs, ctx.pods.cache(), active, |p| {
        selects(selector, p.labels())
    })
    .await
}

/// Reconciles one ReplicaSet.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(rs) = ctx.replica_sets.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let spec = rs.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let mut active = claim_pods(&ctx, &rs).await?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    if active.len() < want {
        let n = (want - active.len()).min(BURST);
        let template = spec.template.clone().unwrap_or_default();
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", key.name)),
                namespace: Some(key.namespace.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.clone()),
                owner_references: Some(vec![owner_ref(rs.as_ref())]),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        let pp = PostParams::default();
        let results = join_all((0..n).map(|_| api.create(&pp, &pod))).await;
        let mut first_err = None;
        let events = ctx.events(EVENT_SOURCE);
        for r in results {
            match r {
                Ok(p) => {
                    let msg = format!("Created pod: {}", p.name_any());
                    events.record(rs.as_ref(), "Normal", "SuccessfulCreate", &msg);
                    let p = Arc::new(p);
                    ctx.pods
                        .cache()
                        .write_through(ObjectKey::of(p.as_ref()), p.clone());
                    active.push(p);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            events.record(
                rs.as_ref(),
                "Warning",
                "FailedCreate",
                &format!("Error creating: {e}"),
            );
            update_status(&ctx, &rs, &active).await?;
            return Err(e.into());
        }
        tracing::info!(created = n, "created pods");
    } else if active.len() > want {
        active.sort_by_key(|p| deletion_rank(p));
        let doomed: Vec<Arc<Pod>> = active.drain(..(active.len() - want).min(BURST)).collect();
        let results = join_all(doomed.iter().map(|p| {
            let api = &api;
            async move { api.delete(&p.name_any(), &DeleteParams::default()).await }
        }))
        .await;
        let mut first_err = None;
        let events = ctx.events(EVENT_SOURCE);
        for (p, r) in doomed.iter().zip(results) {
            match ignore_not_found(r.map(|_| ())) {
                Ok(_) => {
                    let msg = format!("Deleted pod: {}", p.name_any());
                    events.record(rs.as_ref(), "Normal", "SuccessfulDelete", &msg);
                    let mut gone = (**p).clone();
                    gone.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
                    ctx.pods
                        .cache()
                        .write_through(ObjectKey::of(&gone), Arc::new(gone));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        tracing::info!(deleted = doomed.len(), "deleted pods");
    }
    update_status(&ctx, &rs, &active).await?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let pending_available = min_ready > 0
        && active
            .iter()
            .any(|p| is_ready(p) && !is_available(p, min_ready, Timestamp::now()));
    Ok(if pending_available {
        Action::RequeueAfter(Duration::from_secs(1))
    } else {
        Action::AwaitChange
    })
}

async fn update_status(
    ctx: &Ctx,
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
) -> Result<(), ControllerError> {
    let spec = rs.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let labelled = active
        .iter()
        .filter(|p| {
            selector_matches(
                &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(template_labels.clone()),
                    match_expressions: None,
                },
                p.labels(),
            )
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(labelled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if status == old {
        return Ok(());
    }
    let mut updated = rs.clone();
    updated.status = Some(status);
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let new = api
        .replace_status(&rs.name_any(), &PostParams::default(), &updated)
        .await?;
    ctx.replica_sets
        .cache()
        .write_through(ObjectKey::of(&new), Arc::new(new));
    Ok(())
}
