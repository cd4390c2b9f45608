//! The disruption controller (policy/v1 PodDisruptionBudget status): for
//! each budget, the pods its selector picks (a missing selector picks none,
//! an empty one every pod of the namespace), how many pods are expected
//! (the scale of their controllers — a ReplicaSet owned by a Deployment
//! counts as the Deployment, StatefulSets and others through `/scale` — or
//! the number of matching pods when minAvailable is a number), desired and
//! current healthy (Ready, not being deleted, not recently evicted per
//! `status.disruptedPods`), disruptionsAllowed, expectedPods,
//! observedGeneration and the DisruptionAllowed condition. The eviction
//! subresource (`api/handlers/eviction.rs`) takes disruptions by
//! decrementing `status.disruptionsAllowed` and listing the pod in
//! `status.disruptedPods`; listed pods stay out of currentHealthy until
//! they are deleted, gone, or 2 minutes old (then a NotDeleted warning is
//! recorded on the pod and the entry dropped). Deviation from upstream:
//! pods without a controller count one each toward the expected pods
//! (upstream leaves them out and warns); the warning is recorded too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::pods::{controller_of, is_ready};
use super::runtime::selector::selector_matches;
use super::runtime::{Action, Cache, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found, scale};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "controllermanager";

/// How long an evicted pod listed in `status.disruptedPods` stays
/// unhealthy before the budget stops waiting for its deletion.
pub const DELETION_TIMEOUT: i64 = 120;
/// The condition the budget reports.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// Subscribes the controller to budgets, pods and the workloads whose
/// scale budgets count.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.pdbs.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.pdbs.cache().clone();
    ctx.pods
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { old, new } => {
                let mut keys = covering(&cache, new);
                if let Some(old) = old {
                    keys.extend(covering(&cache, old));
                    keys.sort();
                    keys.dedup();
                }
                keys
            }
            Change::Delete(p) => covering(&cache, p),
            Change::Resync => cache.keys(),
        });
    let cache = ctx.pdbs.cache().clone();
    ctx.replica_sets
        .feed(queue.clone(), shutdown.clone(), move |c| {
            scale_changed(c, &cache, |rs| rs.spec.as_ref().and_then(|s| s.replicas))
        });
    let cache = ctx.pdbs.cache().clone();
    ctx.deployments
        .feed(queue.clone(), shutdown.clone(), move |c| {
            scale_changed(c, &cache, |d| d.spec.as_ref().and_then(|s| s.replicas))
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.pdbs.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("disruption", queue, workers, ctx, reconcile, sd).await
    })
}

/// The budgets whose selector picks `pod`.
fn covering(cache: &Cache<PodDisruptionBudget>, pod: &Pod) -> Vec<ObjectKey> {
    cache
        .list_namespace(&pod.namespace().unwrap_or_default())
        .iter()
        .filter(|b| selects(b, pod))
        .map(|b| ObjectKey::of(b.as_ref()))
        .collect()
}

/// Every budget of the namespace of a workload whose replicas changed.
fn scale_changed<K: Resource>(
    c: &Change<K>,
    cache: &Cache<PodDisruptionBudget>,
    replicas: impl Fn(&K) -> Option<i32>,
) -> Vec<ObjectKey> {
    let ns = match c {
        Change::Upsert { old, new } => {
            if old.as_ref().is_some_and(|o| replicas(o) == replicas(new)) {
                return Vec::new();
            }
            new.meta().namespace.clone()
        }
        Change::Delete(o) => o.meta().namespace.clone(),
        Change::Resync => return cache.keys(),
    };
    cache
        .list_namespace(&ns.unwrap_or_default())
        .iter()
        .map(|b| ObjectKey::of(b.as_ref()))
        .collect()
}

fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    sel.is_some_and(|s| selector_matches(s, pod.labels()))
}

