//! The admission plugins over HTTP: NamespaceLifecycle, ServiceAccount,
//! LimitRanger, ResourceQuota and PodSecurity, asserting the status codes,
//! reasons and messages (and `Warning` headers) a client sees.

use serde_json::{Value, json};

use crate::support::{Cluster, eventually};

/// One request with a JSON body; the status, the `Warning` headers and the body.
async fn send(
    c: &Cluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Vec<String>, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("json")
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(bytes)
        .expect("request");
    let resp = c
        .client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_string())
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, warnings, value)
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

async fn namespace(c: &Cluster, name: &str, labels: Value) {
    let (code, v) = post(
        c,
        "/api/v1/namespaces",
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "samples/wasm/hello.wasm"}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "c", "image": "samples/wasm/hello.wasm"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// Asserts a 403 Forbidden with exactly `message`.
fn forbidden(code: u16, v: &Value, message: &str) {
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["reason"], "Forbidden", "{v}");
    assert_eq!(v["message"], message, "{v}");
}

#[tokio::test]
async fn namespace_lifecycle() {
    let mut c = Cluster::start().await;
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/missing/configmaps",
        json!({"metadata": {"name": "a"}}),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["reason"], "NotFound");
    assert_eq!(v["message"], "namespaces \"missing\" not found");

    namespace(&c, "ending", json!({})).await;
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/ending/configmaps",
        json!({"metadata": {"name": "kept"}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, _, v) = send(
        &c,
        "DELETE",
        "/api/v1/namespaces/ending",
        "application/json",
        &Value::Null,
    )
    .await;
    assert!(code == 200 || code == 202, "{v}");
    assert_eq!(
        get(&c, "/api/v1/namespaces/ending").await["status"]["phase"],
        "Terminating"
    );
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/ending/configmaps",
        json!({"metadata": {"name": "b"}}),
    )
    .await;
    forbidden(
        code,
        &v,
        "configmaps \"b\" is forbidden: unable to create new content in namespace ending because it is being terminated",
    );
    // Existing content can still be changed while the namespace drains.
    let (code, _, v) = send(
        &c,
        "PATCH",
        "/api/v1/namespaces/ending/configmaps/kept",
        "application/merge-patch+json",
        &json!({"data": {"k": "v"}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");

    for immortal in ["default", "kube-system", "kube-public"] {
        let path = format!("/api/v1/namespaces/{immortal}");
        let (code, _, v) = send(&c, "DELETE", &path, "application/json", &Value::Null).await;
        forbidden(
            code,
            &v,
            &format!("namespaces \"{immortal}\" is forbidden: this namespace may not be deleted"),
        );
        assert_eq!(get(&c, &path).await["status"]["phase"], "Active");
    }
    c.stop().await;
}

#[tokio::test]
async fn service_accounts() {
    let mut c = Cluster::start().await;
    // No ServiceAccount controller runs here: `default` does not exist, yet pods are admitted.
    namespace(&c, "fresh", json!({})).await;
    for ns in ["default", "fresh"] {
        let (code, v) = post(
            &c,
            &format!("/api/v1/namespaces/{ns}/pods"),
            pod("p", json!({})),
        )
        .await;
        assert_eq!(code, 201, "{v}");
        assert_eq!(v["spec"]["serviceAccountName"], "default");
        assert_eq!(v["spec"]["serviceAccount"], "default");
    }
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/default/pods",
        pod("bot-pod", json!({"serviceAccountName": "bot"})),
    )
    .await;
    forbidden(
        code,
        &v,
        "pods \"bot-pod\" is forbidden: error looking up service account default/bot: serviceaccount \"bot\" not found",
    );
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "bot"}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/default/pods",
        pod("bot-pod", json!({"serviceAccount": "bot"})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["spec"]["serviceAccountName"], "bot");
    c.stop().await;
}

