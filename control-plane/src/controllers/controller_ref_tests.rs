//! Unit tests of `controller_ref.rs`: the claim decisions, the patches and
//! the owner keys a pod change enqueues.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

fn rs(name: &str, uid: &str, app: &str) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), app.into())])),
                match_expressions: None,
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, app: &str, controller: Option<&ReplicaSet>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("pod-{name}")),
            resource_version: Some("7".into()),
            labels: Some(BTreeMap::from([("app".into(), app.into())])),
            owner_references: controller.map(|c| vec![owner_ref(c)]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn rs_selects(owner: &ReplicaSet, p: &Pod) -> bool {
    selects(owner.spec.as_ref().map(|s| &s.selector), p.labels())
}

fn now() -> Option<Time> {
    Some(Time(Timestamp::now()))
}

#[test]
fn empty_and_missing_selectors_pick_nothing() {
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    assert!(!selects(None, &labels));
    assert!(!selects(Some(&LabelSelector::default()), &labels));
    let owner = rs("web", "u1", "web");
    assert!(selects(owner.spec.as_ref().map(|s| &s.selector), &labels));
}

#[test]
fn orphans_that_match_are_adopted() {
    let owner = rs("web", "u1", "web");
    let orphan = pod("a", "web", None);
    assert_eq!(
        decide(&owner.metadata, &orphan.metadata, true),
        Claim::Adopt
    );
    assert_eq!(
        decide(&owner.metadata, &orphan.metadata, false),
        Claim::Ignore
    );
}

#[test]
fn nothing_is_adopted_by_a_deleting_owner_or_when_deleting() {
    let mut owner = rs("web", "u1", "web");
    let mut orphan = pod("a", "web", None);
    orphan.metadata.deletion_timestamp = now();
    assert_eq!(
        decide(&owner.metadata, &orphan.metadata, true),
        Claim::Ignore
    );
    orphan.metadata.deletion_timestamp = None;
    owner.metadata.deletion_timestamp = now();
    assert_eq!(
        decide(&owner.metadata, &orphan.metadata, true),
        Claim::Ignore
    );
}

#[test]
fn other_namespaces_and_other_controllers_are_ignored() {
    let owner = rs("web", "u1", "web");
    let mut elsewhere = pod("a", "web", None);
    elsewhere.metadata.namespace = Some("other".into());
    assert_eq!(
        decide(&owner.metadata, &elsewhere.metadata, true),
        Claim::Ignore
    );
    let theirs = pod("b", "web", Some(&rs("db", "u2", "web")));
    assert_eq!(
        decide(&owner.metadata, &theirs.metadata, true),
        Claim::Ignore
    );
    assert_eq!(
        decide(&owner.metadata, &theirs.metadata, false),
        Claim::Ignore
    );
}

#[test]
fn owned_objects_that_stop_matching_are_released_unless_the_owner_goes() {
    let mut owner = rs("web", "u1", "web");
    let mine = pod("a", "web", Some(&owner));
    assert_eq!(decide(&owner.metadata, &mine.metadata, true), Claim::Owned);
    assert_eq!(
        decide(&owner.metadata, &mine.metadata, false),
        Claim::Release
    );
    owner.metadata.deletion_timestamp = now();
    assert_eq!(decide(&owner.metadata, &mine.metadata, true), Claim::Owned);
    assert_eq!(
        decide(&owner.metadata, &mine.metadata, false),
        Claim::Ignore
    );
}

#[test]
fn a_non_controller_reference_does_not_make_an_owner() {
    let owner = rs("web", "u1", "web");
    let mut p = pod("a", "web", None);
    let mut r = owner_ref(&rs("db", "u2", "db"));
    r.controller = Some(false);
    p.metadata.owner_references = Some(vec![r]);
    assert_eq!(decide(&owner.metadata, &p.metadata, true), Claim::Adopt);
}

#[test]
fn plan_sorts_candidates() {
    let owner = rs("web", "u1", "web");
    let pods = vec![
        Arc::new(pod("owned", "web", Some(&owner))),
        Arc::new(pod("orphan", "web", None)),
        Arc::new(pod("stray", "db", Some(&owner))),
        Arc::new(pod("unrelated", "db", None)),
        Arc::new(pod("theirs", "web", Some(&rs("x", "u9", "web")))),
    ];
    let p = plan(&owner.metadata, pods, |p| rs_selects(&owner, p));
    let names = |v: &[Arc<Pod>]| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    assert_eq!(names(&p.owned), ["owned"]);
    assert_eq!(names(&p.adopt), ["orphan"]);
    assert_eq!(names(&p.release), ["stray"]);
}

#[test]
fn patches_carry_the_reference_and_the_guard() {
    let owner = rs("web", "u1", "web");
    let p = pod("a", "web", None);
    let adopt = adopt_patch(&owner_ref(&owner), &p.metadata);
    assert_eq!(
        adopt,
        json!({"metadata": {
            "uid": "pod-a",
            "resourceVersion": "7",
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1",
                "controller": true, "blockOwnerDeletion": true
            }]
        }})
    );
    let release = release_patch("u1", &p.metadata);
    assert_eq!(
        release["metadata"]["ownerReferences"],
        json!([{"$patch": "delete", "uid": "u1"}])
    );
    assert_eq!(release["metadata"]["resourceVersion"], "7");
}

#[test]
fn orphan_changes_enqueue_the_owners_that_select_them() {
    let owners: Cache<ReplicaSet> = Cache::default();
    for r in [
        rs("web", "u1", "web"),
        rs("web2", "u2", "web"),
        rs("db", "u3", "db"),
    ] {
        owners.insert(ObjectKey::of(&r), Arc::new(r));
    }
    let web = owners.get(&ObjectKey::new("ns", "web")).unwrap();
    let keys = |c: &Change<Pod>| claim_keys(c, "ReplicaSet", &owners, rs_selects);
    let names = |ks: Vec<ObjectKey>| ks.into_iter().map(|k| k.name).collect::<Vec<_>>();

    let orphan = Arc::new(pod("a", "web", None));
    let created = Change::Upsert {
        old: None,
        new: orphan.clone(),
    };
    assert_eq!(names(keys(&created)), ["web", "web2"]);

    // A status update of an orphan changes nothing an owner cares about.
    let same = Change::Upsert {
        old: Some(orphan.clone()),
        new: orphan.clone(),
    };
    assert!(keys(&same).is_empty());

    let relabelled = Arc::new(pod("a", "db", None));
    let change = Change::Upsert {
        old: Some(orphan.clone()),
        new: relabelled,
    };
    assert_eq!(names(keys(&change)), ["db"]);

    // Owned pods concern only their controller, before and after.
    let owned = Arc::new(pod("b", "web", Some(&web)));
    let change = Change::Upsert {
        old: Some(owned.clone()),
        new: owned.clone(),
    };
    assert_eq!(names(keys(&change)), ["web"]);
    let released = Arc::new(pod("b", "db", None));
    let change = Change::Upsert {
        old: Some(owned.clone()),
        new: released,
    };
    assert_eq!(names(keys(&change)), ["db", "web"]);
    assert_eq!(names(keys(&Change::Delete(owned))), ["web"]);
    assert_eq!(keys(&Change::Resync).len(), 3);
}
