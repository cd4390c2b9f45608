//! The snapshot's indexes, so PreFilter and PreScore visit the nodes a
//! selector can match instead of every node and every placed pod, as
//! kube-scheduler's snapshot keeps its lists of pods with affinity:
//! `NodeLabelIndex` (node label → nodes), `NodeImageIndex` (image → nodes
//! reporting it), `PodLabelIndex` (namespace and pod label → nodes holding
//! such pods) and `AntiAffinityIndex` (placed pods with required
//! anti-affinity, by a label their terms require).
//! Nodes are positions in `Snapshot::nodes()`; `Snapshot` moves them when
//! a node is swap-removed. Indexes only narrow: callers still run the full
//! match on what they return.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::snapshot::PodInfo;
use crate::controllers::runtime::selector::Labels;

/// Node label key → value → positions of the nodes carrying it.
#[derive(Clone, Debug, Default)]
pub struct NodeLabelIndex {
    map: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl NodeLabelIndex {
    /// Records the labels of the node at `pos`.
    pub fn add(&mut self, labels: &Labels, pos: usize) {
        for (k, v) in labels {
            self.map
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(pos);
        }
    }

    /// Forgets the labels of the node at `pos`.
    pub fn remove(&mut self, labels: &Labels, pos: usize) {
        for (k, v) in labels {
            let Some(values) = self.map.get_mut(k) else {
                continue;
            };
            if let Some(nodes) = values.get_mut(v) {
                nodes.retain(|&p| p != pos);
                if nodes.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.map.remove(k);
            }
        }
    }

    /// The node with `labels` moved from position `from` to `to`.
    pub fn moved(&mut self, labels: &Labels, from: usize, to: usize) {
        for (k, v) in labels {
            if let Some(nodes) = self.map.get_mut(k).and_then(|m| m.get_mut(v)) {
                for p in nodes.iter_mut().filter(|p| **p == from) {
                    *p = to;
                }
            }
        }
    }

    /// Positions of the nodes labelled `key=value`.
    pub fn nodes(&self, key: &str, value: &str) -> &[usize] {
        self.map
            .get(key)
            .and_then(|m| m.get(value))
            .map_or(&[], Vec::as_slice)
    }

    /// Every value of `key` with the positions of its nodes (never empty).
    pub fn values(&self, key: &str) -> impl Iterator<Item = (&str, &[usize])> {
        self.map
            .get(key)
            .into_iter()
            .flatten()
            .map(|(v, n)| (v.as_str(), n.as_slice()))
    }
}

/// Image name → (position, size in bytes) of the nodes reporting it.
#[derive(Clone, Debug, Default)]
pub struct NodeImageIndex {
    map: HashMap<String, Vec<(usize, i64)>>,
}

impl NodeImageIndex {
    /// Records the images of the node at `pos`.
    pub fn add(&mut self, images: &HashMap<String, i64>, pos: usize) {
        for (name, size) in images {
            self.map.entry(name.clone()).or_default().push((pos, *size));
        }
    }

    /// Forgets the images of the node at `pos`.
    pub fn remove(&mut self, images: &HashMap<String, i64>, pos: usize) {
        for name in images.keys() {
            if let Some(nodes) = self.map.get_mut(name) {
                nodes.retain(|(p, _)| *p != pos);
                if nodes.is_empty() {
                    self.map.remove(name);
                }
            }
        }
    }

    /// The node with `images` moved from position `from` to `to`.
    pub fn moved(&mut self, images: &HashMap<String, i64>, from: usize, to: usize) {
        for name in images.keys() {
            for (p, _) in self.map.get_mut(name).into_iter().flatten() {
                if *p == from {
                    *p = to;
                }
            }
        }
    }

    /// (position, size) of the nodes reporting `image`.
    pub fn nodes(&self, image: &str) -> &[(usize, i64)] {
        self.map.get(image).map_or(&[], Vec::as_slice)
    }
}

/// Node position → placed pods there carrying one label value.
type CountByNode = HashMap<usize, u32>;
/// Label value → pods per node.
type ByValue = HashMap<String, CountByNode>;

/// Namespace → pod label key → value → node position → placed pods there
/// carrying that label.
#[derive(Clone, Debug, Default)]
pub struct PodLabelIndex {
    map: HashMap<String, HashMap<String, ByValue>>,
}

impl PodLabelIndex {
    /// Records `pod` placed on the node at `pos`.
    pub fn add(&mut self, pod: &PodInfo, pos: usize) {
        let keys = self.map.entry(pod.namespace.clone()).or_default();
        for (k, v) in &pod.labels {
            *keys
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .entry(pos)
                .or_default() += 1;
        }
    }

