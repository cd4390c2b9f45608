//! Proxy subresources: pods/log, pods/exec, pods/attach, pods/portforward,
//! pods/proxy, services/proxy (through a ready endpoint's pod) and
//! nodes/proxy, forwarded over plain HTTP to the node server (the kubelet
//! API of the node the pod runs on). Streaming bodies (follow logs) pass
//! through; WebSocket and SPDY upgrades are passed through byte for byte.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::error::ApiError;
use super::handlers::Ctx;
use super::objects;
use super::registry;

/// Hop-by-hop and credential headers never forwarded to the node.
const DROP_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Forwards a proxying subresource request.
pub async fn handle(mut ctx: Ctx, sub: &str, body: Body) -> Result<Response, ApiError> {
    let raw_name = ctx.name()?.to_string();
    let (name, port) = split_name_port(&raw_name);
    let (node_addr, path) = match (ctx.info.kind, sub) {
        ("Pod", "log") => {
            let (pod, container, addr) = pod_target(&ctx, &name).await?;
            (
                addr,
                format!(
                    "/containerLogs/{}/{pod}/{container}",
                    ctx.ns().unwrap_or("")
                ),
            )
        }
        ("Pod", "exec" | "attach") => {
            let (pod, container, addr) = pod_target(&ctx, &name).await?;
            (
                addr,
                format!("/{sub}/{}/{pod}/{container}", ctx.ns().unwrap_or("")),
            )
        }
        ("Pod", "portforward") => {
            let (pod, _, addr) = pod_target(&ctx, &name).await?;
            (
                addr,
                format!("/portForward/{}/{pod}", ctx.ns().unwrap_or("")),
            )
        }
        ("Pod", "proxy") => {
            let pod = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
            let port = match port {
                Some(p) => resolve_container_port(&pod.obj, &p)?,
                None => first_container_port(&pod.obj).unwrap_or(80),
            };
            let addr = node_of_pod(&ctx, &pod.obj, &name).await?;
            (
                addr,
                format!(
                    "/proxy/{}/{name}/{port}/{}",
                    ctx.ns().unwrap_or(""),
                    ctx.rest.as_deref().unwrap_or("")
                ),
            )
        }
        ("Service", "proxy") => {
            let (pod, pod_port, addr) = service_target(&ctx, &name, port.as_deref()).await?;
            (
                addr,
                format!(
                    "/proxy/{}/{pod}/{pod_port}/{}",
                    ctx.ns().unwrap_or(""),
                    ctx.rest.as_deref().unwrap_or("")
                ),
            )
        }
        ("Node", "proxy") => {
            let node = objects::get(&ctx.state.store, ctx.info, None, &name).await?;
            let mut addr = node_address(&node.obj, &name)?;
            if let Some(p) = port {
                let host = addr
                    .rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or(addr.clone());
                addr = format!("{host}:{p}");
            }
            (addr, format!("/{}", ctx.rest.as_deref().unwrap_or("")))
        }
        _ => {
            return Err(ApiError::NotFound {
                group: ctx.info.group.into(),
                kind: format!("{}/{sub}", ctx.info.plural),
                name: raw_name,
            });
        }
    };
    let query = forwarded_query(&ctx, sub);
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    tracing::debug!(target = %node_addr, %uri, "proxying to node");
    let upgrade = ctx.upgrade.take();
    if wants_upgrade(&ctx.headers) {
        let Some(on_upgrade) = upgrade else {
            return Err(ApiError::BadRequest(
                "this connection cannot be upgraded (use HTTP/1.1)".into(),
            ));
        };
        return forward_upgrade(&ctx, &node_addr, &uri, on_upgrade).await;
    }
    forward_plain(&ctx, &node_addr, &uri, body).await
}

/// `web-1:8080` → ("web-1", Some("8080")); `https:web:443` → ("web", Some("443")).
fn split_name_port(raw: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [name] => (name.to_string(), None),
        [scheme, name, port] if matches!(*scheme, "http" | "https") => (
            name.to_string(),
            Some(port.to_string()).filter(|p| !p.is_empty()),
        ),
        [name, port] => (
            name.to_string(),
            Some(port.to_string()).filter(|p| !p.is_empty()),
        ),
        _ => (raw.to_string(), None),
    }
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("upgrade")
    }) && headers.contains_key(header::UPGRADE)
}

fn forwarded_query(ctx: &Ctx, sub: &str) -> String {
    let pairs =
        ctx.query.pairs().iter().filter(|(k, _)| {
            !(sub == "log" || sub == "exec" || sub == "attach") || k != "container"
        });
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.push(format!("{}={}", encode(k), encode(v)));
    }
    out.join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The node server address (`ip:port`) a Node object advertises.
pub fn node_address(node: &Value, name: &str) -> Result<String, ApiError> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pick = |kind: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .map(String::from)
    };
    let host = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node \"{name}\" reports no address"))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .unwrap_or(10250);
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("{host}:{port}"))
}

async fn node_of_pod(ctx: &Ctx, pod: &Value, name: &str) -> Result<String, ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let nodes = registry::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes not registered".into()))?;
    let node = objects::get(&ctx.state.store, nodes, None, node_name).await?;
    node_address(&node.obj, node_name)
}

