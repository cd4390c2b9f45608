//! What a StatefulSet needs next, worked out from its spec, its revisions
//! and its pods, as upstream's StatefulSet control loop: the identity of
//! each ordinal (`<set>-<ordinal>` pods with the pod-name and pod-index
//! labels, hostname and subdomain, one PVC per volumeClaimTemplate named
//! `<template>-<set>-<ordinal>`); the steps of one reconcile (create missing
//! ordinals, replace finished pods, delete condemned ordinals from the
//! highest, roll outdated pods from the highest ordinal down to the
//! partition), one at a time under OrderedReady; and the status counts.
//! Pure; `statefulset.rs` does the I/O.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::controller_revision::REVISION_HASH;
use super::pods::{is_available, is_ready, owner_ref, phase};

/// Label with the pod's own name (what a per-pod Service selects).
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The ordinal of a pod named `<set>-<ordinal>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// The revision a pod was created from (its `controller-revision-hash`).
pub fn pod_revision(p: &Pod) -> Option<&str> {
    p.labels().get(REVISION_HASH).map(String::as_str)
}

/// The pod of `ordinal` from `template` (of the revision named `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = pod_name(&set.name_any(), ordinal);
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME.into(), name.clone());
    labels.insert(POD_INDEX.into(), ordinal.to_string());
    labels.insert(REVISION_HASH.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for claim in claim_templates(set) {
        let tmpl = claim.name_any();
        let source = PersistentVolumeClaimVolumeSource {
            claim_name: claim_name(&tmpl, &set.name_any(), ordinal),
            read_only: None,
        };
        let volume = Volume {
            name: tmpl.clone(),
            persistent_volume_claim: Some(source),
            ..Default::default()
        };
        match volumes.iter_mut().find(|v| v.name == tmpl) {
            Some(v) => *v = volume,
            None => volumes.push(volume),
        }
    }
    if volumes.is_empty() {
        spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// True when the retention policy says `when` (WhenDeleted or WhenScaled) Delete.
pub fn deletes_claims(set: &StatefulSet, when_scaled: bool) -> bool {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let v = policy.and_then(|p| {
        if when_scaled {
            p.when_scaled.as_deref()
        } else {
            p.when_deleted.as_deref()
        }
    });
    v == Some("Delete")
}

/// A non-controller owner reference (what a retention policy puts on claims).
pub fn claim_owner<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..owner_ref(owner)
    }
}

/// The claims of `ordinal`: the templates with the selector's labels; owned
/// by the set when whenDeleted is Delete.
pub fn new_claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut c = t.clone();
            c.metadata.name = Some(claim_name(&t.name_any(), &set.name_any(), ordinal));
            c.metadata.namespace = set.namespace();
            c.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(selector.clone());
            c.metadata.owner_references =
                deletes_claims(set, false).then(|| vec![claim_owner(set)]);
            c.status = None;
            c
        })
        .collect()
}

/// True when the pod carries its ordinal's identity labels.
pub fn identity_matches(set: &str, p: &Pod, ordinal: i32) -> bool {
    let labels = p.labels();
    labels.get(POD_NAME) == Some(&pod_name(set, ordinal))
        && labels.get(POD_INDEX) == Some(&ordinal.to_string())
}

/// A StatefulSet's spec and revisions as the plan needs them.
#[derive(Debug, Clone)]
pub struct Params {
    pub set: String,
    pub replicas: i32,
    /// spec.ordinals.start.
    pub start: i32,
    /// podManagementPolicy OrderedReady: one pod at a time, in order.
    pub ordered: bool,
    pub min_ready_seconds: i32,
    /// updateStrategy OnDelete: pods are replaced only when deleted.
    pub on_delete: bool,
    /// Ordinals below this keep the current revision.
    pub partition: i32,
    pub current_revision: String,
    pub update_revision: String,
}

/// Which revision a new pod is created from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    Current,
    Update,
}

