//! The scheduler extender through `skiff up --scheduler-config`: an axum
//! extender in this test process filters out one hollow node (with a
//! reason) and gives another full marks, so a pod lands on that one; a pod
//! requesting the resource a failing non-ignorable extender manages stays
//! Pending with a FailedScheduling event naming the error (and is retried);
//! one requesting the resource of a failing ignorable extender is placed
//! without it; a pod the extender rejects everywhere carries the
//! extender's reason in its FailedScheduling message. A bad
//! `--scheduler-config` stops `skiff up` with a one-line error.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::Cluster;

const HOLLOW: [&str; 3] = ["hollow-reserved", "hollow-preferred", "hollow-other"];

/// What the test extender saw: (verb, pod name, node names) per call.
#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<(String, String, Vec<String>)>>,
    broken_calls: AtomicUsize,
}

impl Seen {
    fn record(&self, verb: &str, args: &Value) -> (String, Vec<String>) {
        let pod = args["Pod"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Full Node objects (nodeCacheCapable: false), so read names from metadata.
        let nodes: Vec<String> = args["Nodes"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["status"]["allocatable"].is_object())
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((verb.into(), pod.clone(), nodes.clone()));
        }
        (pod, nodes)
    }

    fn calls_for(&self, verb: &str, pod: &str) -> Vec<Vec<String>> {
        self.calls
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|(v, p, _)| v == verb && p == pod)
                    .map(|(_, _, n)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn filter(State(seen): State<Arc<Seen>>, Json(args): Json<Value>) -> Json<Value> {
    let (pod, nodes) = seen.record("filter", &args);
    let reject_all = pod == "rejected";
    let mut failed = serde_json::Map::new();
    let mut kept = Vec::new();
    for name in nodes {
        let node = args["Nodes"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["metadata"]["name"] == name.as_str())
            .cloned()
            .unwrap_or_default();
        if reject_all {
            failed.insert(name, "node(s) rejected by the test extender".into());
        } else if name == "hollow-reserved" {
            failed.insert(name, "node(s) reserved by the test extender".into());
        } else {
            kept.push(node);
        }
    }
    Json(json!({
        "Nodes": {"metadata": {}, "items": kept},
        "NodeNames": null,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }))
}

async fn prioritize(State(seen): State<Arc<Seen>>, Json(args): Json<Value>) -> Json<Value> {
    let (_, nodes) = seen.record("prioritize", &args);
    let scores: Vec<Value> = nodes
        .iter()
        .map(|n| json!({"Host": n, "Score": if n == "hollow-preferred" { 10 } else { 0 }}))
        .collect();
    Json(Value::Array(scores))
}

async fn broken(State(seen): State<Arc<Seen>>) -> (http::StatusCode, &'static str) {
    seen.broken_calls.fetch_add(1, Ordering::SeqCst);
    (http::StatusCode::INTERNAL_SERVER_ERROR, "extender broke")
}

async fn flaky() -> Json<Value> {
    Json(json!({"Error": "the flaky extender is down"}))
}

/// Serves the extender on 127.0.0.1:0 in `rt`; returns its base URL.
fn serve(rt: &tokio::runtime::Runtime, seen: Arc<Seen>) -> String {
    let app = axum::Router::new()
        .route("/good/filter", post(filter))
        .route("/good/prioritize", post(prioritize))
        .route("/broken/filter", post(broken))
        .route("/flaky/filter", post(flaky))
        .with_state(seen);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the extender");
    let addr = listener.local_addr().expect("extender address");
    rt.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn scheduler_config(base: &str) -> String {
    format!(
        r#"
extenders:
- urlPrefix: {base}/good
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 20
  nodeCacheCapable: false
  httpTimeout: 5s
- urlPrefix: {base}/broken
  filterVerb: filter
  ignorable: false
  managedResources: [{{name: example.com/broken, ignoredByScheduler: true}}]
- urlPrefix: {base}/flaky
  filterVerb: filter
  ignorable: true
  managedResources: [{{name: example.com/flaky, ignoredByScheduler: true}}]
"#
    )
}

fn hollow_node(cluster: &Cluster, name: &str) {
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    \
         kubernetes.io/hostname: {name}\n    skiff.dev/runtime-wasm: \"true\"\n"
    );
    cluster.kubectl_stdin(&["create", "-f", "-"], Some(&node));
    let status = r#"{"status": {
      "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "hollow"}],
      "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
      "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}"#;
    cluster.kubectl(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
}

fn pod(name: &str, resource: Option<&str>) -> String {
    let resources = resource
        .map(|r| format!("\n    resources: {{limits: {{\"{r}\": \"1\"}}}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  \
         - name: worker\n    image: samples/wasm/worker.wasm{resources}\n"
    )
}

fn get(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let path = format!("jsonpath={path}");
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", &path]);
    String::from_utf8_lossy(&cluster.kubectl_output(&all).stdout).into_owned()
}

fn failed_scheduling(cluster: &Cluster, pod: &str) -> String {
    let selector = format!("involvedObject.name={pod},reason=FailedScheduling");
    get(
        cluster,
        &["events", "--field-selector", &selector],
        "{.items[*].message}",
    )
}

#[test]
fn scheduler_extender_filters_prioritizes_and_fails() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let seen = Arc::new(Seen::default());
    let base = serve(&rt, seen.clone());
    let config_dir = tempfile::tempdir().expect("config dir");
    let config = config_dir.path().join("scheduler.yaml");
    std::fs::write(&config, scheduler_config(&base)).expect("write scheduler config");
    let config = config.to_string_lossy().into_owned();
    // Hollow nodes send no heartbeats: keep them Ready for the whole test.
    let cluster = Cluster::start_with(&[
        "--scheduler-config",
        &config,
        "--node-monitor-grace-period",
        "1h",
    ]);
    for name in HOLLOW {
        hollow_node(&cluster, name);
    }
    let wait = Duration::from_secs(60);

    // Filtered away from hollow-reserved, prioritized onto hollow-preferred.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&pod("placed", None)));
    cluster.wait_for("placed to be bound", wait, || {
        !get(&cluster, &["pod", "placed"], "{.spec.nodeName}").is_empty()
    });
    assert_eq!(
        get(&cluster, &["pod", "placed"], "{.spec.nodeName}"),
        "hollow-preferred"
    );
    let filtered = seen.calls_for("filter", "placed");
    assert!(
        filtered
            .iter()
            .any(|nodes| HOLLOW.iter().all(|h| nodes.iter().any(|n| n == h))),
        "the filter saw every hollow node as a full Node object: {filtered:?}"
    );
    let ranked = seen.calls_for("prioritize", "placed");
    assert!(
        !ranked.is_empty()
            && ranked
                .iter()
                .all(|nodes| !nodes.iter().any(|n| n == "hollow-reserved")),
        "prioritize only sees nodes that passed the filter: {ranked:?}"
    );

    // A failing ignorable extender is skipped.
    let flaky = pod("flaky", Some("example.com/flaky"));
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&flaky));
    cluster.wait_for("flaky to be bound", wait, || {
        !get(&cluster, &["pod", "flaky"], "{.spec.nodeName}").is_empty()
    });
    assert_eq!(
        get(&cluster, &["pod", "flaky"], "{.spec.nodeName}"),
        "hollow-preferred"
    );

    // A failing non-ignorable extender keeps the pod Pending, retried with back-off.
    let broken = pod("broken", Some("example.com/broken"));
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&broken));
    cluster.wait_for("a FailedScheduling event for broken", wait, || {
        failed_scheduling(&cluster, "broken").contains("/broken/filter, code 500")
    });
    cluster.wait_for("broken to be retried", wait, || {
        seen.broken_calls.load(Ordering::SeqCst) >= 2
    });
    assert_eq!(get(&cluster, &["pod", "broken"], "{.spec.nodeName}"), "");
    assert_eq!(
        get(&cluster, &["pod", "broken"], "{.status.phase}"),
        "Pending"
    );
    cluster.wait_for("PodScheduled=False/SchedulerError", wait, || {
        get(
            &cluster,
            &["pod", "broken"],
            "{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        ) == "SchedulerError"
    });

    // Rejected by the extender everywhere: its reason is in the message.
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&pod("rejected", None)));
    cluster.wait_for("a FailedScheduling event for rejected", wait, || {
        failed_scheduling(&cluster, "rejected")
            .contains("0/4 nodes are available: 4 node(s) rejected by the test extender.")
    });
    assert_eq!(get(&cluster, &["pod", "rejected"], "{.spec.nodeName}"), "");
}

#[test]
fn bad_scheduler_config_is_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        "extenders:\n- urlPrefix: http://127.0.0.1:1/x\n  prioritizeVerb: prioritize\n",
    )
    .expect("write");
    let output = Command::new(crate::harness::skiff_bin())
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--scheduler-config")
        .arg(&config)
        .output()
        .expect("run skiff up");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.trim();
    assert!(
        line.starts_with("error: scheduler configuration: ")
            && line.contains("extenders[0]")
            && line.contains("weight 0 must be positive")
            && !line.contains('\n'),
        "{stderr}"
    );
}
