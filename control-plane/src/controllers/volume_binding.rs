//! The PersistentVolume controller's claim side and skiff's local-path
//! provisioner. At start it makes sure the `local-path` StorageClass
//! exists (provisioner `skiff.dev/local-path`, WaitForFirstConsumer,
//! reclaim Delete, the default class unless another one is). Claims
//! without a class get the default one (upstream's retroactive default
//! assignment; the API server does not default it at create). An unbound
//! claim is bound to a matching volume (`volume_match.rs`) — both sides:
//! the volume's claimRef and phase Bound, the claim's volumeName,
//! `pv.kubernetes.io/bind-completed` and phase Bound with capacity and
//! access modes. A WaitForFirstConsumer claim waits for the scheduler's
//! `volume.kubernetes.io/selected-node`; then a static volume that fits
//! the node is bound, or, for the local-path class, a volume pinned to that
//! node is provisioned. A claim whose volume is gone or taken is Lost.
//! Volume phases and reclaiming live in `volume_reclaim.rs`. Not done: the
//! pvc-protection / pv-protection finalizers, volume expansion.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::volume_match::{
    LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, PROVISIONED_BY, best_match, claim_class, claim_ref,
    default_class, local_path_class, mismatch, node_facts, provisioned_volume,
};
use super::volume_reclaim::{set_volume_phase, sync_volume, volumes};
use super::{ControllerError, Ctx, Started, ignore_conflict, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "persistentvolume-controller";

/// Set on a claim once both sides of its binding are written.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on whichever side the controller (not the user) bound.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a WaitForFirstConsumer claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner expected to create a claim's volume.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";

/// Volumes are keyed without a namespace, claims with one.
fn volume_key(name: &str) -> ObjectKey {
    ObjectKey::cluster(name)
}

fn claim_key_of(v: &PersistentVolume) -> Option<ObjectKey> {
    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectKey::new(r.namespace.clone()?, r.name.clone()?))
}

/// The volume a claim names, if any.
pub fn volume_name(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|v| !v.is_empty())
}

/// Subscribes the controller to claims, volumes and classes.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    let volumes = ctx.pvs.cache().clone();
    let claims = ctx.pvcs.cache().clone();
    ctx.pvcs
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Delete(gone) => {
                let mut keys = vec![ObjectKey::of(gone.as_ref())];
                let uid = gone.uid();
                keys.extend(
                    volumes
                        .filter(|v| {
                            let r = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                            r.is_some_and(|r| r.uid == uid)
                                || volume_name(gone) == v.metadata.name.as_deref()
                        })
                        .iter()
                        .map(|v| volume_key(&v.name_any())),
                );
                keys
            }
            Change::Resync => claims.keys(),
        });
    let (volumes, claims) = (ctx.pvs.cache().clone(), ctx.pvcs.cache().clone());
    ctx.pvs
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { new: v, .. } | Change::Delete(v) => {
                let mut keys = vec![volume_key(&v.name_any())];
                match claim_key_of(v) {
                    Some(claim) => keys.push(claim),
                    // An unclaimed volume may be what a waiting claim needs
                    // (upstream finds it on its periodic resync; there is none here).
                    None => keys.extend(
                        claims
                            .filter(|c| volume_name(c).is_none())
                            .iter()
                            .map(|c| ObjectKey::of(c.as_ref())),
                    ),
                }
                keys
            }
            Change::Resync => volumes.keys().into_iter().chain(claims.keys()).collect(),
        });
    let claims = ctx.pvcs.cache().clone();
    ctx.storage_classes
        .feed(queue.clone(), shutdown.clone(), move |_| {
            claims
                .filter(|c| volume_name(c).is_none())
                .iter()
                .map(|c| ObjectKey::of(c.as_ref()))
                .collect()
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        ensure_local_path_class(&ctx, &sd).await;
        for k in ctx
            .pvs
            .cache()
            .keys()
            .into_iter()
            .chain(ctx.pvcs.cache().keys())
        {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers(
            "persistentvolume-binder",
            queue,
            workers,
            ctx,
            reconcile,
            sd,
        )
        .await
    })
}