/// A value or a percentage of `total`, rounded up or down (upstream's
/// `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid type: string is not a percentage ({s:?})"))?;
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// True when the budget's arithmetic needs the controllers' scale.
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// (expected pods, desired healthy) from the spec, the number of matching
/// pods and, when `needs_scale`, the expected scale.
pub fn budget(
    spec: &PodDisruptionBudgetSpec,
    matching: i32,
    scale: i32,
) -> Result<(i32, i32), String> {
    if let Some(max) = &spec.max_unavailable {
        let unavailable = scaled_value(max, scale, true)?;
        return Ok((scale, (scale - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((matching, *n)),
        Some(min) => Ok((scale, scaled_value(min, scale, true)?)),
        None => Ok((0, 0)),
    }
}

/// Disruptions left; none while no pod is expected.
pub fn disruptions_allowed(healthy: i32, desired: i32, expected: i32) -> i32 {
    if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    }
}

/// What became of the evictions `status.disruptedPods` lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Disruptions {
    /// Still awaited: the pod is present, not yet deleting, and was evicted
    /// less than DELETION_TIMEOUT ago. It does not count as healthy.
    pub awaited: BTreeMap<String, Time>,
    /// When the first awaited entry expires.
    pub recheck: Option<Timestamp>,
    /// Pods evicted longer than DELETION_TIMEOUT ago that are still not deleting.
    pub expired: Vec<String>,
}

/// Sorts the listed evictions (upstream's `buildDisruptedPodMap`): entries
/// of pods that are gone or being deleted are dropped, as are expired ones.
pub fn awaited_disruptions(
    listed: Option<&BTreeMap<String, Time>>,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> Disruptions {
    let mut out = Disruptions::default();
    let Some(listed) = listed else {
        return out;
    };
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let Some(at) = listed.get(&p.name_any()) else {
            continue;
        };
        let expires = at.0 + SignedDuration::from_secs(DELETION_TIMEOUT);
        if expires >= now {
            out.recheck = Some(out.recheck.map_or(expires, |r| r.min(expires)));
            out.awaited.insert(p.name_any(), at.clone());
        } else {
            out.expired.push(p.name_any());
        }
    }
    out
}

/// Ready pods that are neither deleting nor awaiting an eviction.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| is_ready(p))
        .count() as i32
}

/// Sets the DisruptionAllowed condition (transition time kept while its status holds).
fn set_condition(
    conds: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let now = Time(Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == DISRUPTION_ALLOWED) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// Why the expected pods could not be counted.
enum Failure {
    /// Reading a controller's scale failed; retried with back-off.
    Api(ControllerError),
    /// A pod's controller has no scale; waits for a change.
    Config(String),
}

/// Reconciles one budget.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(pdb) = ctx.pdbs.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let spec = pdb.spec.clone().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .cache()
        .list_namespace(&key.namespace)
        .into_iter()
        .filter(|p| selects(&pdb, p))
        .collect();
    let counted = if needs_scale(&spec) {
        expected_scale(&ctx, &key.namespace, &pods).await
    } else {
        Ok((0, 0))
    };
    let arithmetic = counted.and_then(|(scale, unmanaged)| {
        budget(&spec, pods.len() as i32, scale)
            .map(|b| (b, unmanaged))
            .map_err(Failure::Config)
    });
    let ((expected, desired), unmanaged) = match arithmetic {
        Ok(v) => v,
        Err(Failure::Api(e)) => {
            fail_safe(&ctx, &pdb, &e.to_string()).await?;
            return Err(e);
        }
        Err(Failure::Config(msg)) => {
            fail_safe(&ctx, &pdb, &msg).await?;
            return Ok(Action::AwaitChange);
        }
    };
    let now = Timestamp::now();
    let old = pdb.status.clone().unwrap_or_default();
    let Disruptions {
        awaited: disrupted,
        recheck,
        expired,
    } = awaited_disruptions(old.disrupted_pods.as_ref(), &pods, now);
    for name in &expired {
        if let Some(p) = pods.iter().find(|p| p.name_any() == *name) {
            let msg = format!(
                "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                key.namespace,
                pdb.name_any()
            );
            tracing::info!(pod = %format!("{}/{name}", key.namespace), budget = %pdb.name_any(), "evicted pod was not deleted in time; counting it again");
            ctx.events(EVENT_SOURCE)
                .record(p.as_ref(), "Warning", "NotDeleted", &msg);
        }
    }
    let healthy = count_healthy(&pods, &disrupted);
    let allowed = disruptions_allowed(healthy, desired, expected);
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions.clone(),
    };
    let (cond, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        cond,
        reason,
        "",
        status.observed_generation,
    );
    if unmanaged > 0 && old.expected_pods != expected {
        let msg = format!(
            "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged; each counts as one expected pod. To be explicit, set \".spec.minAvailable\" to an integer.",
            spec.selector
                .as_ref()
                .map(super::runtime::selector::selector_to_query)
                .unwrap_or_default()
        );
        ctx.events(EVENT_SOURCE)
            .record(pdb.as_ref(), "Warning", "UnmanagedPods", &msg);
    }
    write_status(&ctx, &pdb, status).await?;
    Ok(recheck.map_or(Action::AwaitChange, |at| {
        let left = at.duration_since(now).as_millis().max(0) as u64;
        Action::RequeueAfter(Duration::from_millis(left + 100))
    }))
}

