//! Per-store state: [`P1Host`] for core modules, [`ComponentHost`] for p2
//! commands and wasi:http handlers, and the [`Template`] a container keeps
//! to build a fresh WASI context (args, env, preopens, stdio, network policy)
//! for each store. Outgoing HTTP and sockets are denied unless allowed.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::Preopen;
use crate::limits::{HasLimiter, Limits, StoreLimiter};
use crate::stdio::LogPipe;

/// What every store of one container is built from.
pub(crate) struct Template {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub stdout: LogPipe,
    pub stderr: LogPipe,
    pub allow_network: bool,
    pub limits: Arc<Limits>,
}

impl Template {
    /// A WASI context builder with this container's args, env, preopens,
    /// stdout/stderr and network policy (stdin is set by the caller).
    pub(crate) fn wasi_builder(&self) -> wasmtime::Result<WasiCtxBuilder> {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.args);
        b.envs(&self.env);
        for p in &self.preopens {
            let perms = if p.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&p.host_path, &p.guest_path, perms)
                .map_err(|e| {
                    e.context(format!(
                        "preopening {} as {}",
                        p.host_path.display(),
                        p.guest_path
                    ))
                })?;
        }
        b.stdout(self.stdout.clone());
        b.stderr(self.stderr.clone());
        if self.allow_network {
            b.inherit_network();
            b.allow_ip_name_lookup(true);
            b.allow_tcp(true);
            b.allow_udp(true);
        } else {
            b.allow_ip_name_lookup(false);
            b.allow_tcp(false);
            b.allow_udp(false);
        }
        Ok(b)
    }
}

/// Store state of a WASI p1 core module.
pub(crate) struct P1Host {
    pub wasi: WasiP1Ctx,
    pub limiter: StoreLimiter,
}

impl HasLimiter for P1Host {
    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }
}

/// Store state of a component (p2 command or wasi:http handler).
pub(crate) struct ComponentHost {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub hooks: HttpHooks,
    pub limiter: StoreLimiter,
}

impl ComponentHost {
    pub(crate) fn new(wasi: WasiCtx, template: &Template) -> ComponentHost {
        ComponentHost {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: HttpHooks {
                allow_outbound: template.allow_network,
            },
            limiter: StoreLimiter::new(template.limits.clone()),
        }
    }
}

impl HasLimiter for ComponentHost {
    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }
}

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// wasi:http hooks: outgoing requests only when the pod may use the network.
pub(crate) struct HttpHooks {
    allow_outbound: bool,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if !self.allow_outbound {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
