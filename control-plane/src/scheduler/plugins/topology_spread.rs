//! PodTopologySpread: Filter enforces `whenUnsatisfiable: DoNotSchedule`
//! constraints (maxSkew, minDomains, matchLabelKeys, nodeAffinityPolicy
//! Honor); Score prefers domains with fewer matching pods for
//! `ScheduleAnyway` constraints.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::node_affinity::node_matches_pod;
use crate::controllers::runtime::selector::selector_matches;
use crate::scheduler::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, Reasons, ScorePlugin};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// One constraint with its per-domain counts of matching pods.
#[derive(Debug)]
pub struct DomainCounts {
    pub topology_key: String,
    pub max_skew: i64,
    pub counts: HashMap<String, i64>,
    /// Lowest count over eligible domains (0 when fewer than minDomains).
    pub min: i64,
    /// Whether the incoming pod itself matches the selector.
    pub self_match: bool,
}

/// PreFilter/PreScore state: one entry per constraint.
#[derive(Debug, Default)]
pub struct SpreadState {
    pub constraints: Vec<DomainCounts>,
}

fn compute(pod: &PodInfo, snap: &Snapshot, hard: bool) -> Option<SpreadState> {
    let wanted = if hard {
        "DoNotSchedule"
    } else {
        "ScheduleAnyway"
    };
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
        let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
        let mut counts: HashMap<String, i64> = HashMap::new();
        for node in snap.nodes() {
            let Some(value) = node.labels.get(&c.topology_key) else {
                continue;
            };
            if honor_affinity && !node_matches_pod(pod, node) {
                continue;
            }
            let n = if has_selector {
                count_matching(node, &pod.namespace, &selector)
            } else {
                0
            };
            *counts.entry(value.clone()).or_default() += n;
        }
        let mut min = counts.values().copied().min().unwrap_or(0);
        if (counts.len() as i64) < i64::from(c.min_domains.unwrap_or(1)) {
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
        if !pod.spread.is_empty() {
            state.spread = compute(pod, snap, true);
        }
        Ok(())
    }
    fn filter(&self, _: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Reasons> {
        let Some(st) = &state.spread else {
            return Ok(());
        };
        for c in &st.constraints {
            let Some(value) = node.labels.get(&c.topology_key) else {
                return Err(vec![
                    "node(s) didn't match pod topology spread constraints (missing required label)"
                        .into(),
                ]);
            };
            let here = c.counts.get(value).copied().unwrap_or(0);
            let skew = here + i64::from(c.self_match) - c.min;
            if skew > c.max_skew {
                return Err(vec![
                    "node(s) didn't match pod topology spread constraints".into(),
                ]);
            }
        }
        Ok(())
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
        state.soft_spread = compute(pod, snap, false);
        state.soft_spread.is_some()
    }
    fn score(&self, _: &PodInfo, node: &NodeInfo, _: &Snapshot, state: &CycleState) -> i64 {
        let Some(st) = &state.soft_spread else {
            return 0;
        };
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
