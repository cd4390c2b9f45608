//! `CycleState`, what PreFilter and PreScore compute once per pod for
//! Filter and Score to read (kube-scheduler's CycleState), and `NodeTable`,
//! per-node values for one cycle so a Filter or Score reads an array slot
//! instead of matching the node's labels again.

use super::plugins::inter_pod_affinity::AffinityState;
use super::plugins::topology_spread::SpreadState;
use super::snapshot::{NodeInfo, Snapshot};

/// Per-pod state computed in PreFilter/PreScore and read by Filter/Score.
#[derive(Default, Debug)]
pub struct CycleState {
    pub spread: Option<SpreadState>,
    pub soft_spread: Option<SpreadState>,
    pub affinity: Option<AffinityState>,
    /// Node affinity of the volumes bound to the pod's claims.
    pub volume_affinity: Vec<k8s_openapi::api::core::v1::NodeSelector>,
    /// Positions (in `Snapshot::nodes()`) of the only nodes that can pass,
    /// when a PreFilter narrowed them (kube-scheduler's PreFilterResult).
    pub node_candidates: Option<Vec<usize>>,
    /// Filters whose PreFilter found nothing to check for this pod (or
    /// whose narrowing is exact): the cycle does not call them
    /// (kube-scheduler's Skip status). Failure reports still run them.
    pub skipped_filters: Vec<&'static str>,
    /// NodeAffinity: summed weights of the preferred terms each node matches.
    pub preferred_node_affinity: Option<NodeTable<i64>>,
    /// ImageLocality: the spread-scaled bytes of the pod's images each node holds.
    pub image_bytes: Option<NodeTable<i64>>,
}

impl CycleState {
    /// Restricts filtering to the nodes at `positions` (sorted, no
    /// duplicates), intersected with an earlier restriction.
    pub fn narrow(&mut self, positions: Vec<usize>) {
        self.node_candidates = Some(match self.node_candidates.take() {
            None => positions,
            Some(prev) => prev
                .into_iter()
                .filter(|p| positions.binary_search(p).is_ok())
                .collect(),
        });
    }

    /// Leaves the filter called `name` out of this cycle.
    pub fn skip_filter(&mut self, name: &'static str) {
        self.skipped_filters.push(name);
    }

    /// True when the filter called `name` is left out of this cycle.
    pub fn is_skipped(&self, name: &str) -> bool {
        self.skipped_filters.contains(&name)
    }
}

/// One value per node of the snapshot a PreFilter/PreScore read, found by
/// the node's address: a node that is not that snapshot's own (a copy, such
/// as a preemption trial node) gets `None`, and the plugin checks it the
/// slow way. Valid while the snapshot is borrowed for the cycle.
#[derive(Clone, Debug, Default)]
pub struct NodeTable<T> {
    base: usize,
    values: Vec<T>,
}

impl<T: Clone> NodeTable<T> {
    /// A table for `snap`'s nodes, every value `fill`.
    pub fn new(snap: &Snapshot, fill: T) -> Self {
        let nodes = snap.nodes();
        Self {
            base: nodes.as_ptr() as usize,
            values: vec![fill; nodes.len()],
        }
    }
}

impl<T> NodeTable<T> {
    /// The value of `node`, when it is the snapshot's own.
    pub fn get(&self, node: &NodeInfo) -> Option<&T> {
        let size = std::mem::size_of::<NodeInfo>();
        let offset = (node as *const NodeInfo as usize).checked_sub(self.base)?;
        if offset % size != 0 {
            return None;
        }
        self.values.get(offset / size)
    }

    /// The value of the node at `pos` (a position in `Snapshot::nodes()`).
    pub fn at_mut(&mut self, pos: usize) -> Option<&mut T> {
        self.values.get_mut(pos)
    }

