//! Unit tests of the DaemonSet plan: eligibility, pod shape, manage, rolling
//! update (maxUnavailable and maxSurge), counts.

use super::*;
use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: k.to_string(),
                        effect: e.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn ds(template: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "ns", "uid": "u1"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}
    }))
    .unwrap()
}

fn spec_of(template: serde_json::Value) -> PodSpec {
    daemon_pod_spec(&ds(template).spec.unwrap().template)
}

const RUN: Fit = Fit {
    should_run: true,
    should_continue: true,
};
const KEEP: Fit = Fit {
    should_run: false,
    should_continue: true,
};
const NO: Fit = Fit {
    should_run: false,
    should_continue: false,
};

#[test]
fn selectors_and_affinity_choose_nodes() {
    let spec = spec_of(json!({"spec": {
        "nodeSelector": {"disk": "ssd"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}},
        "containers": [{"name": "c"}]}}));
    let good = node("a", &[("disk", "ssd"), ("zone", "z1")], &[]);
    assert_eq!(node_fit(&spec, &good), RUN);
    assert_eq!(node_fit(&spec, &node("b", &[("zone", "z1")], &[])), NO);
    assert_eq!(node_fit(&spec, &node("c", &[("disk", "ssd")], &[])), NO);
    let named = spec_of(json!({"spec": {"nodeName": "x", "containers": [{"name": "c"}]}}));
    assert_eq!(node_fit(&named, &node("y", &[], &[])), NO);
    assert_eq!(node_fit(&named, &node("x", &[], &[])), RUN);
}

#[test]
fn taints_against_tolerations() {
    let plain = spec_of(json!({"spec": {"containers": [{"name": "c"}]}}));
    assert_eq!(
        node_fit(&plain, &node("n", &[], &[("gpu", "NoSchedule")])),
        KEEP
    );
    assert_eq!(
        node_fit(&plain, &node("n", &[], &[("gpu", "NoExecute")])),
        NO
    );
    assert_eq!(
        node_fit(&plain, &node("n", &[], &[("gpu", "PreferNoSchedule")])),
        RUN
    );
    let tolerant = spec_of(json!({"spec": {
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "containers": [{"name": "c"}]}}));
    assert_eq!(
        node_fit(&tolerant, &node("n", &[], &[("gpu", "NoExecute")])),
        RUN
    );
    // The automatic tolerations: cordoned, pressured and unreachable nodes keep their pods.
    for (key, effect) in [
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
    ] {
        assert_eq!(
            node_fit(&plain, &node("n", &[], &[(key, effect)])),
            RUN,
            "{key}"
        );
    }
    // not-ready NoSchedule (a node that stopped being Ready) gets no new pod but keeps its own.
    assert_eq!(
        node_fit(
            &plain,
            &node("n", &[], &[("node.kubernetes.io/not-ready", "NoSchedule")])
        ),
        KEEP
    );
    let mut cordoned = node("n", &[], &[]);
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    assert_eq!(node_fit(&plain, &cordoned), RUN);
}

#[test]
fn a_node_without_a_ready_condition_gets_no_new_pod() {
    let plain = spec_of(json!({"spec": {"containers": [{"name": "c"}]}}));
    let mut n = node("n", &[], &[]);
    n.status = None;
    assert_eq!(node_fit(&plain, &n), KEEP);
}

#[test]
fn automatic_tolerations_replace_equal_ones() {
    let spec = spec_of(json!({"spec": {
        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 30}],
        "containers": [{"name": "c"}]}}));
    let tols = spec.tolerations.unwrap();
    assert_eq!(tols.len(), 6);
    let unreachable: Vec<_> = tols
        .iter()
        .filter(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1);
    assert_eq!(unreachable[0].toleration_seconds, None);
    let host = spec_of(json!({"spec": {"hostNetwork": true, "containers": [{"name": "c"}]}}));
    assert_eq!(host.tolerations.unwrap().len(), 7);
}

#[test]
fn pods_are_pinned_with_match_fields() {
    let d = ds(json!({
        "metadata": {"labels": {"app": "a"}},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]}}},
            "containers": [{"name": "c"}]}}));
    let spec = daemon_pod_spec(&d.spec.clone().unwrap().template);
    let p = pod_for_node(&d, &spec, "n1", "h1");
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(p.labels()[REVISION_HASH], "h1");
    assert_eq!(p.labels()["app"], "a");
    assert_eq!(p.owner_references()[0].kind, "DaemonSet");
    let terms = p
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .clone()
        .unwrap()
        .node_affinity
        .unwrap();
    let terms = terms
        .required_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(terms.node_selector_terms.len(), 1);
    assert_eq!(target_node(&p).as_deref(), Some("n1"));
    assert!(
        p.spec.as_ref().unwrap().node_name.is_none(),
        "the scheduler binds it"
    );
    assert!(is_updated(&p, "h1", None));
    assert!(!is_updated(&p, "h2", None));
}

