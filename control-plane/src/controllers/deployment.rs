//! The Deployment controller: one ReplicaSet per pod template (named by the
//! `pod-template-hash`), rolled with RollingUpdate (maxSurge/maxUnavailable
//! as numbers or percentages) or Recreate, revision annotations (so
//! `kubectl rollout undo` works), revisionHistoryLimit, paused,
//! progressDeadlineSeconds and the status `kubectl rollout status` reads.
//! ReplicaSets matching the selector without a controller are adopted (and
//! owned ones that stop matching released) through `controller_ref.rs`, so
//! a Deployment re-created after an orphaning delete takes its old
//! ReplicaSets back.
//! The rollout arithmetic lives in `deployment_math`-style pure helpers below.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::controller_ref::{claim, claim_keys, selects};
use super::pods::{controlled_by, is_active, owner_ref};
use super::runtime::{Action, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_conflict};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "deployment-controller";

/// Annotation carrying the rollout revision on Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// Label distinguishing the ReplicaSets of one Deployment.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Subscribes the controller to Deployments and their ReplicaSets.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.deployments.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.deployments.cache().clone();
    ctx.replica_sets
        .feed(queue.clone(), shutdown.clone(), move |c| {
            claim_keys(
                c,
                "Deployment",
                &cache,
                |d: &Deployment, rs: &ReplicaSet| {
                    selects(d.spec.as_ref().map(|s| &s.selector), rs.labels())
                },
            )
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.deployments.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("deployment", queue, workers, ctx, reconcile, sd).await
    })
}

/// kube's FNV-1a hash of the template, encoded with its safe alphabet.
pub fn template_hash(t: &PodTemplateSpec) -> String {
    let v = template_value(t);
    let text = v.to_string();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

fn template_value(t: &PodTemplateSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        labels.remove(HASH_LABEL);
    }
    v
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Resolves an IntOrString against `total` (percentages round up or down).
pub fn resolve(v: Option<&IntOrString>, default_pct: i32, total: i32, round_up: bool) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i32 = s.trim_end_matches('%').parse().unwrap_or(default_pct);
            scaled(pct, total, round_up)
        }
        None => scaled(default_pct, total, round_up),
    }
}

fn scaled(pct: i32, total: i32, round_up: bool) -> i32 {
    let num = i64::from(pct) * i64::from(total);
    (if round_up {
        (num + 99) / 100
    } else {
        num / 100
    }) as i32
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Available pods of a ReplicaSet, never more than it is meant to have
/// (so a just-scaled-down ReplicaSet with a stale status is not over-counted).
fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        .min(spec_replicas(rs))
}

