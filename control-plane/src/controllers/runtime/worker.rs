//! Runs a controller's reconcile function over its work queue: a fixed
//! number of workers, a tracing span per key, back-off on errors, requeue
//! when the reconciler asks for it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::queue::WorkQueue;
use crate::controllers::ControllerError;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object or something it depends on changes.
    AwaitChange,
    /// Reconcile again after this long even if nothing changes.
    RequeueAfter(Duration),
}

/// Runs `workers` workers draining `queue` with `reconcile` until `shutdown`;
/// returns once every worker has finished its current key.
pub async fn run_workers<T, C, F, Fut>(
    controller: &'static str,
    queue: WorkQueue<T>,
    workers: usize,
    ctx: Arc<C>,
    reconcile: F,
    shutdown: CancellationToken,
) where
    T: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: Fn(T, Arc<C>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, ControllerError>> + Send + 'static,
{
    let stopper = {
        let queue = queue.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            queue.shut_down();
        })
    };
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let ctx = ctx.clone();
        let reconcile = reconcile.clone();
        handles.push(tokio::spawn(async move {
            while let Some(key) = queue.next().await {
                let span = tracing::info_span!("reconcile", controller, key = %key);
                let result = reconcile(key.clone(), ctx.clone())
                    .instrument(span.clone())
                    .await;
                span.in_scope(|| match result {
                    Ok(Action::AwaitChange) => queue.forget(&key),
                    Ok(Action::RequeueAfter(d)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), d);
                    }
                    Err(e) => {
                        if e.is_conflict() {
                            tracing::debug!(error = %e, "conflict; requeueing");
                        } else {
                            tracing::warn!(error = %e, "reconcile failed; retrying with back-off");
                        }
                        queue.add_rate_limited(key.clone());
                    }
                });
                queue.done(&key);
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    stopper.abort();
}
