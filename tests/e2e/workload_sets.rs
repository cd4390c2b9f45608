//! StatefulSets and DaemonSets through kubectl: a StatefulSet of wasm
//! workers comes up 0, 1, 2 (each after the previous is Ready), rolls a
//! template change, and scales to 0 in reverse while its PVCs stay; a
//! DaemonSet puts a pod on every node, following "hollow" Nodes (API objects
//! without an agent) as they join and leave.

use std::time::Duration;

use serde_json::Value;

use crate::harness::Cluster;

const STATEFUL_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: worker
        image: samples/wasm/worker.wasm
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
"#;

const DAEMON_SET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
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

fn hollow_node(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    skiff.dev/runtime-wasm: "true"
"#
    )
}

const HOLLOW_STATUS: &str = r#"{"status": {
  "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow"}],
  "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
  "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}"#;

fn get_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&cluster.kubectl(&all)).expect("kubectl json")
}

fn jsonpath(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let path = format!("jsonpath={path}");
    all.extend_from_slice(&["-o", &path]);
    String::from_utf8_lossy(&cluster.kubectl_output(&all).stdout).into_owned()
}

/// A pod of the `web` StatefulSet as a poll sees it.
#[derive(Debug)]
struct Seen {
    ordinal: usize,
    ready: bool,
    deleting: bool,
}

fn web_pods(cluster: &Cluster) -> Vec<Seen> {
    let list = get_json(cluster, &["pods", "-l", "app=web"]);
    let mut pods: Vec<Seen> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let ready = p["status"]["phase"] == "Running"
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
            Seen {
                ordinal: name
                    .strip_prefix("web-")
                    .and_then(|o| o.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected pod {name}")),
                ready,
                deleting: !p["metadata"]["deletionTimestamp"].is_null(),
            }
        })
        .collect();
    pods.sort_by_key(|p| p.ordinal);
    pods
}

/// OrderedReady: the pods form a prefix 0..k, and all but the last are Ready.
fn assert_ordered(pods: &[Seen]) {
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(p.ordinal, i, "pods skip an ordinal: {pods:?}");
        if i + 1 < pods.len() {
            assert!(
                p.ready,
                "web-{i} not ready while a later pod exists: {pods:?}"
            );
        }
    }
    let deleting: Vec<usize> = pods
        .iter()
        .filter(|p| p.deleting)
        .map(|p| p.ordinal)
        .collect();
    assert!(
        deleting.is_empty() || deleting == [pods.len() - 1],
        "only the highest pod may be terminating: {pods:?}"
    );
}

fn wait_ordered(cluster: &Cluster, what: &str, done: impl Fn(&[Seen]) -> bool) {
    cluster.wait_for(what, Duration::from_secs(120), || {
        let pods = web_pods(cluster);
        assert_ordered(&pods);
        done(&pods)
    });
}