/// Reconciles one Deployment.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(d) = ctx.deployments.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let uid = d.uid().unwrap_or_default();
    let selector = d.spec.as_ref().map(|s| &s.selector);
    let candidates = ctx.replica_sets.cache().list_namespace(&key.namespace);
    let mut rss: Vec<Arc<ReplicaSet>> = claim(
        &ctx.client,
        d.as_ref(),
        ctx.replica_sets.cache(),
        candidates,
        |rs| selects(selector, rs.labels()),
    )
    .await?
    .into_iter()
    .filter(|rs| rs.metadata.deletion_timestamp.is_none())
    .collect();
    rss.sort_by_key(|rs| {
        (
            revision(rs),
            rs.creation_timestamp().map(|t| t.0.as_second()),
        )
    });
    if rss
        .iter()
        .any(|rs| rs.status.as_ref().and_then(|s| s.observed_generation) < rs.metadata.generation)
    {
        // A ReplicaSet has not acted on its latest spec yet; its status event requeues us.
        return Ok(Action::AwaitChange);
    }
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(&spec.template);
    let want = template_value(&spec.template);
    let is_new = |rs: &ReplicaSet| {
        rs.labels().get(HASH_LABEL) == Some(&hash)
            || rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .map(template_value)
                .as_ref()
                == Some(&want)
    };
    let new_rs = rss.iter().find(|rs| is_new(rs)).cloned();
    let olds: Vec<Arc<ReplicaSet>> = rss.iter().filter(|rs| !is_new(rs)).cloned().collect();
    let max_old_rev = olds.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let paused = spec.paused.unwrap_or(false);
    let mut acted = false;
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &key.namespace);

    if paused {
        return sync_status(&ctx, &d, new_rs.as_deref(), &rss, false).await;
    }
    let new_rs = match new_rs {
        Some(rs) if revision(&rs) <= max_old_rev => {
            // Rolled back to an old template: it becomes the newest revision.
            let mut rs = (*rs).clone();
            rs.annotations_mut()
                .insert(REVISION.into(), (max_old_rev + 1).to_string());
            let rs = rs_api
                .replace(&rs.name_any(), &PostParams::default(), &rs)
                .await?;
            acted = true;
            Arc::new(rs)
        }
        Some(rs) => rs,
        None => {
            let rs = new_replica_set(&d, &hash, max_old_rev + 1, desired);
            let created = match ignore_conflict(rs_api.create(&PostParams::default(), &rs).await)? {
                Some(rs) => rs,
                None => {
                    return Err(ControllerError::Invalid(format!(
                        "ReplicaSet {}-{hash} exists but is not owned",
                        key.name
                    )));
                }
            };
            // Created at 0 replicas: the scaling below records the event
            // ("Scaled up replica set … from 0 to N"), as upstream records
            // one only for a replica set created with replicas.
            let created = Arc::new(created);
            ctx.replica_sets
                .cache()
                .write_through(ObjectKey::of(created.as_ref()), created.clone());
            rss.push(created.clone());
            acted = true;
            created
        }
    };
    let strategy = spec.strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref() == Some("Recreate") {
        acted |= recreate(&ctx, &d, &new_rs, &olds, desired).await?;
    } else {
        let ru = strategy.rolling_update.unwrap_or_default();
        let surge = resolve(ru.max_surge.as_ref(), 25, desired, true);
        let mut unavailable = resolve(ru.max_unavailable.as_ref(), 25, desired, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        acted |= rolling(&ctx, &d, &new_rs, &olds, desired, surge, unavailable).await?;
    }
    cleanup_history(&ctx, &d, &olds).await?;
    let rss: Vec<Arc<ReplicaSet>> = ctx
        .replica_sets
        .cache()
        .list_namespace(&key.namespace)
        .into_iter()
        .filter(|rs| controlled_by(rs.as_ref(), &uid) && rs.metadata.deletion_timestamp.is_none())
        .collect();
    let new_rs = rss
        .iter()
        .find(|rs| rs.name_any() == new_rs.name_any())
        .cloned();
    sync_status(&ctx, &d, new_rs.as_deref(), &rss, acted).await
}

