//! kubectl 1.32 against `skiff up`: the day-to-day verbs a user runs on a
//! multi-document manifest, re-applied with a change (strategic merge), plus
//! discovery, Table columns, `get -w` and `auth can-i`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::Cluster;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: tour
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: tour
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: tour
stringData:
  token: s3cr3t
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: tour
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: samples/wasm/http-echo.wasm
        ports:
        - containerPort: 8080
        env:
        - name: GREETING
          valueFrom:
            configMapKeyRef: {name: settings, key: greeting}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: tour
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

#[test]
fn kubectl_apply_get_describe_patch_scale_delete() {
    let cluster = Cluster::start();

    let applied = cluster.kubectl_stdin(&["apply", "-f", "-"], Some(MANIFEST));
    for line in [
        "namespace/tour created",
        "configmap/settings created",
        "secret/token created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(
            applied.contains(line),
            "apply output lacks {line:?}:\n{applied}"
        );
    }

    // Re-apply a changed copy: kubectl computes a strategic merge patch.
    let changed = MANIFEST
        .replace("replicas: 2", "replicas: 3")
        .replace("greeting: hello", "greeting: hi");
    let reapplied = cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&changed));
    assert!(
        reapplied.contains("deployment.apps/web configured"),
        "{reapplied}"
    );
    assert!(
        reapplied.contains("configmap/settings configured"),
        "{reapplied}"
    );
    assert!(reapplied.contains("service/web unchanged"), "{reapplied}");
    let replicas = cluster.kubectl(&[
        "get",
        "deploy",
        "web",
        "-n",
        "tour",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "3");
    let greeting = cluster.kubectl(&[
        "get",
        "cm",
        "settings",
        "-n",
        "tour",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(greeting, "hi");

    // Table columns as kubectl prints them.
    let deployments = cluster.kubectl(&["get", "deployments", "-n", "tour"]);
    let header: Vec<&str> = deployments
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{deployments}"
    );
    let services = cluster.kubectl(&["get", "svc", "web", "-n", "tour"]);
    let header: Vec<&str> = services
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{services}"
    );
    assert!(services.contains("80/TCP"), "{services}");
    let nodes = cluster.kubectl(&["get", "nodes"]);
    let header: Vec<&str> = nodes
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{nodes}"
    );
    cluster.wait_for("3 pods of web", Duration::from_secs(60), || {
        let pods = cluster.kubectl(&["get", "pods", "-n", "tour", "-l", "app=web", "-o", "name"]);
        pods.lines().count() == 3
    });
    let pods = cluster.kubectl(&["get", "pods", "-n", "tour", "-o", "wide"]);
    let header: Vec<&str> = pods
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{pods}"
    );

    // label, annotate, patch, describe.
    cluster.kubectl(&["label", "deploy", "web", "-n", "tour", "tier=frontend"]);
    cluster.kubectl(&["annotate", "deploy", "web", "-n", "tour", "owner=team-a"]);
    let selected = cluster.kubectl(&[
        "get",
        "deploy",
        "-n",
        "tour",
        "-l",
        "tier in (frontend,backend)",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "deployment.apps/web");
    cluster.kubectl(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "tour",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ]);
    cluster.kubectl(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "tour",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/data/extra"}]"#,
    ]);
    let data = cluster.kubectl(&[
        "get",
        "cm",
        "settings",
        "-n",
        "tour",
        "-o",
        "jsonpath={.data}",
    ]);
    assert_eq!(data, r#"{"greeting":"hi"}"#);
    let described = cluster.kubectl(&["describe", "deploy", "web", "-n", "tour"]);
    assert!(
        described.contains("owner: team-a") || described.contains("owner=team-a"),
        "{described}"
    );
    assert!(described.contains("tier=frontend"), "{described}");

    // get -w sees a change made while it watches.
    let mut watch = Command::new("/usr/bin/kubectl")
        .args([
            "get",
            "cm",
            "-n",
            "tour",
            "-w",
            "--output-watch-events",
            "-o",
            "name",
        ])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("watch stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The initial list arrives first; then a new object appears as ADDED.
    let first = lines_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial watch line");
    assert!(first.contains("configmap/"), "{first}");
    cluster.kubectl(&[
        "create",
        "configmap",
        "watched",
        "-n",
        "tour",
        "--from-literal=a=b",
    ]);
    let mut seen = Vec::new();
    let found = loop {
        match lines_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("configmap/watched") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(found, "get -w never showed configmap/watched; saw {seen:?}");

    // scale, then delete.
    cluster.kubectl(&["scale", "deploy", "web", "-n", "tour", "--replicas", "1"]);
    let replicas = cluster.kubectl(&[
        "get",
        "deploy",
        "web",
        "-n",
        "tour",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "1");
    cluster.kubectl(&["delete", "cm", "watched", "-n", "tour"]);
    let missing = cluster.kubectl_output(&["get", "cm", "watched", "-n", "tour"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(r#"Error from server (NotFound): configmaps "watched" not found"#),
        "{stderr}"
    );

    // Discovery and authorization answers kubectl relies on.
    let resources = cluster.kubectl(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "horizontalpodautoscalers",
        "leases",
    ] {
        assert!(
            resources.contains(line),
            "api-resources lacks {line}:\n{resources}"
        );
    }
    assert_eq!(
        cluster
            .kubectl(&["auth", "can-i", "create", "deployments"])
            .trim(),
        "yes"
    );
}
