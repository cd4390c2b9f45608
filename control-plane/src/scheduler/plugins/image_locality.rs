//! ImageLocality: prefers nodes that already have the pod's images, scaled
//! by how widely each image is spread (kube-scheduler's formula with its
//! 23 MB / 1000 MB-per-container thresholds). PreScore sums every node's
//! bytes once from the snapshot's image index, so Score reads one number
//! instead of probing each node's image map.

use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, NodeTable, ScorePlugin};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Image names as nodes report them: `nginx` is `docker.io/library/nginx:latest`.
fn normalized(image: &str) -> Vec<String> {
    let mut out = vec![image.to_string()];
    if !image.contains(':') && !image.contains('@') {
        out.push(format!("{image}:latest"));
    }
    out
}

/// The spread-scaled bytes of the pod's images `node` holds, looked up on
/// the node (each image counted under the first name the node reports).
fn node_bytes(pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> i64 {
    if node.images.is_empty() {
        return 0;
    }
    let total = snap.nodes().len().max(1) as i64;
    let mut sum = 0i64;
    for img in &pod.images {
        for name in normalized(img) {
            if let Some(size) = node.images.get(&name) {
                sum += size * snap.image_spread(&name) as i64 / total;
                break;
            }
        }
    }
    sum
}

/// `node_bytes` for every node at once, from the image index.
fn all_node_bytes(pod: &PodInfo, snap: &Snapshot) -> NodeTable<i64> {
    let n = snap.nodes().len();
    let total = n.max(1) as i64;
    let mut table = NodeTable::new(snap, 0i64);
    let sums = table.values_mut();
    for img in &pod.images {
        let names = normalized(img);
        let mut counted = vec![false; if names.len() > 1 { n } else { 0 }];
        for name in &names {
            let nodes = snap.node_images().nodes(name);
            let spread = nodes.len() as i64;
            for &(pos, size) in nodes {
                if let Some(c) = counted.get_mut(pos) {
                    if *c {
                        continue;
                    }
                    *c = true;
                }
                sums[pos] += size * spread / total;
            }
        }
    }
    table
}

/// Scores nodes by the bytes of the pod's images they already hold.
pub struct ImageLocality;

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn pre_score(&self, pod: &PodInfo, snap: &Snapshot, state: &mut CycleState) -> bool {
        if pod.images.is_empty() {
            return false;
        }
        let table = all_node_bytes(pod, snap);
        // No node has any of the images: every node would score 0.
        let any = table.values().iter().any(|b| *b > 0);
        state.image_bytes = Some(table);
        any
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot, state: &CycleState) -> i64 {
        let sum = match state.image_bytes.as_ref().and_then(|t| t.get(node)) {
            Some(b) => *b,
            // Without PreScore, or a node that is not the snapshot's own.
            None => node_bytes(pod, node, snap),
        };
        let max = MAX_CONTAINER_THRESHOLD * pod.images.len() as i64;
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;

    #[test]
    fn nodes_with_the_image_score_higher() {
        let mut snap = Snapshot::default();
        let mut has = node("has", 1000, 1 << 30);
        has.images.insert("big:1".into(), 500 * MB);
        snap.upsert_node(has);
        snap.upsert_node(node("lacks", 1000, 1 << 30));
        let mut p = pod("p");
        p.images = vec!["big:1".into()];
        let st = CycleState::default();
        let s_has = ImageLocality.score(&p, snap.node("has").unwrap(), &snap, &st);
        let s_lacks = ImageLocality.score(&p, snap.node("lacks").unwrap(), &snap, &st);
        assert!(s_has > 0, "{s_has}");
        assert_eq!(s_lacks, 0);
    }
}