fn new_replica_set(d: &Deployment, hash: &str, revision: i64, desired: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.into());
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.into());
    let mut annotations = BTreeMap::from([
        (REVISION.to_string(), revision.to_string()),
        (DESIRED.to_string(), desired.to_string()),
        (MAX_REPLICAS.to_string(), desired.to_string()),
    ]);
    if let Some(cause) = d.annotations().get(CHANGE_CAUSE) {
        annotations.insert(CHANGE_CAUSE.into(), cause.clone());
    }
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels: meta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// Sets a ReplicaSet's replicas (resourceVersion-guarded) and writes it through to the cache.
async fn scale(ctx: &Ctx, d: &Deployment, rs: &ReplicaSet, to: i32) -> Result<(), ControllerError> {
    let from = spec_replicas(rs);
    if from == to {
        return Ok(());
    }
    let mut rs = rs.clone();
    if let Some(s) = rs.spec.as_mut() {
        s.replicas = Some(to);
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    rs.annotations_mut()
        .insert(DESIRED.into(), desired.to_string());
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let updated = api
        .replace(&rs.name_any(), &PostParams::default(), &rs)
        .await?;
    let verb = if to > from { "up" } else { "down" };
    tracing::info!(replicaset = %updated.name_any(), from, to, "scaled {verb}");
    ctx.events(EVENT_SOURCE).record(
        d,
        "Normal",
        "ScalingReplicaSet",
        &format!(
            "Scaled {verb} replica set {} from {from} to {to}",
            updated.name_any()
        ),
    );
    ctx.replica_sets
        .cache()
        .write_through(ObjectKey::of(&updated), Arc::new(updated));
    Ok(())
}

async fn rolling(
    ctx: &Ctx,
    d: &Deployment,
    new_rs: &ReplicaSet,
    olds: &[Arc<ReplicaSet>],
    desired: i32,
    surge: i32,
    max_unavailable: i32,
) -> Result<bool, ControllerError> {
    let all_spec: i32 = olds.iter().map(|r| spec_replicas(r)).sum::<i32>() + spec_replicas(new_rs);
    let new_spec = spec_replicas(new_rs);
    // Scale the new ReplicaSet up (within surge) or down (to desired).
    if new_spec > desired {
        scale(ctx, d, new_rs, desired).await?;
        return Ok(true);
    }
    if new_spec < desired && all_spec < desired + surge {
        let up = (desired + surge - all_spec).min(desired - new_spec);
        scale(ctx, d, new_rs, new_spec + up).await?;
        return Ok(true);
    }
    let old_total: i32 = olds.iter().map(|r| spec_replicas(r)).sum();
    if old_total == 0 {
        return Ok(false);
    }
    let min_available = desired - max_unavailable;
    let new_unavailable = (new_spec - available(new_rs)).max(0);
    let mut budget = all_spec - min_available - new_unavailable;
    if budget <= 0 {
        return Ok(false);
    }
    let mut acted = false;
    // First drop old replicas that are not available anyway.
    let mut olds: Vec<ReplicaSet> = olds.iter().map(|r| (**r).clone()).collect();
    for rs in olds.iter_mut() {
        let unhealthy = spec_replicas(rs) - available(rs);
        let cut = unhealthy.min(budget);
        if cut > 0 {
            let to = spec_replicas(rs) - cut;
            scale(ctx, d, rs, to).await?;
            if let Some(s) = rs.spec.as_mut() {
                s.replicas = Some(to);
            }
            budget -= cut;
            acted = true;
        }
    }
    // Then scale down available old replicas while availability allows.
    let available_all: i32 = olds.iter().map(available).sum::<i32>() + available(new_rs);
    let mut cut_total = (available_all - min_available).min(budget);
    for rs in &olds {
        if cut_total <= 0 {
            break;
        }
        let cut = spec_replicas(rs).min(cut_total);
        if cut > 0 {
            scale(ctx, d, rs, spec_replicas(rs) - cut).await?;
            cut_total -= cut;
            acted = true;
        }
    }
    Ok(acted)
}

async fn recreate(
    ctx: &Ctx,
    d: &Deployment,
    new_rs: &ReplicaSet,
    olds: &[Arc<ReplicaSet>],
    desired: i32,
) -> Result<bool, ControllerError> {
    let mut acted = false;
    for rs in olds {
        if spec_replicas(rs) > 0 {
            scale(ctx, d, rs, 0).await?;
            acted = true;
        }
    }
    let old_uids: Vec<String> = olds.iter().filter_map(|r| r.uid()).collect();
    let old_pods_running = ctx
        .pods
        .cache()
        .list_namespace(&d.namespace().unwrap_or_default())
        .iter()
        .any(|p| {
            old_uids.iter().any(|u| controlled_by(p.as_ref(), u))
                && (is_active(p) || p.metadata.deletion_timestamp.is_some())
        });
    if acted || old_pods_running {
        return Ok(acted);
    }
    if spec_replicas(new_rs) != desired {
        scale(ctx, d, new_rs, desired).await?;
        acted = true;
    }
    Ok(acted)
}

async fn cleanup_history(
    ctx: &Ctx,
    d: &Deployment,
    olds: &[Arc<ReplicaSet>],
) -> Result<(), ControllerError> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let idle: Vec<&Arc<ReplicaSet>> = olds
        .iter()
        .filter(|rs| spec_replicas(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0))
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    for rs in &idle[..idle.len() - limit] {
        tracing::info!(replicaset = %rs.name_any(), "deleting old revision");
        super::ignore_not_found(
            api.delete(&rs.name_any(), &DeleteParams::background())
                .await,
        )?;
    }
    Ok(())
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Computes and writes the Deployment status; requeues to check the progress deadline.
async fn sync_status(
    ctx: &Ctx,
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    rss: &[Arc<ReplicaSet>],
    acted: bool,
) -> Result<Action, ControllerError> {
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let now = Timestamp::now();
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let replicas: i32 = rss.iter().map(|r| st(r).replicas).sum();
    let ready: i32 = rss.iter().map(|r| st(r).ready_replicas.unwrap_or(0)).sum();
    let avail: i32 = rss
        .iter()
        .map(|r| st(r).available_replicas.unwrap_or(0))
        .sum();
    let updated = new_rs.map_or(0, |r| st(r).replicas);
    let old = d.status.clone().unwrap_or_default();
    let old_conds = old.conditions.clone().unwrap_or_default();
    let find = |t: &str| old_conds.iter().find(|c| c.type_ == t).cloned();
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let max_unavailable =
        if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            0
        } else {
            resolve(ru.max_unavailable.as_ref(), 25, desired, false)
        };
    let mut conds = Vec::new();
    let available_cond = if avail >= desired - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    conds.push(keep_times(available_cond, find("Available")));
    let rs_name = new_rs.map(|r| r.name_any()).unwrap_or_default();
    let complete =
        new_rs.is_some() && updated == desired && replicas == desired && avail >= desired;
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let prev = find("Progressing");
    let status_changed = old.updated_replicas.unwrap_or(0) != updated
        || old.ready_replicas.unwrap_or(0) != ready
        || old.available_replicas.unwrap_or(0) != avail
        || old.replicas.unwrap_or(0) != replicas;
    let mut requeue = None;
    let progressing = if spec.paused.unwrap_or(false) {
        condition(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
        )
    } else if complete {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            now,
        )
    } else if acted
        || status_changed
        || prev.is_none()
        || prev
            .as_ref()
            .is_some_and(|p| p.reason.as_deref() == Some("DeploymentPaused"))
    {
        requeue = Some(Duration::from_secs(deadline.max(1) as u64 + 1));
        condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
            now,
        )
    } else {
        let p = prev.clone().unwrap_or_else(|| {
            condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                String::new(),
                now,
            )
        });
        let last = p.last_update_time.as_ref().map_or(now, |t| t.0);
        let elapsed = now.as_second() - last.as_second();
        if p.reason.as_deref() != Some("ProgressDeadlineExceeded") && elapsed > i64::from(deadline)
        {
            condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                now,
            )
        } else {
            if p.reason.as_deref() != Some("ProgressDeadlineExceeded") {
                requeue = Some(Duration::from_secs(
                    (i64::from(deadline) - elapsed).max(1) as u64
                ));
            }
            p
        }
    };
    conds.push(keep_times(progressing, prev));
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        unavailable_replicas: Some((desired - avail).max(0)),
        conditions: Some(conds),
        collision_count: old.collision_count,
        terminating_replicas: old.terminating_replicas,
    };
    let mut revision_changed = false;
    let mut next = d.clone();
    if let Some(rs) = new_rs {
        let rev = rs.annotations().get(REVISION).cloned().unwrap_or_default();
        if next.annotations().get(REVISION) != Some(&rev) {
            next.annotations_mut().insert(REVISION.into(), rev);
            revision_changed = true;
        }
    }
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    if revision_changed {
        next = api
            .replace(&d.name_any(), &PostParams::default(), &next)
            .await?;
    }
    if !same_status(&old, &status) || revision_changed {
        next.status = Some(status);
        let written = api
            .replace_status(&d.name_any(), &PostParams::default(), &next)
            .await?;
        ctx.deployments
            .cache()
            .write_through(ObjectKey::of(&written), Arc::new(written));
    }
    Ok(requeue.map_or(Action::AwaitChange, Action::RequeueAfter))
}

