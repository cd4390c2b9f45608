//! Unit tests of the StatefulSet plan: identity, claims, ordering, scale-down, rolling update.

use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn set() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
        "spec": {
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "w.wasm"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .unwrap()
}

fn params(replicas: i32, ordered: bool) -> Params {
    Params {
        set: "web".into(),
        replicas,
        start: 0,
        ordered,
        min_ready_seconds: 0,
        on_delete: false,
        partition: 0,
        current_revision: "web-old".into(),
        update_revision: "web-old".into(),
    }
}

/// A pod of `web` at `ordinal` of revision `rev`, in `state`: "ready", "pending", "failed", "dying".
fn pod(ordinal: i32, rev: &str, state: &str) -> Arc<Pod> {
    let s = set();
    let template = s.spec.as_ref().unwrap().template.clone();
    let mut p = new_pod(&s, &template, rev, ordinal);
    let ready = state == "ready" || state == "dying";
    p.status = Some(PodStatus {
        phase: Some(
            match state {
                "pending" => "Pending",
                "failed" => "Failed",
                _ => "Running",
            }
            .into(),
        ),
        conditions: ready.then(|| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    if state == "dying" {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    }
    Arc::new(p)
}

fn show(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Create(o, Revision::Current) => format!("create {o} current"),
            Step::Create(o, Revision::Update) => format!("create {o}"),
            Step::Delete(p) => format!("delete {}", p.name_any()),
            Step::Condemn(p) => format!("condemn {}", p.name_any()),
            Step::Relabel(p, _) => format!("relabel {}", p.name_any()),
        })
        .collect()
}

#[test]
fn pods_carry_their_identity_and_claims() {
    let s = set();
    let template = s.spec.as_ref().unwrap().template.clone();
    let p = new_pod(&s, &template, "web-abc", 2);
    assert_eq!(p.name_any(), "web-2");
    assert_eq!(p.labels()[POD_NAME], "web-2");
    assert_eq!(p.labels()[POD_INDEX], "2");
    assert_eq!(p.labels()[REVISION_HASH], "web-abc");
    assert_eq!(p.labels()["app"], "web");
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let vol = &spec.volumes.as_ref().unwrap()[0];
    assert_eq!(vol.name, "data");
    let claim = &vol.persistent_volume_claim.as_ref().unwrap().claim_name;
    assert_eq!(claim, "data-web-2");
    let claims = new_claims(&s, 2);
    assert_eq!(claims[0].name_any(), "data-web-2");
    assert_eq!(claims[0].labels()["app"], "web");
    assert!(
        claims[0].metadata.owner_references.is_none(),
        "Retain by default"
    );
    assert!(identity_matches("web", &p, 2));
    assert!(!identity_matches("web", &p, 3));
}

#[test]
fn retention_policy_owns_claims_by_the_set() {
    let mut s = set();
    s.spec
        .as_mut()
        .unwrap()
        .persistent_volume_claim_retention_policy =
        serde_json::from_value(json!({"whenDeleted": "Delete", "whenScaled": "Retain"})).unwrap();
    let c = &new_claims(&s, 0)[0];
    let owner = &c.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StatefulSet", None)
    );
    assert!(deletes_claims(&s, false) && !deletes_claims(&s, true));
}

#[test]
fn ordinals_parse_strictly() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    assert_eq!(ordinal_of("web", "web-01"), None);
    assert_eq!(ordinal_of("web", "web-x"), None);
    assert_eq!(ordinal_of("web", "webby-1"), None);
    assert_eq!(ordinal_of("web", "web-"), None);
}

#[test]
fn ordered_ready_creates_one_at_a_time() {
    let now = Timestamp::now();
    let p = params(3, true);
    assert_eq!(show(&plan(&p, &[], now)), ["create 0"]);
    assert!(
        plan(&p, &[pod(0, "web-old", "pending")], now).is_empty(),
        "wait for 0"
    );
    assert_eq!(
        show(&plan(&p, &[pod(0, "web-old", "ready")], now)),
        ["create 1"]
    );
    // A gap is filled before anything above it moves on.
    let pods = [pod(0, "web-old", "ready"), pod(2, "web-old", "ready")];
    assert_eq!(show(&plan(&p, &pods, now)), ["create 1"]);
    let mut slow = p.clone();
    slow.min_ready_seconds = i32::MAX;
    assert!(
        plan(&slow, &[pod(0, "web-old", "ready")], now).is_empty(),
        "not yet available"
    );
}

