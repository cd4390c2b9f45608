//! The ServiceAccount controller: every active namespace has a `default`
//! ServiceAccount (re-created if deleted).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Action, Change, ObjectKey, WorkQueue, changed_keys, run_workers};
use super::{ControllerError, Ctx, Started, ignore_conflict};

/// Subscribes the controller to namespaces and ServiceAccounts.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    let cache = ctx.namespaces.cache().clone();
    ctx.namespaces
        .feed(queue.clone(), shutdown.clone(), move |c| {
            changed_keys(c, &cache)
        });
    let cache = ctx.namespaces.cache().clone();
    ctx.service_accounts
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Delete(sa) if sa.name_any() == "default" => {
                vec![ObjectKey::cluster(sa.namespace().unwrap_or_default())]
            }
            Change::Resync => cache.keys(),
            _ => Vec::new(),
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.namespaces.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("serviceaccount", queue, workers, ctx, reconcile, sd).await
    })
}

/// Ensures the `default` ServiceAccount of one namespace.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(ns) = ctx.namespaces.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let name = ns.name_any();
    if ctx
        .service_accounts
        .cache()
        .get(&ObjectKey::new(name.clone(), "default"))
        .is_some()
    {
        return Ok(Action::AwaitChange);
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            namespace: Some(name),
            ..Default::default()
        },
        ..Default::default()
    };
    if ignore_conflict(api.create(&PostParams::default(), &sa).await)?.is_some() {
        tracing::info!("created default ServiceAccount");
    }
    Ok(Action::AwaitChange)
}