/// The summed scale of the pods' controllers and the number of pods with
/// none (each counted as one).
async fn expected_scale(ctx: &Ctx, ns: &str, pods: &[Arc<Pod>]) -> Result<(i32, i32), Failure> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen: Vec<String> = Vec::new();
    let mut unmanaged = 0;
    for p in pods {
        let Some(owner) = controller_of(p.as_ref()) else {
            unmanaged += 1;
            continue;
        };
        if seen.contains(&owner.uid) {
            continue;
        }
        seen.push(owner.uid.clone());
        match controller_scale(ctx, ns, owner).await? {
            Some((uid, n)) => {
                scales.insert(uid, n);
            }
            None => {
                return Err(Failure::Config(format!(
                    "found no controllers for pod {:?}",
                    p.name_any()
                )));
            }
        }
    }
    Ok((scales.values().sum::<i32>() + unmanaged, unmanaged))
}

/// (uid, replicas) of the controller a pod's owner reference leads to: a
/// ReplicaSet's Deployment when it has one, else anything with a `/scale`.
async fn controller_scale(
    ctx: &Ctx,
    ns: &str,
    owner: &OwnerReference,
) -> Result<Option<(String, i32)>, Failure> {
    if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
        let Some(rs) = ctx
            .replica_sets
            .cache()
            .get(&ObjectKey::new(ns, owner.name.clone()))
        else {
            return Ok(None);
        };
        if rs.uid().as_deref() != Some(owner.uid.as_str()) {
            return Ok(None);
        }
        if let Some(d) = controller_of(rs.as_ref()).filter(|d| d.kind == "Deployment") {
            let deployment = ctx
                .deployments
                .cache()
                .get(&ObjectKey::new(ns, d.name.clone()));
            return Ok(deployment
                .filter(|dep| dep.uid().as_deref() == Some(d.uid.as_str()))
                .map(|dep| {
                    (
                        d.uid.clone(),
                        dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                }));
        }
        return Ok(Some((
            owner.uid.clone(),
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        )));
    }
    let Some(ar) = scale::scalable(&owner.api_version, &owner.kind) else {
        return Ok(None);
    };
    let got = ignore_not_found(scale::get(&ctx.client, ns, &ar, &owner.name).await)
        .map_err(Failure::Api)?;
    Ok(got
        .filter(|s| s.metadata.uid.as_deref() == Some(owner.uid.as_str()))
        .map(|s| {
            (
                owner.uid.clone(),
                s.spec.and_then(|s| s.replicas).unwrap_or(0),
            )
        }))
}

/// Reports a budget that could not be computed as allowing no disruption.
async fn fail_safe(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    message: &str,
) -> Result<(), ControllerError> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let was_failing = conds
        .iter()
        .any(|c| c.type_ == DISRUPTION_ALLOWED && c.reason == "SyncFailed");
    set_condition(
        conds,
        "False",
        "SyncFailed",
        message,
        status.observed_generation,
    );
    if !was_failing {
        let msg = format!("Failed to calculate the number of expected pods: {message}");
        ctx.events(EVENT_SOURCE)
            .record(pdb, "Warning", "CalculateExpectedPodCountFailed", &msg);
    }
    write_status(ctx, pdb, status).await
}