#[tokio::test]
async fn limit_ranges() {
    let mut c = Cluster::start().await;
    namespace(&c, "lr", json!({})).await;
    let range = json!({"metadata": {"name": "limits"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "2"}},
        {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}},
    ]}});
    let (code, v) = post(&c, "/api/v1/namespaces/lr/limitranges", range).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "100m", "memory": "128Mi"})
    );

    let (code, v) = post(&c, "/api/v1/namespaces/lr/pods", pod("plain", json!({}))).await;
    assert_eq!(code, 201, "{v}");
    let res = &v["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "128Mi"}));
    assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "128Mi"}));
    assert_eq!(v["status"]["qosClass"], "Burstable");
    assert_eq!(
        v["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );

    let big = pod(
        "big",
        json!({"containers": [container(json!({"resources": {"limits": {"cpu": "4"}}}))]}),
    );
    let (code, v) = post(&c, "/api/v1/namespaces/lr/pods", big).await;
    forbidden(
        code,
        &v,
        "pods \"big\" is forbidden: maximum cpu usage per Container is 2, but limit is 4",
    );

    let claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}});
    let (code, v) = post(&c, "/api/v1/namespaces/lr/persistentvolumeclaims", claim).await;
    forbidden(
        code,
        &v,
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 5Gi",
    );
    c.stop().await;
}

async fn quota_used(c: &Cluster, path: &str, resource: &str, want: &str) {
    eventually(
        10,
        &format!("{path} status.used.{resource} = {want}"),
        || async {
            let q = get(c, path).await;
            (q["status"]["used"][resource] == want).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn resource_quotas() {
    let mut c = Cluster::start().await;
    namespace(&c, "rq", json!({})).await;
    let (code, v) = post(&c, "/api/v1/namespaces/rq/resourcequotas",
        json!({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "2", "count/configmaps": "1"}}})).await;
    assert_eq!(code, 201, "{v}");
    let quota = "/api/v1/namespaces/rq/resourcequotas/pods";
    quota_used(&c, quota, "pods", "0").await;
    assert_eq!(
        get(&c, quota).await["status"]["hard"],
        json!({"count/configmaps": "1", "pods": "2"})
    );
    for name in ["p1", "p2"] {
        let (code, v) = post(&c, "/api/v1/namespaces/rq/pods", pod(name, json!({}))).await;
        assert_eq!(code, 201, "{v}");
    }
    quota_used(&c, quota, "pods", "2").await;
    let (code, v) = post(&c, "/api/v1/namespaces/rq/pods", pod("p3", json!({}))).await;
    forbidden(
        code,
        &v,
        "pods \"p3\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2",
    );

    // A finished pod no longer counts.
    let (code, _, v) = send(
        &c,
        "PATCH",
        "/api/v1/namespaces/rq/pods/p1/status",
        "application/merge-patch+json",
        &json!({"status": {"phase": "Succeeded"}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    quota_used(&c, quota, "pods", "1").await;
    let (code, v) = post(&c, "/api/v1/namespaces/rq/pods", pod("p3", json!({}))).await;
    assert_eq!(code, 201, "{v}");
    let (code, _, v) = send(
        &c,
        "DELETE",
        "/api/v1/namespaces/rq/pods/p3",
        "application/json",
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    quota_used(&c, quota, "pods", "1").await;

    let (code, v) = post(
        &c,
        "/api/v1/namespaces/rq/configmaps",
        json!({"metadata": {"name": "a"}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/rq/configmaps",
        json!({"metadata": {"name": "b"}}),
    )
    .await;
    forbidden(
        code,
        &v,
        "configmaps \"b\" is forbidden: exceeded quota: pods, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1",
    );
    quota_used(&c, quota, "count/configmaps", "1").await;
    c.stop().await;
}

#[tokio::test]
async fn compute_quotas() {
    let mut c = Cluster::start().await;
    namespace(&c, "cq", json!({})).await;
    let (code, v) = post(&c, "/api/v1/namespaces/cq/resourcequotas",
        json!({"metadata": {"name": "compute"}, "spec": {"hard": {"requests.cpu": "1", "limits.memory": "1Gi", "count/deployments.apps": "0"}}})).await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = post(&c, "/api/v1/namespaces/cq/pods", pod("bare", json!({}))).await;
    forbidden(
        code,
        &v,
        "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c",
    );
    let sized = |name: &str| {
        pod(
            name,
            json!({"containers": [container(json!({"resources": {"requests": {"cpu": "600m"}, "limits": {"memory": "256Mi"}}}))]}),
        )
    };
    let (code, v) = post(&c, "/api/v1/namespaces/cq/pods", sized("one")).await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = post(&c, "/api/v1/namespaces/cq/pods", sized("two")).await;
    forbidden(
        code,
        &v,
        "pods \"two\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1",
    );
    let path = "/api/v1/namespaces/cq/resourcequotas/compute";
    quota_used(&c, path, "limits.memory", "256Mi").await;
    quota_used(&c, path, "requests.cpu", "600m").await;
    let deploy = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container(json!({}))]}}}});
    let (code, v) = post(&c, "/apis/apps/v1/namespaces/cq/deployments", deploy).await;
    forbidden(
        code,
        &v,
        "deployments.apps \"web\" is forbidden: exceeded quota: compute, requested: count/deployments.apps=1, \
         used: count/deployments.apps=0, limited: count/deployments.apps=0",
    );
    c.stop().await;
}

fn host_pod(name: &str) -> Value {
    pod(
        name,
        json!({"hostNetwork": true, "containers": [container(json!({"securityContext": {"privileged": true}}))]}),
    )
}

#[tokio::test]
async fn pod_security_levels() {
    let mut c = Cluster::start().await;
    let (code, v) = post(&c, "/api/v1/namespaces/default/pods", host_pod("host")).await;
    forbidden(
        code,
        &v,
        "pods \"host\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), \
         privileged (container \"c\" must not set securityContext.privileged=true)",
    );
    let (code, v) = post(&c, "/api/v1/namespaces/kube-system/pods", host_pod("host")).await;
    assert_eq!(code, 201, "kube-system is exempt: {v}");
    namespace(
        &c,
        "open",
        json!({"pod-security.kubernetes.io/enforce": "privileged"}),
    )
    .await;
    let (code, v) = post(&c, "/api/v1/namespaces/open/pods", host_pod("host")).await;
    assert_eq!(code, 201, "{v}");

    namespace(
        &c,
        "strict",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    let (code, v) = post(
        &c,
        "/api/v1/namespaces/strict/pods",
        pod("plain", json!({})),
    )
    .await;
    forbidden(
        code,
        &v,
        "pods \"plain\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false \
         (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities \
         (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \
         \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set \
         securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
    );
    let hardened = pod(
        "hardened",
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container(json!({"securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}))],
        }),
    );
    let (code, v) = post(&c, "/api/v1/namespaces/strict/pods", hardened).await;
    assert_eq!(code, 201, "{v}");

    let (code, v) = post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "typo", "labels": {"pod-security.kubernetes.io/enforce": "strict"}}})).await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["details"]["causes"][0]["field"],
        "metadata.labels[pod-security.kubernetes.io/enforce]"
    );
    c.stop().await;
}

