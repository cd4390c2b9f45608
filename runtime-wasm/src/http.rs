//! Serving a `wasi:http/incoming-handler` container: an HTTP/1.1 (hyper)
//! listener per pod, and per request a fresh `Store` instantiated from the
//! shared `ProxyPre` (pooling allocator: microseconds), so an idle pod holds
//! no store or instance at all. A guest failure answers 500 and is logged
//! to the pod's stderr; stopping closes the listener and aborts requests.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::ExitStatus;
use crate::host::{ComponentHost, Template};
use crate::instance::{FinishGuard, Shared};
use crate::limits::{Killed, Metered, StoreLimiter, configure_store};

/// One HTTP handler container's server state.
pub(crate) struct HttpServer {
    engine: Engine,
    pre: ProxyPre<ComponentHost>,
    template: Template,
    stop: tokio_util::sync::CancellationToken,
    tasks: TaskTracker,
    name: String,
}

impl HttpServer {
    pub(crate) fn new(
        engine: Engine,
        pre: ProxyPre<ComponentHost>,
        template: Template,
        stop: tokio_util::sync::CancellationToken,
        name: String,
    ) -> Arc<HttpServer> {
        Arc::new(HttpServer {
            engine,
            pre,
            template,
            stop,
            tasks: TaskTracker::new(),
            name,
        })
    }

    /// Serves one connection on a tracked task until it closes or the
    /// server stops.
    pub(crate) fn spawn_connection<IO>(self: Arc<Self>, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let tasks = self.tasks.clone();
        tasks.spawn(async move {
            let stop = self.stop.clone();
            let server = self.clone();
            let service = hyper::service::service_fn(move |req| server.clone().handle(req));
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(io), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(container = %self.name, error = %e, "HTTP connection ended with an error");
                },
                _ = stop.cancelled() => {}
            }
        });
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Infallible> {
        match self.call(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                let line = format!("skiff: request failed: {e:?}\n");
                self.template.stderr.write_bytes(Bytes::from(line));
                let mut resp = hyper::Response::new(
                    Full::new(Bytes::from_static(b"internal server error\n"))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                Ok(resp)
            }
        }
    }

    /// One request: a fresh store, instantiate, call `handle`.
    async fn call(
        &self,
        req: hyper::Request<Incoming>,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
        let wasi = self.template.wasi_builder()?.build();
        let mut store = Store::new(&self.engine, ComponentHost::new(wasi, &self.template));
        configure_store(&mut store);
        let meter = StoreLimiter::meter_of(&store.data().limiter);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let pre = self.pre.clone();
        let stop = self.stop.clone();
        // The guest may keep streaming the body after the response headers
        // are sent, so it runs on its own task.
        let task = self.tasks.spawn(async move {
            let run = Metered::new(
                async move {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                },
                meter,
            );
            tokio::select! {
                r = run => r,
                _ = stop.cancelled() => Err(Killed.into()),
            }
        });
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(wasmtime::format_err!(
                "guest answered with error code {code:?}"
            )),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(wasmtime::format_err!("guest never set a response")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(wasmtime::format_err!("request task failed: {e}")),
            },
        }
    }
}

/// Accepts connections on `listener` until stopped, then waits for
/// connections and requests to end, drains output and publishes the status.
pub(crate) fn start(
    shared: Arc<Shared>,
    server: Arc<HttpServer>,
    listener: TcpListener,
    writers: Vec<JoinHandle<()>>,
) {
    tokio::spawn(async move {
        let guard = FinishGuard(shared.clone());
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((sock, _)) => {
                        let _ = sock.set_nodelay(true);
                        server.clone().spawn_connection(sock);
                    }
                    Err(e) => {
                        tracing::warn!(container = %shared.name, error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shared.stop.cancelled() => break,
            }
        }
        drop(listener);
        let tasks = server.tasks.clone();
        tasks.close();
        drop(server);
        tasks.wait().await;
        for w in writers {
            let _ = w.await;
        }
        shared.finish(ExitStatus {
            exit_code: 0,
            reason: crate::ExitReason::Completed,
            message: String::new(),
        });
        drop(guard);
    });
}
