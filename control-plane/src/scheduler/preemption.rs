//! Preemption (PostFilter): when a pod fits nowhere, find the node where
//! evicting the fewest lower-priority pods makes it fit, preferring victims
//! whose PodDisruptionBudgets allow the disruption; pods with
//! `preemptionPolicy: Never` never preempt. `plan` is pure; `spawn_execute`
//! sets `status.nominatedNodeName` and deletes the victims.
//!
//! Simplification: PreFilter state (affinity, spread counts) is computed on
//! the unmodified snapshot, so victims still count for those plugins.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::framework::{CycleState, Profile, Unschedulable, run_filters};
use super::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::controllers::runtime::EventRecorder;
use crate::controllers::runtime::selector::selector_matches;

/// A PodDisruptionBudget as preemption needs it.
#[derive(Clone, Debug)]
pub struct Budget {
    pub namespace: String,
    pub selector: LabelSelector,
    pub disruptions_allowed: i32,
}

/// Where to make room and whom to evict.
#[derive(Clone, Debug)]
pub struct Plan {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

fn fits(pod: &PodInfo, node: &NodeInfo, state: &CycleState, profile: &Profile) -> bool {
    run_filters(pod, node, state, profile).is_ok()
}

fn violations(victims: &[Arc<PodInfo>], budgets: &[Budget]) -> usize {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.disruptions_allowed).collect();
    let mut n = 0;
    for v in victims {
        let mut violated = false;
        for (b, a) in budgets.iter().zip(allowed.iter_mut()) {
            if b.namespace == v.namespace && selector_matches(&b.selector, &v.labels) {
                *a -= 1;
                violated |= *a < 0;
            }
        }
        n += usize::from(violated);
    }
    n
}

/// Victims on one node: remove every lower-priority pod, then give back as
/// many as still allow the pod to fit (highest priority first, PDB-protected
/// ones before the rest).
fn victims_on(
    pod: &PodInfo,
    node: &NodeInfo,
    state: &CycleState,
    profile: &Profile,
    budgets: &[Budget],
) -> Option<Vec<Arc<PodInfo>>> {
    let mut trial = node.clone();
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    for p in &lower {
        trial.remove_pod(&p.namespace, &p.name);
    }
    if !fits(pod, &trial, state, profile) {
        return None;
    }
    let protected = |p: &PodInfo| {
        budgets
            .iter()
            .any(|b| b.namespace == p.namespace && selector_matches(&b.selector, &p.labels))
    };
    lower.sort_by_key(|p| (!protected(p), std::cmp::Reverse(p.priority)));
    let mut victims = Vec::new();
    for p in lower {
        trial.add_pod(p.clone());
        if !fits(pod, &trial, state, profile) {
            trial.remove_pod(&p.namespace, &p.name);
            victims.push(p);
        }
    }
    Some(victims)
}

/// Chooses a node and victims, or `None` when preemption cannot help.
pub fn plan(
    pod: &PodInfo,
    snap: &Snapshot,
    profile: &Profile,
    failure: &Unschedulable,
    budgets: &[Budget],
) -> Option<Plan> {
    if pod.preemption_never || failure.preemption_candidates.is_empty() {
        return None;
    }
    let mut state = CycleState::default();
    for f in &profile.filters {
        f.pre_filter(pod, snap, &mut state).ok()?;
    }
    let mut best: Option<Plan> = None;
    for name in &failure.preemption_candidates {
        let Some(node) = snap.node(name) else {
            continue;
        };
        let Some(victims) = victims_on(pod, node, &state, profile, budgets) else {
            continue;
        };
        let candidate = Plan {
            node: name.clone(),
            pdb_violations: violations(&victims, budgets),
            victims,
        };
        let rank = |p: &Plan| {
            (
                p.pdb_violations,
                p.victims
                    .iter()
                    .map(|v| v.priority)
                    .max()
                    .unwrap_or(i32::MIN),
                p.victims.len(),
                p.victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
            )
        };
        if best.as_ref().is_none_or(|b| rank(&candidate) < rank(b)) {
            best = Some(candidate);
        }
    }
    best
}

/// Nominates the node for `pod` and deletes the victims.
pub fn spawn_execute(client: Client, events: EventRecorder, pod: Arc<Pod>, plan: Plan) {
    tokio::spawn(async move {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut nominated = (*pod).clone();
        nominated
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some(plan.node.clone());
        if let Err(e) = api
            .replace_status(&pod.name_any(), &PostParams::default(), &nominated)
            .await
        {
            tracing::debug!(error = %e, "could not set nominatedNodeName");
        }
        for v in &plan.victims {
            let vapi: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
            if let Ok(Some(victim)) = vapi.get_opt(&v.name).await {
                let msg = format!(
                    "Preempted by pod {} on node {}",
                    pod.metadata.uid.clone().unwrap_or_default(),
                    plan.node
                );
                events.record(&victim, "Normal", "Preempted", &msg);
            }
            tracing::info!(victim = %v.key(), node = %plan.node, preemptor = %format!("{ns}/{}", pod.name_any()), "preempting");
            if let Err(e) = vapi.delete(&v.name, &DeleteParams::default()).await {
                tracing::warn!(victim = %v.key(), error = %e, "could not delete preemption victim");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::schedule;
    use crate::scheduler::plugins::testutil::*;

    fn prio(mut p: PodInfo, priority: i32) -> Arc<PodInfo> {
        p.priority = priority;
        p.labels.insert("app".into(), p.name.clone());
        Arc::new(p)
    }

    fn cluster() -> Snapshot {
        let mut snap = Snapshot::default();
        snap.upsert_node(node("a", 2000, 8 << 30));
        snap.upsert_node(node("b", 2000, 8 << 30));
        // a: two small low-priority pods; b: one big low-priority pod.
        snap.place_pod(prio(pod_req("a1", 1000, 0), 0), "a");
        snap.place_pod(prio(pod_req("a2", 1000, 0), 0), "a");
        snap.place_pod(prio(pod_req("b1", 2000, 0), 5), "b");
        snap
    }

    #[test]
    fn fewest_victims_win() {
        let snap = cluster();
        let profile = Profile::default();
        let p = prio(pod_req("hi", 1000, 0), 100);
        let err = schedule(&p, &snap, &profile).unwrap_err();
        let plan = plan(&p, &snap, &profile, &err, &[]).unwrap();
        assert_eq!(plan.victims.len(), 1);
        // b's only victim has a higher priority than either of a's.
        assert_eq!(plan.node, "a");
    }

    #[test]
    fn budgets_steer_victims_and_never_policy_blocks() {
        let snap = cluster();
        let profile = Profile::default();
        let p = prio(pod_req("hi", 1000, 0), 100);
        let err = schedule(&p, &snap, &profile).unwrap_err();
        let budgets = vec![Budget {
            namespace: "default".into(),
            selector: LabelSelector {
                match_labels: Some([("app".to_string(), "a1".to_string())].into()),
                ..Default::default()
            },
            disruptions_allowed: 0,
        }];
        let plan = plan(&p, &snap, &profile, &err, &budgets).unwrap();
        assert_eq!(plan.pdb_violations, 0);
        assert!(plan.victims.iter().all(|v| v.name != "a1"), "{plan:?}");
        let mut never = (*p).clone();
        never.preemption_never = true;
        assert!(super::plan(&never, &snap, &profile, &err, &[]).is_none());
        let low = prio(pod_req("low", 1000, 0), 0);
        // Equal priority never preempts.
        assert!(super::plan(&low, &snap, &profile, &err, &[]).is_none());
    }
}
