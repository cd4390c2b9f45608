//! `/proxy/{ns}/{pod}/{port}/{path}`: HTTP to a pod's port (pods/proxy,
//! services/proxy and `kubectl port-forward`'s HTTP users reach pods this
//! way). The port is a containerPort number or name; the request goes to
//! the host address the runtime serves that port on.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{find_pod, status_error};
use crate::pods::context::NodeContext;

/// Request headers that belong to the hop, not the pod.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn client() -> &'static Client<HttpConnector, Body> {
    static CLIENT: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // TCP_NODELAY: small proxied requests otherwise wait for delayed ACKs.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Idle connections to a pod are kept only briefly: hyper bounds the pool
        // per host only, and an idle connection to each of 10,000 pods
        // (two descriptors each, both ends in this process) exhausted the
        // open-file limit.
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(std::time::Duration::from_millis(250))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector)
    })
}

pub async fn proxy_root(
    State(ctx): State<Arc<NodeContext>>,
    Path((ns, pod, port)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    forward(&ctx, &ns, &pod, &port, "", request).await
}

pub async fn proxy_path(
    State(ctx): State<Arc<NodeContext>>,
    Path((ns, pod, port, path)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    forward(&ctx, &ns, &pod, &port, &path, request).await
}

async fn forward(
    ctx: &NodeContext,
    ns: &str,
    pod: &str,
    port: &str,
    path: &str,
    request: Request,
) -> Response {
    let view = match find_pod(ctx, ns, pod) {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Some(number) = view.resolve_port(port) else {
        return status_error(
            StatusCode::BAD_REQUEST,
            format!("pod {pod} has no port named \"{port}\""),
        );
    };
    let Some(target) = view.pod_ip.and_then(|ip| ctx.table.port(ip, number)) else {
        return status_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("pod {pod} is not serving port {number}"),
        );
    };
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = format!("http://{target}/{path}{query}");
    let (mut parts, body) = request.into_parts();
    parts.uri = match uri.parse() {
        Ok(uri) => uri,
        Err(_) => {
            return status_error(
                StatusCode::BAD_REQUEST,
                format!("invalid proxy path \"{path}\""),
            );
        }
    };
    for name in HOP_HEADERS {
        parts.headers.remove(*name);
    }
    parts.headers.remove(http::header::HOST);
    tracing::debug!(pod = %format!("{ns}/{pod}"), %target, "proxying to pod");
    match client().request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new).into_response(),
        Err(e) => status_error(
            StatusCode::BAD_GATEWAY,
            format!("error trying to reach pod {pod} on port {number}: {e}"),
        ),
    }
}
