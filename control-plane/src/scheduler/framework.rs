//! The scheduling framework: the `FilterPlugin` and `ScorePlugin` traits,
//! the `Profile` (which plugins, which weights) and the pure cycle
//! `schedule(pod, &snapshot, &profile) -> Result<NodeName, Unschedulable>`,
//! also available as its two halves `filter` and `select` so extenders
//! can run between them. The per-pod `CycleState` computed once before
//! filtering lives in `cycle_state.rs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

pub use super::cycle_state::{CycleState, NodeTable};
use super::snapshot::{NodeInfo, PodInfo, Snapshot};

/// A node's name.
pub type NodeName = String;

/// Why one node cannot take the pod (one or more reasons from one plugin).
pub type Reasons = Vec<Cow<'static, str>>;

/// Highest score a plugin may give a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// A plugin that rules nodes out.
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name, as in kube-scheduler.
    fn name(&self) -> &'static str;
    /// Runs once per pod. An error makes every node infeasible with that message.
    fn pre_filter(
        &self,
        _pod: &PodInfo,
        _snap: &Snapshot,
        _state: &mut CycleState,
    ) -> Result<(), String> {
        Ok(())
    }
    /// Accepts the node or says why not.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Reasons>;
    /// True when evicting pods from a node could make this filter pass.
    fn resolvable_by_preemption(&self) -> bool {
        false
    }
}

/// A plugin that ranks feasible nodes.
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name, as in kube-scheduler.
    fn name(&self) -> &'static str;
    /// Runs once per pod; `false` skips the plugin (all nodes score 0).
    fn pre_score(&self, _pod: &PodInfo, _snap: &Snapshot, _state: &mut CycleState) -> bool {
        true
    }
    /// A raw score for the node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot, state: &CycleState) -> i64;
    /// Maps raw scores into 0..=MAX_NODE_SCORE (default: clamp).
    fn normalize(&self, scores: &mut [i64]) {
        for s in scores {
            *s = (*s).clamp(0, MAX_NODE_SCORE);
        }
    }
}

/// Which plugins run and how scores are weighted.
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
    /// Stop filtering after this share of nodes proved feasible (None: adaptive).
    pub percentage_of_nodes_to_score: Option<u32>,
}

/// Why a pod fits nowhere, in the shape kube-scheduler reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unschedulable {
    pub num_nodes: usize,
    /// Reason → number of nodes that failed for it.
    pub reasons: BTreeMap<String, usize>,
    /// A PreFilter failure that applies to every node.
    pub pre_filter: Option<String>,
    /// Nodes where only preemption-resolvable filters failed.
    pub preemption_candidates: Vec<NodeName>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available", self.num_nodes)?;
        if let Some(msg) = &self.pre_filter {
            return write!(f, ": {msg}.");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        if parts.is_empty() {
            f.write_str(".")
        } else {
            write!(f, ": {}.", parts.join(", "))
        }
    }
}

impl std::error::Error for Unschedulable {}

/// How many feasible nodes to find before scoring (kube-scheduler's adaptive rule).
pub fn feasible_nodes_to_find(total: usize, percentage: Option<u32>) -> usize {
    const MIN: usize = 100;
    if total < MIN {
        return total;
    }
    let pct = match percentage {
        Some(p) if p > 0 => p.min(100) as usize,
        _ => (50usize.saturating_sub(total / 125)).max(5),
    };
    (total * pct / 100).max(MIN).min(total)
}

fn pod_seed(pod: &PodInfo) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pod.namespace.hash(&mut h);
    pod.name.hash(&mut h);
    pod.uid.hash(&mut h);
    h.finish() | 1
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// One scheduling cycle: PreFilter, Filter (stopping once enough nodes are
/// feasible, starting at a per-pod offset), PreScore, Score, normalize,
/// weighted sum, highest wins with ties broken at random (seeded by the pod,
/// so the cycle is a pure function of its inputs). The same as `filter`
/// then `select` with nothing added; the scheduler runs extenders between
/// the two (`extender::schedule_with_extenders`).
pub fn schedule(
    pod: &PodInfo,
    snap: &Snapshot,
    profile: &Profile,
) -> Result<NodeName, Unschedulable> {
    let mut filtered = filter(pod, snap, profile)?;
    match select(pod, snap, profile, &mut filtered, &[]) {
        Some(node) => Ok(node),
        None => Err(diagnose(pod, snap, &filtered.state, profile)),
    }
}

