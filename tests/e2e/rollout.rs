//! A Deployment of wasm pods rolled forward and back with kubectl: `rollout
//! status` ends, `rollout undo` restores the previous template, `rollout
//! history` lists the revisions.

use std::time::Duration;

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
    // What `kubectl describe` lists under Events, each from the controller
    // that acted, as kube-controller-manager names them.
    let sources = |kind: &str, reason: &str| {
        cluster.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.kind={kind},reason={reason}"),
            "-o",
            "jsonpath={.items[*].source.component}",
        ])
    };
    // Events are written in the background: poll for them.
    let from_only = |kind: &str, reason: &str, component: &str| {
        let seen = sources(kind, reason);
        !seen.is_empty() && seen.split_whitespace().all(|c| c == component)
    };
    cluster.wait_for(
        "SuccessfulCreate Events from the replicaset-controller",
        Duration::from_secs(30),
        || from_only("ReplicaSet", "SuccessfulCreate", "replicaset-controller"),
    );
    cluster.wait_for(
        "ScalingReplicaSet Events from the deployment-controller",
        Duration::from_secs(30),
        || from_only("Deployment", "ScalingReplicaSet", "deployment-controller"),
    );
    let scaled = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Deployment,reason=ScalingReplicaSet",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        scaled.contains("Scaled up replica set") && !scaled.contains("from 0 to 0"),
        "{scaled}"
    );

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
