//! SPDY/3.1 as the Kubernetes streaming clients speak it (Go's spdystream):
//! `frame.rs` (framing and header blocks), `zlib.rs` (header compression),
//! `session.rs` (one server session's streams), and here the HTTP upgrade
//! that starts a session (`Upgrade: SPDY/3.1` answered with 101).

pub mod frame;
pub mod session;
pub mod zlib;

use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

pub use session::{Session, Stream, StreamWriter};

/// The `Upgrade` token of SPDY/3.1.
pub const UPGRADE: &str = "SPDY/3.1";

/// Answers an SPDY upgrade with 101 (naming `protocol`, if any) and runs `serve` on the connection.
pub fn upgrade<F, Fut>(request: &mut Request, protocol: Option<&'static str>, serve: F) -> Response
where
    F: FnOnce(TokioIo<Upgraded>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE));
    if let Some(p) = protocol {
        headers.insert(
            super::stream_protocol::PROTOCOL_HEADER,
            HeaderValue::from_static(p),
        );
    }
    response
}