#[tokio::test]
async fn pod_security_warnings() {
    let mut c = Cluster::start().await;
    let deploy = json!({"metadata": {"name": "hostnet"}, "spec": {"selector": {"matchLabels": {"app": "h"}},
        "template": {"metadata": {"labels": {"app": "h"}}, "spec": {"hostNetwork": true, "containers": [container(json!({}))]}}}});
    let (code, warnings, v) = send(
        &c,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        &deploy,
    )
    .await;
    assert_eq!(code, 201, "templates are never refused: {v}");
    assert_eq!(
        warnings,
        vec![
            r#"299 - "would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)""#
        ]
    );

    // Tightening a namespace warns about the pods already in it; their status updates still pass.
    namespace(&c, "team", json!({})).await;
    let (code, v) = post(&c, "/api/v1/namespaces/team/pods", pod("old", json!({}))).await;
    assert_eq!(code, 201, "{v}");
    let (code, warnings, v) = send(
        &c,
        "PATCH",
        "/api/v1/namespaces/team",
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        warnings[0],
        r#"299 - "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"restricted:latest\"""#
    );
    assert_eq!(
        warnings[1],
        r#"299 - "old: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile""#
    );
    let (code, _, v) = send(
        &c,
        "PATCH",
        "/api/v1/namespaces/team/pods/old/status",
        "application/merge-patch+json",
        &json!({"status": {"phase": "Running"}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = post(&c, "/api/v1/namespaces/team/pods", pod("new", json!({}))).await;
    assert_eq!(code, 403, "{v}");
    c.stop().await;
}
