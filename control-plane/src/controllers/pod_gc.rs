//! PodGC, as kube-controller-manager's: every 20 s (and, at most once a
//! second, when pods finish; at once when nodes go away) it force-deletes (grace 0) the oldest terminated
//! (Succeeded/Failed) pods beyond `terminated_pod_gc_threshold` (evicted
//! ones first; 0 disables), pods bound to nodes that no longer exist (after
//! a 40 s quarantine and a live GET confirming the node is gone, first
//! marked Failed with a DisruptionTarget condition), terminating pods that
//! were never scheduled, and terminating pods on not-ready nodes tainted
//! `node.kubernetes.io/out-of-service`. The quarantine clock is kept in
//! memory: a restart grants missing nodes a fresh grace, as upstream.
//! Finished Jobs' pods go with their Job (ttlSecondsAfterFinished, job.rs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::pods::phase;
use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// How often the collector sweeps.
const GC_PERIOD: Duration = Duration::from_secs(20);
/// How soon after a pod finishes the sweep that may collect it runs.
const FINISHED_SWEEP_DELAY: Duration = Duration::from_secs(1);
/// How long a node must have been missing before its pods are deleted.
const QUARANTINE: Duration = Duration::from_secs(40);
/// Most pods deleted in one sweep; the next sweep follows at once.
const BURST: usize = 500;
/// The taint that lets terminating pods of a dead node go.
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// When each missing node was first found missing, by this process's clock.
#[derive(Default)]
pub struct Quarantine {
    missing: Mutex<HashMap<String, Instant>>,
}

impl Quarantine {
    /// Records the currently missing nodes (forgetting the others); returns
    /// those missing for at least `QUARANTINE` and the wait until the next.
    fn observe(&self, missing: &HashSet<String>, now: Instant) -> (Vec<String>, Option<Duration>) {
        let mut seen = self.missing.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|n, _| missing.contains(n));
        let (mut due, mut wait) = (Vec::new(), None::<Duration>);
        for n in missing {
            let since = *seen.entry(n.clone()).or_insert(now);
            let age = now.saturating_duration_since(since);
            if age >= QUARANTINE {
                due.push(n.clone());
            } else {
                let left = QUARANTINE - age;
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
        }
        due.sort();
        (due, wait)
    }

    fn forget(&self, node: &str) {
        self.missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }
}

/// The single work item: one sweep over every pod.
fn sweep() -> ObjectKey {
    ObjectKey::cluster("pod-gc")
}

fn terminated(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// Subscribes the collector to pods finishing or being deleted unscheduled, and to node deletions.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    // A sweep reads every pod, so finishing pods (thousands a second when
    // short Jobs run) schedule at most one sweep per FINISHED_SWEEP_DELAY.
    let sweep_scheduled = Arc::new(AtomicBool::new(false));
    let sweep_soon = {
        let queue = queue.clone();
        move || {
            if sweep_scheduled.swap(true, Ordering::AcqRel) {
                return;
            }
            let (queue, scheduled) = (queue.clone(), sweep_scheduled.clone());
            tokio::spawn(async move {
                tokio::time::sleep(FINISHED_SWEEP_DELAY).await;
                scheduled.store(false, Ordering::Release);
                queue.add(sweep());
            });
        }
    };
    ctx.pods
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { old, new } => {
                let newly_done = terminated(new) && old.as_ref().is_none_or(|o| !terminated(o));
                let unscheduled_deleting =
                    new.metadata.deletion_timestamp.is_some() && node_name(new).is_none();
                if unscheduled_deleting {
                    return vec![sweep()];
                }
                if newly_done {
                    sweep_soon();
                }
                Vec::new()
            }
            Change::Delete(_) => Vec::new(),
            Change::Resync => vec![sweep()],
        });
    ctx.nodes
        .feed(queue.clone(), shutdown.clone(), |c| match c {
            Change::Upsert { .. } => Vec::new(),
            Change::Delete(_) | Change::Resync => vec![sweep()],
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        queue.add(sweep());
        run_workers("pod-gc", queue, 1, ctx, reconcile, sd).await
    })
}

/// Terminated pods to delete so that at most `threshold` remain: evicted
/// first, then oldest (then by name). A threshold of 0 keeps them all.
pub fn excess_terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| terminated(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    let evicted = |p: &Pod| {
        phase(p) == "Failed"
            && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
    };
    done.sort_by_key(|p| {
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        (!evicted(p), created, p.name_any())
    });
    let n = done.len() - threshold;
    done.truncate(n);
    done
}

fn out_of_service(node: &Node) -> bool {
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == OUT_OF_SERVICE && t.effect == "NoExecute")
        });
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    tainted && !ready
}

