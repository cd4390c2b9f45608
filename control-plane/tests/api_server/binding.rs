//! pods/binding as the scheduler and other binders see it: admission
//! (NamespaceLifecycle), the target pod and node name checked, 409 for a
//! pod already assigned, preconditions, annotations and dry runs.

use serde_json::{Value, json};

use crate::support::Cluster;

async fn send(c: &Cluster, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("json")
    };
    c.request(method, path, "application/json", bytes).await
}

fn binding(pod: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"kind": "Node", "name": node}})
}

async fn pod(c: &Cluster, ns: &str, name: &str) -> Value {
    let (code, v) = send(
        c,
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods"),
        &json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "samples/wasm/hello.wasm"}]}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    v
}

fn bind_path(ns: &str, pod: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{pod}/binding")
}

#[tokio::test]
async fn bindings_are_checked_and_admitted() {
    let mut c = Cluster::start().await;
    let created = pod(&c, "default", "p").await;

    // Dry run: answered, nothing written.
    let (code, v) = send(
        &c,
        "POST",
        &format!("{}?dryRun=All", bind_path("default", "p")),
        &binding("p", "n1"),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (_, now) = send(&c, "GET", "/api/v1/namespaces/default/pods/p", &Value::Null).await;
    assert!(now["spec"]["nodeName"].is_null(), "{now}");

    // Invalid targets and names.
    let (code, v) = send(
        &c,
        "POST",
        &bind_path("default", "p"),
        &binding("p", "Not_A_Node"),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "target.name");
    let (code, v) = send(
        &c,
        "POST",
        &bind_path("default", "p"),
        &json!({"metadata": {"name": "p"}, "target": {"kind": "Pod", "name": "n1"}}),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "target.kind");
    let (code, v) = send(
        &c,
        "POST",
        &bind_path("default", "p"),
        &binding("other", "n1"),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "name in URL does not match name in Binding object"
    );

    // The pod must exist; preconditions must hold.
    let (code, v) = send(
        &c,
        "POST",
        &bind_path("default", "nope"),
        &binding("nope", "n1"),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["message"], "pods \"nope\" not found");
    let mut stale = binding("p", "n1");
    stale["metadata"]["uid"] = json!("not-the-uid");
    let (code, v) = send(&c, "POST", &bind_path("default", "p"), &stale).await;
    assert_eq!(code, 409, "{v}");

    // A good binding: node, annotations, PodScheduled.
    let mut good = binding("p", "n1");
    good["metadata"]["uid"] = created["metadata"]["uid"].clone();
    good["metadata"]["annotations"] = json!({"scheduler.example/why": "fits"});
    let (code, v) = send(&c, "POST", &bind_path("default", "p"), &good).await;
    assert_eq!(code, 201, "{v}");
    let (_, bound) = send(&c, "GET", "/api/v1/namespaces/default/pods/p", &Value::Null).await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(
        bound["metadata"]["annotations"]["scheduler.example/why"],
        "fits"
    );
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(scheduled["status"], "True", "{bound}");

    // Binding again is a conflict on pods/binding.
    let (code, v) = send(&c, "POST", &bind_path("default", "p"), &binding("p", "n2")).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["reason"], "Conflict");
    assert_eq!(
        v["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"n1\""
    );
    assert_eq!(v["details"]["kind"], "pods/binding");

    // NamespaceLifecycle: no binding into a namespace being terminated.
    let (code, v) = send(
        &c,
        "POST",
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "ending"}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    pod(&c, "ending", "q").await;
    let (code, v) = send(&c, "DELETE", "/api/v1/namespaces/ending", &Value::Null).await;
    assert!(code == 200 || code == 202, "{v}");
    let (code, v) = send(&c, "POST", &bind_path("ending", "q"), &binding("q", "n1")).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "pods \"q\" is forbidden: unable to create new content in namespace ending because it is being terminated"
    );
    let (code, v) = send(&c, "POST", &bind_path("missing", "q"), &binding("q", "n1")).await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["message"], "namespaces \"missing\" not found");
    c.stop().await;
}
