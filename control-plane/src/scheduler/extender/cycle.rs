//! The scheduling cycle with extenders, kube-scheduler's order: the pure
//! filter phase (`framework::filter`), then each interested extender's
//! filter in turn over the nodes still feasible, then every interested
//! prioritizer at once, their scaled scores added to the plugin scores in
//! `framework::select`. The calls are the only I/O; the snapshot is only
//! read. Binding stays in the runner.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::wire::{self, Candidate};
use super::{Extender, ExtenderError};
use crate::controllers::runtime::{Cache, ObjectKey};
use crate::scheduler::framework::{self, NodeName, Profile, Unschedulable};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Why a cycle with extenders chose no node.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// No node fits: the in-tree filters' and the extenders' reasons.
    #[error("{0}")]
    Unschedulable(Unschedulable),
    /// An extender that is not ignorable failed; retry after back-off.
    #[error("{0}")]
    Extender(ExtenderError),
}

/// One scheduling cycle for `pod` (whose scheduling facts are `info`),
/// consulting the extenders interested in it. `nodes` supplies the Node
/// objects sent to extenders without a node cache.
pub async fn schedule_with_extenders(
    pod: &Pod,
    info: &PodInfo,
    snap: &Snapshot,
    profile: &Profile,
    extenders: &[Extender],
    nodes: &Cache<Node>,
) -> Result<NodeName, CycleError> {
    let mut filtered = framework::filter(info, snap, profile).map_err(CycleError::Unschedulable)?;
    let interested: Vec<&Extender> = extenders.iter().filter(|e| e.is_interested(pod)).collect();
    let mut rejected: BTreeMap<String, String> = BTreeMap::new();
    for ext in interested.iter().filter(|e| e.filters()) {
        if filtered.feasible.is_empty() {
            break;
        }
        let objects = node_objects(&filtered.feasible, nodes);
        let candidates = candidates(&filtered.feasible, &objects);
        match ext.filter(pod, &candidates).await {
            Ok(outcome) => {
                filtered
                    .feasible
                    .retain(|n| outcome.passed.contains(&n.name));
                rejected.extend(outcome.failed);
            }
            Err(e) if ext.is_ignorable() => {
                tracing::warn!(extender = ext.name(), error = %e, "ignorable extender failed; scheduling without it");
            }
            Err(e) => return Err(CycleError::Extender(e)),
        }
    }
    if filtered.feasible.is_empty() {
        let mut fail = framework::diagnose(info, snap, &filtered.state, profile);
        add_reasons(&mut fail, &rejected);
        return Err(CycleError::Unschedulable(fail));
    }
    let mut extra = vec![0i64; filtered.feasible.len()];
    if filtered.feasible.len() > 1 {
        let objects = node_objects(&filtered.feasible, nodes);
        let candidates = candidates(&filtered.feasible, &objects);
        let names: Vec<&str> = candidates.iter().map(|c| c.name).collect();
        let calls = interested
            .iter()
            .filter(|e| e.prioritizes())
            .map(|e| async { (*e, e.prioritize(pod, &candidates).await) });
        for (ext, answer) in join_all(calls).await {
            match answer {
                Ok(scores) => wire::add_scores(&mut extra, &names, &scores, ext.weight()),
                // kube-scheduler ignores prioritize errors: the other scores decide.
                Err(e) => {
                    tracing::warn!(extender = ext.name(), error = %e, "extender gave no scores; ranking without them");
                }
            }
        }
    }
    framework::select(info, snap, profile, &mut filtered, &extra).ok_or_else(|| {
        CycleError::Unschedulable(framework::diagnose(info, snap, &filtered.state, profile))
    })
}

/// The cached Node object of each feasible node (None when the cache lost it).
fn node_objects(feasible: &[&NodeInfo], nodes: &Cache<Node>) -> Vec<Option<Arc<Node>>> {
    feasible
        .iter()
        .map(|n| nodes.get(&ObjectKey::cluster(n.name.as_str())))
        .collect()
}

fn candidates<'a>(
    feasible: &[&'a NodeInfo],
    objects: &'a [Option<Arc<Node>>],
) -> Vec<Candidate<'a>> {
    feasible
        .iter()
        .zip(objects)
        .map(|(n, o)| Candidate {
            name: n.name.as_str(),
            node: o.as_deref(),
        })
        .collect()
}

