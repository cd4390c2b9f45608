//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics) served by reading
//! every node's kubelet Summary API (`/stats/summary`) through the node
//! server, so `kubectl top nodes|pods` works without a metrics-server.

use std::time::Duration;

use axum::response::Response;
use http::{Method, Request};
use serde_json::{Value, json};

use super::error::ApiError;
use super::handlers::Ctx;
use super::selectors::LabelSelector;
use super::{body, meta, objects, proxy, registry};
use crate::store::RangeRequest;

/// Kubernetes CPU quantity from nanocores (`250m`, `12n`).
pub fn cpu_quantity(nano: u64) -> String {
    if nano.is_multiple_of(1_000_000) {
        format!("{}m", nano / 1_000_000)
    } else {
        format!("{nano}n")
    }
}

/// Kubernetes memory quantity from bytes (`123Ki`, or bytes when not a multiple).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

fn usage(stats: &Value) -> Value {
    json!({
        "cpu": cpu_quantity(stats.pointer("/cpu/usageNanoCores").and_then(Value::as_u64).unwrap_or(0)),
        "memory": memory_quantity(stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64).unwrap_or(0)),
    })
}

async fn summary(ctx: &Ctx, node: &Value) -> Option<Value> {
    let name = meta::name(node).unwrap_or("");
    let addr = proxy::node_address(node, name).ok()?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}/stats/summary"))
        .body(axum::body::Body::empty())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), ctx.state.http.request(req))
        .await
        .ok()?
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&bytes).ok()
}

async fn nodes(ctx: &Ctx) -> Result<Vec<Value>, ApiError> {
    let info = registry::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes not registered".into()))?;
    let prefix = info.prefix().unwrap_or_default();
    let range = ctx
        .state
        .store
        .range(RangeRequest {
            prefix,
            ..Default::default()
        })
        .await?;
    range
        .kvs
        .iter()
        .map(|kv| objects::decode(&ctx.state.store, info, kv))
        .collect()
}

fn metadata(name: &str, namespace: Option<&str>, labels: Option<&Value>) -> Value {
    let mut md = json!({ "name": name, "creationTimestamp": meta::now() });
    if let Some(ns) = namespace {
        md["namespace"] = json!(ns);
    }
    if let Some(l) = labels {
        md["labels"] = l.clone();
    }
    md
}

/// GET of node or pod metrics (one or a list).
pub async fn handle(ctx: Ctx) -> Result<Response, ApiError> {
    if ctx.method != Method::GET {
        return Err(ApiError::MethodNotAllowed("metrics are read-only".into()));
    }
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?;
    let now = meta::now();
    let mut items = Vec::new();
    let all_nodes = nodes(&ctx).await?;
    let pods_info = registry::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::Internal("pods not registered".into()))?;
    for node in &all_nodes {
        let node_name = meta::name(node).unwrap_or("").to_string();
        if ctx.info.kind == "NodeMetrics"
            && (ctx.name.as_deref().is_some_and(|n| n != node_name) || !labels.matches(node))
        {
            continue;
        }
        let Some(summary) = summary(&ctx, node).await else {
            continue;
        };
        if ctx.info.kind == "NodeMetrics" {
            items.push(json!({
                "metadata": metadata(&node_name, None, node.pointer("/metadata/labels")),
                "timestamp": now, "window": "10s",
                "usage": usage(summary.get("node").unwrap_or(&Value::Null)),
            }));
            continue;
        }
        for pod in summary
            .get("pods")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (name, ns) = (
                pod.pointer("/podRef/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                pod.pointer("/podRef/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            if ctx.ns().is_some_and(|want| want != ns)
                || ctx.name.as_deref().is_some_and(|want| want != name)
            {
                continue;
            }
            let Some(obj) = objects::try_get(&ctx.state.store, pods_info, Some(ns), name).await?
            else {
                continue;
            };
            if !labels.matches(&obj.obj) {
                continue;
            }
            let containers: Vec<Value> = pod
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| json!({ "name": c["name"], "usage": usage(c) }))
                .collect();
            items.push(json!({
                "metadata": metadata(name, Some(ns), obj.obj.pointer("/metadata/labels")),
                "timestamp": now, "window": "10s",
                "containers": containers,
            }));
        }
    }
    let (kind, api_version) = (ctx.info.kind, "metrics.k8s.io/v1beta1");
    for item in &mut items {
        item["kind"] = json!(kind);
        item["apiVersion"] = json!(api_version);
    }
    if let Some(name) = &ctx.name {
        return match items.into_iter().next() {
            Some(item) => Ok(body::ok(&item)),
            None => Err(ApiError::NotFound {
                group: "metrics.k8s.io".into(),
                kind: ctx.info.plural.into(),
                name: name.clone(),
            }),
        };
    }
    Ok(body::ok(
        &json!({ "kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {}, "items": items }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1234), "1234n");
        assert_eq!(memory_quantity(2048), "2Ki");
        assert_eq!(memory_quantity(1000), "1000");
        let u = usage(
            &json!({"cpu": {"usageNanoCores": 5_000_000}, "memory": {"workingSetBytes": 4096}}),
        );
        assert_eq!(u, json!({"cpu": "5m", "memory": "4Ki"}));
    }
}
