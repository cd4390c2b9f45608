//! The volume side of the PersistentVolume controller: a volume's phase
//! (Available while unclaimed or claimed by name only, Bound once its
//! claim names it, Released when its claim is gone — confirmed with a live
//! GET so a lagging cache never releases a volume), undoing a half-binding
//! the controller made when the claim went to another volume, and the
//! reclaim policy of a released volume: Retain keeps it Released; Delete
//! deletes a volume the local-path provisioner made (the node agent keeps
//! its directory) and fails any other, as there is no deleter for it;
//! Recycle fails (deprecated upstream, not supported).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PersistentVolumeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};

use super::runtime::{Action, ObjectKey};
use super::volume_binding::{BOUND_BY_CONTROLLER, volume_name};
use super::volume_match::{LOCAL_PATH_PROVISIONER, PROVISIONED_BY};
use super::{ControllerError, Ctx, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "persistentvolume-controller";

/// The API of volumes (cluster-scoped).
pub fn volumes(ctx: &Ctx) -> Api<PersistentVolume> {
    Api::all(ctx.client.clone())
}

/// Writes the volume's phase (and message) unless it already has it.
pub async fn set_volume_phase(
    ctx: &Ctx,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<PersistentVolume, ControllerError> {
    let old = pv.status.clone().unwrap_or_default();
    if old.phase.as_deref() == Some(phase) && old.message.as_deref() == message {
        return Ok(pv.clone());
    }
    let mut next = pv.clone();
    next.status = Some(PersistentVolumeStatus {
        phase: Some(phase.into()),
        message: message.map(Into::into),
        reason: None,
        last_phase_transition_time: if old.phase.as_deref() == Some(phase) {
            old.last_phase_transition_time
        } else {
            Some(Time(Timestamp::now()))
        },
    });
    let written = volumes(ctx)
        .replace_status(&pv.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.pvs
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written.clone()));
    Ok(written)
}

/// Reconciles one volume.
pub async fn sync_volume(ctx: &Ctx, pv: &PersistentVolume) -> Result<Action, ControllerError> {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        set_volume_phase(ctx, pv, "Available", None).await?;
        return Ok(Action::AwaitChange);
    };
    let uid = r.uid.clone().filter(|u| !u.is_empty());
    if uid.is_none() {
        // Pre-bound by name only: the claim's sync binds it.
        set_volume_phase(ctx, pv, "Available", None).await?;
        return Ok(Action::AwaitChange);
    }
    let (ns, name) = (
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default(),
    );
    let mut claim = ctx.pvcs.cache().get(&ObjectKey::new(&ns, &name));
    if claim.is_none() {
        // Confirm with the API before treating the claim as gone.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        claim = ignore_not_found(api.get(&name).await)?.map(Arc::new);
    }
    match claim.filter(|c| c.uid() == uid) {
        Some(c) => {
            if volume_name(&c) == pv.metadata.name.as_deref() {
                set_volume_phase(ctx, pv, "Bound", None).await?;
            } else if volume_name(&c).is_some()
                && pv.annotations().contains_key(BOUND_BY_CONTROLLER)
            {
                // The claim went to another volume: release our half-binding.
                let mut next = pv.clone();
                if let Some(s) = next.spec.as_mut() {
                    s.claim_ref = None;
                }
                next.annotations_mut().remove(BOUND_BY_CONTROLLER);
                let written = volumes(ctx)
                    .replace(&pv.name_any(), &PostParams::default(), &next)
                    .await?;
                ctx.pvs
                    .cache()
                    .write_through(ObjectKey::of(&written), Arc::new(written));
            }
            Ok(Action::AwaitChange)
        }
        None => reclaim(ctx, pv).await,
    }
}

/// A volume whose claim is gone: Released, then its reclaim policy.
async fn reclaim(ctx: &Ctx, pv: &PersistentVolume) -> Result<Action, ControllerError> {
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") {
        return Ok(Action::AwaitChange);
    }
    let pv = set_volume_phase(ctx, pv, "Released", None).await?;
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
        .unwrap_or_else(|| "Retain".into());
    let ours =
        pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER);
    match policy.as_str() {
        "Delete" if ours => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pv.meta().uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            ignore_not_found(volumes(ctx).delete(&pv.name_any(), &dp).await.map(|_| ()))?;
            tracing::info!(volume = %pv.name_any(), "claim deleted; deleted its provisioned volume (the node keeps the directory)");
        }
        "Delete" | "Recycle" => {
            let (reason, msg) = if policy == "Delete" {
                (
                    "VolumeFailedDelete",
                    format!(
                        "error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
                        pv.name_any()
                    ),
                )
            } else {
                (
                    "VolumeFailedRecycle",
                    "recycling is not supported; delete the volume or clear its claimRef"
                        .to_string(),
                )
            };
            ctx.events(EVENT_SOURCE)
                .record(&pv, "Warning", reason, &msg);
            set_volume_phase(ctx, &pv, "Failed", Some(&msg)).await?;
        }
        _ => {}
    }
    Ok(Action::AwaitChange)
}
