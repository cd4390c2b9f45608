//! Request limits and error statuses: 413 on 3 MiB + 1, YAML bodies,
//! alias bombs and deep nesting rejected with 400, 401 without credentials.

use serde_json::json;

use crate::support::{Cluster, client_for};

#[tokio::test]
async fn body_limits_yaml_and_anonymous_requests() {
    let mut c = Cluster::start().await;
    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(3 * 1024 * 1024)
    );
    let (code, v) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            big.into_bytes(),
        )
        .await;
    assert_eq!(code, 413, "{v}");
    assert_eq!(v["reason"], "RequestEntityTooLarge");
    let yaml =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n".to_vec();
    let (code, v) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/yaml",
            yaml,
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["data"]["a"], "b");
    let deep = format!(
        "{{\"metadata\":{{\"name\":\"deep\"}},\"data\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let (code, _) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            deep.into_bytes(),
        )
        .await;
    assert_eq!(code, 400);
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for i in 0..9u8 {
        let (p, n) = ((b'a' + i) as char, (b'a' + i + 1) as char);
        bomb.push_str(&format!(
            "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    let (code, _) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/yaml",
            bomb.into_bytes(),
        )
        .await;
    assert_eq!(code, 400);
    let (code, v) = c
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            serde_json::to_vec(&json!({"metadata": {"name": "x"}, "data": {"bad/key": "v"}}))
                .unwrap(),
        )
        .await;
    assert_eq!(code, 422);
    assert_eq!(v["details"]["causes"][0]["field"], "data[bad/key]");
    // no credentials → 401, health stays open
    let anonymous: String = c
        .handle()
        .admin_kubeconfig
        .lines()
        .filter(|l| !l.trim_start().starts_with("token:"))
        .collect::<Vec<_>>()
        .join("\n");
    let anon = client_for(&anonymous).await;
    let req = http::Request::builder()
        .uri("/api/v1/namespaces")
        .body(Vec::new())
        .unwrap();
    let resp = anon.send(req.map(kube::client::Body::from)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let req = http::Request::builder()
        .uri("/readyz")
        .body(Vec::new())
        .unwrap();
    let resp = anon.send(req.map(kube::client::Body::from)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    c.stop().await;
}
