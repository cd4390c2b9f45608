//! Proxy subresources: pods/log, pods/exec, pods/attach, pods/portforward,
//! pods/proxy, services/proxy and nodes/proxy, forwarded to the node
//! server (the kubelet API) or to a ready endpoint, upgrades included.

use axum::body::Body;
use axum::response::Response;

use super::error::ApiError;
use super::handlers::Ctx;

/// Forwards a proxying subresource request.
pub async fn handle(ctx: Ctx, sub: &str, body: Body) -> Result<Response, ApiError> {
    let _ = (ctx, body);
    Err(ApiError::ServiceUnavailable(format!(
        "{sub} is not available yet"
    )))
}