/// One write of a reconcile.
#[derive(Debug, Clone)]
pub enum Step {
    /// Create the claims and pod of an ordinal.
    Create(i32, Revision),
    /// Delete a finished or outdated pod (it is recreated once gone).
    Delete(Arc<Pod>),
    /// Delete the pod of an ordinal beyond replicas (scale down).
    Condemn(Arc<Pod>),
    /// Restore the identity labels of a pod.
    Relabel(Arc<Pod>, i32),
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn running_ready(p: &Pod) -> bool {
    phase(p) == "Running" && is_ready(p)
}

fn running_available(p: &Pod, min_ready: i32, now: Timestamp) -> bool {
    phase(p) == "Running" && is_available(p, min_ready, now)
}

fn healthy(p: &Pod) -> bool {
    running_ready(p) && !terminating(p)
}

impl Params {
    fn revision_for(&self, ordinal: i32) -> Revision {
        if !self.on_delete && ordinal < self.partition {
            Revision::Current
        } else {
            Revision::Update
        }
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && ordinal < self.start + self.replicas.max(0)
    }
}

/// The steps of one reconcile, in order (OrderedReady stops where it must wait).
pub fn plan(p: &Params, pods: &[Arc<Pod>], now: Timestamp) -> Vec<Step> {
    let mut slots: Vec<Option<&Arc<Pod>>> = vec![None; p.replicas.max(0) as usize];
    let mut condemned: Vec<(i32, &Arc<Pod>)> = Vec::new();
    for pod in pods {
        let Some(ord) = ordinal_of(&p.set, &pod.name_any()) else {
            continue;
        };
        if p.in_range(ord) {
            slots[(ord - p.start) as usize] = Some(pod);
        } else {
            condemned.push((ord, pod));
        }
    }
    condemned.sort_by_key(|(o, _)| Reverse(*o));
    let mut steps = Vec::new();
    let waits = |pod: &Pod| {
        terminating(pod) || !running_ready(pod) || !running_available(pod, p.min_ready_seconds, now)
    };
    for (i, slot) in slots.iter().enumerate() {
        let ord = p.start + i as i32;
        match slot {
            None => {
                steps.push(Step::Create(ord, p.revision_for(ord)));
                if p.ordered {
                    return steps;
                }
            }
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") => {
                if !terminating(pod) {
                    steps.push(Step::Delete((*pod).clone()));
                }
                if p.ordered {
                    return steps;
                }
            }
            Some(pod) if p.ordered && waits(pod) => return steps,
            Some(pod) if !identity_matches(&p.set, pod, ord) => {
                steps.push(Step::Relabel((*pod).clone(), ord));
            }
            Some(_) => {}
        }
    }
    // Scale down from the highest ordinal; under OrderedReady every lower
    // pod is healthy by now, and only the first unhealthy condemned pod may
    // go while unhealthy.
    let first_unhealthy = condemned.iter().find(|(_, c)| !healthy(c)).map(|(o, _)| *o);
    for (ord, pod) in &condemned {
        if terminating(pod) {
            if p.ordered {
                return steps;
            }
            continue;
        }
        if p.ordered && waits(pod) && Some(*ord) != first_unhealthy {
            return steps;
        }
        steps.push(Step::Condemn((*pod).clone()));
        if p.ordered {
            return steps;
        }
    }
    if p.on_delete {
        return steps;
    }
    // Roll from the highest ordinal down to the partition, one at a time.
    let slated = |pod: &Pod| {
        steps.iter().any(|s| match s {
            Step::Delete(d) => d.name_any() == pod.name_any(),
            _ => false,
        })
    };
    for (i, slot) in slots.iter().enumerate().rev() {
        let ord = p.start + i as i32;
        if ord < p.partition {
            break;
        }
        let Some(pod) = slot else { break };
        if pod_revision(pod) != Some(p.update_revision.as_str()) && !terminating(pod) {
            if !slated(pod) {
                steps.push(Step::Delete((*pod).clone()));
            }
            break;
        }
        if !healthy(pod) {
            break;
        }
    }
    steps
}

/// The counts of a StatefulSet's status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

/// Upstream's computeReplicaStatus over every pod of the set.
pub fn counts(p: &Params, pods: &[Arc<Pod>], now: Timestamp) -> Counts {
    let mut c = Counts::default();
    for pod in pods
        .iter()
        .filter(|q| ordinal_of(&p.set, &q.name_any()).is_some())
    {
        c.replicas += 1;
        if running_ready(pod) {
            c.ready += 1;
            c.available += i32::from(running_available(pod, p.min_ready_seconds, now));
        }
        if !terminating(pod) {
            let rev = pod_revision(pod);
            c.current += i32::from(rev == Some(p.current_revision.as_str()));
            c.updated += i32::from(rev == Some(p.update_revision.as_str()));
        }
    }
    c
}

#[cfg(test)]
#[path = "statefulset_plan_tests.rs"]
mod tests;