    /// Every value, by node position.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Every value, by node position, for writing.
    pub fn values_mut(&mut self) -> &mut [T] {
        &mut self.values
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity,
        PodAffinityTerm, PodAntiAffinity, PreferredSchedulingTerm, TopologySpreadConstraint,
        WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::scheduler::framework::Profile;
    use crate::scheduler::plugins::testutil::*;
    use crate::scheduler::snapshot::PodInfo;

    fn app(name: &str) -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some([("app".to_string(), name.to_string())].into()),
            ..Default::default()
        })
    }

    fn term(key: &str, name: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            topology_key: key.into(),
            label_selector: app(name),
            ..Default::default()
        }
    }

    fn cluster() -> Snapshot {
        let mut snap = Snapshot::default();
        for i in 0..9 {
            let mut n = node(&format!("n{i}"), 4000, 8 << 30);
            n.labels.insert("zone".into(), format!("z{}", i % 3));
            if i % 4 == 0 {
                n.images.insert("img:1".into(), 300 << 20);
            }
            snap.upsert_node(n);
        }
        snap.upsert_node(node("nozone", 4000, 8 << 30));
        for (i, node) in ["n0", "n1", "n3", "n4"].iter().enumerate() {
            snap.place_pod(labelled(&format!("web{i}"), &[("app", "web")]), node);
        }
        let mut db = (*labelled("db0", &[("app", "db")])).clone();
        db.affinity = Some(Arc::new(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    "kubernetes.io/hostname",
                    "db",
                )]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        snap.place_pod(Arc::new(db), "n2");
        snap
    }

    fn pods() -> Vec<PodInfo> {
        let spread = |key: &str, when: &str| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            label_selector: app("web"),
            ..Default::default()
        };
        let with = |name: &str, labels: &[(&str, &str)], f: &dyn Fn(&mut PodInfo)| {
            let mut p = (*labelled(name, labels)).clone();
            p.images = vec!["img:1".into()];
            f(&mut p);
            p
        };
        vec![
            with("plain", &[("app", "db")], &|_| {}),
            with("hard", &[("app", "web")], &|p| {
                p.spread = vec![
                    spread("zone", "DoNotSchedule"),
                    spread("kubernetes.io/hostname", "DoNotSchedule"),
                ]
            }),
            with("soft", &[("app", "web")], &|p| {
                p.spread = vec![spread("zone", "ScheduleAnyway")]
            }),
            with("affine", &[("app", "api")], &|p| {
                p.affinity = Some(Arc::new(Affinity {
                    pod_affinity: Some(PodAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![term(
                            "zone", "web",
                        )]),
                        preferred_during_scheduling_ignored_during_execution: Some(vec![
                            WeightedPodAffinityTerm {
                                weight: 10,
                                pod_affinity_term: term("zone", "db"),
                            },
                        ]),
                    }),
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![term(
                            "kubernetes.io/hostname",
                            "web",
                        )]),
                        preferred_during_scheduling_ignored_during_execution: Some(vec![
                            WeightedPodAffinityTerm {
                                weight: 30,
                                pod_affinity_term: term("zone", "web"),
                            },
                        ]),
                    }),
                    node_affinity: Some(NodeAffinity {
                        preferred_during_scheduling_ignored_during_execution: Some(vec![
                            PreferredSchedulingTerm {
                                weight: 20,
                                preference: NodeSelectorTerm {
                                    match_expressions: Some(vec![NodeSelectorRequirement {
                                        key: "zone".into(),
                                        operator: "In".into(),
                                        values: Some(vec!["z1".into(), "z2".into()]),
                                    }]),
                                    match_fields: None,
                                },
                            },
                        ]),
                        ..Default::default()
                    }),
                }))
            }),
        ]
    }

    /// Filters and scores answer the same from their tables (the snapshot's
    /// own nodes) as from the labels (a copy of each node).
    #[test]
    fn tables_agree_with_the_slow_path() {
        let snap = cluster();
        let profile = Profile::default();
        for pod in pods() {
            let mut state = CycleState::default();
            for f in &profile.filters {
                f.pre_filter(&pod, &snap, &mut state).unwrap();
            }
            for (s, _) in &profile.scores {
                s.pre_score(&pod, &snap, &mut state);
            }
            for node in snap.nodes() {
                let copy = node.clone();
                for f in &profile.filters {
                    assert_eq!(
                        f.filter(&pod, node, &state),
                        f.filter(&pod, &copy, &state),
                        "{} filter, pod {}, node {}",
                        f.name(),
                        pod.name,
                        node.name
                    );
                }
                for (s, _) in &profile.scores {
                    assert_eq!(
                        s.score(&pod, node, &snap, &state),
                        s.score(&pod, &copy, &snap, &state),
                        "{} score, pod {}, node {}",
                        s.name(),
                        pod.name,
                        node.name
                    );
                }
            }
        }
    }

    #[test]
    fn table_lookups_need_the_snapshot_node() {
        let snap = cluster();
        let mut table = NodeTable::new(&snap, 0);
        *table.at_mut(3).unwrap() = 7;
        assert_eq!(table.get(&snap.nodes()[3]), Some(&7));
        assert_eq!(table.get(&snap.nodes()[3].clone()), None);
    }
}
