//! kube-rs against `skiff up`: a `watcher` over pods keeps delivering events
//! across a restart of skiff (it re-lists or resumes from its resourceVersion).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use crate::harness::Cluster;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}
    }))
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_survives_api_server_restart() {
    let mut cluster = Cluster::start();
    let client = cluster.client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &config_map("before"))
        .await
        .expect("create before");

    let (names_tx, mut names_rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = config_maps.clone();
    let watch_task = tokio::spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            // Errors (the server going away) are retried by the caller's loop:
            // kube's watcher resumes on the next poll.
            match event {
                Ok(watcher::Event::Apply(cm)) | Ok(watcher::Event::InitApply(cm)) => {
                    let _ = names_tx.send(cm.metadata.name.unwrap_or_default());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });

    wait_for_name(&mut names_rx, "before").await;

    tokio::task::block_in_place(|| cluster.restart());
    // The same kubeconfig (CA, token, port) keeps working after the restart.
    let client = cluster.client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    config_maps
        .create(&PostParams::default(), &config_map("after"))
        .await
        .expect("create after");
    wait_for_name(&mut names_rx, "after").await;
    watch_task.abort();
}

/// Waits (60 s at most) until the watcher reports a ConfigMap called `name`.
async fn wait_for_name(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str) {
    let seen_it = async {
        while let Some(seen) = rx.recv().await {
            if seen == name {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), seen_it)
        .await
        .unwrap_or_else(|_| panic!("watcher never saw {name}"));
}
