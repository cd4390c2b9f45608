//! PodTopologySpread: Filter enforces `whenUnsatisfiable: DoNotSchedule`
//! constraints (maxSkew, minDomains, matchLabelKeys, nodeAffinityPolicy
//! Honor); Score prefers domains with fewer matching pods for
//! `ScheduleAnyway` constraints. PreFilter/PreScore count matching pods per
//! domain from the snapshot's indexes (domains from the node label index,
//! pods only on the nodes holding the selector's labels) and tabulate each
//! node's answer, so Filter and Score read one slot per node.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::node_affinity::node_matches_pod;
use crate::controllers::runtime::selector::selector_matches;
use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeTable, Reasons, ScorePlugin,
};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// One constraint with its per-domain counts of matching pods.
#[derive(Debug)]
pub struct DomainCounts {
    pub topology_key: String,
    pub max_skew: i64,
    /// Domains holding matching pods (absent: none).
    pub counts: HashMap<String, i64>,
    /// Lowest count over eligible domains (0 when fewer than minDomains).
    pub min: i64,
    /// Whether the incoming pod itself matches the selector.
    pub self_match: bool,
}

/// How a node fares against the hard constraints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    Fits,
    /// Placing the pod there would exceed a constraint's maxSkew.
    Skew,
    /// The node lacks a constraint's topology key.
    MissingLabel,
}

const SKEW: &str = "node(s) didn't match pod topology spread constraints";
const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// PreFilter/PreScore state: one entry per constraint, plus per node the
/// Filter's answer (hard) or the Score's raw count (soft).
#[derive(Debug, Default)]
pub struct SpreadState {
    pub constraints: Vec<DomainCounts>,
    pub fits: Option<NodeTable<Fit>>,
    pub scores: Option<NodeTable<i64>>,
}

impl DomainCounts {
    /// Whether a node in a domain holding `count` matching pods takes the pod.
    fn fit(&self, count: i64) -> Fit {
        if count + i64::from(self.self_match) - self.min > self.max_skew {
            Fit::Skew
        } else {
            Fit::Fits
        }
    }

    /// The node's answer, from its labels (the slow path).
    fn fit_node(&self, node: &NodeInfo) -> Fit {
        match node.labels.get(&self.topology_key) {
            None => Fit::MissingLabel,
            Some(v) => self.fit(self.counts.get(v).copied().unwrap_or(0)),
        }
    }
}

/// Every node's answer to the constraints (the first failing one decides).
fn fits_table(st: &SpreadState, snap: &Snapshot) -> NodeTable<Fit> {
    let index = snap.node_labels();
    let mut table = NodeTable::new(snap, Fit::Fits);
    let mut this = vec![Fit::MissingLabel; snap.nodes().len()];
    for c in &st.constraints {
        this.fill(Fit::MissingLabel);
        let empty = c.fit(0);
        for (_, positions) in index.values(&c.topology_key) {
            for &p in positions {
                this[p] = empty;
            }
        }
        for (value, &count) in &c.counts {
            let fit = c.fit(count);
            for &p in index.nodes(&c.topology_key, value) {
                this[p] = fit;
            }
        }
        for (t, f) in table.values_mut().iter_mut().zip(&this) {
            if *t == Fit::Fits {
                *t = *f;
            }
        }
    }
    table
}

/// Every node's raw score: the matching pods in its domains.
fn scores_table(st: &SpreadState, snap: &Snapshot) -> NodeTable<i64> {
    let mut table = NodeTable::new(snap, 0i64);
    for c in &st.constraints {
        for (value, &count) in &c.counts {
            for &p in snap.node_labels().nodes(&c.topology_key, value) {
                if let Some(s) = table.at_mut(p) {
                    *s += count;
                }
            }
        }
    }
    table
}

fn compute(pod: &PodInfo, snap: &Snapshot, hard: bool) -> Option<SpreadState> {
    let wanted = if hard {
        "DoNotSchedule"
    } else {
        "ScheduleAnyway"
    };
    let nodes = snap.nodes();
    let constrained = !pod.node_selector.is_empty() || pod.required_node_affinity.is_some();
    let mut out = SpreadState::default();
    for c in pod.spread.iter().filter(|c| c.when_unsatisfiable == wanted) {
        let mut selector = c.label_selector.clone().unwrap_or_default();
        for k in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod.labels.get(k) {
                selector
                    .match_labels
                    .get_or_insert_with(Default::default)
                    .insert(k.clone(), v.clone());
            }
        }
        let has_selector = c.label_selector.is_some();
        // Under nodeAffinityPolicy Honor only nodes the pod may go to count.
        let honor = constrained && c.node_affinity_policy.as_deref() != Some("Ignore");
        let key = c.topology_key.as_str();
        // Eligible domains: values of the key on nodes that count.
        let domains = snap
            .node_labels()
            .values(key)
            .filter(|(_, at)| !honor || at.iter().any(|&i| node_matches_pod(pod, &nodes[i])))
            .count();
        // Matching pods, on the nodes that can hold them.
        let mut counts: HashMap<String, i64> = HashMap::new();
        if has_selector {
            let positions = snap
                .pod_labels()
                .candidates(&pod.namespace, &selector)
                .unwrap_or_else(|| (0..nodes.len()).collect());
            for i in positions {
                let node = &nodes[i];
                let Some(value) = node.labels.get(key) else {
                    continue;
                };
                if honor && !node_matches_pod(pod, node) {
                    continue;
                }
                let n = count_matching(node, &pod.namespace, &selector);
                if n > 0 {
                    *counts.entry(value.clone()).or_default() += n;
                }
            }
        }
        let mut min = if counts.len() < domains {
            0
        } else {
            counts.values().copied().min().unwrap_or(0)
        };
        if (domains as i64) < i64::from(c.min_domains.unwrap_or(1)) {
            min = 0;
        }
        out.constraints.push(DomainCounts {
            topology_key: c.topology_key.clone(),
            max_skew: i64::from(c.max_skew),
            counts,
            min,
            self_match: has_selector && selector_matches(&selector, &pod.labels),
        });
    }
    (!out.constraints.is_empty()).then_some(out)
}