/// Writes the status through the status subresource unless it is unchanged.
async fn write_status(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), ControllerError> {
    if pdb.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut next = pdb.clone();
    next.status = Some(status);
    let api: Api<PodDisruptionBudget> =
        Api::namespaced(ctx.client.clone(), &pdb.namespace().unwrap_or_default());
    let written = api
        .replace_status(&pdb.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.pdbs
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::api::ObjectMeta;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled_value(&pct("50%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&pct("50%"), 3, false), Ok(1));
        assert_eq!(scaled_value(&pct("100%"), 7, true), Ok(7));
        assert_eq!(scaled_value(&pct("0%"), 7, true), Ok(0));
        assert_eq!(scaled_value(&IntOrString::Int(2), 7, true), Ok(2));
        assert!(scaled_value(&pct("two"), 7, true).is_err());
    }

    #[test]
    fn budgets_from_min_available_and_max_unavailable() {
        let spec = |min: Option<IntOrString>, max: Option<IntOrString>| PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        };
        // minAvailable: 2 counts the matching pods, not the scale.
        let s = spec(Some(IntOrString::Int(2)), None);
        assert!(!needs_scale(&s));
        assert_eq!(budget(&s, 3, 0), Ok((3, 2)));
        // minAvailable: 50% of a scale of 5 → 3 (rounded up).
        let s = spec(Some(pct("50%")), None);
        assert!(needs_scale(&s));
        assert_eq!(budget(&s, 4, 5), Ok((5, 3)));
        // maxUnavailable: 30% of 5 → 2 (rounded up) → 3 healthy needed.
        let s = spec(None, Some(pct("30%")));
        assert_eq!(budget(&s, 5, 5), Ok((5, 3)));
        // maxUnavailable: 1 of 0 expected → none desired, none allowed.
        let s = spec(None, Some(IntOrString::Int(1)));
        assert_eq!(budget(&s, 0, 0), Ok((0, 0)));
        assert_eq!(disruptions_allowed(0, 0, 0), 0);
        assert_eq!(disruptions_allowed(3, 2, 3), 1);
        assert_eq!(disruptions_allowed(1, 2, 3), 0);
        assert_eq!(budget(&spec(None, None), 4, 0), Ok((0, 0)));
    }

    #[test]
    fn empty_selectors_pick_every_pod_and_missing_ones_none() {
        let budget = |selector: Option<LabelSelector>| PodDisruptionBudget {
            spec: Some(PodDisruptionBudgetSpec {
                selector,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut p = (*pod("a", true, false)).clone();
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        assert!(selects(&budget(Some(LabelSelector::default())), &p));
        assert!(!selects(&budget(None), &p));
        let other = LabelSelector {
            match_labels: Some([("app".to_string(), "db".to_string())].into()),
            ..Default::default()
        };
        assert!(!selects(&budget(Some(other)), &p));
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then(|| Time(Timestamp::now())),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn healthy_skips_unready_deleting_and_recently_evicted() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let pods = [
            pod("a", true, false),
            pod("b", true, false),
            pod("c", false, false),
            pod("d", true, true),
            pod("e", true, false),
        ];
        let listed: BTreeMap<String, Time> = [
            ("b".to_string(), Time(now - SignedDuration::from_secs(30))),
            ("e".to_string(), Time(now - SignedDuration::from_secs(600))),
            ("gone".to_string(), Time(now)),
        ]
        .into();
        let d = awaited_disruptions(Some(&listed), &pods, now);
        assert_eq!(
            d.awaited.keys().collect::<Vec<_>>(),
            ["b"],
            "stale and vanished entries are dropped"
        );
        assert_eq!(d.expired, ["e"]);
        assert_eq!(d.recheck, Some(now + SignedDuration::from_secs(90)));
        assert_eq!(count_healthy(&pods, &d.awaited), 2, "a and e");
        assert_eq!(
            awaited_disruptions(None, &pods, now),
            Disruptions::default()
        );
    }
}
