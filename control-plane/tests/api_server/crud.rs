//! get/list/create/update/patch/delete through kube-rs and raw requests.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::Cluster;

#[tokio::test]
async fn bootstrap_namespaces_and_discovery() {
    let mut c = Cluster::start().await;
    let ns: Api<Namespace> = Api::all(c.client.clone());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&want.to_string()), "{names:?}");
    }
    let (code, v) = c
        .request("GET", "/version", "application/json", vec![])
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["gitVersion"], "v1.33.0-skiff");
    let (code, v) = c
        .request("GET", "/apis/apps/v1", "application/json", vec![])
        .await;
    assert_eq!(code, 200);
    assert!(
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments/scale")
    );
    c.stop().await;
}

#[tokio::test]
async fn configmap_crud_and_conflicts() {
    let mut c = Cluster::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "a", "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    // update with the current rv works, with a stale rv → 409
    let mut updated = created.clone();
    updated
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "v2".into());
    let after = cms
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_ne!(
        after.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let err = cms
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
    // merge and strategic patches
    let p = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.unwrap().get("x").map(String::as_str), Some("1"));
    // label selectors
    let lp = ListParams::default().labels("app in (x,y)");
    assert_eq!(cms.list(&lp).await.unwrap().items.len(), 1);
    assert_eq!(
        cms.list(&ListParams::default().labels("app!=x"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let err = cms.get("a").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn pods_are_defaulted_validated_and_bound() {
    let mut c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "samples/wasm/hello.wasm"}]}})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("web-"));
    let spec = created.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let bad: Pod = serde_json::from_value(
        json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}}),
    )
    .unwrap();
    let err = pods.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not an API error")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("metadata.name: Invalid value"),
        "{}",
        status.message
    );
    // binding sets nodeName and PodScheduled
    let (code, _) = c
        .request("POST", &format!("/api/v1/namespaces/default/pods/{name}/binding"), "application/json",
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}})).unwrap())
        .await;
    assert_eq!(code, 201);
    let bound = pods.get(&name).await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    // a bound pod is only marked for deletion; grace 0 removes it
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    let marked = pods.get(&name).await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt(&name).await.unwrap().is_none());
    c.stop().await;
}