#[test]
fn statefulset_orders_pods_rolls_and_keeps_claims() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(STATEFUL_SET));
    wait_ordered(&cluster, "web-0..2 to be Ready in order", |pods| {
        pods.len() == 3 && pods.iter().all(|p| p.ready)
    });
    let status = cluster.kubectl(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(status.contains("roll out complete"), "{status}");

    let pods = get_json(&cluster, &["pods", "-l", "app=web"]);
    let mut created: Vec<(String, String)> = Vec::new();
    for p in pods["items"].as_array().into_iter().flatten() {
        let name = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ordinal = name.trim_start_matches("web-");
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name.as_str());
        assert_eq!(labels["apps.kubernetes.io/pod-index"], ordinal);
        assert_eq!(p["spec"]["hostname"], name.as_str());
        assert_eq!(p["spec"]["subdomain"], "web");
        let claim = &p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"];
        assert_eq!(*claim, format!("data-{name}"));
        let at = p["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default();
        created.push((name.clone(), at.to_string()));
    }
    created.sort();
    assert!(
        created.windows(2).all(|w| w[0].1 <= w[1].1),
        "created out of order: {created:?}"
    );
    let claims = cluster.kubectl(&["get", "pvc", "-o", "name"]);
    for o in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/data-web-{o}")),
            "{claims}"
        );
    }

    // A template change rolls from web-2 down to web-0.
    cluster.kubectl(&["set", "env", "sts/web", "MODE=fast"]);
    let status = cluster.kubectl(&["rollout", "status", "sts/web", "--timeout=120s"]);
    assert!(status.contains("roll out complete"), "{status}");
    cluster.wait_for(
        "the update revision to become current",
        Duration::from_secs(30),
        || {
            let revs = jsonpath(
                &cluster,
                &["sts", "web"],
                "{.status.currentRevision} {.status.updateRevision}",
            );
            let mut r = revs.split_whitespace();
            matches!((r.next(), r.next()), (Some(a), Some(b)) if a == b && a.starts_with("web-"))
        },
    );
    let update = jsonpath(&cluster, &["sts", "web"], "{.status.updateRevision}");
    let hashes = jsonpath(
        &cluster,
        &["pods", "-l", "app=web"],
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    assert_eq!(
        hashes.split_whitespace().collect::<Vec<_>>(),
        [update.as_str(); 3]
    );
    let revisions = cluster.kubectl(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(
        revisions.lines().filter(|l| l.contains("/web-")).count(),
        2,
        "{revisions}"
    );

    // Scale to 0: web-2, then web-1, then web-0, each gone before the next goes.
    cluster.kubectl(&["scale", "sts/web", "--replicas=0"]);
    wait_ordered(&cluster, "web to scale to 0 in reverse", |pods| {
        pods.is_empty()
    });
    let claims = cluster.kubectl(&["get", "pvc", "-o", "name"]);
    for o in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/data-web-{o}")),
            "claims are retained: {claims}"
        );
    }
    assert_eq!(
        jsonpath(&cluster, &["sts", "web"], "{.status.replicas}"),
        "0"
    );
}

fn agent_nodes(cluster: &Cluster) -> Vec<String> {
    let out = jsonpath(
        cluster,
        &["pods", "-l", "app=agent"],
        "{range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
    );
    let mut nodes: Vec<String> = out.lines().map(str::to_string).collect();
    nodes.sort();
    nodes
}

#[test]
fn daemonset_follows_nodes_joining_and_leaving() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(DAEMON_SET));
    let status = cluster.kubectl(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(agent_nodes(&cluster), ["skiff-test"]);

    for name in ["hollow-1", "hollow-2"] {
        cluster.kubectl_stdin(&["create", "-f", "-"], Some(&hollow_node(name)));
        cluster.kubectl(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            HOLLOW_STATUS,
        ]);
    }
    cluster.wait_for(
        "a bound agent pod on each node",
        Duration::from_secs(30),
        || agent_nodes(&cluster) == ["hollow-1", "hollow-2", "skiff-test"],
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &["ds", "agent"],
            "{.status.desiredNumberScheduled}/{.status.currentNumberScheduled}"
        ),
        "3/3"
    );
    let affinity = jsonpath(
        &cluster,
        &[
            "pods",
            "-l",
            "app=agent",
            "--field-selector",
            "spec.nodeName=hollow-1",
        ],
        "{.items[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}",
    );
    assert_eq!(affinity, "hollow-1");

    cluster.kubectl(&["delete", "node", "hollow-1"]);
    cluster.wait_for("hollow-1's pod to go", Duration::from_secs(30), || {
        agent_nodes(&cluster) == ["hollow-2", "skiff-test"]
    });
    cluster.wait_for("the status to follow", Duration::from_secs(30), || {
        jsonpath(
            &cluster,
            &["ds", "agent"],
            "{.status.desiredNumberScheduled}",
        ) == "2"
    });
}
