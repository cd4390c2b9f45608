//! The API's answers to bad requests, as a user sees them over HTTP: each is a
//! Kubernetes `Status` with the right code and reason.

use serde_json::{Value, json};

use crate::harness::Cluster;

async fn status_of(response: reqwest::Response) -> (u16, Value) {
    let code = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (code, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_kubernetes_statuses() {
    let cluster = Cluster::start();
    let api = cluster.api_http();
    let cms = format!("{}/api/v1/namespaces/default/configmaps", api.base);

    // 401 without a token; health stays open.
    let (code, body) = status_of(api.client.get(&cms).send().await.expect("request")).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    let health = api
        .client
        .get(format!("{}/readyz", api.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(health.status().as_u16(), 200);

    // 409 on a stale resourceVersion.
    let created: Value = api
        .client
        .post(&cms)
        .bearer_auth(&api.token)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("created body");
    let stale = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut update = created.clone();
    update["data"]["a"] = json!("2");
    let response = api
        .client
        .put(format!("{cms}/c"))
        .bearer_auth(&api.token)
        .json(&update)
        .send()
        .await
        .expect("put");
    assert_eq!(response.status().as_u16(), 200);
    update["data"]["a"] = json!("3");
    update["metadata"]["resourceVersion"] = json!(stale);
    let (code, body) = status_of(
        api.client
            .put(format!("{cms}/c"))
            .bearer_auth(&api.token)
            .json(&update)
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");

    // A uid is a precondition: 409 on a PUT, 422 (immutable) in a patch;
    // neither changes the object.
    let mut other = update.clone();
    other["metadata"]["resourceVersion"] = json!(null);
    other["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    let (code, body) = status_of(
        api.client
            .put(format!("{cms}/c"))
            .bearer_auth(&api.token)
            .json(&other)
            .send()
            .await
            .expect("put"),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("Precondition failed: UID"),
        "{body}"
    );
    let (code, body) = status_of(
        api.client
            .patch(format!("{cms}/c"))
            .bearer_auth(&api.token)
            .header("content-type", "application/merge-patch+json")
            .json(&json!({"metadata": {"uid": "00000000-0000-0000-0000-000000000000"}, "data": {"a": "4"}}))
            .send()
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let kept: Value = api
        .client
        .get(format!("{cms}/c"))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("body");
    assert_eq!(kept["data"]["a"], "2");
    assert_eq!(kept["metadata"]["uid"], created["metadata"]["uid"]);

    // 409 AlreadyExists on a second create.
    let (code, body) = status_of(
        api.client
            .post(&cms)
            .bearer_auth(&api.token)
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
            .send()
            .await
            .expect("create again"),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "AlreadyExists");

    // 422 with per-field causes.
    let (code, body) = status_of(
        api.client
            .post(&cms)
            .bearer_auth(&api.token)
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid", "labels": {"bad key!": "x"}}}))
            .send()
            .await
            .expect("invalid create"),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|cause| cause["field"].as_str())
        .collect();
    assert!(fields.contains(&"metadata.name"), "{body}");
    assert!(
        fields.iter().any(|f| f.starts_with("metadata.labels")),
        "{body}"
    );

    // 413 for a body of 3 MiB + 1.
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let (code, body) = status_of(
        api.client
            .post(&cms)
            .bearer_auth(&api.token)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .expect("big body"),
    )
    .await;
    assert_eq!(code, 413, "{body}");

    // 410 Gone for a watch from a compacted revision.
    let (code, body) = status_of(
        api.client
            .get(format!(
                "{cms}?watch=true&resourceVersion=1&timeoutSeconds=1"
            ))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("old watch"),
    )
    .await;
    // A watch from revision 1 may still be inside the history window on a fresh
    // cluster; the compacted case is covered with a short window below.
    assert!(code == 200 || code == 410, "{code} {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_compacted_revision_is_gone() {
    let cluster = Cluster::start_with(&["--history-window-seconds", "1"]);
    let api = cluster.api_http();
    let cms = format!("{}/api/v1/namespaces/default/configmaps", api.base);
    let first: Value = api
        .client
        .post(&cms)
        .bearer_auth(&api.token)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old"}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("body");
    let old_rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    // Keep writing until the old revision falls out of the history window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        api.client
            .post(&cms)
            .bearer_auth(&api.token)
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("new-{n}")}}))
            .send()
            .await
            .expect("create");
        let response = api
            .client
            .get(format!(
                "{cms}?watch=true&resourceVersion={old_rv}&timeoutSeconds=1"
            ))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("watch");
        let code = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        // The API answers 410 directly, or (like Kubernetes) a 200 stream whose
        // first event is an ERROR carrying a 410 Status.
        if code == 410 || (text.contains("\"ERROR\"") && text.contains("410")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "watch from {old_rv} never became 410 Gone"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_without_binding_is_forbidden() {
    let cluster = Cluster::start();
    let api = cluster.api_http();
    let accounts = format!("{}/api/v1/namespaces/default/serviceaccounts", api.base);
    let response = api
        .client
        .post(&accounts)
        .bearer_auth(&api.token)
        .json(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}}),
        )
        .send()
        .await
        .expect("create service account");
    assert_eq!(response.status().as_u16(), 201);
    let token_request: Value = api
        .client
        .post(format!("{accounts}/nobody/token"))
        .bearer_auth(&api.token)
        .json(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        )
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token body");
    let token = token_request["status"]["token"]
        .as_str()
        .expect("issued token");

    let (code, body) = status_of(
        api.client
            .get(format!("{}/api/v1/namespaces/default/pods", api.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("list pods as nobody"),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        r#"pods is forbidden: User "system:serviceaccount:default:nobody" cannot list resource "pods" in API group "" in the namespace "default""#
    );

    // kubectl auth can-i answers through SelfSubjectAccessReview.
    let as_nobody = cluster.kubectl_output(&["auth", "can-i", "list", "pods", "--token", token]);
    assert_eq!(String::from_utf8_lossy(&as_nobody.stdout).trim(), "no");
}