/// What the filter phase leaves for scoring: the pod's cycle state and
/// the nodes that passed every filter.
pub struct Filtered<'a> {
    pub state: CycleState,
    /// Feasible nodes; a later step (an extender) may remove some.
    pub feasible: Vec<&'a NodeInfo>,
    seed: u64,
}

/// The first half of the cycle: PreFilter, then Filter until enough nodes
/// are feasible. No feasible node is an `Unschedulable` naming each
/// node's reason.
pub fn filter<'a>(
    pod: &PodInfo,
    snap: &'a Snapshot,
    profile: &Profile,
) -> Result<Filtered<'a>, Unschedulable> {
    let mut state = CycleState::default();
    for f in &profile.filters {
        if let Err(msg) = f.pre_filter(pod, snap, &mut state) {
            return Err(Unschedulable {
                num_nodes: snap.nodes().len(),
                pre_filter: Some(msg),
                ..Default::default()
            });
        }
    }
    let seed = pod_seed(pod);
    let feasible = find_feasible(pod, snap, &state, profile, seed);
    if feasible.is_empty() {
        return Err(diagnose(pod, snap, &state, profile));
    }
    Ok(Filtered {
        state,
        feasible,
        seed,
    })
}

/// The second half: scores the feasible nodes, adds `extra` (one value
/// per feasible node, e.g. extender scores; may be empty), and picks the
/// highest. A single feasible node is chosen without scoring; None when
/// none is left.
pub fn select(
    pod: &PodInfo,
    snap: &Snapshot,
    profile: &Profile,
    filtered: &mut Filtered<'_>,
    extra: &[i64],
) -> Option<NodeName> {
    let feasible = &filtered.feasible;
    match feasible.len() {
        0 => return None,
        1 => return Some(feasible[0].name.clone()),
        _ => {}
    }
    let mut totals = score_nodes(pod, snap, feasible, profile, &mut filtered.state);
    for (t, e) in totals.iter_mut().zip(extra) {
        *t += e;
    }
    let mut rng = filtered.seed;
    let mut best = i64::MIN;
    let mut chosen = 0;
    let mut ties = 0u64;
    for (i, &t) in totals.iter().enumerate() {
        if t > best {
            best = t;
            chosen = i;
            ties = 1;
        } else if t == best {
            ties += 1;
            if xorshift(&mut rng).is_multiple_of(ties) {
                chosen = i;
            }
        }
    }
    Some(feasible[chosen].name.clone())
}

/// Filters nodes, starting at an offset drawn from `seed`, until
/// `feasible_nodes_to_find` of them pass; only the PreFilter's candidates
/// when it narrowed them, and without the filters it skipped. Failures are
/// not recorded here (see `diagnose`).
fn find_feasible<'a>(
    pod: &PodInfo,
    snap: &'a Snapshot,
    state: &CycleState,
    profile: &Profile,
    seed: u64,
) -> Vec<&'a NodeInfo> {
    let nodes = snap.nodes();
    let candidates = state.node_candidates.as_deref();
    let total = candidates.map_or(nodes.len(), <[usize]>::len);
    if total == 0 {
        return Vec::new();
    }
    let want = feasible_nodes_to_find(total, profile.percentage_of_nodes_to_score);
    let start = (seed as usize) % total;
    let filters: Vec<&dyn FilterPlugin> = profile
        .filters
        .iter()
        .map(|f| f.as_ref())
        .filter(|f| !state.is_skipped(f.name()))
        .collect();
    let mut feasible = Vec::with_capacity(want.min(1024));
    for k in (start..total).chain(0..start) {
        let node = match candidates {
            Some(c) => &nodes[c[k]],
            None => &nodes[k],
        };
        if filters.iter().all(|f| f.filter(pod, node, state).is_ok()) {
            feasible.push(node);
            if feasible.len() >= want {
                break;
            }
        }
    }
    feasible
}

