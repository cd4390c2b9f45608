//! The state every request handler shares: the store, the credentials, the
//! authentication and authorization entry points, the audit log, allocators
//! and the shutdown signal. Built once by `server::start`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::audit::AuditLog;
use super::auth::{Authenticator, Authorizer};
use super::objects::ObjectStore;

/// Shared, immutable-after-start state of the API server.
pub struct ApiState {
    /// The store, with Secrets encrypted at rest.
    pub store: ObjectStore,
    pub authenticator: Authenticator,
    pub authorizer: Authorizer,
    /// Where the pipeline records every request once its response is done.
    pub audit: AuditLog,
    /// Cancelled when the server shuts down; long requests (watch) end then.
    pub shutdown: CancellationToken,
    /// `host:port` clients reach this server at.
    pub server_address: String,
    /// Client for proxying to nodes (kubelet API) and pods.
    pub http: HttpClient,
}

/// Cheap handle to the shared state.
pub type SharedState = Arc<ApiState>;

/// Plain-HTTP client (HTTP/1.1, pooled) the proxy subresources use to reach nodes and pods.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    axum::body::Body,
>;

/// A new proxy client.
pub fn http_client() -> HttpClient {
    // TCP_NODELAY: small proxied requests otherwise wait for delayed ACKs.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}
