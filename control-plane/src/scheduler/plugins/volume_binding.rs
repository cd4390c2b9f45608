//! VolumeBinding: a pod's PersistentVolumeClaims must exist; a bound claim
//! restricts the pod to nodes its PersistentVolume's node affinity allows;
//! an unbound claim is fine when its StorageClass waits for the first
//! consumer (the local-path provisioner then creates the volume on the
//! chosen node) and blocks scheduling when binding is Immediate.

use crate::controllers::runtime::selector::node_selector_matches;
use crate::scheduler::framework::{CycleState, FilterPlugin, Reasons};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Filters on claims and volume node affinity.
pub struct VolumeBinding;

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        snap: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        if pod.pvcs.is_empty() {
            state.skip_filter(self.name());
            return Ok(());
        }
        let mut affinities = Vec::new();
        for claim in &pod.pvcs {
            let key = format!("{}/{}", pod.namespace, claim);
            let Some(c) = snap.volumes.claims.get(&key) else {
                return Err(format!("persistentvolumeclaim \"{claim}\" not found"));
            };
            match &c.volume_name {
                Some(pv) => affinities.extend(snap.volumes.volumes.get(pv).cloned().flatten()),
                None => {
                    let wffc = c
                        .storage_class
                        .as_ref()
                        .and_then(|sc| snap.volumes.wait_for_first_consumer.get(sc))
                        .copied()
                        .unwrap_or(true);
                    if !wffc {
                        return Err("pod has unbound immediate PersistentVolumeClaims".into());
                    }
                }
            }
        }
        state.volume_affinity = affinities;
        Ok(())
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Reasons> {
        if pod.pvcs.is_empty() {
            return Ok(());
        }
        let ok = state
            .volume_affinity
            .iter()
            .all(|sel| node_selector_matches(sel, &node.name, &node.labels));
        if ok {
            Ok(())
        } else {
            Err(vec!["node(s) had volume node affinity conflict".into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use crate::scheduler::snapshot::ClaimInfo;
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

    fn on_node(name: &str) -> NodeSelector {
        NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "kubernetes.io/hostname".into(),
                    operator: "In".into(),
                    values: Some(vec![name.into()]),
                }]),
                match_fields: None,
            }],
        }
    }

    #[test]
    fn claims_must_exist_and_bound_volumes_pin_the_node() {
        let mut snap = Snapshot::default();
        let mut p = pod("p");
        p.pvcs = vec!["data".into()];
        let mut st = CycleState::default();
        let err = VolumeBinding.pre_filter(&p, &snap, &mut st).unwrap_err();
        assert_eq!(err, "persistentvolumeclaim \"data\" not found");
        snap.volumes.claims.insert(
            "default/data".into(),
            ClaimInfo {
                volume_name: Some("pv1".into()),
                storage_class: None,
            },
        );
        snap.volumes
            .volumes
            .insert("pv1".into(), Some(on_node("a")));
        VolumeBinding.pre_filter(&p, &snap, &mut st).unwrap();
        assert!(VolumeBinding.filter(&p, &node("a", 1, 1), &st).is_ok());
        let err = VolumeBinding.filter(&p, &node("b", 1, 1), &st).unwrap_err();
        assert_eq!(err[0], "node(s) had volume node affinity conflict");
    }

    #[test]
    fn unbound_immediate_claims_block() {
        let mut snap = Snapshot::default();
        snap.volumes.claims.insert(
            "default/data".into(),
            ClaimInfo {
                volume_name: None,
                storage_class: Some("fast".into()),
            },
        );
        snap.volumes
            .wait_for_first_consumer
            .insert("fast".into(), false);
        let mut p = pod("p");
        p.pvcs = vec!["data".into()];
        let mut st = CycleState::default();
        assert!(VolumeBinding.pre_filter(&p, &snap, &mut st).is_err());
        snap.volumes
            .wait_for_first_consumer
            .insert("fast".into(), true);
        assert!(VolumeBinding.pre_filter(&p, &snap, &mut st).is_ok());
    }
}