/// Creates the `local-path` class unless it exists, retrying until it does.
async fn ensure_local_path_class(ctx: &Ctx, shutdown: &CancellationToken) {
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    loop {
        let result = match ignore_not_found(api.get(LOCAL_PATH_CLASS).await) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                let default = default_class(&ctx.storage_classes.cache().list()).is_none();
                ignore_conflict(
                    api.create(&PostParams::default(), &local_path_class(default))
                        .await,
                )
                .map(|made| {
                    if made.is_some() {
                        tracing::info!(default, "created the local-path StorageClass");
                    }
                })
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not ensure the local-path StorageClass; retrying in 2 s")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Reconciles one volume (cluster-scoped key) or claim (namespaced key).
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if key.namespace.is_empty() {
        match ctx.pvs.cache().get(&key) {
            Some(v) if v.metadata.deletion_timestamp.is_none() => sync_volume(&ctx, &v).await,
            _ => Ok(Action::AwaitChange),
        }
    } else {
        match ctx.pvcs.cache().get(&key) {
            Some(c) if c.metadata.deletion_timestamp.is_none() => sync_claim(&ctx, &c).await,
            _ => Ok(Action::AwaitChange),
        }
    }
}

async fn sync_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<Action, ControllerError> {
    let spec = claim.spec.clone().unwrap_or_default();
    let Some(pv_name) = volume_name(claim) else {
        if spec.storage_class_name.is_none()
            && let Some(class) = default_class(&ctx.storage_classes.cache().list())
        {
            let mut next = claim.clone();
            next.spec
                .get_or_insert_with(Default::default)
                .storage_class_name = Some(class.name_any());
            let written = claims(ctx, claim)
                .replace(&claim.name_any(), &PostParams::default(), &next)
                .await?;
            tracing::info!(class = %class.name_any(), "assigned the default StorageClass to the claim");
            ctx.pvcs
                .cache()
                .write_through(ObjectKey::of(&written), Arc::new(written));
            return Ok(Action::AwaitChange);
        }
        return sync_unbound(ctx, claim).await;
    };
    let Some(pv) = ctx.pvs.cache().get(&volume_key(pv_name)) else {
        if claim.annotations().contains_key(BIND_COMPLETED) {
            lose(
                ctx,
                claim,
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await?;
        }
        return Ok(Action::AwaitChange);
    };
    match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        None => match mismatch(&pv, claim) {
            None => bind(ctx, claim, &pv).await,
            Some(why) => {
                let msg = format!("Cannot bind to requested volume {pv_name:?}: {why}");
                ctx.events(EVENT_SOURCE)
                    .record(claim, "Warning", "VolumeMismatch", &msg);
                Ok(Action::AwaitChange)
            }
        },
        Some(_) if super::volume_match::bound_to(&pv, claim) => bind(ctx, claim, &pv).await,
        Some(_) => {
            if claim.annotations().contains_key(BIND_COMPLETED) {
                lose(
                    ctx,
                    claim,
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                )
                .await?;
            } else {
                let msg = format!("volume {pv_name:?} already bound to a different claim.");
                ctx.events(EVENT_SOURCE)
                    .record(claim, "Warning", "FailedBinding", &msg);
            }
            Ok(Action::AwaitChange)
        }
    }
}

async fn sync_unbound(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<Action, ControllerError> {
    let class_name = claim_class(claim);
    let class = (!class_name.is_empty())
        .then(|| {
            ctx.storage_classes
                .cache()
                .get(&ObjectKey::cluster(class_name))
        })
        .flatten();
    let wait = class
        .as_ref()
        .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    let selected = claim.annotations().get(SELECTED_NODE).cloned();
    let node: Option<Arc<Node>> = selected
        .as_ref()
        .and_then(|n| ctx.nodes.cache().get(&ObjectKey::cluster(n.clone())));
    let facts = node.as_deref().map(node_facts);
    let on = facts.as_ref().map(|(n, l)| (n.as_str(), l));
    let volumes = ctx.pvs.cache().list();
    if let Some(pv) = best_match(&volumes, claim, wait && selected.is_none(), on) {
        return bind(ctx, claim, &pv).await;
    }
    let ours = class
        .as_ref()
        .filter(|c| c.provisioner == LOCAL_PATH_PROVISIONER);
    match (ours, selected) {
        (Some(class), Some(node))
            if claim
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_none() =>
        {
            provision(ctx, claim, class, &node).await
        }
        (Some(_), Some(_)) => {
            let msg = "the local-path provisioner cannot honour a claim's selector";
            ctx.events(EVENT_SOURCE)
                .record(claim, "Warning", "ProvisioningFailed", msg);
            Ok(Action::AwaitChange)
        }
        (Some(_), None) if !wait => {
            let msg = "the local-path provisioner needs a node: use volumeBindingMode WaitForFirstConsumer";
            ctx.events(EVENT_SOURCE)
                .record(claim, "Warning", "ProvisioningFailed", msg);
            Ok(Action::AwaitChange)
        }
        _ => Ok(Action::AwaitChange),
    }
}

/// Creates a local-path volume for the claim on `node`, then binds it.
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> Result<Action, ControllerError> {
    let wanted = provisioned_volume(claim, class, node);
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = match ignore_conflict(api.create(&PostParams::default(), &wanted).await)? {
        Some(made) => {
            let msg = format!(
                "Successfully provisioned volume {} on node {node}",
                made.name_any()
            );
            ctx.events(EVENT_SOURCE)
                .record(claim, "Normal", "ProvisioningSucceeded", &msg);
            tracing::info!(volume = %made.name_any(), node, "provisioned a local-path volume");
            made
        }
        None => api.get(&wanted.name_any()).await?,
    };
    ctx.pvs
        .cache()
        .write_through(ObjectKey::of(&pv), Arc::new(pv.clone()));
    bind(ctx, claim, &pv).await
}

fn claims(ctx: &Ctx, c: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
    Api::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default())
}

/// Completes whatever part of binding `claim` ↔ `pv` is missing, volume
/// side first (as upstream), each write guarded by resourceVersion.
async fn bind(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<Action, ControllerError> {
    let pp = PostParams::default();
    let mut pv = pv.clone();
    let want_ref = claim_ref(claim);
    let current = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if current.is_none_or(|r| r.uid != want_ref.uid) {
        let by_us = current.is_none();
        let mut next = pv.clone();
        next.spec.get_or_insert_with(Default::default).claim_ref = Some(want_ref);
        if by_us {
            next.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        pv = volumes(ctx).replace(&pv.name_any(), &pp, &next).await?;
        ctx.pvs
            .cache()
            .write_through(ObjectKey::of(&pv), Arc::new(pv.clone()));
    }
    pv = set_volume_phase(ctx, &pv, "Bound", None).await?;

    let mut claim = claim.clone();
    let name = pv.name_any();
    let provisioned = pv.annotations().get(PROVISIONED_BY).cloned();
    let complete = volume_name(&claim) == Some(name.as_str())
        && claim.annotations().contains_key(BIND_COMPLETED);
    if !complete {
        let mut next = claim.clone();
        if volume_name(&claim).is_none() {
            next.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        next.annotations_mut()
            .insert(BIND_COMPLETED.into(), "yes".into());
        if let Some(p) = provisioned {
            next.annotations_mut()
                .insert(STORAGE_PROVISIONER.into(), p.clone());
            next.annotations_mut()
                .insert(BETA_STORAGE_PROVISIONER.into(), p);
        }
        next.spec.get_or_insert_with(Default::default).volume_name = Some(name.clone());
        claim = claims(ctx, &claim)
            .replace(&claim.name_any(), &pp, &next)
            .await?;
        ctx.pvcs
            .cache()
            .write_through(ObjectKey::of(&claim), Arc::new(claim.clone()));
    }
    let vspec = pv.spec.clone().unwrap_or_default();
    let status = PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: vspec.access_modes,
        capacity: vspec.capacity,
        ..claim.status.clone().unwrap_or_default()
    };
    if claim.status.as_ref() != Some(&status) {
        let mut next = claim.clone();
        next.status = Some(status);
        let written = claims(ctx, &claim)
            .replace_status(&claim.name_any(), &pp, &next)
            .await?;
        tracing::info!(volume = %name, "bound the claim");
        ctx.pvcs
            .cache()
            .write_through(ObjectKey::of(&written), Arc::new(written));
    }
    Ok(Action::AwaitChange)
}

/// Marks a bound claim Lost (its volume is gone or taken).
async fn lose(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    message: &str,
) -> Result<(), ControllerError> {
    let mut status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some("Lost") {
        return Ok(());
    }
    status.phase = Some("Lost".into());
    let mut next = claim.clone();
    next.status = Some(status);
    let written = claims(ctx, claim)
        .replace_status(&claim.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.pvcs
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written));
    ctx.events(EVENT_SOURCE)
        .record(claim, "Warning", "ClaimLost", message);
    Ok(())
}
