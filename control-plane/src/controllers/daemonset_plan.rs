//! What a DaemonSet needs next, worked out from its template, the nodes and
//! its pods: which nodes should run (and may keep running) a daemon pod, as
//! upstream's NodeShouldRunDaemonPod (spec.nodeName, nodeSelector, required
//! node affinity, NoSchedule/NoExecute taints against the template's
//! tolerations plus the automatic daemon tolerations); the pod for a node
//! (pinned with a `metadata.name` matchFields node affinity so the default
//! scheduler binds it); which pods to create or delete; which old pods a
//! rolling update replaces now, or with maxSurge which nodes get their new
//! pod beside the old one and which old pods then go; and the status counts. Pure; `daemonset.rs`
//! does the I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::controller_revision::REVISION_HASH;
use super::pods::{is_available, is_ready, owner_ref, phase};
use super::runtime::selector::node_selector_matches;
use crate::scheduler::plugins::taint_toleration::tolerates;
use crate::scheduler::snapshot::NodeInfo;

/// Label carrying the DaemonSet's template generation on its pods.
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";
/// Annotation in which the API server of upstream records the template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Whether a node should run a daemon pod, and whether one already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub should_run: bool,
    pub should_continue: bool,
}

/// Adds upstream's automatic DaemonSet tolerations (replacing any with the
/// same key, effect, operator and value).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        let same = |o: &Toleration| {
            o.key == t.key
                && o.effect == t.effect
                && o.operator.as_deref().unwrap_or("Equal") == "Exists"
                && o.value.as_deref().unwrap_or("").is_empty()
        };
        match tolerations.iter_mut().find(|o| same(o)) {
            Some(o) => *o = t,
            None => tolerations.push(t),
        }
    }
}

/// The pod spec of a DaemonSet's template with the automatic tolerations.
pub fn daemon_pod_spec(template: &PodTemplateSpec) -> PodSpec {
    let mut spec = template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

/// Whether `node` should run a pod of `spec` (which carries the daemon tolerations).
pub fn node_fit(spec: &PodSpec, node: &Node) -> Fit {
    let none = Fit {
        should_run: false,
        should_continue: false,
    };
    let info = NodeInfo::from_node(node);
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != info.name)
    {
        return none;
    }
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| info.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if !selected || required.is_some_and(|r| !node_selector_matches(r, &info.name, &info.labels)) {
        return none;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    // Conditions the node does not carry as taints act as NoSchedule taints,
    // as the scheduler sees them.
    let untolerated: Vec<&Taint> = info
        .taints
        .iter()
        .chain(&info.condition_taints)
        .filter(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(tolerations, t)
        })
        .collect();
    Fit {
        should_run: untolerated.is_empty(),
        should_continue: !untolerated.iter().any(|t| t.effect == "NoExecute"),
    }
}

/// The node a daemon pod is bound or pinned to: spec.nodeName, else the
/// `metadata.name In [node]` matchFields of its required node affinity.
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.into());
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        })
}

/// Replaces the required node affinity with `metadata.name In [node]`
/// (upstream's ReplaceDaemonSetPodNodeNameNodeAffinity).
fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The template generation upstream's API server records, if any.
pub fn template_generation(ds: &DaemonSet) -> Option<String> {
    ds.annotations()
        .get(TEMPLATE_GENERATION_ANNOTATION)
        .cloned()
}

/// The daemon pod of `ds` for `node`, of the revision with `hash`.
pub fn pod_for_node(ds: &DaemonSet, spec: &PodSpec, node: &str, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let meta = template
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.into());
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION.into(), g);
    }
    let mut spec = spec.clone();
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// True when the pod runs the DaemonSet's current template.
pub fn is_updated(p: &Pod, hash: &str, generation: Option<&str>) -> bool {
    let labels = p.labels();
    (!hash.is_empty() && labels.get(REVISION_HASH).map(String::as_str) == Some(hash))
        || generation
            .is_some_and(|g| labels.get(TEMPLATE_GENERATION).map(String::as_str) == Some(g))
}

