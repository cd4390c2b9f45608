//! NodeResourcesFit (Filter: cpu, memory, ephemeral-storage, pods, extended
//! resources) and the resource scores: LeastAllocated, MostAllocated,
//! BalancedAllocation (scores use non-zero default requests, as
//! kube-scheduler does).

use crate::scheduler::framework::{CycleState, FilterPlugin, MAX_NODE_SCORE, Reasons, ScorePlugin};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Rejects nodes without room for the pod's requests.
#[derive(Default)]
pub struct NodeResourcesFit {
    /// Extended resources left unchecked (an extender manages them).
    ignored: Vec<String>,
}

impl NodeResourcesFit {
    /// A fit check that leaves these extended resources out.
    pub fn ignoring(resources: impl IntoIterator<Item = String>) -> Self {
        Self {
            ignored: resources.into_iter().collect(),
        }
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        let mut reasons: Reasons = Vec::new();
        let (a, r, p) = (&node.allocatable, &node.requested, &pod.requests);
        if r.pods + 1 > a.pods {
            reasons.push("Too many pods".into());
        }
        if p.milli_cpu > 0 && p.milli_cpu > a.milli_cpu - r.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if p.memory > 0 && p.memory > a.memory - r.memory {
            reasons.push("Insufficient memory".into());
        }
        if p.ephemeral_storage > 0
            && p.ephemeral_storage > a.ephemeral_storage - r.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, want) in &p.scalar {
            if self.ignored.contains(name) {
                continue;
            }
            let have = a.scalar.get(name).copied().unwrap_or(0);
            let used = r.scalar.get(name).copied().unwrap_or(0);
            if *want > 0 && *want > have - used {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
    fn resolvable_by_preemption(&self) -> bool {
        true
    }
}

fn fractions(pod: &PodInfo, node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            node.nonzero_cpu + pod.nonzero_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.nonzero_memory + pod.nonzero_memory,
            node.allocatable.memory,
        ),
    ]
}

/// Prefers nodes with the most free cpu and memory after placing the pod.
pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesLeastAllocated"
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot, _: &CycleState) -> i64 {
        let f = fractions(pod, node);
        f.iter()
            .map(|&(req, cap)| {
                if cap <= 0 || req > cap {
                    0
                } else {
                    (cap - req) * MAX_NODE_SCORE / cap
                }
            })
            .sum::<i64>()
            / f.len() as i64
    }
}

/// Prefers the fullest nodes that still fit (bin packing).
pub struct MostAllocated;

impl ScorePlugin for MostAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesMostAllocated"
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot, _: &CycleState) -> i64 {
        let f = fractions(pod, node);
        f.iter()
            .map(|&(req, cap)| {
                if cap <= 0 {
                    0
                } else {
                    req.min(cap) * MAX_NODE_SCORE / cap
                }
            })
            .sum::<i64>()
            / f.len() as i64
    }
}

/// Prefers nodes whose cpu and memory usage stay balanced.
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot, _: &CycleState) -> i64 {
        let f = fractions(pod, node).map(|(req, cap)| {
            if cap <= 0 {
                1.0
            } else {
                (req as f64 / cap as f64).min(1.0)
            }
        });
        let std = (f[0] - f[1]).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use std::sync::Arc;

    #[test]
    fn insufficient_resources_are_named() {
        let mut n = node("n1", 1000, 1 << 30);
        n.add_pod(Arc::new(pod_req("a", 800, 0)));
        let st = CycleState::default();
        let err = NodeResourcesFit::default()
            .filter(&pod_req("p", 300, 2 << 30), &n, &st)
            .unwrap_err();
        assert_eq!(err, vec!["Insufficient cpu", "Insufficient memory"]);
        assert!(
            NodeResourcesFit::default()
                .filter(&pod_req("p", 200, 0), &n, &st)
                .is_ok()
        );
        n.allocatable.pods = 1;
        let err = NodeResourcesFit::default()
            .filter(&pod("p"), &n, &st)
            .unwrap_err();
        assert_eq!(err, vec!["Too many pods"]);
    }

    #[test]
    fn extended_resources_must_be_allocatable() {
        let mut n = node("n1", 1000, 1 << 30);
        let mut p = pod("p");
        p.requests.scalar.insert("example.com/gpu".into(), 1);
        let st = CycleState::default();
        let err = NodeResourcesFit::default().filter(&p, &n, &st).unwrap_err();
        assert_eq!(err, vec!["Insufficient example.com/gpu"]);
        let ignoring = NodeResourcesFit::ignoring(["example.com/gpu".to_string()]);
        assert!(ignoring.filter(&p, &n, &st).is_ok());
        n.allocatable.scalar.insert("example.com/gpu".into(), 2);
        assert!(NodeResourcesFit::default().filter(&p, &n, &st).is_ok());
    }

    #[test]
    fn least_and_most_allocated_disagree() {
        let empty = node("empty", 4000, 4 << 30);
        let mut busy = node("busy", 4000, 4 << 30);
        busy.add_pod(Arc::new(pod_req("a", 2000, 2 << 30)));
        let p = pod_req("p", 1000, 1 << 30);
        let (snap, st) = (Snapshot::default(), CycleState::default());
        assert!(
            LeastAllocated.score(&p, &empty, &snap, &st)
                > LeastAllocated.score(&p, &busy, &snap, &st)
        );
        assert!(
            MostAllocated.score(&p, &empty, &snap, &st)
                < MostAllocated.score(&p, &busy, &snap, &st)
        );
        assert_eq!(LeastAllocated.score(&p, &empty, &snap, &st), 75);
    }

    #[test]
    fn balanced_allocation_prefers_even_usage() {
        let mut cpu_heavy = node("cpu", 4000, 4 << 30);
        cpu_heavy.add_pod(Arc::new(pod_req("a", 3000, 1)));
        let even = node("even", 4000, 4 << 30);
        let p = pod_req("p", 1000, 1 << 30);
        let (snap, st) = (Snapshot::default(), CycleState::default());
        assert!(
            BalancedAllocation.score(&p, &even, &snap, &st)
                > BalancedAllocation.score(&p, &cpu_heavy, &snap, &st)
        );
        assert_eq!(BalancedAllocation.score(&p, &even, &snap, &st), 100);
    }
}
