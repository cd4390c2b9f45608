//! Watch semantics: selector transitions, bookmarks, resume, 410 after
//! compaction, tables in watch streams, and a kube-rs watcher surviving an
//! API server restart.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use skiff_control_plane::store::StoreOptions;

use crate::support::{Cluster, eventually};

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Value>, what: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} event"))
        .expect("stream open")
}

async fn next_non_bookmark(rx: &mut tokio::sync::mpsc::Receiver<Value>, what: &str) -> Value {
    loop {
        let e = next(rx, what).await;
        if e["type"] != "BOOKMARK" {
            return e;
        }
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x.wasm"}]}})).unwrap()
}

#[tokio::test]
async fn field_selector_transitions_and_bookmarks() {
    let mut c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let mut rx = c
        .watch("/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dn1&allowWatchBookmarks=true")
        .await;
    pods.create(&PostParams::default(), &pod("a"))
        .await
        .unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/pods/a/binding",
            "application/json",
            serde_json::to_vec(&binding).unwrap(),
        )
        .await;
    assert_eq!(code, 201);
    let added = next_non_bookmark(&mut rx, "ADDED").await;
    assert_eq!(added["type"], "ADDED", "{added}");
    assert_eq!(added["object"]["spec"]["nodeName"], "n1");
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let deleted = next_non_bookmark(&mut rx, "DELETED").await;
    assert_eq!(deleted["type"], "DELETED");
    let bookmark = eventually(12, "a bookmark", || {
        let got = rx.try_recv().ok().filter(|e| e["type"] == "BOOKMARK");
        std::future::ready(got)
    })
    .await;
    assert!(
        bookmark["object"]["metadata"]["resourceVersion"]
            .as_str()
            .is_some()
    );
    c.stop().await;
}

#[tokio::test]
async fn resume_from_resource_version_and_table_events() {
    let mut c = Cluster::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let first = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "one"}})).unwrap(),
        )
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "two"}})).unwrap(),
    )
    .await
    .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    let mut rx = c
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"
        ))
        .await;
    let e = next(&mut rx, "ADDED two").await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("two"))
    );
    // a Table watch starts with the current objects as rows
    let req = http::Request::builder()
        .uri("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=2")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let resp = c
        .client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let first_line: Value =
        serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first_line["object"]["kind"], "Table");
    assert_eq!(first_line["object"]["columnDefinitions"][1]["name"], "Data");
    c.stop().await;
}

#[tokio::test]
async fn compacted_watch_is_gone() {
    let options = StoreOptions {
        max_history: 5,
        progress_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let mut c = Cluster::start_with(options, tempfile::tempdir().unwrap(), "127.0.0.1:0").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "churn"}})).unwrap(),
        )
        .await
        .unwrap();
    let old: i64 = cm.metadata.resource_version.unwrap().parse().unwrap();
    for i in 0..20 {
        let patch = json!({"data": {"i": i.to_string()}});
        cms.patch(
            "churn",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .unwrap();
    }
    let store = c.store.clone();
    eventually(10, "compaction", || {
        std::future::ready((store.compacted_revision() > old).then_some(()))
    })
    .await;
    let mut rx = c
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}"
        ))
        .await;
    let e = next(&mut rx, "ERROR").await;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watcher_survives_api_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut c = Cluster::start_with(StoreOptions::default(), dir, "127.0.0.1:0").await;
    let addr = c.handle().local_addr.to_string();
    let kubeconfig = c.handle().admin_kubeconfig.clone();
    let client = crate::support::client_for(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watch_task = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event {
                let _ = tx.send(p.metadata.name.unwrap_or_default());
            }
        }
    });
    Api::<Pod>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &pod("before"))
        .await
        .unwrap();
    eventually(10, "watcher sees 'before'", || {
        std::future::ready(rx.try_recv().ok().filter(|n| n == "before"))
    })
    .await;
    // Restart the store and the API server on the same port and data directory.
    c.stop().await;
    let dir = std::mem::replace(&mut c.dir, tempfile::tempdir().unwrap());
    let _ = path;
    let c2 = Cluster::start_with(StoreOptions::default(), dir, &addr).await;
    Api::<Pod>::namespaced(c2.client.clone(), "default")
        .create(&PostParams::default(), &pod("after"))
        .await
        .unwrap();
    eventually(30, "watcher sees 'after' following the restart", || {
        std::future::ready(std::iter::from_fn(|| rx.try_recv().ok()).find(|n| n == "after"))
    })
    .await;
    watch_task.abort();
    let mut c2 = c2;
    c2.stop().await;
}
