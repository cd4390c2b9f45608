//! The start-up shared by controllers that keep one object in every active
//! namespace (the `default` ServiceAccount, the `kube-root-ca.crt`
//! ConfigMap): the work item is the namespace, queued for every namespace
//! at start, when a namespace changes, and when a change of one of the
//! watched objects concerns it. The reconcile functions stay in their files.

use std::sync::Arc;

use kube::{Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Action, Change, Informer, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started};

/// Which changes of a watched object matter: `concerns(object, deleted)`.
pub type Concerns<K> = fn(&K, bool) -> bool;

/// Starts `controller`: `reconcile` runs per namespace key, on namespace
/// changes and on the changes of `objects` that `concerns` picks.
pub fn start<K, F, Fut>(
    ctx: &Arc<Ctx>,
    shutdown: &CancellationToken,
    controller: &'static str,
    objects: &Informer<K>,
    concerns: Concerns<K>,
    reconcile: F,
) -> Started
where
    K: Resource + Send + Sync + 'static,
    F: Fn(ObjectKey, Arc<Ctx>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, ControllerError>> + Send + 'static,
{
    let queue = WorkQueue::default();
    ctx.namespaces.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.namespaces.cache().clone();
    let namespace_of = |o: &K| vec![ObjectKey::cluster(o.namespace().unwrap_or_default())];
    objects.feed(queue.clone(), shutdown.clone(), move |c| match c {
        Change::Upsert { new, .. } if concerns(new, false) => namespace_of(new),
        Change::Delete(old) if concerns(old, true) => namespace_of(old),
        Change::Resync => cache.keys(),
        _ => Vec::new(),
    });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.namespaces.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers(controller, queue, workers, ctx, reconcile, sd).await
    })
}