    /// Forgets `pod` on the node at `pos`.
    pub fn remove(&mut self, pod: &PodInfo, pos: usize) {
        let Some(keys) = self.map.get_mut(&pod.namespace) else {
            return;
        };
        for (k, v) in &pod.labels {
            let Some(values) = keys.get_mut(k) else {
                continue;
            };
            if let Some(nodes) = values.get_mut(v) {
                if let Some(n) = nodes.get_mut(&pos) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        nodes.remove(&pos);
                    }
                }
                if nodes.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                keys.remove(k);
            }
        }
        if keys.is_empty() {
            self.map.remove(&pod.namespace);
        }
    }

    /// Namespaces with placed pods.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Positions of the nodes that may hold pods of `namespace` matching
    /// `selector`: those with pods carrying its rarest matchLabels pair.
    /// `None` when the selector has no matchLabels (any node may).
    pub fn candidates(&self, namespace: &str, selector: &LabelSelector) -> Option<Vec<usize>> {
        let pairs = selector.match_labels.as_ref().filter(|m| !m.is_empty())?;
        let keys = self.map.get(namespace);
        let mut best: Option<&HashMap<usize, u32>> = None;
        for (k, v) in pairs {
            let Some(nodes) = keys.and_then(|m| m.get(k)).and_then(|m| m.get(v)) else {
                return Some(Vec::new());
            };
            if best.is_none_or(|b| nodes.len() < b.len()) {
                best = Some(nodes);
            }
        }
        let mut out: Vec<usize> = best.into_iter().flat_map(|m| m.keys().copied()).collect();
        out.sort_unstable();
        Some(out)
    }
}

/// A placed pod with required anti-affinity and its node's position.
#[derive(Clone, Debug)]
pub struct AntiEntry {
    pub pod: Arc<PodInfo>,
    pub node: usize,
}

/// Placed pods with required anti-affinity terms, filed under the first
/// matchLabels pair of each term (a term can only select pods carrying
/// it); terms without matchLabels go to `unindexed`.
#[derive(Clone, Debug, Default)]
pub struct AntiAffinityIndex {
    by_label: HashMap<String, HashMap<String, Vec<AntiEntry>>>,
    unindexed: Vec<AntiEntry>,
    pods: usize,
}

