//! Jobs and CronJobs of wasm pods through kubectl: the sample hello Job
//! completes, an Indexed Job runs each index once, a failing Job stops at its
//! backoffLimit with BackoffLimitExceeded, and a CronJob fires on schedule.

use std::time::Duration;

use crate::harness::Cluster;

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: hello
        image: samples/wasm/hello.wasm
---
apiVersion: batch/v1
kind: Job
metadata: {name: failing}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: crasher
        image: samples/wasm/crasher.wasm
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: every-minute}
spec:
  schedule: "* * * * *"
  timeZone: Europe/Berlin
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: hello
            image: samples/wasm/hello.wasm
"#;

fn jsonpath(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let mut all: Vec<&str> = vec!["get"];
    all.extend_from_slice(args);
    let path = format!("jsonpath={path}");
    all.extend_from_slice(&["-o", &path]);
    String::from_utf8_lossy(&cluster.kubectl_output(&all).stdout).into_owned()
}

#[test]
fn jobs_complete_fail_at_backoff_limit_and_cronjobs_fire() {
    let cluster = Cluster::start();
    cluster.kubectl(&["apply", "-f", "samples/manifests/hello-job.yaml"]);
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(JOBS));

    let done = cluster.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "--timeout=90s",
    ]);
    assert!(done.contains("condition met"), "{done}");
    let logs = cluster.kubectl(&["logs", "job/hello"]);
    assert!(logs.contains("hello, world"), "{logs}");
    let table = cluster.kubectl(&["get", "job", "hello"]);
    assert!(table.contains("1/1"), "{table}");

    cluster.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=90s",
    ]);
    assert_eq!(
        jsonpath(&cluster, &["job", "indexed"], "{.status.completedIndexes}"),
        "0-2"
    );
    let indexes = jsonpath(
        &cluster,
        &["pods", "-l", "job-name=indexed"],
        "{.items[*].metadata.annotations.batch\\.kubernetes\\.io/job-completion-index}",
    );
    let mut seen: Vec<&str> = indexes.split_whitespace().collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"], "each index runs exactly once");

    cluster.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/failing",
        "--timeout=120s",
    ]);
    let reason = jsonpath(
        &cluster,
        &["job", "failing"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
    );
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(
        jsonpath(&cluster, &["job", "failing"], "{.status.failed}"),
        "2",
        "backoffLimit 1 allows one retry"
    );

    cluster.wait_for(
        "the CronJob to create a Job",
        Duration::from_secs(90),
        || {
            !jsonpath(
                &cluster,
                &["cronjob", "every-minute"],
                "{.status.lastScheduleTime}",
            )
            .is_empty()
        },
    );
    cluster.wait_for(
        "the CronJob's Job to succeed",
        Duration::from_secs(60),
        || {
            !jsonpath(
                &cluster,
                &["cronjob", "every-minute"],
                "{.status.lastSuccessfulTime}",
            )
            .is_empty()
        },
    );
    let owners = jsonpath(
        &cluster,
        &["jobs"],
        "{.items[*].metadata.ownerReferences[*].name}",
    );
    assert!(owners.contains("every-minute"), "{owners}");
}
