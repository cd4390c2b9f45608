//! Secrets encrypted at rest: neither a Secret's value nor its base64 is in
//! any file of the data directory, while get, list, patch and watch return
//! it intact (also after a restart); plaintext written before encryption
//! still reads; a value that fails authentication is a 500.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_control_plane::store::StoreOptions;

use crate::support::Cluster;

const VALUE: &str = "skiff-at-rest-7f3a9c1e-do-not-store-me";
const CONTROL: &str = "skiff-plain-configmap-5b2d8e40-marker";

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                pending.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

async fn next_event_any(rx: &mut tokio::sync::mpsc::Receiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a watch event in time")
        .expect("watch open")
}

/// The next event about Secret "s".
async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<Value>) -> Value {
    loop {
        let event = next_event_any(rx).await;
        if event["object"]["metadata"]["name"] == "s" {
            return event;
        }
    }
}

fn token_of(obj: &Value) -> String {
    let b64 = obj["data"]["token"].as_str().expect("data.token");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

#[tokio::test]
async fn secret_values_are_encrypted_on_disk_and_intact_through_the_api() {
    let mut c = Cluster::start().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    let mut all = c
        .watch("/api/v1/namespaces/default/secrets?watch=true")
        .await;
    let mut selected = c
        .watch("/api/v1/namespaces/default/secrets?watch=true&labelSelector=app%3Dx")
        .await;

    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s", "labels": {"app": "x"}},
        "stringData": {"token": VALUE},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let got = secrets.get("s").await.unwrap();
    let data = got.data.clone().unwrap_or_default();
    assert_eq!(data["token"], ByteString(VALUE.as_bytes().to_vec()));
    let listed = secrets.list(&ListParams::default()).await.unwrap();
    assert!(listed.items.iter().any(|s| s.data.as_ref() == Some(&data)));
    for rx in [&mut all, &mut selected] {
        let added = next_event(rx).await;
        assert_eq!(added["type"], "ADDED");
        assert_eq!(token_of(&added["object"]), VALUE);
    }

    // A patch reads the stored (encrypted) object and merges into it; the
    // label change moves it out of the selection: DELETED with the old value.
    let patched = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"app": "y"}}, "stringData": {"other": "o"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["token"], data["token"]);
    let modified = next_event(&mut all).await;
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(token_of(&modified["object"]), VALUE);
    let left = next_event(&mut selected).await;
    assert_eq!(left["type"], "DELETED");
    assert_eq!(left["object"]["metadata"]["labels"]["app"], "x");
    assert_eq!(token_of(&left["object"]), VALUE);

    // The raft log is fsynced per write: what was written is on disk now.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": CONTROL}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let dir = c.dir.path().to_path_buf();
    assert!(
        !files_containing(&dir, CONTROL.as_bytes()).is_empty(),
        "the scan finds plaintext that is stored"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
    for needle in [VALUE, b64.as_str()] {
        let found = files_containing(&dir, needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} is stored in {found:?}");
    }

    // The key is kept in the data directory: a restarted server reads it.
    c.stop().await;
    let dir = std::mem::replace(&mut c.dir, tempfile::tempdir().unwrap());
    let mut c = Cluster::start_with(StoreOptions::default(), dir, "127.0.0.1:0").await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    assert_eq!(
        secrets.get("s").await.unwrap().data.unwrap()["token"],
        data["token"]
    );
    let mut watch = c
        .watch("/api/v1/namespaces/default/secrets?watch=true")
        .await;
    let initial = next_event(&mut watch).await;
    assert_eq!(initial["type"], "ADDED");
    assert_eq!(token_of(&initial["object"]), VALUE);
    secrets.delete("s", &DeleteParams::default()).await.unwrap();
    let deleted = next_event(&mut watch).await;
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(token_of(&deleted["object"]), VALUE);
    c.stop().await;
}

#[tokio::test]
async fn plaintext_secrets_still_read_and_tampered_ones_are_internal_errors() {
    let mut c = Cluster::start().await;
    let legacy = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "legacy", "namespace": "default", "uid": "3b0b6a9e-0000-4000-8000-000000000001",
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "data": {"token": base64::engine::general_purpose::STANDARD.encode("old")},
    });
    c.store
        .create(
            "/registry/core/secrets/default/legacy",
            serde_json::to_vec(&legacy).unwrap(),
        )
        .await
        .unwrap();
    let (code, got) = c
        .request(
            "GET",
            "/api/v1/namespaces/default/secrets/legacy",
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["data"]["token"], legacy["data"]["token"]);

    let mut watch = c
        .watch("/api/v1/namespaces/default/secrets?watch=true")
        .await;
    let mut forged = b"k8s:enc:aesgcm:v1:key1:".to_vec();
    forged.extend_from_slice(&[0x5a; 48]);
    c.store
        .create("/registry/core/secrets/default/forged", forged)
        .await
        .unwrap();
    for path in [
        "/api/v1/namespaces/default/secrets/forged",
        "/api/v1/namespaces/default/secrets",
    ] {
        let (code, status) = c.request("GET", path, "application/json", vec![]).await;
        assert_eq!(code, 500, "{path}: {status}");
        assert_eq!(status["reason"], "InternalError");
        let message = status["message"].as_str().unwrap();
        assert!(message.contains("unable to decrypt"), "{message}");
    }
    // A watcher is told with an ERROR event, and the watch ends there.
    let mut event = next_event_any(&mut watch).await;
    while event["type"] == "ADDED" || event["type"] == "BOOKMARK" {
        event = next_event_any(&mut watch).await;
    }
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event["object"]["code"], 500);
    assert_eq!(event["object"]["reason"], "InternalError");
    let end = tokio::time::timeout(Duration::from_secs(10), watch.recv()).await;
    assert!(matches!(end, Ok(None)), "the watch ends after the ERROR");
    c.stop().await;
}