fn required_anti_terms(pod: &PodInfo) -> &[k8s_openapi::api::core::v1::PodAffinityTerm] {
    pod.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

/// Where a term is filed: its first matchLabels pair, `None` for unindexed,
/// `Some(None)` when the term has no selector (it selects nothing).
fn filing(term: &k8s_openapi::api::core::v1::PodAffinityTerm) -> Option<Option<(&str, &str)>> {
    let Some(sel) = &term.label_selector else {
        return Some(None);
    };
    let (k, v) = sel.match_labels.as_ref()?.iter().next()?;
    Some(Some((k, v)))
}

impl AntiAffinityIndex {
    /// Records `pod` (which has required anti-affinity) on the node at `pos`.
    pub fn add(&mut self, pod: &Arc<PodInfo>, pos: usize) {
        let entry = || AntiEntry {
            pod: pod.clone(),
            node: pos,
        };
        self.pods += 1;
        for term in required_anti_terms(pod) {
            match filing(term) {
                Some(Some((k, v))) => self
                    .by_label
                    .entry(k.to_string())
                    .or_default()
                    .entry(v.to_string())
                    .or_default()
                    .push(entry()),
                Some(None) => {}
                None => self.unindexed.push(entry()),
            }
        }
    }

    /// Forgets `pod`.
    pub fn remove(&mut self, pod: &PodInfo) {
        let same = |e: &AntiEntry| e.pod.name == pod.name && e.pod.namespace == pod.namespace;
        self.pods = self.pods.saturating_sub(1);
        for term in required_anti_terms(pod) {
            match filing(term) {
                Some(Some((k, v))) => {
                    if let Some(values) = self.by_label.get_mut(k) {
                        if let Some(list) = values.get_mut(v) {
                            list.retain(|e| !same(e));
                            if list.is_empty() {
                                values.remove(v);
                            }
                        }
                        if values.is_empty() {
                            self.by_label.remove(k);
                        }
                    }
                }
                Some(None) => {}
                None => self.unindexed.retain(|e| !same(e)),
            }
        }
    }

    /// The node of `pod` moved from position `from` to `to`.
    pub fn moved(&mut self, pod: &PodInfo, from: usize, to: usize) {
        let same = |e: &AntiEntry| e.pod.name == pod.name && e.pod.namespace == pod.namespace;
        for term in required_anti_terms(pod) {
            let list = match filing(term) {
                Some(Some((k, v))) => self.by_label.get_mut(k).and_then(|m| m.get_mut(v)),
                Some(None) => None,
                None => Some(&mut self.unindexed),
            };
            for e in list.into_iter().flatten() {
                if e.node == from && same(e) {
                    e.node = to;
                }
            }
        }
    }

    /// Placed pods with required anti-affinity.
    pub fn len(&self) -> usize {
        self.pods
    }

    /// True when no placed pod has required anti-affinity.
    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }

    /// Placed pods whose anti-affinity terms may select a pod with
    /// `labels` (a pod may appear more than once).
    pub fn candidates<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a AntiEntry> {
        labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(k).and_then(|m| m.get(v)))
            .flatten()
            .chain(&self.unindexed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use crate::scheduler::snapshot::{NodeInfo, Snapshot};
    use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity};

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        let mut n = node(name, 4000, 4 << 30);
        n.labels.insert("zone".into(), zone.into());
        n
    }

    fn app(name: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some([("app".to_string(), name.to_string())].into()),
            ..Default::default()
        }
    }

    fn sorted(v: &[usize]) -> Vec<usize> {
        let mut v = v.to_vec();
        v.sort();
        v
    }

    #[test]
    fn indexes_follow_placements_and_node_moves() {
        let mut snap = Snapshot::default();
        for (n, z) in [("a", "z1"), ("b", "z2"), ("c", "z1")] {
            snap.upsert_node(zoned(n, z));
        }
        snap.place_pod(labelled("w1", &[("app", "web")]), "a");
        snap.place_pod(labelled("w2", &[("app", "web")]), "c");
        let mut db = (*labelled("db", &[("app", "db")])).clone();
        db.affinity = Some(Arc::new(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    topology_key: "zone".into(),
                    label_selector: Some(app("web")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }));
        snap.place_pod(Arc::new(db), "c");
        assert_eq!(sorted(snap.node_labels().nodes("zone", "z1")), vec![0, 2]);
        assert_eq!(
            snap.pod_labels().candidates("default", &app("web")),
            Some(vec![0, 2])
        );
        assert_eq!(
            snap.pod_labels().candidates("other", &app("web")),
            Some(vec![])
        );
        assert_eq!(
            snap.pod_labels()
                .candidates("default", &LabelSelector::default()),
            None
        );
        let web = crate::scheduler::snapshot::labels_of(&[("app", "web")]);
        let nodes: Vec<usize> = snap
            .anti_affinity()
            .candidates(&web)
            .map(|e| e.node)
            .collect();
        assert_eq!(nodes, vec![2]);

        // Removing "a" moves "c" into its slot; every index follows.
        snap.remove_node("a");
        assert_eq!(snap.position("c"), Some(0));
        assert_eq!(snap.node_labels().nodes("zone", "z1"), &[0]);
        assert_eq!(
            snap.pod_labels().candidates("default", &app("web")),
            Some(vec![0])
        );
        let nodes: Vec<usize> = snap
            .anti_affinity()
            .candidates(&web)
            .map(|e| e.node)
            .collect();
        assert_eq!(nodes, vec![0]);

        snap.unplace_pod("default", "w2");
        snap.unplace_pod("default", "db");
        assert_eq!(
            snap.pod_labels().candidates("default", &app("web")),
            Some(vec![])
        );
        assert!(!snap.has_anti_affinity_pods());
        assert_eq!(snap.anti_affinity().candidates(&web).count(), 0);

        // A relabelled node moves between label buckets.
        snap.upsert_node(zoned("b", "z1"));
        assert_eq!(sorted(snap.node_labels().nodes("zone", "z1")), vec![0, 1]);
        assert!(snap.node_labels().nodes("zone", "z2").is_empty());
    }
}
