//! Controllers adopting orphans and releasing strays, as kube-controller-
//! manager's ControllerRefManager does, through kubectl: a Deployment
//! deleted with `--cascade=orphan` and applied again takes its ReplicaSet
//! (and so its pods) back; a ReplicaSet counts a matching bare pod toward its
//! replicas, scales it away, and lets go of a pod relabelled out of its
//! selector; a Job with a manual selector adopts a finished bare pod; a
//! DaemonSet surges a template change (maxSurge) and, re-created after an
//! orphaning delete, keeps its pod.

use std::time::Duration;

use serde_json::Value;

use crate::harness::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: worker
        image: samples/wasm/worker.wasm
"#;

const BARE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: lone
  labels: {app: solo}
spec:
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
"#;

const REPLICA_SET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: solo}
spec:
  replicas: 3
  selector:
    matchLabels: {app: solo}
  template:
    metadata:
      labels: {app: solo}
    spec:
      containers:
      - name: worker
        image: samples/wasm/worker.wasm
"#;

const BATCH_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: early
  labels: {app: batch}
spec:
  restartPolicy: Never
  containers:
  - name: hello
    image: samples/wasm/hello.wasm
"#;

const MANUAL_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  manualSelector: true
  selector:
    matchLabels: {app: batch}
  completions: 1
  template:
    metadata:
      labels: {app: batch}
    spec:
      restartPolicy: Never
      containers:
      - name: hello
        image: samples/wasm/hello.wasm
"#;

const SURGING_DAEMON_SET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  minReadySeconds: 2
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: worker
        image: samples/wasm/worker.wasm
"#;

fn get_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&cluster.kubectl(&all)).expect("kubectl json")
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The uid of the object's controller, if any.
fn controller_uid(obj: &Value) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str().map(String::from))
}

fn uid(cluster: &Cluster, args: &[&str]) -> String {
    name_or(get_json(cluster, args)["metadata"]["uid"].as_str())
}

