//! InterPodAffinity: Filter enforces required pod affinity, required pod
//! anti-affinity, and the required anti-affinity of pods already placed
//! (symmetry); Score adds preferred affinity weights and subtracts
//! preferred anti-affinity weights per topology domain. PreFilter/PreScore
//! visit only the nodes holding pods a term's labels can select, and only
//! the placed pods whose anti-affinity can select the incoming pod (the
//! snapshot's indexes).

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};

use crate::controllers::runtime::selector::{
    opt_selector_matches, selector_is_empty, selector_matches,
};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeTable, Reasons, ScorePlugin,
};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Topology domains: topologyKey → values.
type Domains = HashMap<String, HashSet<String>>;

fn add_domain(domains: &mut Domains, key: &str, value: &str) {
    let values = match domains.get_mut(key) {
        Some(v) => v,
        None => domains.entry(key.to_string()).or_default(),
    };
    if !values.contains(value) {
        values.insert(value.to_string());
    }
}

/// True when `node` lies in one of `domains`.
fn in_domains(domains: &Domains, node: &NodeInfo) -> bool {
    domains
        .iter()
        .any(|(k, values)| node.labels.get(k).is_some_and(|v| values.contains(v)))
}

/// PreFilter state.
#[derive(Debug, Default)]
pub struct AffinityState {
    /// Per required affinity term: topology values holding a matching pod.
    affinity_domains: Vec<HashSet<String>>,
    /// Whether the incoming pod matches all its own affinity terms.
    self_affine: bool,
    /// (topologyKey, value) holding a pod the incoming pod must avoid.
    anti_domains: Domains,
    /// (topologyKey, value) where a placed pod's anti-affinity rejects the incoming pod.
    existing_anti: Domains,
    /// topologyKey → value → preference score (Score only).
    preferred: HashMap<String, HashMap<String, i64>>,
    /// Each node's Filter answer.
    fits: Option<NodeTable<Fit>>,
    /// Each node's raw Score.
    scores: Option<NodeTable<i64>>,
}

/// How a node fares against the required terms (the first failing check decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    Fits,
    ExistingAnti,
    Affinity,
    Anti,
}

impl Fit {
    fn result(self) -> Result<(), Reasons> {
        let reason = match self {
            Fit::Fits => return Ok(()),
            Fit::ExistingAnti => "node(s) didn't satisfy existing pods anti-affinity rules",
            Fit::Affinity => "node(s) didn't match pod affinity rules",
            Fit::Anti => "node(s) didn't match pod anti-affinity rules",
        };
        Err(vec![reason.into()])
    }
}

impl AffinityState {
    /// Whether required affinity constrains the pod (it does not when no pod
    /// matches yet and the pod matches its own terms: the first of a group).
    fn affinity_applies(&self) -> bool {
        let nobody_matches = self.affinity_domains.iter().all(HashSet::is_empty);
        !(nobody_matches && self.self_affine)
    }

    /// The node's answer, from its labels (the slow path).
    fn fit_node(&self, aff: &[PodAffinityTerm], node: &NodeInfo) -> Fit {
        if in_domains(&self.existing_anti, node) {
            return Fit::ExistingAnti;
        }
        if self.affinity_applies() {
            for (t, domains) in aff.iter().zip(&self.affinity_domains) {
                let ok = node
                    .labels
                    .get(&t.topology_key)
                    .is_some_and(|v| domains.contains(v));
                if !ok {
                    return Fit::Affinity;
                }
            }
        }
        if in_domains(&self.anti_domains, node) {
            return Fit::Anti;
        }
        Fit::Fits
    }

    /// Every node's answer, from the node label index.
    fn fits_table(&self, aff: &[PodAffinityTerm], snap: &Snapshot) -> NodeTable<Fit> {
        let index = snap.node_labels();
        let mut table = NodeTable::new(snap, Fit::Fits);
        if self.affinity_applies() && !aff.is_empty() {
            let mut satisfied = vec![0usize; snap.nodes().len()];
            for (t, domains) in aff.iter().zip(&self.affinity_domains) {
                for v in domains {
                    for &p in index.nodes(&t.topology_key, v) {
                        satisfied[p] += 1;
                    }
                }
            }
            for (f, n) in table.values_mut().iter_mut().zip(satisfied) {
                if n < aff.len() {
                    *f = Fit::Affinity;
                }
            }
        }
        let mut mark = |domains: &Domains, fit: Fit, overrides: bool| {
            for (k, values) in domains {
                for v in values {
                    for &p in index.nodes(k, v) {
                        if let Some(f) = table.at_mut(p)
                            && (overrides || *f == Fit::Fits)
                        {
                            *f = fit;
                        }
                    }
                }
            }
        };
        mark(&self.anti_domains, Fit::Anti, false);
        mark(&self.existing_anti, Fit::ExistingAnti, true);
        table
    }

