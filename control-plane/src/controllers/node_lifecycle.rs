//! The node lifecycle controller: watches each node's heartbeat (its Lease
//! in `kube-node-lease` and its Ready condition), marks the node's
//! conditions Unknown after the grace period (default 40 s), keeps the
//! `not-ready`/`unreachable` NoSchedule+NoExecute taints in line with the
//! Ready condition, and evicts pods from NoExecute-tainted nodes once their
//! tolerationSeconds run out (when a pod has no toleration of its own, the
//! `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`
//! of `DefaultTolerationSeconds`, 300 s each; skiff applies them here
//! rather than writing the tolerations into pods at admission).
//! Heartbeat ages are judged by this process's clock when it observes a
//! change, as kube-controller-manager does; a restart grants a fresh grace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::pods::is_active;
use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};
use crate::scheduler::plugins::taint_toleration::toleration_matches;

/// Taint for nodes whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint for nodes whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// How long a pod without a matching toleration stays on a node tainted
/// not-ready or unreachable (kube-apiserver's DefaultTolerationSeconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    pub not_ready: i64,
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        Self {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

/// When each node's heartbeat last changed, by our clock.
#[derive(Default)]
pub struct Heartbeats {
    seen: Mutex<HashMap<String, (String, Instant)>>,
}

impl Heartbeats {
    /// Records the current heartbeat value; returns how long it has been unchanged.
    pub fn observe(&self, node: &str, value: String) -> Duration {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen
            .entry(node.to_string())
            .or_insert_with(|| (value.clone(), Instant::now()));
        if entry.0 != value {
            *entry = (value, Instant::now());
        }
        entry.1.elapsed()
    }

    fn forget(&self, node: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }
}

/// Subscribes the controller to nodes, node leases and pods.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.nodes.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.nodes.cache().clone();
    ctx.node_leases
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { new, .. } => vec![ObjectKey::cluster(new.name_any())],
            Change::Delete(l) => vec![ObjectKey::cluster(l.name_any())],
            Change::Resync => cache.keys(),
        });
    let cache = ctx.nodes.cache().clone();
    ctx.pods
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { new, .. } => new
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| {
                    cache
                        .get(&ObjectKey::cluster(n.clone()))
                        .is_some_and(|node| {
                            node.spec
                                .as_ref()
                                .and_then(|s| s.taints.as_ref())
                                .is_some_and(|t| t.iter().any(|t| t.effect == "NoExecute"))
                        })
                })
                .map(ObjectKey::cluster)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.nodes.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("node-lifecycle", queue, workers, ctx, reconcile, sd).await
    })
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// The not-ready/unreachable taints a node with this Ready status should carry.
pub fn condition_taints(ready: Option<&str>, existing: &[Taint], now: Timestamp) -> Vec<Taint> {
    let key = match ready {
        Some("True") | None => return Vec::new(),
        Some("False") => NOT_READY,
        Some(_) => UNREACHABLE,
    };
    ["NoSchedule", "NoExecute"]
        .iter()
        .map(|effect| {
            existing
                .iter()
                .find(|t| t.key == key && t.effect == *effect)
                .cloned()
                .unwrap_or_else(|| Taint {
                    key: key.into(),
                    effect: (*effect).into(),
                    time_added: (*effect == "NoExecute").then_some(Time(now)),
                    value: None,
                })
        })
        .collect()
}

/// When the pod must leave a node with these NoExecute taints (None: never).
pub fn eviction_deadline(
    pod: &Pod,
    taints: &[Taint],
    defaults: DefaultTolerationSeconds,
    now: Timestamp,
) -> Option<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut deadline: Option<i64> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = t.time_added.as_ref().map_or(now, |t| t.0).as_second();
        let secs = match tolerations.iter().find(|tol| toleration_matches(tol, t)) {
            Some(tol) => match tol.toleration_seconds {
                Some(s) => s.max(0),
                None => continue,
            },
            None if t.key == NOT_READY => defaults.not_ready,
            None if t.key == UNREACHABLE => defaults.unreachable,
            None => 0,
        };
        let d = added + secs;
        deadline = Some(deadline.map_or(d, |x| x.min(d)));
    }
    deadline
}