/// One sweep.
pub async fn reconcile(_key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let pods = ctx.pods.cache().list();
    let mut doomed: Vec<(Arc<Pod>, Option<&'static str>)> =
        excess_terminated(&pods, ctx.config.terminated_pod_gc_threshold)
            .into_iter()
            .map(|p| (p, None))
            .collect();
    if !doomed.is_empty() {
        tracing::info!(
            count = doomed.len(),
            threshold = ctx.config.terminated_pod_gc_threshold,
            "deleting terminated pods over the threshold"
        );
    }
    // Pods on missing nodes, once the node has been gone long enough and the API confirms it.
    let nodes: HashSet<String> = ctx
        .nodes
        .cache()
        .keys()
        .into_iter()
        .map(|k| k.name)
        .collect();
    let mut by_node: BTreeMap<&str, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in &pods {
        if let Some(n) = node_name(p).filter(|n| !nodes.contains(*n)) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let missing: HashSet<String> = by_node.keys().map(|n| n.to_string()).collect();
    let (due, wait) = ctx.orphan_nodes.observe(&missing, Instant::now());
    let node_api: Api<Node> = Api::all(ctx.client.clone());
    for n in due {
        if ignore_not_found(node_api.get(&n).await)?.is_some() {
            ctx.orphan_nodes.forget(&n);
            continue;
        }
        let orphans = by_node.get(n.as_str()).into_iter().flatten();
        tracing::info!(node = %n, "node no longer exists; deleting its pods");
        doomed.extend(orphans.map(|p| ((*p).clone(), Some("PodGC: node no longer exists"))));
    }
    for p in &pods {
        if p.metadata.deletion_timestamp.is_none() || terminated(p) {
            continue;
        }
        let gone = match node_name(p) {
            None => true,
            Some(n) => ctx
                .nodes
                .cache()
                .get(&ObjectKey::cluster(n))
                .is_some_and(|node| out_of_service(&node)),
        };
        if gone {
            doomed.push((p.clone(), None));
        }
    }
    let mut seen = HashSet::new();
    doomed.retain(|(p, _)| seen.insert(ObjectKey::of(p.as_ref())));
    let more = doomed.len() > BURST;
    doomed.truncate(BURST);
    let results = join_all(doomed.iter().map(|(p, why)| force_delete(&ctx, p, *why))).await;
    let failed = results.into_iter().filter_map(Result::err).next();
    if let Some(e) = failed {
        return Err(e);
    }
    let next = if more {
        Duration::from_millis(100)
    } else {
        wait.map_or(GC_PERIOD, |w| w.min(GC_PERIOD))
    };
    Ok(Action::RequeueAfter(next))
}

/// Marks a pod Failed (with a DisruptionTarget condition when `why` is
/// given) unless it already finished, then deletes it with no grace period.
async fn force_delete(ctx: &Ctx, pod: &Pod, why: Option<&str>) -> Result<(), ControllerError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    if !terminated(pod) {
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Some(message) = why {
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(Timestamp::now())),
                ..Default::default()
            });
        }
        let patch = json!({"status": {"phase": "Failed", "conditions": conditions}});
        ignore_not_found(
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )?;
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    ignore_not_found(api.delete(&name, &dp).await.map(|_| ()))?;
    tracing::info!(pod = %format!("{}/{name}", pod.namespace().unwrap_or_default()), "PodGC force-deleted the pod");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use kube::api::ObjectMeta;

    fn pod(name: &str, phase: &str, created: i64, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    Timestamp::from_second(1_700_000_000 + created).unwrap(),
                )),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(Into::into),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn oldest_terminated_pods_over_the_threshold_go_first() {
        let pods = [
            pod("run", "Running", 0, None),
            pod("old", "Succeeded", 1, None),
            pod("new", "Failed", 9, None),
            pod("mid", "Succeeded", 5, None),
            pod("evicted", "Failed", 8, Some("Evicted")),
        ];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(excess_terminated(&pods, 2)), ["evicted", "old"]);
        assert_eq!(names(excess_terminated(&pods, 4)), Vec::<String>::new());
        assert_eq!(
            names(excess_terminated(&pods, 0)),
            Vec::<String>::new(),
            "0 disables"
        );
        assert_eq!(excess_terminated(&pods, 1).len(), 3);
    }

    #[test]
    fn quarantine_waits_before_releasing_a_missing_node() {
        let q = Quarantine::default();
        let t0 = Instant::now();
        let missing: HashSet<String> = ["n1".to_string()].into();
        let (due, wait) = q.observe(&missing, t0);
        assert!(due.is_empty());
        assert_eq!(wait, Some(QUARANTINE));
        let (due, _) = q.observe(&missing, t0 + QUARANTINE);
        assert_eq!(due, ["n1"]);
        // A node that came back is forgotten; missing again starts over.
        q.observe(&HashSet::new(), t0 + QUARANTINE);
        let (due, _) = q.observe(&missing, t0 + QUARANTINE * 2);
        assert!(due.is_empty());
    }
}
