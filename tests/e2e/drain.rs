//! `kubectl drain` against a PodDisruptionBudget: the eviction API lets one
//! of two replicas go, answers 429 for the other while the budget is
//! exhausted (drain retries until its timeout), and lets the drain finish
//! once the budget allows it.

use std::time::Duration;

use crate::harness::Cluster;

fn jsonpath(cluster: &Cluster, args: &[&str]) -> String {
    String::from_utf8_lossy(&cluster.kubectl_output(args).stdout).into_owned()
}

fn running_web_pods(cluster: &Cluster) -> usize {
    jsonpath(
        cluster,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .count()
}

#[test]
fn drain_respects_the_disruption_budget() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: worker
        image: samples/wasm/worker.wasm
        env: [{name: TICK_MS, value: "1000"}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"#,
        ),
    );
    cluster.wait_for(
        "the budget to allow one disruption",
        Duration::from_secs(90),
        || {
            jsonpath(
                &cluster,
                &[
                    "get",
                    "pdb",
                    "web",
                    "-o",
                    "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
                ],
            ) == "2/1"
        },
    );

    // One node: the evicted replica's replacement cannot schedule, so the
    // second eviction is refused until drain gives up.
    let out = cluster.kubectl_output(&[
        "drain",
        "skiff-test",
        "--ignore-daemonsets",
        "--timeout=20s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain must time out: {stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert!(stderr.contains("will retry after 5s"), "{stderr}");
    assert_eq!(
        running_web_pods(&cluster),
        1,
        "exactly one replica was evicted"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed}"
            ]
        ),
        "0"
    );

    // Once the budget allows it, the drain completes.
    cluster.kubectl(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    cluster.wait_for(
        "the budget to allow the last disruption",
        Duration::from_secs(30),
        || {
            jsonpath(
                &cluster,
                &[
                    "get",
                    "pdb",
                    "web",
                    "-o",
                    "jsonpath={.status.disruptionsAllowed}",
                ],
            ) == "1"
        },
    );
    let out = cluster.kubectl_output(&[
        "drain",
        "skiff-test",
        "--ignore-daemonsets",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "drain: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.log_tail()
    );
    assert_eq!(running_web_pods(&cluster), 0);
    cluster.kubectl(&["uncordon", "skiff-test"]);
    cluster.wait_for(
        "both replicas to run again",
        Duration::from_secs(60),
        || running_web_pods(&cluster) == 2,
    );
}
