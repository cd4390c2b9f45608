//! The ServiceAccount controller: every active namespace has a `default`
//! ServiceAccount (re-created if deleted).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Action, ObjectKey};
use super::{ControllerError, Ctx, Started, ignore_conflict, per_namespace};

/// Subscribes the controller to namespaces and deleted `default` ServiceAccounts.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let concerns = |sa: &ServiceAccount, deleted: bool| deleted && sa.name_any() == "default";
    per_namespace::start(
        ctx,
        shutdown,
        "serviceaccount",
        &ctx.service_accounts,
        concerns,
        reconcile,
    )
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
