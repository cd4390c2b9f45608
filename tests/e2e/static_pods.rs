//! Static pods: manifests in `--pod-manifest-path` run on the node with a
//! mirror pod in the API that kubectl reads like any other, that is put
//! back when deleted, follows its file when it changes and goes when the
//! file goes; the mirror annotation cannot be changed through the API.

use std::time::Duration;

use crate::harness::Cluster;

const MIRROR: &str = "ticker-skiff-test";

fn manifest(name_prefix: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ticker\n  labels: {{app: ticker}}\nspec:\n  containers:\n  - name: worker\n    image: samples/wasm/worker.wasm\n    env: [{{name: WORKER_NAME, value: {name_prefix}}}, {{name: TICK_MS, value: \"200\"}}]\n"
    )
}

fn get(cluster: &Cluster, jsonpath: &str) -> String {
    cluster.jsonpath(&["pod", MIRROR], jsonpath)
}

fn wait_running_with_logs(cluster: &Cluster, what: &str, line: &str) -> String {
    let mut uid = String::new();
    cluster.wait_for(what, Duration::from_secs(60), || {
        uid = get(cluster, "{.metadata.uid}");
        get(cluster, "{.status.phase}") == "Running"
            && String::from_utf8_lossy(&cluster.kubectl_output(&["logs", MIRROR]).stdout)
                .contains(line)
    });
    uid
}

#[test]
fn static_pods_are_mirrored_restored_replaced_and_removed() {
    let manifests = tempfile::tempdir().expect("manifest dir");
    let file = manifests.path().join("ticker.yaml");
    std::fs::write(&file, manifest("first")).expect("write manifest");
    std::fs::write(manifests.path().join("broken.yaml"), "kind: [").expect("write");
    let dir = manifests.path().display().to_string();
    let cluster = Cluster::start_with(&["--pod-manifest-path", &dir]);

    let first = wait_running_with_logs(&cluster, "the static pod to run", "first: tick");
    assert_eq!(get(&cluster, "{.spec.nodeName}"), "skiff-test");
    assert_eq!(get(&cluster, "{.metadata.ownerReferences[0].kind}"), "Node");
    let hash = get(
        &cluster,
        "{.metadata.annotations.kubernetes\\.io/config\\.mirror}",
    );
    assert_eq!(hash.len(), 32, "mirror annotation: {hash:?}");

    // The mirror annotation is the node's: the API refuses to change it.
    let out = cluster.kubectl_output(&[
        "annotate",
        "pod",
        MIRROR,
        "kubernetes.io/config.mirror=mine",
        "--overwrite",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("immutable"), "{err}");

    // Deleted through the API: the node puts it back from its file.
    cluster.kubectl(&["delete", "pod", MIRROR, "--wait=true"]);
    let restored = wait_running_with_logs(&cluster, "the mirror to come back", "first: tick");
    assert_ne!(restored, first);

    // A changed file replaces the pod.
    std::fs::write(&file, manifest("second")).expect("rewrite manifest");
    let replaced = wait_running_with_logs(&cluster, "the changed pod to run", "second: tick");
    assert_ne!(replaced, restored);

    // A removed file removes the pod.
    std::fs::remove_file(&file).expect("remove manifest");
    cluster.wait_for("the pod to go", Duration::from_secs(60), || {
        let out = cluster.kubectl_output(&["get", "pod", MIRROR]);
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
}
