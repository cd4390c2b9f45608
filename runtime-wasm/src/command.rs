//! Running command containers: a WASI p1 module from `_start` or a p2
//! component's `wasi:cli/run`, in a fresh store with the container's limits,
//! until it exits or is stopped; then the guest's output is drained and the
//! exit status published. HTTP handlers are served by `http.rs` instead.

use std::sync::Arc;

use tokio::task::JoinHandle;
use wasmtime::{Engine, Store};

use crate::InputSource;
use crate::compile::Prepared;
use crate::host::{ComponentHost, P1Host, Template};
use crate::instance::{FinishGuard, Outcome, Shared, classify};
use crate::limits::{Metered, StoreLimiter, configure_store};
use crate::stdio::stdin_stream;

/// Starts the guest on a tokio task; the status lands in `shared`.
pub(crate) fn start(
    engine: Engine,
    shared: Arc<Shared>,
    prepared: Arc<Prepared>,
    template: Template,
    stdin: Option<InputSource>,
    writers: Vec<JoinHandle<()>>,
) {
    tokio::spawn(async move {
        let guard = FinishGuard(shared.clone());
        let outcome = {
            let run = run_guest(&engine, &prepared, &template, stdin);
            tokio::select! {
                outcome = run => outcome,
                _ = shared.stop.cancelled() => Outcome::Stopped,
            }
        };
        // The store is gone; dropping the template closes the output pipes
        // so the writers finish once everything the guest wrote is out.
        drop(template);
        for w in writers {
            let _ = w.await;
        }
        shared.finish(classify(outcome, &shared.limits));
        drop(guard);
    });
}

async fn run_guest(
    engine: &Engine,
    prepared: &Prepared,
    template: &Template,
    stdin: Option<InputSource>,
) -> Outcome {
    let result = match prepared {
        Prepared::P1(pre) => run_p1(engine, pre, template, stdin).await,
        Prepared::Command(pre) => run_p2(engine, pre, template, stdin).await,
        Prepared::Http(_) => Err(wasmtime::format_err!(
            "an HTTP handler cannot run as a command"
        )),
    };
    match result {
        Ok(code) => Outcome::Exited(code),
        Err(e) => Outcome::Failed(e),
    }
}

async fn run_p1(
    engine: &Engine,
    pre: &wasmtime::InstancePre<P1Host>,
    template: &Template,
    stdin: Option<InputSource>,
) -> wasmtime::Result<i32> {
    let mut builder = template.wasi_builder()?;
    if let Some(stdin) = stdin {
        builder.stdin(stdin_stream(stdin));
    }
    let host = P1Host {
        wasi: builder.build_p1(),
        limiter: StoreLimiter::new(template.limits.clone()),
    };
    let mut store = Store::new(engine, host);
    configure_store(&mut store);
    let meter = StoreLimiter::meter_of(&store.data().limiter);
    Metered::new(
        async move {
            let instance = pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await?;
            Ok(0)
        },
        meter,
    )
    .await
}

async fn run_p2(
    engine: &Engine,
    pre: &wasmtime_wasi::p2::bindings::CommandPre<ComponentHost>,
    template: &Template,
    stdin: Option<InputSource>,
) -> wasmtime::Result<i32> {
    let mut builder = template.wasi_builder()?;
    if let Some(stdin) = stdin {
        builder.stdin(stdin_stream(stdin));
    }
    let host = ComponentHost::new(builder.build(), template);
    let mut store = Store::new(engine, host);
    configure_store(&mut store);
    let meter = StoreLimiter::meter_of(&store.data().limiter);
    Metered::new(
        async move {
            let command = pre.instantiate_async(&mut store).await?;
            let result = command.wasi_cli_run().call_run(&mut store).await?;
            Ok(if result.is_ok() { 0 } else { 1 })
        },
        meter,
    )
    .await
}