fn pod(name: &str, node: &str, hash: &str, ready: bool, age: i64) -> Arc<Pod> {
    let now = Timestamp::now();
    let t = |s: i64| Time(Timestamp::from_second(now.as_second() - s).unwrap());
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([(REVISION_HASH.to_string(), hash.to_string())].into()),
            creation_timestamp: Some(t(age)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(if ready { "Running" } else { "Pending" }.into()),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(t(age)),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    })
}

fn by_node(pods: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut m: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in pods {
        m.entry(target_node(p).unwrap())
            .or_default()
            .push(p.clone());
    }
    m
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn manage_creates_prunes_and_forgets() {
    let fits = BTreeMap::from([
        ("a".to_string(), RUN),
        ("b".to_string(), RUN),
        ("c".to_string(), NO),
        ("d".to_string(), KEEP),
    ]);
    let mut failed = (*pod("b-failed", "b", "h", false, 9)).clone();
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = vec![
        pod("b-old", "b", "h", true, 10),
        pod("b-new", "b", "h", true, 1),
        Arc::new(failed),
        pod("c-1", "c", "h", true, 5),
        pod("d-1", "d", "h", true, 5),
        pod("gone-1", "gone", "h", true, 5),
    ];
    let plan = manage(&fits, &by_node(&pods), None);
    assert_eq!(plan.create, vec!["a"]);
    let mut deleted = names(&plan.delete);
    deleted.sort();
    assert_eq!(
        deleted,
        vec!["b-failed", "b-new", "c-1"],
        "keep the oldest; d may stay"
    );
    assert_eq!(names(&plan.orphaned), vec!["gone-1"]);
}

#[test]
fn a_deleting_pod_blocks_its_replacement() {
    let fits = BTreeMap::from([("a".to_string(), RUN)]);
    let mut dying = (*pod("a-1", "a", "h", true, 5)).clone();
    dying.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let plan = manage(&fits, &by_node(&[Arc::new(dying)]), None);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let fits: BTreeMap<String, Fit> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (n.to_string(), RUN))
        .collect();
    let now = Timestamp::now();
    let pods = vec![
        pod("a-1", "a", "old", true, 10),
        pod("b-1", "b", "old", true, 10),
        pod("c-1", "c", "old", false, 10),
        pod("d-1", "d", "old", true, 10),
    ];
    let updated = |p: &Pod| p.labels().get(REVISION_HASH).map(String::as_str) == Some("new");
    let doomed = rolling_deletions(&fits, &by_node(&pods), updated, 1, 0, now);
    assert_eq!(
        names(&doomed),
        vec!["c-1"],
        "the unavailable one goes first"
    );
    let doomed = rolling_deletions(&fits, &by_node(&pods), updated, 3, 0, now);
    assert_eq!(names(&doomed), vec!["c-1", "a-1", "b-1"]);
    // A new pod that is not yet available uses up the budget.
    let pods = vec![
        pod("a-2", "a", "new", false, 1),
        pod("b-1", "b", "old", true, 10),
    ];
    let doomed = rolling_deletions(&fits, &by_node(&pods), updated, 1, 0, now);
    assert!(doomed.is_empty(), "{:?}", names(&doomed));
    let pods = vec![
        pod("a-2", "a", "new", true, 1),
        pod("b-1", "b", "old", true, 10),
        pod("c-1", "c", "old", true, 10),
        pod("d-1", "d", "old", true, 10),
    ];
    let doomed = rolling_deletions(&fits, &by_node(&pods), updated, 1, 0, now);
    assert_eq!(names(&doomed), vec!["b-1"]);
    // minReadySeconds: a pod ready for 1 s is not available yet.
    let doomed = rolling_deletions(&fits, &by_node(&pods), updated, 1, 5, now);
    assert!(doomed.is_empty());
}

#[test]
fn status_counts_like_upstream() {
    let fits = BTreeMap::from([
        ("a".to_string(), RUN),
        ("b".to_string(), RUN),
        ("c".to_string(), RUN),
        ("d".to_string(), NO),
    ]);
    let pods = vec![
        pod("a-1", "a", "new", true, 10),
        pod("b-1", "b", "old", false, 10),
        pod("d-1", "d", "new", true, 10),
    ];
    let updated = |p: &Pod| p.labels().get(REVISION_HASH).map(String::as_str) == Some("new");
    let c = counts(&fits, &by_node(&pods), updated, 0, Timestamp::now());
    assert_eq!(
        c,
        Counts {
            desired: 3,
            current: 2,
            ready: 1,
            available: 1,
            updated: 1,
            misscheduled: 1,
        }
    );
}

fn is_new(p: &Pod) -> bool {
    p.labels().get(REVISION_HASH).map(String::as_str) == Some("new")
}

fn deleted_names(plan: &[Arc<Pod>]) -> Vec<String> {
    let mut names = names(plan);
    names.sort();
    names
}

