//! create, update and patch: the request body goes through metadata rules
//! (`lifecycle`), defaulting, admission, validation and allocation, then
//! one guarded store transaction. Patches retry on a concurrent write
//! unless the client pinned a resourceVersion.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::Value;

use super::{Ctx, object_response, read_object};
use crate::api::error::ApiError;
use crate::api::objects::{self, Current, SideEffects, Written};
use crate::api::patch::{self, PatchType};
use crate::api::{admission_hooks, alloc, body, defaults, lifecycle, meta, validation};

/// POST of a new object.
pub async fn create(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let obj = read_object(&ctx, body).await?;
    let created = create_object(&ctx, obj).await?;
    object_response(&ctx, StatusCode::CREATED, &created)
}

/// Creates `obj` in the request's namespace (retrying generateName collisions).
pub async fn create_object(ctx: &Ctx, obj: Value) -> Result<Written, ApiError> {
    let info = ctx.info;
    let store = &ctx.state.store;
    let generated = meta::name(&obj).is_none();
    let attempts = if generated { 5 } else { 1 };
    let mut last = None;
    let mut obj = Some(obj);
    for attempt in 1..=attempts {
        // Only a generated name is retried, so only then is the body kept for another attempt.
        let body = if attempt < attempts {
            obj.clone()
        } else {
            obj.take()
        };
        let body = body.ok_or_else(|| ApiError::Internal("create failed".into()))?;
        let mut obj = lifecycle::prepare_create(info, ctx.namespace.as_deref(), body)?;
        defaults::apply(info, &mut obj, true);
        admission_hooks::admit(ctx, None, &mut obj).await?;
        validation::validate_create(info, &obj)?;
        let name = meta::name(&obj).unwrap_or("").to_string();
        let key = objects::key(info, ctx.ns(), &name)?;
        let side = if info.group.is_empty() && info.kind == "Service" {
            alloc::on_create(store, &mut obj, &key).await?
        } else {
            SideEffects::default()
        };
        if ctx.query.dry_run() {
            return Ok(obj.into());
        }
        match objects::put(store, info, ctx.ns(), &name, obj, 0, side).await {
            Err(e @ ApiError::AlreadyExists { .. }) if generated => last = Some(e),
            Ok(created) => {
                admission_hooks::written(ctx, None, Some(&*created)).await;
                return Ok(created);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::Internal("create failed".into())))
}

fn precondition(ctx: &Ctx, old: Current<'_>, new: &Value) -> Result<(), ApiError> {
    // As kube-apiserver, a PUT's uid is a precondition (409); in a patch a
    // different uid is an attempt to change an immutable field (422, in
    // `lifecycle::prepare_update`).
    let name = meta::name(old.obj).unwrap_or("");
    let stored_uid = old.obj.pointer("/metadata/uid").and_then(Value::as_str);
    if let Some(uid) = new.pointer("/metadata/uid").and_then(Value::as_str)
        && !uid.is_empty()
        && Some(uid) != stored_uid
    {
        return Err(objects::uid_conflict(
            ctx.info,
            name,
            uid,
            stored_uid.unwrap_or(""),
        ));
    }
    if let Some(rv) = meta::resource_version(new)
        && rv != old.mod_revision.to_string()
    {
        return Err(objects::conflict(ctx.info, name));
    }
    Ok(())
}

/// PUT of an existing object (or of its status with `subresource`).
pub async fn update(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let new = read_object(&ctx, body).await?;
    let out = replace(&ctx, new, None).await?;
    object_response(&ctx, StatusCode::OK, &out)
}

/// Replaces the object named in `ctx` with `new` (optimistic on its resourceVersion).
pub async fn replace(
    ctx: &Ctx,
    new: Value,
    subresource: Option<&str>,
) -> Result<Written, ApiError> {
    let name = ctx.name()?;
    let old = objects::get(&ctx.state.store, ctx.info, ctx.ns(), name).await?;
    precondition(ctx, old.current(), &new)?;
    update_object(ctx, old.current(), new, subresource).await
}

fn deletable(obj: &Value) -> bool {
    meta::is_deleting(obj)
        && meta::finalizers(obj).is_empty()
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
}

/// Writes `new` over `old` with every update rule applied; a no-op update
/// writes nothing, and removing the last finalizer of a deleting object deletes it.
pub async fn update_object(
    ctx: &Ctx,
    old: Current<'_>,
    new: Value,
    subresource: Option<&str>,
) -> Result<Written, ApiError> {
    let info = ctx.info;
    let store = &ctx.state.store;
    let mut obj = lifecycle::prepare_update(info, old.obj, new, subresource)?;
    if obj.pointer("/metadata/managedFields").is_none()
        && let Some(mf) = old.obj.pointer("/metadata/managedFields").cloned()
    {
        meta::metadata_mut(&mut obj).insert("managedFields".into(), mf);
    }
    if subresource.is_none() {
        defaults::apply(info, &mut obj, false);
    }
    admission_hooks::admit(ctx, Some(old.obj), &mut obj).await?;
    if subresource.is_none() {
        validation::validate_update(info, old.obj, &obj)?;
    }
    let name = meta::name(old.obj).unwrap_or("").to_string();
    let key = objects::key(info, ctx.ns(), &name)?;
    let is_service = info.group.is_empty() && info.kind == "Service";
    if obj == *old.obj {
        return Ok(obj.into());
    }
    if ctx.query.dry_run() {
        return Ok(obj.into());
    }
    if deletable(&obj) {
        let side = if is_service {
            alloc::on_delete(old.obj)
        } else {
            SideEffects::default()
        };
        let gone = objects::delete(store, info, ctx.ns(), &name, old.mod_revision, side).await?;
        admission_hooks::written(ctx, Some(old.obj), None).await;
        return Ok(gone.into());
    }
    let side = if is_service && subresource.is_none() {
        alloc::on_update(store, old.obj, &mut obj, &key).await?
    } else {
        SideEffects::default()
    };
    let stored = objects::put(store, info, ctx.ns(), &name, obj, old.mod_revision, side).await?;
    admission_hooks::written(ctx, Some(old.obj), Some(&*stored)).await;
    Ok(stored)
}

/// PATCH of an object (or of its status with `subresource`).
pub async fn patch(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let (patch_type, value) = read_patch(&ctx, body).await?;
    let sub = ctx.subresource.clone();
    let out = patch_object(&ctx, patch_type, &value, sub.as_deref()).await?;
    object_response(&ctx, StatusCode::OK, &out)
}

/// Reads a PATCH body and its type.
pub async fn read_patch(ctx: &Ctx, body: Body) -> Result<(PatchType, Value), ApiError> {
    let patch_type = PatchType::from_content_type(&body::content_type(&ctx.headers))?;
    let bytes = body::read(&ctx.headers, body).await?;
    let media = if patch_type == PatchType::Apply {
        "application/yaml"
    } else {
        "application/json"
    };
    Ok((patch_type, body::decode(media, &bytes)?))
}

fn field_manager(ctx: &Ctx) -> Result<String, ApiError> {
    ctx.query
        .non_empty("fieldManager")
        .map(String::from)
        .ok_or_else(|| ApiError::BadRequest("PATCH requests with apply-patch content type require a fieldManager query parameter".into()))
}

/// Applies a patch to the named object, retrying on concurrent writes.
pub async fn patch_object(
    ctx: &Ctx,
    patch_type: PatchType,
    patch_value: &Value,
    sub: Option<&str>,
) -> Result<Written, ApiError> {
    let name = ctx.name()?.to_string();
    let pinned = patch_type != PatchType::Json && meta::resource_version(patch_value).is_some();
    let force = ctx.query.flag("force");
    for attempt in 0.. {
        // Shared with the memo, not copied: the patch is applied to a copy.
        let shared = objects::try_get_shared(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
        let old = match &shared {
            Some(shared) => shared.current(),
            None if patch_type == PatchType::Apply && sub.is_none() => {
                let manager = field_manager(ctx)?;
                let mut obj = patch::apply::apply(
                    ctx.info.kind,
                    &ctx.info.api_version(),
                    &Value::Null,
                    patch_value,
                    &manager,
                    force,
                )?;
                meta::metadata_mut(&mut obj).insert("name".into(), Value::String(name.clone()));
                return create_object(ctx, obj).await;
            }
            None => return Err(objects::not_found(ctx.info, &name)),
        };
        let new = if patch_type == PatchType::Apply {
            let manager = field_manager(ctx)?;
            patch::apply::apply(
                ctx.info.kind,
                &ctx.info.api_version(),
                old.obj,
                patch_value,
                &manager,
                force,
            )?
        } else {
            patch::apply_patch(ctx.info.kind, patch_type, old.obj, patch_value)?
        };
        if pinned {
            precondition(ctx, old, patch_value)?;
        }
        match update_object(ctx, old, new, sub).await {
            Err(ApiError::Conflict { .. }) if !pinned && attempt < 8 => continue,
            other => return other,
        }
    }
    Err(ApiError::Internal("unreachable".into()))
}
