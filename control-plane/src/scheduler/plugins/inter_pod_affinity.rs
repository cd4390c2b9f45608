//! InterPodAffinity: Filter enforces required pod affinity, required pod
//! anti-affinity, and the required anti-affinity of pods already placed
//! (symmetry); Score adds preferred affinity weights and subtracts
//! preferred anti-affinity weights per topology domain.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};

use crate::controllers::runtime::selector::{
    opt_selector_matches, selector_is_empty, selector_matches,
};
use crate::scheduler::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, Reasons, ScorePlugin};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// PreFilter state.
#[derive(Debug, Default)]
pub struct AffinityState {
    /// Per required affinity term: topology values holding a matching pod.
    affinity_domains: Vec<HashSet<String>>,
    /// Whether the incoming pod matches all its own affinity terms.
    self_affine: bool,
    /// (topologyKey, value) holding a pod the incoming pod must avoid.
    anti_domains: HashSet<(String, String)>,
    /// (topologyKey, value) where a placed pod's anti-affinity rejects the incoming pod.
    existing_anti: HashSet<(String, String)>,
    /// topologyKey → value → preference score (Score only).
    preferred: HashMap<String, HashMap<String, i64>>,
}

/// True when `term` (declared by a pod in `owner_ns`) selects `other`.
pub fn term_selects(
    term: &PodAffinityTerm,
    owner_ns: &str,
    other: &PodInfo,
    snap: &Snapshot,
) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let ns_ok = match &term.namespace_selector {
        Some(sel) if selector_is_empty(sel) => true,
        Some(sel) => {
            namespaces.contains(&other.namespace)
                || snap
                    .namespace_labels
                    .get(&other.namespace)
                    .is_some_and(|l| selector_matches(sel, l))
        }
        None if namespaces.is_empty() => other.namespace == owner_ns,
        None => namespaces.contains(&other.namespace),
    };
    ns_ok && opt_selector_matches(term.label_selector.as_ref(), &other.labels)
}

