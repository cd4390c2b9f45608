//! NodeAffinity: Filter requires nodeSelector and required node affinity to
//! match; Score sums the weights of matching preferred terms.

use crate::controllers::runtime::selector::{node_selector_matches, node_term_matches};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, Reasons, ScorePlugin, normalize_by_max,
};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// True when the node satisfies the pod's nodeSelector and required node affinity.
pub fn node_matches_pod(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|sel| node_selector_matches(sel, &node.name, &node.labels))
}

/// Filter and score on node affinity.
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        if node_matches_pod(pod, node) {
            Ok(())
        } else {
            Err(vec![
                "node(s) didn't match Pod's node affinity/selector".into(),
            ])
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn pre_score(&self, pod: &PodInfo, _: &Snapshot, _: &mut CycleState) -> bool {
        pod.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|p| !p.is_empty())
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot, _: &CycleState) -> i64 {
        let Some(terms) = pod
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
        else {
            return 0;
        };
        terms
            .iter()
            .filter(|t| node_term_matches(&t.preference, &node.name, &node.labels))
            .map(|t| i64::from(t.weight))
            .sum()
    }
    fn normalize(&self, scores: &mut [i64]) {
        normalize_by_max(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    };
    use std::sync::Arc;

    fn term(key: &str, value: &str) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(vec![value.into()]),
            }]),
            match_fields: None,
        }
    }

    #[test]
    fn node_selector_and_required_affinity_filter() {
        let mut a = node("a", 1000, 1 << 30);
        a.labels.insert("zone".into(), "z1".into());
        let b = node("b", 1000, 1 << 30);
        let mut p = pod("p");
        p.node_selector.insert("zone".into(), "z1".into());
        let st = CycleState::default();
        assert!(FilterPlugin::filter(&NodeAffinity, &p, &a, &st).is_ok());
        let err = FilterPlugin::filter(&NodeAffinity, &p, &b, &st).unwrap_err();
        assert_eq!(err[0], "node(s) didn't match Pod's node affinity/selector");
        p.node_selector.clear();
        p.required_node_affinity = Some(NodeSelector {
            node_selector_terms: vec![term("zone", "z2"), term("zone", "z1")],
        });
        assert!(FilterPlugin::filter(&NodeAffinity, &p, &a, &st).is_ok());
        assert!(FilterPlugin::filter(&NodeAffinity, &p, &b, &st).is_err());
    }

    #[test]
    fn match_fields_on_metadata_name_pin_daemon_pods() {
        let (a, b) = (node("a", 1000, 1 << 30), node("b", 1000, 1 << 30));
        let mut p = pod("p");
        p.required_node_affinity = Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec!["b".into()]),
                }]),
            }],
        });
        let st = CycleState::default();
        assert!(FilterPlugin::filter(&NodeAffinity, &p, &a, &st).is_err());
        assert!(FilterPlugin::filter(&NodeAffinity, &p, &b, &st).is_ok());
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let mut a = node("a", 1000, 1 << 30);
        a.labels.insert("disk".into(), "ssd".into());
        let b = node("b", 1000, 1 << 30);
        let mut p = pod("p");
        p.affinity = Some(Arc::new(Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 40,
                        preference: term("disk", "ssd"),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let snap = Snapshot::default();
        let mut st = CycleState::default();
        assert!(NodeAffinity.pre_score(&p, &snap, &mut st));
        let mut s = vec![
            ScorePlugin::score(&NodeAffinity, &p, &a, &snap, &st),
            ScorePlugin::score(&NodeAffinity, &p, &b, &snap, &st),
        ];
        ScorePlugin::normalize(&NodeAffinity, &mut s);
        assert_eq!(s, vec![100, 0]);
    }
}