/// Reconciles one node.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let period = ctx.config.node_monitor_period;
    let Some(node) = ctx.nodes.cache().get(&key) else {
        ctx.heartbeats.forget(&key.name);
        return Ok(Action::AwaitChange);
    };
    let lease = ctx
        .node_leases
        .cache()
        .get(&ObjectKey::new("kube-node-lease", key.name.clone()));
    let renew = lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string());
    let posted = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string());
    let age = ctx
        .heartbeats
        .observe(&key.name, format!("{renew:?}|{posted:?}"));
    let grace = ctx.config.node_monitor_grace_period;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let ready = ready_status(&node);
    let now = Timestamp::now();
    if age > grace && ready.as_deref() != Some("Unknown") {
        let mut next = (*node).clone();
        let status = next.status.get_or_insert_with(Default::default);
        let conds = status.conditions.get_or_insert_with(Vec::new);
        if !conds.iter().any(|c| c.type_ == "Ready") {
            conds.push(k8s_openapi::api::core::v1::NodeCondition {
                type_: "Ready".into(),
                ..Default::default()
            });
        }
        for c in conds.iter_mut() {
            if c.status != "Unknown" {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
        }
        let written = api
            .replace_status(&key.name, &PostParams::default(), &next)
            .await?;
        tracing::warn!(node = %key.name, "node stopped heartbeating; marked Unknown");
        ctx.events("node-controller").record(
            &written,
            "Normal",
            "NodeNotReady",
            &format!("Node {} status is now: NodeNotReady", key.name),
        );
        ctx.nodes.cache().insert(key.clone(), Arc::new(written));
        return Ok(Action::RequeueAfter(Duration::from_millis(10)));
    }
    // Taints follow the Ready condition (a node that never reported gets none until stale).
    let existing = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want = condition_taints(ready.as_deref(), &existing, now);
    let (managed, mut others): (Vec<Taint>, Vec<Taint>) = existing
        .iter()
        .cloned()
        .partition(|t| t.key == NOT_READY || t.key == UNREACHABLE);
    let node = if managed != want {
        let mut next = (*node).clone();
        others.extend(want);
        next.spec.get_or_insert_with(Default::default).taints =
            (!others.is_empty()).then_some(others);
        let written = api
            .replace(&key.name, &PostParams::default(), &next)
            .await?;
        tracing::info!(node = %key.name, ready = ?ready, "updated condition taints");
        ctx.nodes
            .cache()
            .insert(key.clone(), Arc::new(written.clone()));
        Arc::new(written)
    } else {
        node
    };
    let next_check = evict(&ctx, &node, now).await?;
    let wait = next_check.map_or(period, |s| {
        Duration::from_secs(s.max(0) as u64 + 1).min(period)
    });
    Ok(Action::RequeueAfter(wait.max(Duration::from_millis(200))))
}

/// Evicts pods whose toleration ran out; returns seconds until the next deadline.
async fn evict(ctx: &Ctx, node: &Node, now: Timestamp) -> Result<Option<i64>, ControllerError> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if !taints.iter().any(|t| t.effect == "NoExecute") {
        return Ok(None);
    }
    let name = node.name_any();
    let unreachable = taints.iter().any(|t| t.key == UNREACHABLE);
    let pods = ctx.pods.cache().filter(|p| {
        is_active(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
    });
    let mut next: Option<i64> = None;
    for p in pods {
        let Some(deadline) =
            eviction_deadline(&p, &taints, ctx.config.default_toleration_seconds, now)
        else {
            continue;
        };
        let left = deadline - now.as_second();
        if left > 0 {
            next = Some(next.map_or(left, |n| n.min(left)));
            continue;
        }
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let dp = if unreachable {
            DeleteParams::default().grace_period(0)
        } else {
            DeleteParams::default()
        };
        tracing::info!(pod = %format!("{ns}/{}", p.name_any()), node = %name, "evicting pod from tainted node");
        ctx.events("taint-eviction-controller").record(
            p.as_ref(),
            "Normal",
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {ns}/{}", p.name_any()),
        );
        ignore_not_found(api.delete(&p.name_any(), &dp).await.map(|_| ()))?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};

    #[test]
    fn taints_follow_ready() {
        let now = Timestamp::now();
        assert!(condition_taints(Some("True"), &[], now).is_empty());
        let t = condition_taints(Some("Unknown"), &[], now);
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.key == UNREACHABLE));
        assert_eq!(condition_taints(Some("False"), &[], now)[0].key, NOT_READY);
    }

    #[test]
    fn eviction_deadlines() {
        let now = Timestamp::now();
        let taints = condition_taints(Some("Unknown"), &[], now);
        let defaults = DefaultTolerationSeconds {
            not_ready: 30,
            unreachable: 300,
        };
        let plain = Pod::default();
        assert_eq!(
            eviction_deadline(&plain, &taints, defaults, now),
            Some(now.as_second() + 300)
        );
        let not_ready = condition_taints(Some("False"), &[], now);
        assert_eq!(
            eviction_deadline(&plain, &not_ready, defaults, now),
            Some(now.as_second() + 30)
        );
        let tolerant = Pod {
            spec: Some(PodSpec {
                tolerations: Some(vec![Toleration {
                    key: Some(UNREACHABLE.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(5),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            eviction_deadline(&tolerant, &taints, defaults, now),
            Some(now.as_second() + 5)
        );
        let forever = Pod {
            spec: Some(PodSpec {
                tolerations: Some(vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(eviction_deadline(&forever, &taints, defaults, now), None);
    }
}