fn count_matching(node: &NodeInfo, namespace: &str, selector: &LabelSelector) -> i64 {
    node.pods
        .iter()
        .filter(|p| p.namespace == namespace && selector_matches(selector, &p.labels))
        .count() as i64
}

/// Filter and score on topology spread constraints.
pub struct PodTopologySpread;

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        snap: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        let mut spread = compute(pod, snap, true);
        match &mut spread {
            Some(st) => st.fits = Some(fits_table(st, snap)),
            None => state.skip_filter(FilterPlugin::name(self)),
        }
        state.spread = spread;
        Ok(())
    }
    fn filter(&self, _: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Reasons> {
        let Some(st) = &state.spread else {
            return Ok(());
        };
        let fit = match st.fits.as_ref().and_then(|t| t.get(node)) {
            Some(f) => *f,
            None => st
                .constraints
                .iter()
                .map(|c| c.fit_node(node))
                .find(|f| *f != Fit::Fits)
                .unwrap_or(Fit::Fits),
        };
        match fit {
            Fit::Fits => Ok(()),
            Fit::Skew => Err(vec![SKEW.into()]),
            Fit::MissingLabel => Err(vec![MISSING_LABEL.into()]),
        }
    }
    fn resolvable_by_preemption(&self) -> bool {
        true
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn pre_score(&self, pod: &PodInfo, snap: &Snapshot, state: &mut CycleState) -> bool {
        if pod.spread.is_empty() {
            return false;
        }
        let mut spread = compute(pod, snap, false);
        if let Some(st) = &mut spread {
            st.scores = Some(scores_table(st, snap));
        }
        state.soft_spread = spread;
        state.soft_spread.is_some()
    }
    fn score(&self, _: &PodInfo, node: &NodeInfo, _: &Snapshot, state: &CycleState) -> i64 {
        let Some(st) = &state.soft_spread else {
            return 0;
        };
        if let Some(s) = st.scores.as_ref().and_then(|t| t.get(node)) {
            return *s;
        }
        st.constraints
            .iter()
            .map(|c| {
                node.labels
                    .get(&c.topology_key)
                    .and_then(|v| c.counts.get(v))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }
    fn normalize(&self, scores: &mut [i64]) {
        let max = scores.iter().copied().max().unwrap_or(0);
        let min = scores.iter().copied().min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use k8s_openapi::api::core::v1::TopologySpreadConstraint;

    fn constraint(when: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "zone".into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        let mut n = node(name, 4000, 4 << 30);
        n.labels.insert("zone".into(), zone.into());
        n
    }

    fn cluster() -> Snapshot {
        let mut snap = Snapshot::default();
        snap.upsert_node(zoned("a", "z1"));
        snap.upsert_node(zoned("b", "z2"));
        snap.upsert_node(node("nolabel", 4000, 4 << 30));
        snap.place_pod(labelled("w1", &[("app", "web")]), "a");
        snap
    }

    #[test]
    fn do_not_schedule_limits_skew() {
        let snap = cluster();
        let mut p = (*labelled("w2", &[("app", "web")])).clone();
        p.spread = vec![constraint("DoNotSchedule")];
        let mut st = CycleState::default();
        PodTopologySpread.pre_filter(&p, &snap, &mut st).unwrap();
        let f = |n: &str| FilterPlugin::filter(&PodTopologySpread, &p, snap.node(n).unwrap(), &st);
        assert!(f("b").is_ok());
        assert_eq!(
            f("a").unwrap_err()[0],
            "node(s) didn't match pod topology spread constraints"
        );
        assert!(f("nolabel").unwrap_err()[0].contains("missing required label"));
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let snap = cluster();
        let mut p = (*labelled("w2", &[("app", "web")])).clone();
        p.spread = vec![constraint("ScheduleAnyway")];
        let mut st = CycleState::default();
        assert!(PodTopologySpread.pre_score(&p, &snap, &mut st));
        let mut s: Vec<i64> = ["a", "b"]
            .iter()
            .map(|n| ScorePlugin::score(&PodTopologySpread, &p, snap.node(n).unwrap(), &snap, &st))
            .collect();
        ScorePlugin::normalize(&PodTopologySpread, &mut s);
        assert!(s[1] > s[0], "{s:?}");
    }
}
