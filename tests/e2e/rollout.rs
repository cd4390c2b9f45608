//! A Deployment of wasm pods rolled forward and back with kubectl: `rollout
//! status` ends, `rollout undo` restores the previous template, `rollout
//! history` lists the revisions.

use crate::harness::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  replicas: 3
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  selector:
    matchLabels: {app: worker}
  template:
    metadata:
      labels: {app: worker}
    spec:
      containers:
      - name: worker
        image: samples/wasm/worker.wasm
"#;

#[test]
fn rollout_status_undo_and_history() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let status = cluster.kubectl(&["rollout", "status", "deploy/worker", "--timeout", "120s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    cluster.kubectl(&["set", "env", "deploy/worker", "MODE=fast"]);
    let status = cluster.kubectl(&["rollout", "status", "deploy/worker", "--timeout", "120s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let env = cluster.kubectl(&[
        "get",
        "deploy",
        "worker",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert!(env.contains("MODE"), "{env}");
    let ready = cluster.kubectl(&[
        "get",
        "deploy",
        "worker",
        "-o",
        "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}",
    ]);
    assert_eq!(ready, "3/3");

    let history = cluster.kubectl(&["rollout", "history", "deploy/worker"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    cluster.kubectl(&["rollout", "undo", "deploy/worker"]);
    let status = cluster.kubectl(&["rollout", "status", "deploy/worker", "--timeout", "120s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let env = cluster.kubectl(&[
        "get",
        "deploy",
        "worker",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ]);
    assert!(!env.contains("MODE"), "undo kept the new template: {env}");
    let revision = cluster.kubectl(&[
        "get",
        "deploy",
        "worker",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert_eq!(revision, "3");
}