#[test]
fn surging_nodes_keep_the_old_pod_until_the_new_one_is_available() {
    let fits = BTreeMap::from([
        ("a".to_string(), RUN),
        ("b".to_string(), RUN),
        ("c".to_string(), RUN),
        ("d".to_string(), RUN),
    ]);
    let now = Timestamp::now();
    let surge = Surge {
        updated: &is_new,
        min_ready_seconds: 0,
        now,
    };
    let pods = vec![
        // a: the new pod is starting; both stay.
        pod("a-old", "a", "old", true, 10),
        pod("a-new", "a", "new", false, 1),
        // b: the new pod is available; the old one goes.
        pod("b-old", "b", "old", true, 10),
        pod("b-new", "b", "new", true, 1),
        // c: the old pod stopped being ready; it goes at once.
        pod("c-old", "c", "old", false, 10),
        pod("c-new", "c", "new", false, 1),
        // d: two new pods and an old one; the younger new pod is extra.
        pod("d-old", "d", "old", true, 10),
        pod("d-new", "d", "new", false, 2),
        pod("d-new2", "d", "new", false, 1),
    ];
    let plan = manage(&fits, &by_node(&pods), Some(&surge));
    assert!(plan.create.is_empty());
    assert_eq!(
        deleted_names(&plan.delete),
        ["b-old", "c-old", "d-new2"],
        "keep one old and one new pod per node"
    );
    // Without surge only the oldest pod of a node stays.
    let plan = manage(&fits, &by_node(&pods), None);
    assert_eq!(
        deleted_names(&plan.delete),
        ["a-new", "b-new", "c-new", "d-new", "d-new2"]
    );
    // minReadySeconds: a new pod ready for 1 s is not available yet.
    let patient = Surge {
        min_ready_seconds: 5,
        ..surge
    };
    let plan = manage(&fits, &by_node(&pods), Some(&patient));
    assert_eq!(deleted_names(&plan.delete), ["c-old", "d-new2"]);
}

#[test]
fn surge_creates_beside_old_pods_within_max_surge() {
    let fits: BTreeMap<String, Fit> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (n.to_string(), RUN))
        .collect();
    let now = Timestamp::now();
    let all_old = vec![
        pod("a-1", "a", "old", true, 10),
        pod("b-1", "b", "old", true, 10),
        pod("c-1", "c", "old", true, 10),
        pod("d-1", "d", "old", true, 10),
    ];
    let step = surge_rolling(&fits, &by_node(&all_old), is_new, 1, 0, now);
    assert_eq!(step.create, ["a"]);
    assert!(
        step.delete.is_empty(),
        "nothing goes before its successor is up"
    );
    let step = surge_rolling(&fits, &by_node(&all_old), is_new, 3, 0, now);
    assert_eq!(step.create, ["a", "b", "c"]);

    // a is surging (its new pod is not available): no room for another node,
    // but an unavailable old pod (c) is replaced at once.
    let pods = vec![
        pod("a-1", "a", "old", true, 10),
        pod("a-2", "a", "new", false, 1),
        pod("b-1", "b", "old", true, 10),
        pod("c-1", "c", "old", false, 10),
        pod("d-1", "d", "old", true, 10),
    ];
    let step = surge_rolling(&fits, &by_node(&pods), is_new, 1, 0, now);
    assert_eq!(step.create, ["c"]);
    assert!(step.delete.is_empty());

    // a's new pod is available: its old pod goes and the next node surges.
    let pods = vec![
        pod("a-1", "a", "old", true, 10),
        pod("a-2", "a", "new", true, 1),
        pod("b-1", "b", "old", true, 10),
        pod("c-2", "c", "new", true, 1),
        pod("d-1", "d", "old", true, 10),
    ];
    let step = surge_rolling(&fits, &by_node(&pods), is_new, 1, 0, now);
    assert_eq!(names(&step.delete), ["a-1"]);
    assert_eq!(step.create, ["b"]);
    // ... unless minReadySeconds has not passed yet.
    let step = surge_rolling(&fits, &by_node(&pods), is_new, 1, 5, now);
    assert!(step.delete.is_empty() && step.create.is_empty());
}

#[test]
fn surge_moves_off_nodes_that_should_not_run_only_with_spare_availability() {
    let mut fits: BTreeMap<String, Fit> = ["a", "b"].iter().map(|n| (n.to_string(), RUN)).collect();
    fits.insert("x".into(), KEEP);
    let now = Timestamp::now();
    // x's pod is the only available one; a and b are still starting.
    let pods = vec![
        pod("x-1", "x", "old", true, 10),
        pod("a-2", "a", "new", false, 1),
        pod("b-2", "b", "new", false, 1),
    ];
    let step = surge_rolling(&fits, &by_node(&pods), is_new, 1, 0, now);
    assert!(step.delete.is_empty(), "{:?}", names(&step.delete));
    assert!(step.create.is_empty(), "x should not run a new pod");
    // Once a and b are available, three available pods for two desired: x's goes.
    let pods = vec![
        pod("x-1", "x", "old", true, 10),
        pod("a-2", "a", "new", true, 1),
        pod("b-2", "b", "new", true, 1),
    ];
    let step = surge_rolling(&fits, &by_node(&pods), is_new, 1, 0, now);
    assert_eq!(names(&step.delete), ["x-1"]);
    // An unavailable old pod on such a node goes at once.
    let pods = vec![pod("x-1", "x", "old", false, 10)];
    let step = surge_rolling(&fits, &by_node(&pods), is_new, 1, 0, now);
    assert_eq!(names(&step.delete), ["x-1"]);
}
