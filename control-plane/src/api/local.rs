//! The API server as a tower service for clients in its own process (the
//! scheduler, the controller manager and `skiff up`'s node agent): the same
//! router, authentication, authorization, admission and audit as the TLS
//! port, without a socket, TLS or HTTP/1 framing in between. A request is an
//! `http::Request` handed to the router; its response body (a watch stream
//! too) is read straight from the handler.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use tower::Service;

use super::pipeline::{ClientCert, PeerAddr};

/// The address audit records show for in-process requests.
const LOCAL_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The API router, callable in-process. Cheap to clone; every clone serves
/// the same API server.
#[derive(Clone)]
pub struct LocalApi {
    router: Router,
}

impl LocalApi {
    pub(super) fn new(router: Router) -> LocalApi {
        LocalApi { router }
    }
}

impl<B> Service<http::Request<B>> for LocalApi
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A router is always ready: it only routes the request to a handler.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut request = request.map(Body::new);
        // What the TLS acceptor records for a connection: no client
        // certificate (the client authenticates with its bearer token),
        // and a loopback peer.
        request.extensions_mut().insert(ClientCert(None));
        request.extensions_mut().insert(PeerAddr(LOCAL_PEER));
        self.router.call(request)
    }
}