/// (pod name, container, node address) for log/exec/attach/portforward.
async fn pod_target(ctx: &Ctx, name: &str) -> Result<(String, String, String), ApiError> {
    let pod = objects::get(&ctx.state.store, ctx.info, ctx.ns(), name).await?;
    let containers: Vec<String> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| {
            pod.obj
                .pointer(&format!("/spec/{k}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let main: Vec<String> = pod
        .obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match ctx.query.non_empty("container") {
        Some(c) if containers.iter().any(|x| x == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if ctx.subresource.as_deref() == Some("portforward") => String::new(),
        None if main.len() == 1 => main[0].clone(),
        None => {
            let default = pod
                .obj
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str);
            match default {
                Some(d) => d.to_string(),
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        main.join(" ")
                    )));
                }
            }
        }
    };
    let addr = node_of_pod(ctx, &pod.obj, name).await?;
    Ok((name.to_string(), container, addr))
}

fn first_container_port(pod: &Value) -> Option<i64> {
    pod.pointer("/spec/containers/0/ports/0/containerPort")
        .and_then(Value::as_i64)
}

fn resolve_container_port(pod: &Value, port: &str) -> Result<i64, ApiError> {
    if let Ok(n) = port.parse() {
        return Ok(n);
    }
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_i64())
        .ok_or_else(|| ApiError::BadRequest(format!("no container port named {port:?}")))
}

/// (pod, pod port, node address) of a ready endpoint of a Service.
async fn service_target(
    ctx: &Ctx,
    name: &str,
    port: Option<&str>,
) -> Result<(String, i64, String), ApiError> {
    let svc = objects::get(&ctx.state.store, ctx.info, ctx.ns(), name).await?;
    let ports = svc
        .obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let svc_port = match port {
        Some(p) => ports
            .iter()
            .find(|sp| sp["name"] == p || sp["port"] == p)
            .cloned(),
        None => ports.first().cloned(),
    }
    .ok_or_else(|| {
        ApiError::ServiceUnavailable(format!(
            "no service port {port:?} found for service \"{name}\""
        ))
    })?;
    let endpoints = registry::lookup("", "v1", "endpoints")
        .ok_or_else(|| ApiError::Internal("endpoints not registered".into()))?;
    let eps = objects::try_get(&ctx.state.store, endpoints, ctx.ns(), name).await?;
    let no_endpoints =
        || ApiError::ServiceUnavailable(format!("no endpoints available for service \"{name}\""));
    let eps = eps.ok_or_else(no_endpoints)?;
    for subset in eps
        .obj
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let sp_name = svc_port["name"].as_str().unwrap_or("");
        let ep_port = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == sp_name)
            .or_else(|| subset["ports"].get(0))
            .and_then(|p| p["port"].as_i64());
        let Some(ep_port) = ep_port else { continue };
        for addr in subset["addresses"].as_array().into_iter().flatten() {
            let Some(pod) = addr.pointer("/targetRef/name").and_then(Value::as_str) else {
                continue;
            };
            let pods = registry::lookup("", "v1", "pods")
                .ok_or_else(|| ApiError::Internal("pods not registered".into()))?;
            let Some(p) = objects::try_get(&ctx.state.store, pods, ctx.ns(), pod).await? else {
                continue;
            };
            if let Ok(node) = node_of_pod(ctx, &p.obj, pod).await {
                return Ok((pod.to_string(), ep_port, node));
            }
        }
    }
    Err(no_endpoints())
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !DROP_HEADERS.contains(&k.as_str()) {
            to.append(k.clone(), v.clone());
        }
    }
}

fn unreachable_node(addr: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::ServiceUnavailable(format!("error trying to reach the node at {addr}: {e}"))
}

async fn forward_plain(ctx: &Ctx, addr: &str, uri: &str, body: Body) -> Result<Response, ApiError> {
    let target = format!("http://{addr}{uri}");
    let mut req = Request::builder().method(ctx.method.clone()).uri(&target);
    if let Some(h) = req.headers_mut() {
        copy_headers(&ctx.headers, h);
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
    let body = if ctx.method == Method::GET || ctx.method == Method::HEAD {
        Body::empty()
    } else {
        body
    };
    let req = req
        .body(body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let resp = ctx
        .state
        .http
        .request(req)
        .await
        .map_err(|e| unreachable_node(addr, e))?;
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "keep-alive"
        ) {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(out)
}

async fn forward_upgrade(
    ctx: &Ctx,
    addr: &str,
    uri: &str,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response, ApiError> {
    let host = addr.to_string();
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|e| unreachable_node(addr, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioIo::new(stream))
    .await
    .map_err(|e| unreachable_node(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node connection ended");
        }
    });
    let mut req = Request::builder().method(ctx.method.clone()).uri(uri);
    if let Some(h) = req.headers_mut() {
        copy_headers(&ctx.headers, h);
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(header::HOST, v);
        }
    }
    let req = req
        .body(http_body_util::Empty::new())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable_node(addr, e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        return Ok(out);
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    let span = tracing::debug_span!("upgraded", target = %addr);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let (client, backend) = match tokio::try_join!(client_upgrade, backend_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                tracing::debug!(error = %e, "upgraded stream ended");
            }
        },
        span,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_with_ports() {
        assert_eq!(split_name_port("web"), ("web".into(), None));
        assert_eq!(
            split_name_port("web:8080"),
            ("web".into(), Some("8080".into()))
        );
        assert_eq!(
            split_name_port("https:web:443"),
            ("web".into(), Some("443".into()))
        );
        assert_eq!(split_name_port("web:"), ("web".into(), None));
    }

    #[test]
    fn node_addresses() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}});
        assert_eq!(node_address(&node, "n").unwrap(), "10.0.0.2:10251");
        assert!(node_address(&json!({}), "n").is_err());
        let pod =
            json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(resolve_container_port(&pod, "http").unwrap(), 8080);
        assert_eq!(resolve_container_port(&pod, "81").unwrap(), 81);
    }
}
