//! The node agent as the API sees it: its Node (capacity from the flags,
//! labels, addresses, pressure conditions from host readings), its Lease
//! renewed on the configured interval, and container logs rotated by size
//! into kubelet's layout while `kubectl logs` keeps reading the newest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::Cluster;

/// The log files of one container under the node's data directory.
fn log_files(data_dir: &Path, pod: &str, container: &str) -> Vec<PathBuf> {
    let pods = data_dir.join("node/pods");
    let prefix = format!("default_{pod}_");
    std::fs::read_dir(&pods)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .flat_map(|e| {
            std::fs::read_dir(e.path().join(container))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn node_reports_itself_renews_its_lease_and_rotates_logs() {
    let cluster = Cluster::start_with(&[
        "--max-pods",
        "500",
        "--node-lease-renew-interval",
        "1s",
        "--container-log-max-size",
        "4Ki",
        "--container-log-max-files",
        "2",
    ]);
    let node = cluster.get_json(&["node", "skiff-test"]);
    let status = &node["status"];
    assert_eq!(status["capacity"]["pods"], "500");
    assert_eq!(status["allocatable"]["pods"], "500");
    for resource in ["cpu", "memory"] {
        let v = status["allocatable"][resource].as_str().unwrap_or_default();
        assert!(!v.is_empty() && !v.starts_with('0'), "{resource}: {v:?}");
    }
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "skiff-test");
    assert_eq!(labels["kubernetes.io/os"], std::env::consts::OS);
    assert_eq!(labels["skiff.dev/runtime-wasm"], "true");
    assert!(labels["kubernetes.io/arch"].as_str().is_some());
    let condition = |t: &str| {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(condition("Ready").as_deref(), Some("True"));
    for pressure in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(pressure).as_deref(), Some("False"), "{pressure}");
    }
    let addresses = status["addresses"].to_string();
    assert!(
        addresses.contains("InternalIP") && addresses.contains("Hostname"),
        "{addresses}"
    );

    // Renewed every second: three different renew times within a few seconds.
    let mut renewals = BTreeSet::new();
    cluster.wait_for("three lease renewals", Duration::from_secs(10), || {
        let lease = cluster.get_json(&["lease", "-n", "kube-node-lease", "skiff-test"]);
        if let Some(t) = lease["spec"]["renewTime"].as_str() {
            renewals.insert(t.to_string());
        }
        renewals.len() >= 3
    });

    // A chatty container: its log rotates at 4 KiB, one rotated file kept.
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
    env: [{name: TICK_MS, value: "5"}]
"#,
    );
    let data_dir = cluster.dir().to_path_buf();
    cluster.wait_for("the log to rotate", Duration::from_secs(60), || {
        let files = log_files(&data_dir, "chatty", "worker");
        files
            .iter()
            .any(|f| f.file_name().is_some_and(|n| n != "0.log"))
    });
    cluster.wait_for("a few more rotations", Duration::from_secs(30), || {
        let tail = cluster.kubectl(&["logs", "chatty", "--tail", "1"]);
        tail.split_whitespace()
            .nth(2)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 300)
    });
    let files = log_files(&data_dir, "chatty", "worker");
    assert!(files.len() <= 2, "at most 2 files kept: {files:?}");
    for f in &files {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or_default();
        assert!(size <= 4096 + 512, "{} is {size} bytes", f.display());
    }
    let tail = cluster.kubectl(&["logs", "chatty", "--tail", "3"]);
    assert_eq!(tail.lines().count(), 3, "{tail}");
    assert!(
        tail.lines().all(|l| l.starts_with("worker: tick")),
        "{tail}"
    );
}
