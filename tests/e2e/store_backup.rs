//! `skiff store snapshot save` against a running cluster and `restore` into
//! a fresh data directory: the restored cluster serves exactly the saved
//! objects (and not what was written after the snapshot).

use std::process::Command;

use crate::harness::Cluster;

fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(crate::harness::skiff_bin())
        .args(args)
        .output()
        .expect("run skiff")
}

#[test]
fn snapshot_save_then_restore_serves_the_saved_objects() {
    let mut cluster = Cluster::start();
    cluster.kubectl(&["create", "configmap", "kept", "--from-literal=k=v"]);
    cluster.kubectl(&[
        "create",
        "secret",
        "generic",
        "kept-secret",
        "--from-literal=token=abc",
    ]);
    let file = cluster.dir().join("backup.snap");
    let kubeconfig = cluster.kubeconfig.to_str().expect("path").to_string();
    let saved = skiff(&[
        "store",
        "snapshot",
        "save",
        file.to_str().expect("path"),
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert!(String::from_utf8_lossy(&saved.stdout).contains("saved revision"));
    cluster.kubectl(&["create", "configmap", "after-snapshot"]);
    // The restored cluster reuses the key material (Secrets are encrypted with it).
    let restored_dir = tempfile::tempdir().expect("restore dir");
    let pki = cluster.dir().join("pki");
    cluster.stop();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&pki)
        .arg(restored_dir.path())
        .status()
        .expect("cp");
    assert!(copied.success());

    let restore = skiff(&[
        "store",
        "snapshot",
        "restore",
        file.to_str().expect("path"),
        "--data-dir",
        restored_dir.path().to_str().expect("path"),
    ]);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let over_live_data = skiff(&[
        "store",
        "snapshot",
        "restore",
        file.to_str().expect("path"),
        "--data-dir",
        cluster.dir().to_str().expect("path"),
    ]);
    assert!(
        !over_live_data.status.success(),
        "restoring over an existing store must fail"
    );
    assert!(String::from_utf8_lossy(&over_live_data.stderr).contains("already holds a store"));

    let restored = Cluster::start_on(restored_dir, &[]);
    let names = restored.kubectl(&["get", "configmaps", "-o", "name"]);
    assert!(names.contains("configmap/kept"), "{names}");
    assert!(!names.contains("after-snapshot"), "{names}");
    let token = restored.kubectl(&[
        "get",
        "secret",
        "kept-secret",
        "-o",
        "jsonpath={.data.token}",
    ]);
    assert_eq!(token, "YWJj");
}