fn terminal(p: &Pod) -> bool {
    matches!(phase(p), "Failed" | "Succeeded")
}

/// Orders a node's daemon pods oldest first (bound pods before unbound).
pub fn oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        (
            p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none(),
            p.creation_timestamp().map(|t| t.0),
            p.name_any(),
        )
    });
}

/// What the manage step does: nodes to create a pod on, pods to delete,
/// and pods whose node is gone (to delete without grace: no kubelet will).
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    pub orphaned: Vec<Arc<Pod>>,
}

/// What `manage` needs to know when the rollout surges (maxSurge > 0).
pub struct Surge<'a> {
    /// True for a pod of the current revision.
    pub updated: &'a (dyn Fn(&Pod) -> bool + Sync),
    pub min_ready_seconds: i32,
    pub now: Timestamp,
}

/// Upstream's podsShouldBeOnNode over every node. Without surge a node
/// keeps only its oldest running pod; with surge it may keep its oldest old
/// pod beside its oldest new one until the new one is available (or the old
/// one stops being ready).
pub fn manage(
    fits: &BTreeMap<String, Fit>,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    surge: Option<&Surge>,
) -> Plan {
    let mut plan = Plan::default();
    for (node, fit) in fits {
        let pods = by_node.get(node);
        match pods {
            None if fit.should_run => plan.create.push(node.clone()),
            None => {}
            Some(pods) if fit.should_continue => {
                let mut running: Vec<Arc<Pod>> = Vec::new();
                for p in pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    if terminal(p) {
                        plan.delete.push(p.clone());
                    } else {
                        running.push(p.clone());
                    }
                }
                oldest_first(&mut running);
                match surge {
                    None => plan.delete.extend(running.into_iter().skip(1)),
                    Some(s) => plan.delete.extend(surge_extras(running, s)),
                }
            }
            Some(pods) => plan.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .cloned(),
            ),
        }
    }
    for (node, pods) in by_node {
        if !fits.contains_key(node) {
            plan.orphaned.extend(pods.iter().cloned());
        }
    }
    plan
}

/// The running pods of one node (oldest first) a surging node does not
/// keep: all but the oldest new and the oldest old pod, and that old pod
/// too once the new one is available or the old one is not ready.
fn surge_extras(running: Vec<Arc<Pod>>, s: &Surge) -> Vec<Arc<Pod>> {
    let (mut new, mut old): (Option<Arc<Pod>>, Option<Arc<Pod>>) = (None, None);
    let mut extras = Vec::new();
    for p in running {
        let slot = if (s.updated)(&p) { &mut new } else { &mut old };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            extras.push(p);
        }
    }
    if let (Some(new), Some(old)) = (&new, old)
        && (!is_ready(&old) || is_available(new, s.min_ready_seconds, s.now))
    {
        extras.push(old);
    }
    extras
}

/// A node's one new and one old live pod, either possibly missing.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// A node's live pods split into its one new and one old pod; None when it
/// has two of either (manage prunes those first).
fn split_updated<'a>(
    pods: &'a [Arc<Pod>],
    updated: &impl Fn(&Pod) -> bool,
) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if updated(p) { &mut new } else { &mut old };
        if slot.replace(p).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// What a surging RollingUpdate does now.
#[derive(Debug, Default)]
pub struct SurgeStep {
    /// Old pods to delete: replaced by an available new pod, or unavailable
    /// on a node that should no longer run them.
    pub delete: Vec<Arc<Pod>>,
    /// Nodes to start a new pod on beside the old one.
    pub create: Vec<String>,
}

