//! The audit log: one `audit.k8s.io/v1` Event line per request in
//! `DATA_DIR/audit.log` once the response is done, for allowed (200),
//! forbidden (403) and unauthenticated (401) requests and for a watch.

use std::time::Duration;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::support::{Cluster, client_for, eventually};

const AGENT: &str = "skiff-audit-test/1.0";

/// A raw GET; returns the status, the `audit-id` header and the body.
async fn get(client: &kube::Client, path: &str) -> (u16, String, Value) {
    let req = http::Request::builder()
        .uri(path)
        .header("user-agent", AGENT)
        .body(Vec::new())
        .expect("request");
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let id = audit_id(resp.headers());
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, id, body)
}

fn audit_id(headers: &HeaderMap) -> String {
    headers
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .expect("audit-id header")
        .to_string()
}

/// A client like the admin's with another bearer token.
async fn client_with_token(c: &Cluster, token: &str) -> kube::Client {
    let admin = c.handle().credentials.admin_token().to_string();
    client_for(&c.handle().admin_kubeconfig.replace(&admin, token)).await
}

fn timestamp(event: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = event[field].as_str().expect(field);
    chrono::DateTime::parse_from_rfc3339(text).expect(field)
}

#[tokio::test]
async fn each_request_is_one_metadata_event_after_it_completes() {
    let mut c = Cluster::start().await;

    let (code, allowed, _) = get(&c.client, "/api/v1/namespaces/default/configmaps?limit=5").await;
    assert_eq!(code, 200);

    // A ServiceAccount without any RoleBinding: authenticated, then forbidden.
    let (code, sa) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts",
            "application/json",
            serde_json::to_vec(&json!({"metadata": {"name": "nobody"}})).unwrap(),
        )
        .await;
    assert_eq!(code, 201, "{sa}");
    let (code, review) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/nobody/token",
            "application/json",
            serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).unwrap(),
        )
        .await;
    assert_eq!(code, 201, "{review}");
    let token = review["status"]["token"].as_str().expect("token");
    let nobody = client_with_token(&c, token).await;
    let (code, forbidden, _) = get(&nobody, "/api/v1/namespaces/default/secrets").await;
    assert_eq!(code, 403);

    let stranger = client_with_token(&c, "not-a-token").await;
    let (code, refused, _) = get(&stranger, "/api/v1/namespaces/default/pods/p").await;
    assert_eq!(code, 401);

    // A watch is logged when it ends, not when its response starts.
    let (code, watched, _) = get(
        &c.client,
        "/apis/apps/v1/deployments?watch=true&timeoutSeconds=1",
    )
    .await;
    assert_eq!(code, 200);

    let path = c.dir.path().join("audit.log");
    let ids = [&allowed, &forbidden, &refused, &watched];
    let events: Vec<Value> = eventually(10, "the audit events of the four requests", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // The writer may be in the middle of a line: only complete lines count.
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        let lines: Vec<Value> = complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("each complete line is JSON"))
            .collect();
        let found: Vec<Value> = ids
            .iter()
            .filter_map(|id| lines.iter().find(|e| e["auditID"] == id.as_str()).cloned())
            .collect();
        std::future::ready((found.len() == ids.len()).then_some(found))
    })
    .await;
    for e in &events {
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["level"], "Metadata");
        assert_eq!(e["stage"], "ResponseComplete");
        assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]));
        assert_eq!(e["userAgent"], AGENT);
        assert!(timestamp(e, "stageTimestamp") >= timestamp(e, "requestReceivedTimestamp"));
    }

    let ok = &events[0];
    assert_eq!(ok["verb"], "list");
    assert_eq!(
        ok["requestURI"],
        "/api/v1/namespaces/default/configmaps?limit=5"
    );
    assert_eq!(ok["user"]["username"], "admin");
    assert!(
        ok["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters"))
    );
    assert_eq!(
        ok["objectRef"],
        json!({"resource": "configmaps", "namespace": "default", "apiVersion": "v1"})
    );
    assert_eq!(ok["responseStatus"]["code"], 200);
    assert_eq!(ok["annotations"]["authorization.k8s.io/decision"], "allow");

    let denied = &events[1];
    assert_eq!(
        denied["user"]["username"],
        "system:serviceaccount:default:nobody"
    );
    assert!(
        denied["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );
    assert_eq!(denied["verb"], "list");
    assert_eq!(denied["objectRef"]["resource"], "secrets");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(denied["responseStatus"]["reason"], "Forbidden");
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );

    let unauthenticated = &events[2];
    assert_eq!(unauthenticated["responseStatus"]["code"], 401);
    assert_eq!(unauthenticated["responseStatus"]["reason"], "Unauthorized");
    assert_eq!(unauthenticated["user"], json!({}));
    assert_eq!(unauthenticated["verb"], "get");
    assert_eq!(
        unauthenticated["objectRef"],
        json!({"resource": "pods", "namespace": "default", "name": "p", "apiVersion": "v1"})
    );

    let watch = &events[3];
    assert_eq!(watch["verb"], "watch");
    assert_eq!(watch["objectRef"]["apiGroup"], "apps");
    let lasted = timestamp(watch, "stageTimestamp") - timestamp(watch, "requestReceivedTimestamp");
    assert!(
        lasted >= chrono::Duration::from_std(Duration::from_millis(900)).unwrap(),
        "{lasted}"
    );
    c.stop().await;
}