fn required_affinity(pod: &PodInfo) -> &[PodAffinityTerm] {
    pod.affinity
        .as_ref()
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

fn required_anti(pod: &PodInfo) -> &[PodAffinityTerm] {
    pod.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

fn preferred(pod: &PodInfo) -> (&[WeightedPodAffinityTerm], &[WeightedPodAffinityTerm]) {
    let a = pod.affinity.as_ref();
    (
        a.and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default(),
        a.and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default(),
    )
}

/// Filter and score on inter-pod affinity.
pub struct InterPodAffinity;

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        snap: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        let (aff, anti) = (required_affinity(pod), required_anti(pod));
        if aff.is_empty() && anti.is_empty() && !snap.has_anti_affinity_pods() {
            return Ok(());
        }
        let mut st = AffinityState {
            affinity_domains: vec![HashSet::new(); aff.len()],
            self_affine: aff
                .iter()
                .all(|t| term_selects(t, &pod.namespace, pod, snap)),
            ..Default::default()
        };
        for node in snap.nodes() {
            for other in &node.pods {
                for (i, t) in aff.iter().enumerate() {
                    if let Some(v) = node.labels.get(&t.topology_key)
                        && term_selects(t, &pod.namespace, other, snap)
                    {
                        st.affinity_domains[i].insert(v.clone());
                    }
                }
                for t in anti {
                    if let Some(v) = node.labels.get(&t.topology_key)
                        && term_selects(t, &pod.namespace, other, snap)
                    {
                        st.anti_domains.insert((t.topology_key.clone(), v.clone()));
                    }
                }
                for t in required_anti(other) {
                    if let Some(v) = node.labels.get(&t.topology_key)
                        && term_selects(t, &other.namespace, pod, snap)
                    {
                        st.existing_anti.insert((t.topology_key.clone(), v.clone()));
                    }
                }
            }
        }
        state.affinity = Some(st);
        Ok(())
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Reasons> {
        let Some(st) = &state.affinity else {
            return Ok(());
        };
        let in_domain = |(k, v): &(String, String)| node.labels.get(k) == Some(v);
        if st.existing_anti.iter().any(in_domain) {
            return Err(vec![
                "node(s) didn't satisfy existing pods anti-affinity rules".into(),
            ]);
        }
        let aff = required_affinity(pod);
        let nobody_matches = st.affinity_domains.iter().all(HashSet::is_empty);
        if !(nobody_matches && st.self_affine) {
            for (t, domains) in aff.iter().zip(&st.affinity_domains) {
                let ok = node
                    .labels
                    .get(&t.topology_key)
                    .is_some_and(|v| domains.contains(v));
                if !ok {
                    return Err(vec!["node(s) didn't match pod affinity rules".into()]);
                }
            }
        }
        if st.anti_domains.iter().any(in_domain) {
            return Err(vec!["node(s) didn't match pod anti-affinity rules".into()]);
        }
        Ok(())
    }
    fn resolvable_by_preemption(&self) -> bool {
        true
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn pre_score(&self, pod: &PodInfo, snap: &Snapshot, state: &mut CycleState) -> bool {
        let (aff, anti) = preferred(pod);
        if aff.is_empty() && anti.is_empty() {
            return false;
        }
        let mut pref: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for node in snap.nodes() {
            for other in &node.pods {
                let terms = aff
                    .iter()
                    .map(|t| (t, 1))
                    .chain(anti.iter().map(|t| (t, -1)));
                for (w, sign) in terms {
                    let t = &w.pod_affinity_term;
                    if let Some(v) = node.labels.get(&t.topology_key)
                        && term_selects(t, &pod.namespace, other, snap)
                    {
                        *pref
                            .entry(t.topology_key.clone())
                            .or_default()
                            .entry(v.clone())
                            .or_default() += sign * i64::from(w.weight);
                    }
                }
            }
        }
        state
            .affinity
            .get_or_insert_with(Default::default)
            .preferred = pref;
        true
    }
    fn score(&self, _: &PodInfo, node: &NodeInfo, _: &Snapshot, state: &CycleState) -> i64 {
        let Some(st) = &state.affinity else { return 0 };
        st.preferred
            .iter()
            .filter_map(|(k, vals)| node.labels.get(k).and_then(|v| vals.get(v)))
            .sum()
    }
    fn normalize(&self, scores: &mut [i64]) {
        let max = scores.iter().copied().max().unwrap_or(0);
        let min = scores.iter().copied().min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max == min {
                0
            } else {
                (*s - min) * MAX_NODE_SCORE / (max - min)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use k8s_openapi::api::core::v1::{Affinity, PodAffinity, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn term(app: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            topology_key: "kubernetes.io/hostname".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cluster() -> Snapshot {
        let mut snap = Snapshot::default();
        snap.upsert_node(node("a", 4000, 4 << 30));
        snap.upsert_node(node("b", 4000, 4 << 30));
        snap.place_pod(labelled("db", &[("app", "db")]), "a");
        snap
    }

    fn run(p: &PodInfo, snap: &Snapshot, n: &str) -> Result<(), Reasons> {
        let mut st = CycleState::default();
        InterPodAffinity.pre_filter(p, snap, &mut st).unwrap();
        FilterPlugin::filter(&InterPodAffinity, p, snap.node(n).unwrap(), &st)
    }

    #[test]
    fn required_affinity_follows_matching_pods() {
        let snap = cluster();
        let mut p = pod("web");
        p.affinity = Some(Arc::new(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term("db")]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert!(run(&p, &snap, "a").is_ok());
        assert_eq!(
            run(&p, &snap, "b").unwrap_err()[0],
            "node(s) didn't match pod affinity rules"
        );
    }

    #[test]
    fn required_anti_affinity_both_ways() {
        let snap = cluster();
        let mut p = (*labelled("db2", &[("app", "db")])).clone();
        p.affinity = Some(Arc::new(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term("db")]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert_eq!(
            run(&p, &snap, "a").unwrap_err()[0],
            "node(s) didn't match pod anti-affinity rules"
        );
        assert!(run(&p, &snap, "b").is_ok());
        // Once placed, it repels other db pods from b (symmetry).
        let mut snap = snap;
        snap.place_pod(Arc::new(p), "b");
        let other = (*labelled("db3", &[("app", "db")])).clone();
        assert_eq!(
            run(&other, &snap, "b").unwrap_err()[0],
            "node(s) didn't satisfy existing pods anti-affinity rules"
        );
    }

    #[test]
    fn preferred_affinity_scores_the_domain() {
        let snap = cluster();
        let mut p = pod("web");
        p.affinity = Some(Arc::new(Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 10,
                        pod_affinity_term: term("db"),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let mut st = CycleState::default();
        assert!(InterPodAffinity.pre_score(&p, &snap, &mut st));
        let mut s: Vec<i64> = ["a", "b"]
            .iter()
            .map(|n| ScorePlugin::score(&InterPodAffinity, &p, snap.node(n).unwrap(), &snap, &st))
            .collect();
        ScorePlugin::normalize(&InterPodAffinity, &mut s);
        assert_eq!(s, vec![100, 0]);
    }
}
