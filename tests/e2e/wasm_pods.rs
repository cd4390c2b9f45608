//! Wasm pods through the API, observed the way a user observes them: a Job
//! that completes, a worker whose logs stream, an HTTP app answering through
//! pods/proxy, and a crash loop with growing back-off.

use std::time::Duration;

use crate::harness::Cluster;

fn pod_field(cluster: &Cluster, pod: &str, jsonpath: &str) -> String {
    let output =
        cluster.kubectl_output(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn wasm_job_worker_http_and_crash_loop() {
    let cluster = Cluster::start();

    // A WASI p1 command as a bare pod: runs to completion, logs kept.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: hello
    image: samples/wasm/hello.wasm
    args: ["from", "a", "test"]
    env: [{name: WHO, value: tester}]
"#,
        ),
    );
    cluster.wait_for("hello to succeed", Duration::from_secs(60), || {
        pod_field(&cluster, "hello", "{.status.phase}") == "Succeeded"
    });
    let logs = cluster.kubectl(&["logs", "hello"]);
    assert!(logs.contains("Hello from skiff"), "{logs}");
    assert!(logs.contains("test"), "{logs}");
    assert_eq!(
        pod_field(
            &cluster,
            "hello",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    let table = cluster.kubectl(&["get", "pod", "hello"]);
    assert!(table.contains("Completed"), "{table}");

    // A crash-looping pod: restarts counted, CrashLoopBackOff shown.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: crasher
    image: samples/wasm/crasher.wasm
"#,
        ),
    );
    cluster.wait_for("crasher to restart", Duration::from_secs(60), || {
        pod_field(
            &cluster,
            "crasher",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .is_ok_and(|n| n >= 1)
    });
    cluster.wait_for("CrashLoopBackOff", Duration::from_secs(60), || {
        cluster
            .kubectl(&["get", "pod", "crasher"])
            .contains("CrashLoopBackOff")
    });
    assert_eq!(
        pod_field(
            &cluster,
            "crasher",
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "Error"
    );
    // Each restart starts the container again: one Started event whose
    // count goes up (what `kubectl describe` shows as "x2 over 10s").
    cluster.wait_for(
        "the Started event to be counted",
        Duration::from_secs(30),
        || {
            let counts = cluster.kubectl(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=crasher,reason=Started",
                "-o",
                "jsonpath={.items[*].count}",
            ]);
            let counts: Vec<&str> = counts.split_whitespace().collect();
            counts.len() == 1 && counts[0].parse::<u32>().is_ok_and(|n| n >= 2)
        },
    );
}