/// Why no node fits: every node's first failing filter, counted by reason,
/// and the nodes where preemption could help (kube-scheduler's FitError).
/// Runs every filter on every node, so only unschedulable pods pay for it.
pub fn diagnose(
    pod: &PodInfo,
    snap: &Snapshot,
    state: &CycleState,
    profile: &Profile,
) -> Unschedulable {
    let mut reasons: Vec<(Cow<'static, str>, usize)> = Vec::new();
    let mut fail = Unschedulable {
        num_nodes: snap.nodes().len(),
        ..Default::default()
    };
    for node in snap.nodes() {
        let Err((failed, resolvable)) = run_filters(pod, node, state, profile) else {
            continue;
        };
        for r in failed {
            match reasons.iter_mut().find(|(seen, _)| *seen == r) {
                Some((_, n)) => *n += 1,
                None => reasons.push((r, 1)),
            }
        }
        if resolvable {
            fail.preemption_candidates.push(node.name.clone());
        }
    }
    fail.reasons = reasons
        .into_iter()
        .map(|(r, n)| (r.into_owned(), n))
        .collect();
    fail
}

/// Runs every filter on one node; the first failing plugin's reasons and
/// whether preemption could resolve them.
pub fn run_filters(
    pod: &PodInfo,
    node: &NodeInfo,
    state: &CycleState,
    profile: &Profile,
) -> Result<(), (Reasons, bool)> {
    for f in &profile.filters {
        if let Err(r) = f.filter(pod, node, state) {
            return Err((r, f.resolvable_by_preemption()));
        }
    }
    Ok(())
}

/// Weighted, normalized scores of the feasible nodes.
pub fn score_nodes(
    pod: &PodInfo,
    snap: &Snapshot,
    feasible: &[&NodeInfo],
    profile: &Profile,
    state: &mut CycleState,
) -> Vec<i64> {
    let mut totals = vec![0i64; feasible.len()];
    let mut scores = vec![0i64; feasible.len()];
    for (plugin, weight) in &profile.scores {
        if !plugin.pre_score(pod, snap, state) {
            continue;
        }
        for (s, node) in scores.iter_mut().zip(feasible) {
            *s = plugin.score(pod, node, snap, state);
        }
        plugin.normalize(&mut scores);
        for (t, s) in totals.iter_mut().zip(&scores) {
            *t += s * weight;
        }
    }
    totals
}

/// Scales `scores` so the highest becomes MAX_NODE_SCORE (reverse: lowest).
pub fn normalize_by_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = match (max, reverse) {
            (0, false) => 0,
            (0, true) => MAX_NODE_SCORE,
            (m, false) => *s * MAX_NODE_SCORE / m,
            (m, true) => MAX_NODE_SCORE - *s * MAX_NODE_SCORE / m,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_kubernetes_shape() {
        let u = Unschedulable {
            num_nodes: 3,
            reasons: [
                (
                    "node(s) didn't match Pod's node affinity/selector".to_string(),
                    2,
                ),
                ("Insufficient cpu".to_string(), 1),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            u.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        let none = Unschedulable::default();
        assert_eq!(none.to_string(), "0/0 nodes are available.");
    }

    #[test]
    fn adaptive_feasible_count() {
        assert_eq!(feasible_nodes_to_find(50, None), 50);
        assert_eq!(feasible_nodes_to_find(5000, None), 500);
        assert_eq!(feasible_nodes_to_find(200, None), 100);
        assert_eq!(feasible_nodes_to_find(5000, Some(100)), 5000);
    }

    #[test]
    fn whole_cycle_reports_per_node_reasons() {
        use crate::scheduler::plugins::testutil::*;
        let mut snap = Snapshot::default();
        let mut small = node("small", 500, 1 << 30);
        small.labels.insert("zone".into(), "z2".into());
        snap.upsert_node(small);
        let mut big1 = node("big1", 4000, 4 << 30);
        big1.labels.insert("zone".into(), "z1".into());
        snap.upsert_node(big1);
        snap.upsert_node(node("big2", 4000, 4 << 30));
        let profile = Profile::default();
        let mut p = pod_req("p", 1000, 0);
        p.node_selector.insert("zone".into(), "z2".into());
        let err = schedule(&p, &snap, &profile).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        assert_eq!(err.preemption_candidates, vec!["small".to_string()]);
        p.node_selector.clear();
        let chosen = schedule(&p, &snap, &profile).unwrap();
        assert!(chosen.starts_with("big"), "{chosen}");
    }

    #[test]
    fn ties_are_broken_across_nodes() {
        use crate::scheduler::plugins::testutil::*;
        let mut snap = Snapshot::default();
        for i in 0..4 {
            snap.upsert_node(node(&format!("n{i}"), 4000, 4 << 30));
        }
        let profile = Profile::default();
        let chosen: std::collections::HashSet<_> = (0..40)
            .map(|i| schedule(&pod(&format!("p{i}")), &snap, &profile).unwrap())
            .collect();
        assert!(chosen.len() > 1, "{chosen:?}");
    }
}
