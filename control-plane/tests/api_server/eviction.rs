//! pods/eviction against PodDisruptionBudgets, with no disruption
//! controller running: the budget's status is written by hand, so every
//! answer comes from the eviction subresource alone (429 with its
//! DisruptionBudget cause, the budget decremented in the same write that
//! lists the pod, 500 for several budgets, unready/Pending/terminating
//! pods, dry runs and preconditions).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};
use serde_json::{Value, json};

use crate::support::{Cluster, client_without_retries};

/// One JSON request (by a client that does not retry 429 itself): status,
/// the Retry-After header and the body.
async fn send(
    c: &Cluster,
    method: &str,
    path: &str,
    ct: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let client = client_without_retries(&c.handle().admin_kubeconfig).await;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).expect("json")
        })
        .expect("request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post(c: &Cluster, path: &str, body: Value) -> (u16, Value) {
    let (code, _, v) = send(c, "POST", path, "application/json", &body).await;
    (code, v)
}

async fn get(c: &Cluster, path: &str) -> Value {
    let (code, _, v) = send(c, "GET", path, "application/json", &Value::Null).await;
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

/// A pod labelled app=web; `phase` None leaves it Pending and unbound.
async fn pod(c: &Cluster, name: &str, phase: Option<&str>, ready: bool) {
    let (code, v) = post(
        c,
        PODS,
        json!({"metadata": {"name": name, "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": "samples/wasm/hello.wasm"}]}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let Some(phase) = phase else { return };
    let binding = json!({"metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}});
    let (code, v) = post(c, &format!("{PODS}/{name}/binding"), binding).await;
    assert_eq!(code, 201, "{v}");
    let status = json!({"status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    let (code, _, v) = send(
        c,
        "PATCH",
        &format!("{PODS}/{name}/status"),
        "application/merge-patch+json",
        &status,
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

/// A budget with `selector` and the status a disruption controller would write.
async fn budget(
    c: &Cluster,
    name: &str,
    selector: Value,
    allowed: i64,
    current: i64,
    desired: i64,
) {
    let (code, v) = post(
        c,
        PDBS,
        json!({"metadata": {"name": name}, "spec": {"minAvailable": desired, "selector": selector}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    set_status(c, name, allowed, current, desired).await;
}

async fn set_status(c: &Cluster, name: &str, allowed: i64, current: i64, desired: i64) {
    let pdb = get(c, &format!("{PDBS}/{name}")).await;
    let status = json!({"status": {
        "observedGeneration": pdb["metadata"]["generation"], "disruptionsAllowed": allowed,
        "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current}});
    let (code, _, v) = send(
        c,
        "PATCH",
        &format!("{PDBS}/{name}/status"),
        "application/merge-patch+json",
        &status,
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

fn eviction(name: &str, delete_options: Value) -> Value {
    let mut ev = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    if !delete_options.is_null() {
        ev["deleteOptions"] = delete_options;
    }
    ev
}

async fn evict(c: &Cluster, name: &str, delete_options: Value) -> (u16, Option<String>, Value) {
    send(
        c,
        "POST",
        &format!("{PODS}/{name}/eviction"),
        "application/json",
        &eviction(name, delete_options),
    )
    .await
}

async fn exists(c: &Cluster, name: &str) -> Option<Value> {
    let (code, _, v) = send(
        c,
        "GET",
        &format!("{PODS}/{name}"),
        "application/json",
        &Value::Null,
    )
    .await;
    (code == 200).then_some(v)
}

#[tokio::test]
async fn a_budget_of_one_lets_one_eviction_through() {
    let mut c = Cluster::start().await;
    pod(&c, "web-a", Some("Running"), true).await;
    pod(&c, "web-b", Some("Running"), true).await;
    budget(&c, "web", json!({"matchLabels": {"app": "web"}}), 1, 2, 1).await;

    let (code, _, v) = evict(&c, "web-a", Value::Null).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["status"], "Success", "{v}");
    // Bound, so marked for graceful deletion; the budget was charged for it.
    let a = exists(&c, "web-a").await.expect("web-a is terminating");
    assert!(a["metadata"]["deletionTimestamp"].is_string(), "{a}");
    let pdb = get(&c, &format!("{PDBS}/web")).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    assert!(pdb["status"]["disruptedPods"]["web-a"].is_string(), "{pdb}");
    let cond = &pdb["status"]["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &json!("DisruptionAllowed"),
            &json!("False"),
            &json!("InsufficientPods")
        )
    );

    // The second eviction comes before any controller has looked: refused.
    let (code, _, v) = evict(&c, "web-b", Value::Null).await;
    assert_eq!(code, 429, "{v}");
    assert_eq!(v["reason"], "TooManyRequests");
    assert_eq!(
        v["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        v["details"]["causes"],
        json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 1 healthy pods and has 2 currently"}])
    );
    let b = exists(&c, "web-b").await.expect("web-b stays");
    assert!(b["metadata"]["deletionTimestamp"].is_null(), "{b}");
    // kube-rs sees the same refusal.
    let client = client_without_retries(&c.handle().admin_kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    match pods.evict("web-b", &EvictParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"))
        }
        other => panic!("expected 429, got {other:?}"),
    }

    // A terminating pod is deleted without asking the budget, with the
    // Eviction's deleteOptions (grace 0 removes it now).
    let (code, _, v) = evict(&c, "web-a", json!({"gracePeriodSeconds": 0})).await;
    assert_eq!(code, 201, "{v}");
    assert!(exists(&c, "web-a").await.is_none());

    let (code, _, v) = evict(&c, "nope", Value::Null).await;
    assert_eq!((code, v["reason"].as_str()), (404, Some("NotFound")), "{v}");
    let (code, v) = post(
        &c,
        &format!("{PODS}/web-b/eviction"),
        eviction("web-a", Value::Null),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "name in URL does not match name in Eviction object"
    );
    c.stop().await;
}

#[tokio::test]
async fn unready_pending_terminal_and_ambiguous_pods() {
    let mut c = Cluster::start().await;
    budget(&c, "web", json!({"matchLabels": {"app": "web"}}), 0, 1, 1).await;

    // Pending and Succeeded pods go whatever the budget says.
    pod(&c, "pending", None, false).await;
    let (code, _, v) = evict(&c, "pending", Value::Null).await;
    assert_eq!(code, 201, "{v}");
    assert!(exists(&c, "pending").await.is_none());
    pod(&c, "done", Some("Succeeded"), false).await;
    let (code, _, v) = evict(&c, "done", Value::Null).await;
    assert_eq!(code, 201, "{v}");
    assert!(
        exists(&c, "done").await.is_none(),
        "terminal pods go at once"
    );

    // An unready pod goes while the budget is met, without a decrement...
    pod(&c, "unready", Some("Running"), false).await;
    let (code, _, v) = evict(&c, "unready", json!({"gracePeriodSeconds": 0})).await;
    assert_eq!(code, 201, "{v}");
    assert!(exists(&c, "unready").await.is_none());
    let pdb = get(&c, &format!("{PDBS}/web")).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"].is_null(), "{pdb}");
    // ...but not while it is not.
    set_status(&c, "web", 0, 0, 1).await;
    pod(&c, "unready2", Some("Running"), false).await;
    let (code, _, v) = evict(&c, "unready2", Value::Null).await;
    assert_eq!(code, 429, "{v}");
    assert!(
        v["details"]["causes"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("needs 1 healthy pods and has 0 currently"),
        "{v}"
    );

    // Dry runs change nothing.
    pod(&c, "ready", Some("Running"), true).await;
    set_status(&c, "web", 1, 1, 0).await;
    let (code, _, v) = send(
        &c,
        "POST",
        &format!("{PODS}/ready/eviction?dryRun=All"),
        "application/json",
        &eviction("ready", Value::Null),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let ready = exists(&c, "ready").await.expect("kept");
    assert!(ready["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(
        get(&c, &format!("{PDBS}/web")).await["status"]["disruptionsAllowed"],
        1
    );

    // Preconditions of the deleteOptions hold.
    let (code, _, v) = evict(
        &c,
        "ready",
        json!({"preconditions": {"uid": "not-the-uid"}}),
    )
    .await;
    assert_eq!(code, 409, "{v}");

    // A budget whose spec changed since the controller last looked: retry later.
    let (code, _, v) = send(
        &c,
        "PATCH",
        &format!("{PDBS}/web"),
        "application/merge-patch+json",
        &json!({"spec": {"minAvailable": 0}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, retry, v) = evict(&c, "ready", Value::Null).await;
    assert_eq!(code, 429, "{v}");
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(v["details"]["retryAfterSeconds"], 10);
    assert_eq!(
        v["details"]["causes"][0]["message"],
        "The disruption budget web is still being processed by the server."
    );
    set_status(&c, "web", 1, 1, 0).await;

    // An empty selector picks every pod of the namespace: two budgets now.
    budget(&c, "everything", json!({}), 5, 5, 0).await;
    let (code, _, v) = evict(&c, "ready", Value::Null).await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(
        v["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(exists(&c, "ready").await.is_some());
    // A budget without a selector picks none.
    let (code, _, v) = send(
        &c,
        "DELETE",
        &format!("{PDBS}/everything"),
        "application/json",
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = post(
        &c,
        PDBS,
        json!({"metadata": {"name": "none"}, "spec": {"maxUnavailable": 0}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, _, v) = evict(&c, "ready", json!({"gracePeriodSeconds": 0})).await;
    assert_eq!(code, 201, "{v}");
    assert!(exists(&c, "ready").await.is_none());
    let pdb = get(&c, &format!("{PDBS}/web")).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["ready"].is_string(), "{pdb}");
    c.stop().await;
}
