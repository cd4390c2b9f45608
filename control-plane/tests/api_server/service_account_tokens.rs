//! ServiceAccount tokens through the API: the ServiceAccount admission
//! plugin's `kube-api-access-*` volume (and the automount opt-outs), what a
//! node may ask `serviceaccounts/token` for, and tokens bound to a pod that
//! stop authenticating once the pod is gone.

use serde_json::{Value, json};

use crate::support::{Cluster, client_for};

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn send(
    c: &Cluster,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("json")
    };
    c.request_with(method, path, &all, bytes).await
}

async fn create(c: &Cluster, path: &str, body: Value) -> Value {
    let (code, v) = send(c, "POST", path, &[], &body).await;
    assert_eq!(code, 201, "POST {path}: {v}");
    v
}

fn pod(name: &str, extra: Value) -> Value {
    let mut spec = json!({
        "initContainers": [{"name": "init", "image": "samples/wasm/hello.wasm"}],
        "containers": [{"name": "c", "image": "samples/wasm/hello.wasm"}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// Asks for a token for `account`, as the admin or (with `node`) as a node.
async fn token_request(
    c: &Cluster,
    account: &str,
    bound: Option<Value>,
    node: bool,
) -> (u16, Value) {
    let mut spec = json!({"expirationSeconds": 3607});
    if let Some(b) = bound {
        spec["boundObjectRef"] = b;
    }
    let headers: &[(&str, &str)] = if node {
        &[
            ("Impersonate-User", "system:node:n1"),
            ("Impersonate-Group", "system:nodes"),
        ]
    } else {
        &[]
    };
    send(
        c,
        "POST",
        &format!("/api/v1/namespaces/default/serviceaccounts/{account}/token"),
        headers,
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
    )
    .await
}

/// The username `token` authenticates as, or the HTTP code.
async fn whoami(c: &Cluster, token: &str) -> Result<String, u16> {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&c.handle().admin_kubeconfig).expect("yaml");
    let user = &mut config["users"][0]["user"];
    *user = serde_yaml::to_value(json!({"token": token})).expect("user");
    let client = client_for(&serde_yaml::to_string(&config).expect("yaml")).await;
    let req = http::Request::builder()
        .method("POST")
        .uri("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
            )
            .expect("json"),
        )
        .expect("request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match v["status"]["userInfo"]["username"].as_str() {
        Some(u) if code < 300 => Ok(u.to_string()),
        _ => Err(code),
    }
}

#[tokio::test]
async fn pods_get_the_token_volume_unless_they_opt_out() {
    let mut c = Cluster::start().await;
    let p = create(&c, "/api/v1/namespaces/default/pods", pod("p", json!({}))).await;
    let volumes = p["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    assert_eq!(volumes.len(), 1, "{p}");
    let name = volumes[0]["name"].as_str().unwrap_or("");
    assert!(
        name.starts_with("kube-api-access-") && name.len() == 21,
        "{name}"
    );
    assert_eq!(
        volumes[0]["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]})
    );
    let mount = json!([{"name": name, "readOnly": true, "mountPath": MOUNT}]);
    assert_eq!(p["spec"]["containers"][0]["volumeMounts"], mount);
    assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], mount);

    // The pod's choice wins over its account's; the account's over the default.
    create(
        &c,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    )
    .await;
    let q = create(
        &c,
        "/api/v1/namespaces/default/pods",
        pod("q", json!({"serviceAccountName": "quiet"})),
    )
    .await;
    assert!(q["spec"]["volumes"].is_null(), "{q}");
    let r = create(
        &c,
        "/api/v1/namespaces/default/pods",
        pod(
            "r",
            json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}),
        ),
    )
    .await;
    assert_eq!(
        r["spec"]["volumes"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );
    let s = create(
        &c,
        "/api/v1/namespaces/default/pods",
        pod("s", json!({"automountServiceAccountToken": false})),
    )
    .await;
    assert!(s["spec"]["volumes"].is_null(), "{s}");
    c.stop().await;
}

#[tokio::test]
async fn nodes_get_tokens_only_for_pods_bound_to_a_node() {
    let mut c = Cluster::start().await;
    // No ServiceAccount controller runs here.
    create(
        &c,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "default"}}),
    )
    .await;
    create(
        &c,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "other"}}),
    )
    .await;
    let p = create(&c, "/api/v1/namespaces/default/pods", pod("p", json!({}))).await;
    let bound =
        json!({"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": p["metadata"]["uid"]});

    let (code, v) = token_request(&c, "default", None, true).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "serviceaccounts \"default\" is forbidden: node requested token not bound to a pod"
    );
    let (code, v) = token_request(&c, "default", Some(bound.clone()), true).await;
    assert_eq!(code, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("not scheduled on a node"),
        "{v}"
    );
    let (code, v) = token_request(&c, "other", Some(bound.clone()), false).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "cannot bind token for serviceaccount \"default\" to pod running with different serviceaccount name."
    );

    let (code, v) = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods/p/binding",
        &[],
        &json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = token_request(&c, "default", Some(bound), true).await;
    assert_eq!(code, 201, "{v}");
    let token = v["status"]["token"].as_str().unwrap_or("").to_string();
    assert_eq!(
        whoami(&c, &token).await,
        Ok("system:serviceaccount:default:default".to_string())
    );

    // Bound to the pod: refused once the pod is gone.
    let (code, v) = send(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/pods/p",
        &[],
        &json!({"gracePeriodSeconds": 0}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(whoami(&c, &token).await, Err(401));
    c.stop().await;
}