#[test]
fn parallel_creates_everything_at_once() {
    let now = Timestamp::now();
    let p = params(3, false);
    assert_eq!(
        show(&plan(&p, &[pod(1, "web-old", "pending")], now)),
        ["create 0", "create 2"]
    );
}

#[test]
fn scale_down_goes_in_reverse_one_at_a_time() {
    let now = Timestamp::now();
    let all: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
    let p = params(0, true);
    assert_eq!(show(&plan(&p, &all, now)), ["condemn web-2"]);
    let dying = [all[0].clone(), all[1].clone(), pod(2, "web-old", "dying")];
    assert!(plan(&p, &dying, now).is_empty(), "wait for web-2 to go");
    assert_eq!(show(&plan(&p, &all[..2], now)), ["condemn web-1"]);
    // An unhealthy replica below blocks scale-down under OrderedReady.
    let p1 = params(1, true);
    let blocked = [pod(0, "web-old", "pending"), all[1].clone(), all[2].clone()];
    assert!(plan(&p1, &blocked, now).is_empty());
    // The highest unhealthy condemned pod may go.
    let sick = [
        all[0].clone(),
        pod(1, "web-old", "pending"),
        pod(2, "web-old", "pending"),
    ];
    assert_eq!(show(&plan(&p1, &sick, now)), ["condemn web-2"]);
    let p = params(0, false);
    assert_eq!(
        show(&plan(&p, &all, now)),
        ["condemn web-2", "condemn web-1", "condemn web-0"]
    );
}

#[test]
fn finished_pods_are_replaced() {
    let now = Timestamp::now();
    let p = params(2, true);
    let pods = [pod(0, "web-old", "failed"), pod(1, "web-old", "ready")];
    assert_eq!(show(&plan(&p, &pods, now)), ["delete web-0"]);
}

#[test]
fn rolling_update_goes_down_to_the_partition() {
    let now = Timestamp::now();
    let mut p = params(3, true);
    p.update_revision = "web-new".into();
    let old: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
    assert_eq!(show(&plan(&p, &old, now)), ["delete web-2"]);
    // web-2 recreated at the new revision but not ready: wait.
    let pods = [old[0].clone(), old[1].clone(), pod(2, "web-new", "pending")];
    assert!(plan(&p, &pods, now).is_empty());
    let pods = [old[0].clone(), old[1].clone(), pod(2, "web-new", "ready")];
    assert_eq!(show(&plan(&p, &pods, now)), ["delete web-1"]);
    // Below the partition pods keep, and are recreated at, the current revision.
    p.partition = 2;
    assert!(plan(&p, &pods, now).is_empty());
    assert_eq!(
        show(&plan(&p, &[old[0].clone(), pods[2].clone()], now)),
        ["create 1 current"]
    );
    // OnDelete never deletes; a deleted pod comes back at the update revision.
    p.on_delete = true;
    assert!(plan(&p, &old, now).is_empty());
    assert_eq!(show(&plan(&p, &old[..2], now)), ["create 2"]);
}

#[test]
fn parallel_rolls_one_at_a_time_too() {
    let now = Timestamp::now();
    let mut p = params(3, false);
    p.update_revision = "web-new".into();
    let old: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
    assert_eq!(show(&plan(&p, &old, now)), ["delete web-2"]);
}

#[test]
fn counts_follow_upstream() {
    let now = Timestamp::now();
    let mut p = params(3, true);
    p.update_revision = "web-new".into();
    let pods = [
        pod(0, "web-old", "ready"),
        pod(1, "web-new", "pending"),
        pod(2, "web-old", "dying"),
    ];
    assert_eq!(
        counts(&p, &pods, now),
        Counts {
            replicas: 3,
            ready: 2,
            available: 2,
            current: 1,
            updated: 1,
        }
    );
}