/// Upstream's rollingUpdate with maxSurge: a node whose old pod is
/// unavailable gets its new pod at once; nodes with an available old pod
/// get one while fewer than `max_surge` nodes are surging (a new pod not yet
/// available, or excess pods); an old pod goes once the new pod beside it
/// is available. Old pods on nodes that should no longer run them go only
/// while more nodes are available than desired.
pub fn surge_rolling(
    fits: &BTreeMap<String, Fit>,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    updated: impl Fn(&Pod) -> bool,
    max_surge: i32,
    min_ready_seconds: i32,
    now: Timestamp,
) -> SurgeStep {
    let available = |p: &Pod| is_available(p, min_ready_seconds, now);
    let desired = fits.values().filter(|f| f.should_run).count();
    let mut step = SurgeStep::default();
    let (mut surging, mut num_available) = (0, 0usize);
    let (mut candidates, mut misplaced) = (Vec::new(), Vec::new());
    for (node, pods) in by_node {
        // Pods of nodes that are gone are manage's (deleted without grace).
        let Some(fit) = fits.get(node) else { continue };
        let Some((new, old)) = split_updated(pods, &updated) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(|p| available(p)) {
            num_available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !fit.should_run => {
                if available(old) {
                    misplaced.push(old.clone());
                } else {
                    step.delete.push(old.clone());
                }
            }
            (None, Some(old)) if !available(old) => step.create.push(node.clone()),
            (None, Some(_)) => candidates.push(node.clone()),
            (Some(new), Some(_)) if !available(new) => surging += 1,
            (Some(_), Some(old)) => step.delete.push(old.clone()),
        }
    }
    let spare = num_available.saturating_sub(desired).min(misplaced.len());
    step.delete.extend(misplaced.into_iter().take(spare));
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    step.create.extend(candidates.into_iter().take(room));
    step
}

/// The old pods a RollingUpdate deletes now (upstream's rollingUpdate
/// without surge): unavailable old pods at once, available ones while
/// fewer than `max_unavailable` daemon pods are unavailable.
pub fn rolling_deletions(
    fits: &BTreeMap<String, Fit>,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    updated: impl Fn(&Pod) -> bool,
    max_unavailable: i32,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    let available = |p: &Pod| is_available(p, min_ready_seconds, now);
    let mut unavailable = 0;
    let mut at_once = Vec::new();
    let mut candidates = Vec::new();
    let empty = Vec::new();
    for (node, _) in fits.iter().filter(|(_, f)| f.should_run) {
        let live: Vec<&Arc<Pod>> = by_node
            .get(node)
            .unwrap_or(&empty)
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = live.iter().partition(|p| updated(p));
        match (new.as_slice(), old.as_slice()) {
            ([new], []) => unavailable += i32::from(!available(new)),
            ([], [old]) if !available(old) => {
                at_once.push((*old).clone());
                unavailable += 1;
            }
            ([], [old]) if unavailable < max_unavailable => candidates.push((*old).clone()),
            ([], [_]) => {}
            // None yet, or several: manage creates or prunes; count it unavailable.
            _ => unavailable += 1,
        }
    }
    let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
    at_once.extend(candidates.into_iter().take(room));
    at_once
}

/// The counts of a DaemonSet's status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
    pub misscheduled: i32,
}

/// Upstream's status counts: per node that should run, its oldest pod.
pub fn counts(
    fits: &BTreeMap<String, Fit>,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    updated: impl Fn(&Pod) -> bool,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for (node, fit) in fits {
        let pods = by_node.get(node).filter(|p| !p.is_empty());
        if !fit.should_run {
            c.misscheduled += i32::from(pods.is_some());
            continue;
        }
        c.desired += 1;
        let Some(pods) = pods else { continue };
        c.current += 1;
        let mut pods = pods.clone();
        oldest_first(&mut pods);
        let p = &pods[0];
        if is_ready(p) {
            c.ready += 1;
            c.available += i32::from(is_available(p, min_ready_seconds, now));
        }
        c.updated += i32::from(updated(p));
    }
    c
}

#[cfg(test)]
#[path = "daemonset_plan_tests.rs"]
mod tests;
