//! The Python `kubernetes` client (from PyPI, installed in .venv by
//! scripts/setup.sh) runs tests/python/client_scenario.py against `skiff up`.

use std::process::Command;

use crate::harness::{Cluster, repo_root};

#[test]
fn python_client_create_list_watch_patch_delete() {
    let cluster = Cluster::start();
    let venv_python = repo_root().join(".venv/bin/python");
    let python = if venv_python.exists() {
        venv_python
    } else {
        "python3".into()
    };
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/client_scenario.py"))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.home.path())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python scenario failed:\n{}\n{}\n--- skiff log ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        cluster.log_tail()
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("python client scenario: ok"));
}
