//! Completion indexes of Indexed Jobs: reading a pod's index, the
//! `status.completedIndexes` interval syntax ("0-2,5"), which indexes still
//! need a pod, and which active pods are redundant. Pure; the Job
//! controller (`job.rs`) does the I/O.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::pods::deletion_rank;

/// Annotation and label carrying a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The pod's completion index (annotation first, then label), if valid for `completions`.
pub fn pod_index(p: &Pod, completions: i32) -> Option<i32> {
    let text = p
        .annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| p.labels().get(COMPLETION_INDEX))?;
    text.parse().ok().filter(|i| (0..completions).contains(i))
}

/// Parses `status.completedIndexes`, keeping indexes below `completions`.
pub fn parse_intervals(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse(), b.parse()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            out.extend(i32::max(lo, 0)..=i32::min(hi, completions - 1));
        }
    }
    out
}

/// Formats indexes as `status.completedIndexes` does: "0-2,5,7-8".
pub fn format_intervals(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(lo) = iter.next() {
        let mut hi = lo;
        while iter.peek() == Some(&(hi + 1)) {
            hi += 1;
            iter.next();
        }
        parts.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        });
    }
    parts.join(",")
}

/// The lowest `n` indexes below `completions` that neither succeeded nor
/// have a pod (`taken`).
pub fn pending_indexes(
    completions: i32,
    completed: &BTreeSet<i32>,
    taken: &BTreeSet<i32>,
    n: usize,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !completed.contains(i) && !taken.contains(i))
        .take(n)
        .collect()
}

/// Active pods an Indexed Job must delete: those without a valid index,
/// those whose index already succeeded, and all but the least disposable
/// pod of each index.
pub fn redundant_pods(
    active: &[Arc<Pod>],
    completions: i32,
    completed: &BTreeSet<i32>,
) -> Vec<Arc<Pod>> {
    let mut by_keep: Vec<&Arc<Pod>> = active.iter().collect();
    by_keep.sort_by_key(|p| std::cmp::Reverse(deletion_rank(p)));
    let mut seen = BTreeSet::new();
    by_keep
        .into_iter()
        .filter(|p| match pod_index(p, completions) {
            Some(i) => completed.contains(&i) || !seen.insert(i),
            None => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use kube::api::ObjectMeta;

    fn pod(name: &str, index: &str, node: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some([(COMPLETION_INDEX.to_string(), index.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: None,
        })
    }

    #[test]
    fn intervals_round_trip() {
        let set: BTreeSet<i32> = [0, 1, 2, 5, 7, 8].into();
        assert_eq!(format_intervals(&set), "0-2,5,7-8");
        assert_eq!(parse_intervals("0-2,5,7-8", 10), set);
        assert_eq!(parse_intervals("", 10), BTreeSet::new());
        assert_eq!(parse_intervals("3-12,x,1", 5), [1, 3, 4].into());
        assert_eq!(format_intervals(&BTreeSet::new()), "");
    }

    #[test]
    fn pending_skips_completed_and_taken() {
        let completed = [0, 2].into();
        let taken = [1, 4].into();
        assert_eq!(pending_indexes(6, &completed, &taken, 10), vec![3, 5]);
        assert_eq!(pending_indexes(6, &completed, &taken, 1), vec![3]);
        assert!(pending_indexes(2, &[0, 1].into(), &taken, 3).is_empty());
    }

    #[test]
    fn redundant_pods_keep_one_per_open_index() {
        let pods = vec![
            pod("a", "0", Some("n1")),
            pod("b", "0", None),
            pod("c", "1", None),
            pod("d", "9", None),
            pod("e", "x", None),
        ];
        let doomed: Vec<String> = redundant_pods(&pods, 3, &[1].into())
            .iter()
            .map(|p| p.name_any())
            .collect();
        // b duplicates a (which is scheduled), 1 already succeeded, 9 and x are invalid.
        assert_eq!(doomed.len(), 4);
        for n in ["b", "c", "d", "e"] {
            assert!(doomed.contains(&n.to_string()), "{n}");
        }
    }
}
