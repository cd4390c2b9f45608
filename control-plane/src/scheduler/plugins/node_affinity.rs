//! NodeAffinity: Filter requires nodeSelector and required node affinity to
//! match (PreFilter narrows the nodes to those the node label index says
//! can match, and skips the Filter when that is exact); Score sums the
//! weights of matching preferred terms (PreScore tabulates them per node).

use crate::controllers::runtime::selector::{node_selector_matches, node_term_matches};
use k8s_openapi::api::core::v1::PreferredSchedulingTerm;

use crate::scheduler::framework::{
    CycleState, FilterPlugin, NodeTable, Reasons, ScorePlugin, normalize_by_max,
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

/// Positions of the nodes that may satisfy the pod's nodeSelector and
/// required affinity, from the node label index, and whether exactly those
/// do. With a nodeSelector: the nodes carrying every pair (exact unless
/// there is required affinity too). Otherwise the union over affinity terms
/// of the nodes matching each term's first `In` expression (or
/// `metadata.name` field), exact when each term is just that. `None` when
/// some term has neither (any node may match).
pub fn candidate_nodes(pod: &PodInfo, snap: &Snapshot) -> Option<(Vec<usize>, bool)> {
    let index = snap.node_labels();
    let rarest = pod
        .node_selector
        .iter()
        .min_by_key(|(k, v)| index.nodes(k, v).len());
    if let Some((rk, rv)) = rarest {
        let all = snap.nodes();
        let mut out: Vec<usize> = index.nodes(rk, rv).to_vec();
        if pod.node_selector.len() > 1 {
            out.retain(|&i| {
                let labels = &all[i].labels;
                pod.node_selector
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            });
        }
        out.sort_unstable();
        return Some((out, pod.required_node_affinity.is_none()));
    }
    let sel = pod.required_node_affinity.as_ref()?;
    let mut out = Vec::new();
    let mut exact = true;
    for term in &sel.node_selector_terms {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        exact &= exprs.len() + fields.len() <= 1;
        if let Some(r) = exprs.iter().find(|r| r.operator == "In") {
            for v in r.values.iter().flatten() {
                out.extend_from_slice(index.nodes(&r.key, v));
            }
        } else if let Some(r) = fields
            .iter()
            .find(|r| r.key == "metadata.name" && r.operator == "In")
        {
            out.extend(r.values.iter().flatten().filter_map(|n| snap.position(n)));
        } else if !exprs.is_empty() || !fields.is_empty() {
            return None;
        }
    }
    out.sort_unstable();
    out.dedup();
    Some((out, exact))
}

fn preferred_terms(pod: &PodInfo) -> &[PreferredSchedulingTerm] {
    pod.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

/// The summed weights of the preferred terms each node matches, found from
/// the node label index through each term's first `In` expression; `None`
/// when a term has none (Score then matches node by node).
fn preferred_table(terms: &[PreferredSchedulingTerm], snap: &Snapshot) -> Option<NodeTable<i64>> {
    let nodes = snap.nodes();
    let mut table = NodeTable::new(snap, 0i64);
    for t in terms {
        let exprs = t
            .preference
            .match_expressions
            .as_deref()
            .unwrap_or_default();
        let r = exprs.iter().find(|r| r.operator == "In")?;
        let alone = exprs.len() == 1
            && t.preference
                .match_fields
                .as_deref()
                .is_none_or(<[_]>::is_empty);
        let mut values: Vec<&String> = r.values.iter().flatten().collect();
        values.sort();
        values.dedup();
        for v in values {
            for &pos in snap.node_labels().nodes(&r.key, v) {
                let n = &nodes[pos];
                if (alone || node_term_matches(&t.preference, &n.name, &n.labels))
                    && let Some(w) = table.at_mut(pos)
                {
                    *w += i64::from(t.weight);
                }
            }
        }
    }
    Some(table)
}

/// Filter and score on node affinity.
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        snap: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        if pod.node_selector.is_empty() && pod.required_node_affinity.is_none() {
            state.skip_filter(FilterPlugin::name(self));
            return Ok(());
        }
        if let Some((nodes, exact)) = candidate_nodes(pod, snap) {
            state.narrow(nodes);
            if exact {
                state.skip_filter(FilterPlugin::name(self));
            }
        }
        Ok(())
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
    fn pre_score(&self, pod: &PodInfo, snap: &Snapshot, state: &mut CycleState) -> bool {
        let terms = preferred_terms(pod);
        if terms.is_empty() {
            return false;
        }
        state.preferred_node_affinity = preferred_table(terms, snap);
        true
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot, state: &CycleState) -> i64 {
        if let Some(w) = state
            .preferred_node_affinity
            .as_ref()
            .and_then(|t| t.get(node))
        {
            return *w;
        }
        preferred_terms(pod)
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
        Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
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
