//! The node server (the kubelet API of skiff): what the API server's proxy
//! subresources forward to. Routes: `/containerLogs/{ns}/{pod}/{container}`
//! (`logs.rs`), `/proxy/{ns}/{pod}/{port}/{path}` (`proxy.rs`),
//! `/exec` and `/attach` (`exec.rs`), `/portForward` (`portforward.rs`),
//! `/stats/summary` (`stats.rs`, for metrics.k8s.io), `/healthz`. The streaming endpoints share `stream_protocol.rs` and speak
//! WebSocket (`websocket.rs`) or SPDY/3.1 (`spdy/`). Plain HTTP; the API
//! server is its only intended caller.

mod exec;
mod logs;
mod portforward;
mod proxy;
mod spdy;
mod stats;
mod stream_protocol;
mod websocket;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pods::context::NodeContext;
use crate::pods::table::PodView;

/// Serves the node API on `listener` until `shutdown`.
pub async fn serve(ctx: Arc<NodeContext>, listener: TcpListener, shutdown: CancellationToken) {
    let sampler = stats::Sampler::start(ctx.clone(), shutdown.clone());
    let app = router(ctx).layer(axum::Extension(sampler));
    // Without TCP_NODELAY a proxied request/response pair waits out the
    // peer's delayed ACK (~40 ms per request).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "node server stopped with an error");
    }
}

/// The node server's routes (`/stats/summary` needs a `Sampler` extension).
fn router(ctx: Arc<NodeContext>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats/summary", get(stats::summary))
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/proxy/{ns}/{pod}/{port}", any(proxy::proxy_root))
        .route("/proxy/{ns}/{pod}/{port}/", any(proxy::proxy_root))
        .route("/proxy/{ns}/{pod}/{port}/{*path}", any(proxy::proxy_path))
        .route("/exec/{ns}/{pod}/{container}", any(exec::exec))
        .route("/attach/{ns}/{pod}/{container}", any(exec::attach))
        .route("/portForward/{ns}/{pod}", any(portforward::port_forward))
        .with_state(ctx)
}

/// A Kubernetes `Status` answer, as the kubelet's errors reach `kubectl`.
pub(crate) fn status_error(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = (code, Body::from(body.to_string())).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The pod `ns/name` on this node, or a 404 answer.
// The error is the handler's own answer, as axum handlers return it.
#[allow(clippy::result_large_err)]
pub(crate) fn find_pod(ctx: &NodeContext, ns: &str, name: &str) -> Result<PodView, Response> {
    ctx.table.get(ns, name).ok_or_else(|| {
        status_error(
            StatusCode::NOT_FOUND,
            format!("pod \"{name}\" not found on this node"),
        )
    })
}