fn name_or(s: Option<&str>) -> String {
    s.unwrap_or_default().to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn live_pods(cluster: &Cluster, selector: &str) -> Vec<Value> {
    items(&get_json(cluster, &["pods", "-l", selector]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn sorted_names(objs: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = objs.iter().map(name).collect();
    names.sort();
    names
}

#[test]
fn orphaned_workloads_are_adopted_by_their_successors() {
    let cluster = Cluster::start();

    // Deployment: delete --cascade=orphan, apply again, same ReplicaSet and pods.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let status = cluster.kubectl(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let rss = items(&get_json(&cluster, &["rs", "-l", "app=web"]));
    assert_eq!(rss.len(), 1, "{rss:?}");
    let rs_name = name(&rss[0]);
    let pods = sorted_names(&live_pods(&cluster, "app=web"));
    assert_eq!(pods.len(), 2, "{pods:?}");

    cluster.kubectl(&["delete", "deploy", "web", "--cascade=orphan"]);
    cluster.wait_for(
        "the ReplicaSet to be orphaned",
        Duration::from_secs(30),
        || {
            let rs = get_json(&cluster, &["rs", &rs_name]);
            controller_uid(&rs).is_none()
                && !cluster
                    .kubectl(&["get", "deploy", "-o", "name"])
                    .contains("deployment.apps/web")
        },
    );
    assert_eq!(sorted_names(&live_pods(&cluster, "app=web")), pods);

    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let web_uid = uid(&cluster, &["deploy", "web"]);
    cluster.wait_for(
        "the new Deployment to adopt the ReplicaSet",
        Duration::from_secs(30),
        || controller_uid(&get_json(&cluster, &["rs", &rs_name])) == Some(web_uid.clone()),
    );
    let status = cluster.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let rss = sorted_names(&items(&get_json(&cluster, &["rs", "-l", "app=web"])));
    assert_eq!(rss, [rs_name], "no second ReplicaSet");
    assert_eq!(
        sorted_names(&live_pods(&cluster, "app=web")),
        pods,
        "the pods were kept, not replaced"
    );

    // ReplicaSet: a matching bare pod counts toward replicas.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(BARE_POD));
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(REPLICA_SET));
    let solo_uid = uid(&cluster, &["rs", "solo"]);
    cluster.wait_for(
        "three pods, the bare one adopted",
        Duration::from_secs(30),
        || {
            let pods = live_pods(&cluster, "app=solo");
            pods.len() == 3
                && pods
                    .iter()
                    .all(|p| controller_uid(p) == Some(solo_uid.clone()))
        },
    );
    let pods = sorted_names(&live_pods(&cluster, "app=solo"));
    assert!(pods.contains(&"lone".to_string()), "{pods:?}");
    let created = pods.iter().filter(|n| n.starts_with("solo-")).count();
    assert_eq!(created, 2, "only two more were created: {pods:?}");

    // Scaling down deletes extras, adopted or not.
    cluster.kubectl(&["scale", "rs/solo", "--replicas=1"]);
    cluster.wait_for("one solo pod left", Duration::from_secs(30), || {
        live_pods(&cluster, "app=solo").len() == 1
    });
    // A pod relabelled out of the selector is released and replaced.
    let kept = name(&live_pods(&cluster, "app=solo")[0]);
    cluster.kubectl(&["label", "pod", &kept, "app=loose", "--overwrite"]);
    cluster.wait_for(
        "the relabelled pod to be released and replaced",
        Duration::from_secs(30),
        || {
            let loose = get_json(&cluster, &["pod", &kept]);
            let solo = live_pods(&cluster, "app=solo");
            controller_uid(&loose).is_none()
                && solo.len() == 1
                && name(&solo[0]) != kept
                && controller_uid(&solo[0]) == Some(solo_uid.clone())
        },
    );

    // Foreground deletion: the ReplicaSet goes only after its pod, once the
    // collector has deleted the pod and removed the foregroundDeletion
    // finalizer (a metadata patch); kubectl waits for both.
    let solo_pod = name(&live_pods(&cluster, "app=solo")[0]);
    let out = cluster.kubectl(&[
        "delete",
        "rs",
        "solo",
        "--cascade=foreground",
        "--timeout=90s",
    ]);
    assert!(out.contains("deleted"), "{out}");
    let left = cluster.kubectl(&["get", "rs,pods", "-o", "name"]);
    assert!(!left.contains("replicaset.apps/solo"), "{left}");
    assert!(!left.contains(&format!("pod/{solo_pod}")), "{left}");
    assert!(
        left.contains(&format!("pod/{kept}")),
        "the released pod stays: {left}"
    );

    // Job with a manual selector: a finished bare pod counts as its completion.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(BATCH_POD));
    cluster.wait_for("the bare pod to finish", Duration::from_secs(60), || {
        get_json(&cluster, &["pod", "early"])["status"]["phase"] == "Succeeded"
    });
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(MANUAL_JOB));
    let out = cluster.kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/batch",
        "--timeout=60s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    let batch_uid = uid(&cluster, &["job", "batch"]);
    let pods = items(&get_json(&cluster, &["pods", "-l", "app=batch"]));
    assert_eq!(sorted_names(&pods), ["early"], "the Job created no pod");
    assert_eq!(controller_uid(&pods[0]), Some(batch_uid));
    assert_eq!(
        get_json(&cluster, &["job", "batch"])["status"]["succeeded"],
        1
    );
}

#[test]
fn daemonset_surges_and_adopts_its_pod_after_an_orphaning_delete() {
    let cluster = Cluster::start();

    // maxSurge and maxUnavailable may not both be 0.
    let both_zero = SURGING_DAEMON_SET.replace("maxSurge: 1", "maxSurge: 0");
    let out = cluster.kubectl_at("/usr/bin/kubectl", &["apply", "-f", "-"], Some(&both_zero));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted both 0");
    assert!(
        stderr.contains("spec.updateStrategy.rollingUpdate.maxUnavailable")
            && stderr.contains("cannot be 0 when maxSurge is 0"),
        "{stderr}"
    );

    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(SURGING_DAEMON_SET));
    let status = cluster.kubectl(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let pods = live_pods(&cluster, "app=agent");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let old = name(&pods[0]);

    // The new pod starts beside the old one; the old one goes only once the
    // new one is Ready.
    cluster.kubectl(&["set", "env", "ds/agent", "MODE=fast"]);
    let mut surged = false;
    cluster.wait_for(
        "the surge rollout to replace the pod",
        Duration::from_secs(90),
        || {
            let pods = items(&get_json(&cluster, &["pods", "-l", "app=agent"]));
            let old_pod = pods.iter().find(|p| name(p) == old);
            let new_pods: Vec<&Value> = pods.iter().filter(|p| name(p) != old).collect();
            let old_live = old_pod.is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null());
            assert!(new_pods.len() <= 1, "more than maxSurge new pods: {pods:?}");
            if old_live && !new_pods.is_empty() {
                surged = true;
            }
            if !old_live {
                assert!(
                    new_pods.iter().any(|p| is_ready(p)),
                    "the old pod went before the new one was Ready: {pods:?}"
                );
            }
            old_pod.is_none() && new_pods.len() == 1
        },
    );
    assert!(surged, "never saw the old and new pods side by side");
    let status = cluster.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let pods = live_pods(&cluster, "app=agent");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let current = name(&pods[0]);

    // Orphaning delete, then the same DaemonSet again: it adopts the pod
    // (and its revision) instead of replacing it.
    cluster.kubectl(&["delete", "ds", "agent", "--cascade=orphan"]);
    cluster.wait_for("the pod to be orphaned", Duration::from_secs(30), || {
        controller_uid(&get_json(&cluster, &["pod", &current])).is_none()
    });
    // The template as `kubectl set env` left it, so its revision is the same.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&SURGING_DAEMON_SET.replace(
            "        image: samples/wasm/worker.wasm\n",
            "        image: samples/wasm/worker.wasm\n        env: [{name: MODE, value: fast}]\n",
        )),
    );
    let agent_uid = uid(&cluster, &["ds", "agent"]);
    cluster.wait_for(
        "the new DaemonSet to adopt the pod",
        Duration::from_secs(30),
        || controller_uid(&get_json(&cluster, &["pod", &current])) == Some(agent_uid.clone()),
    );
    let status = cluster.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(
        sorted_names(&live_pods(&cluster, "app=agent")),
        [current],
        "the adopted pod was kept, not replaced"
    );
}