    /// Every node's raw score, from the node label index.
    fn scores_table(&self, snap: &Snapshot) -> NodeTable<i64> {
        let mut table = NodeTable::new(snap, 0i64);
        for (k, values) in &self.preferred {
            for (v, score) in values {
                for &p in snap.node_labels().nodes(k, v) {
                    if let Some(s) = table.at_mut(p) {
                        *s += score;
                    }
                }
            }
        }
        table
    }
}

/// True when `term` (declared by a pod in `owner_ns`) admits pods of `namespace`.
fn namespace_ok(term: &PodAffinityTerm, owner_ns: &str, namespace: &str, snap: &Snapshot) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let listed = || namespaces.iter().any(|n| n == namespace);
    match &term.namespace_selector {
        Some(sel) if selector_is_empty(sel) => true,
        Some(sel) => {
            listed()
                || snap
                    .namespace_labels
                    .get(namespace)
                    .is_some_and(|l| selector_matches(sel, l))
        }
        None if namespaces.is_empty() => namespace == owner_ns,
        None => listed(),
    }
}

/// True when `term` (declared by a pod in `owner_ns`) selects `other`.
pub fn term_selects(
    term: &PodAffinityTerm,
    owner_ns: &str,
    other: &PodInfo,
    snap: &Snapshot,
) -> bool {
    namespace_ok(term, owner_ns, &other.namespace, snap)
        && opt_selector_matches(term.label_selector.as_ref(), &other.labels)
}

/// Calls `f(topology value)` for every placed pod `term` selects on a node
/// carrying the term's topology key, visiting only the nodes that hold pods
/// with the selector's labels (every node when it has no matchLabels).
fn for_each_selected(
    term: &PodAffinityTerm,
    owner_ns: &str,
    snap: &Snapshot,
    mut f: impl FnMut(&str),
) {
    let Some(selector) = &term.label_selector else {
        return;
    };
    let nodes = snap.nodes();
    let index = snap.pod_labels();
    let mut positions = Vec::new();
    for ns in index.namespaces() {
        if !namespace_ok(term, owner_ns, ns, snap) {
            continue;
        }
        match index.candidates(ns, selector) {
            Some(c) => positions.extend(c),
            None => {
                positions = (0..nodes.len()).collect();
                break;
            }
        }
    }
    positions.sort_unstable();
    positions.dedup();
    for i in positions {
        let node = &nodes[i];
        let Some(value) = node.labels.get(&term.topology_key) else {
            continue;
        };
        for other in &node.pods {
            if term_selects(term, owner_ns, other, snap) {
                f(value);
            }
        }
    }
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
        for (t, domains) in aff.iter().zip(&mut st.affinity_domains) {
            for_each_selected(t, &pod.namespace, snap, |v| {
                if !domains.contains(v) {
                    domains.insert(v.to_string());
                }
            });
        }
        for t in anti {
            for_each_selected(t, &pod.namespace, snap, |v| {
                add_domain(&mut st.anti_domains, &t.topology_key, v);
            });
        }
        let nodes = snap.nodes();
        for e in snap.anti_affinity().candidates(&pod.labels) {
            let node = &nodes[e.node];
            for t in required_anti(&e.pod) {
                if let Some(v) = node.labels.get(&t.topology_key)
                    && term_selects(t, &e.pod.namespace, pod, snap)
                {
                    add_domain(&mut st.existing_anti, &t.topology_key, v);
                }
            }
        }
        // With no terms and no placed pod repelling this one, Filter passes everywhere.
        if aff.is_empty() && anti.is_empty() && st.existing_anti.is_empty() {
            state.skip_filter(FilterPlugin::name(self));
            return Ok(());
        }
        st.fits = Some(st.fits_table(aff, snap));
        state.affinity = Some(st);
        Ok(())
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Reasons> {
        let Some(st) = &state.affinity else {
            return Ok(());
        };
        match st.fits.as_ref().and_then(|t| t.get(node)) {
            Some(f) => f.result(),
            None => st.fit_node(required_affinity(pod), node).result(),
        }
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
        let terms = aff
            .iter()
            .map(|t| (t, 1))
            .chain(anti.iter().map(|t| (t, -1)));
        for (w, sign) in terms {
            let t = &w.pod_affinity_term;
            for_each_selected(t, &pod.namespace, snap, |v| {
                *pref
                    .entry(t.topology_key.clone())
                    .or_default()
                    .entry(v.to_string())
                    .or_default() += sign * i64::from(w.weight);
            });
        }
        let st = state.affinity.get_or_insert_with(Default::default);
        st.preferred = pref;
        st.scores = Some(st.scores_table(snap));
        true
    }
    fn score(&self, _: &PodInfo, node: &NodeInfo, _: &Snapshot, state: &CycleState) -> i64 {
        let Some(st) = &state.affinity else { return 0 };
        if let Some(s) = st.scores.as_ref().and_then(|t| t.get(node)) {
            return *s;
        }
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