/// Counts the extenders' reasons beside the in-tree filters' (each node
/// an extender rejected passed every in-tree filter, so none is counted twice).
fn add_reasons(fail: &mut Unschedulable, rejected: &BTreeMap<String, String>) {
    for reason in rejected.values() {
        *fail.reasons.entry(reason.clone()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Json;
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;
    use crate::scheduler::ExtenderConfig;
    use crate::scheduler::plugins::testutil::{node, pod_req};

    #[test]
    fn extender_reasons_join_the_in_tree_ones() {
        let mut fail = Unschedulable {
            num_nodes: 3,
            reasons: [("Insufficient cpu".to_string(), 1)].into(),
            ..Default::default()
        };
        let rejected = BTreeMap::from([
            ("n2".to_string(), "no GPU left".to_string()),
            ("n3".to_string(), "no GPU left".to_string()),
        ]);
        add_reasons(&mut fail, &rejected);
        assert_eq!(
            fail.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 no GPU left."
        );
    }

    /// Serves a test extender on 127.0.0.1:0: `/ok/filter` drops n1 with a
    /// reason, `/ok/prioritize` gives n3 full marks; `/broken/filter`
    /// answers 500 (counting calls) and `/slow/filter` never in time.
    async fn serve(calls: Arc<AtomicUsize>) -> String {
        let filter = |Json(args): Json<Value>| async move {
            let names = args["NodeNames"].as_array().cloned().unwrap_or_default();
            let kept: Vec<Value> = names.into_iter().filter(|n| n != "n1").collect();
            Json(json!({"NodeNames": kept, "FailedNodes": {"n1": "n1 is reserved"}, "Error": ""}))
        };
        let prioritize = |Json(_): Json<Value>| async move {
            Json(json!([{"Host": "n3", "Score": 10}, {"Host": "n2", "Score": 0}]))
        };
        let broken = move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { (http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }
        };
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(json!({}))
        };
        let app = axum::Router::new()
            .route("/ok/filter", post(filter))
            .route("/ok/prioritize", post(prioritize))
            .route("/broken/filter", post(broken))
            .route("/slow/filter", post(slow));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn ext(base: &str, path: &str, prioritize: bool, ignorable: bool) -> Extender {
        Extender::new(&ExtenderConfig {
            url_prefix: format!("{base}/{path}"),
            filter_verb: Some("filter".into()),
            prioritize_verb: prioritize.then(|| "prioritize".into()),
            weight: 20,
            node_cache_capable: true,
            ignorable,
            http_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        })
        .expect("extender")
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "a.wasm"}]}}))
        .expect("pod")
    }

    #[tokio::test]
    async fn extenders_filter_score_and_fail() {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(calls.clone()).await;
        let mut snap = Snapshot::default();
        // n1 has the most room, so the plugins alone would prefer it.
        snap.upsert_node(node("n1", 64000, 64 << 30));
        snap.upsert_node(node("n2", 8000, 8 << 30));
        snap.upsert_node(node("n3", 4000, 4 << 30));
        let (profile, cache) = (Profile::default(), Cache::default());
        let pod = pod();
        let place = async |info: &PodInfo, exts: &[Extender]| {
            schedule_with_extenders(&pod, info, &snap, &profile, exts, &cache).await
        };
        let small = pod_req("p", 100, 0);

        let ok = [ext(&base, "ok", true, false)];
        assert_eq!(place(&small, &ok).await.expect("placed"), "n3");

        let broken = place(&small, &[ext(&base, "broken", false, false)]).await;
        match broken {
            Err(CycleError::Extender(ExtenderError::Status { status: 500, url })) => {
                assert!(url.ends_with("/broken/filter"), "{url}");
            }
            other => panic!("expected a 500 from the broken extender, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let slow = place(&small, &[ext(&base, "slow", false, false)]).await;
        assert!(
            matches!(
                slow,
                Err(CycleError::Extender(ExtenderError::Timeout { .. }))
            ),
            "{slow:?}"
        );

        let skipping = [
            ext(&base, "broken", false, true),
            ext(&base, "slow", false, true),
            ext(&base, "ok", true, false),
        ];
        let chosen = place(&small, &skipping).await;
        assert_eq!(chosen.expect("ignorable extenders are skipped"), "n3");

        // n2 and n3 lack the cpu; the extender rejects n1.
        let err = place(&pod_req("big", 16000, 0), &ok)
            .await
            .expect_err("nowhere to go");
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 n1 is reserved, 2 Insufficient cpu."
        );
        // Only n3 lacks the cpu; the extender leaves n2.
        let chosen = place(&pod_req("mid", 6000, 0), &ok).await;
        assert_eq!(chosen.expect("placed"), "n2");
    }
}
