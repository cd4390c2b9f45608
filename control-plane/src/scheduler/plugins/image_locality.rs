//! ImageLocality: prefers nodes that already have the pod's images, scaled
//! by how widely each image is spread (kube-scheduler's formula with its
//! 23 MB / 1000 MB-per-container thresholds).

use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, ScorePlugin};
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

/// Scores nodes by the bytes of the pod's images they already hold.
pub struct ImageLocality;

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn pre_score(&self, pod: &PodInfo, _: &Snapshot, _: &mut CycleState) -> bool {
        !pod.images.is_empty()
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot, _: &CycleState) -> i64 {
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