/// Keeps lastTransitionTime when the status did not flip, and lastUpdateTime when nothing changed.
fn keep_times(
    mut c: DeploymentCondition,
    prev: Option<DeploymentCondition>,
) -> DeploymentCondition {
    if let Some(p) = prev
        && p.status == c.status
    {
        c.last_transition_time = p.last_transition_time.clone();
        if p.reason == c.reason && p.message == c.message {
            c.last_update_time = p.last_update_time;
        }
    }
    c
}

/// Status equality ignoring condition timestamps.
fn same_status(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_update_time = None;
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
        && a.conditions.as_ref().map(|c| {
            c.iter()
                .map(|c| c.last_update_time.clone())
                .collect::<Vec<_>>()
        }) == b.conditions.as_ref().map(|c| {
            c.iter()
                .map(|c| c.last_update_time.clone())
                .collect::<Vec<_>>()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve(Some(&pct("25%")), 25, 10, true), 3);
        assert_eq!(resolve(Some(&pct("25%")), 25, 10, false), 2);
        assert_eq!(resolve(Some(&IntOrString::Int(1)), 25, 10, false), 1);
        assert_eq!(resolve(None, 25, 4, true), 1);
    }

    #[test]
    fn template_hash_ignores_the_hash_label() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = template_hash(&t);
        let mut with = t.clone();
        with.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), h.clone());
        assert_eq!(template_hash(&with), h);
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
