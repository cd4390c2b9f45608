//! delete and deletecollection: DeleteOptions (propagationPolicy,
//! gracePeriodSeconds, preconditions, dryRun), finalizers and
//! deletionTimestamp, and the graceful deletion of pods bound to a node
//! (marked; the node removes them after stopping).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, list_objects};
use crate::api::error::ApiError;
use crate::api::objects::{self, SideEffects};
use crate::api::{admission_hooks, alloc, body, meta};

/// DeleteOptions from the body and query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `dryRun: ["All"]` in the body or the query.
    pub dry_run: bool,
}

async fn options(ctx: &Ctx, body: Body) -> Result<DeleteOptions, ApiError> {
    let bytes = body::read(&ctx.headers, body).await?;
    let v = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        body::decode(&body::content_type(&ctx.headers), &bytes)?
    };
    Ok(from_value(&v, ctx))
}

/// DeleteOptions from a JSON body (and the query, which wins when both are set).
pub fn from_value(v: &Value, ctx: &Ctx) -> DeleteOptions {
    let mut o = DeleteOptions {
        propagation: v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from),
        grace: v.get("gracePeriodSeconds").and_then(Value::as_i64),
        uid: v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        resource_version: v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: ctx.query.dry_run()
            || v.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All")),
    };
    if let Some(p) = ctx.query.non_empty("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if let Ok(Some(g)) = ctx.query.int("gracePeriodSeconds") {
        o.grace = Some(g);
    }
    if ctx.query.flag("orphanDependents") && o.propagation.is_none() {
        o.propagation = Some("Orphan".into());
    }
    o
}

/// DELETE of one object.
pub async fn delete(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let opts = options(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    let (code, obj) = delete_object(&ctx, &name, &opts).await?;
    Ok(body::json_response(code, &obj))
}

fn pod_grace(obj: &Value, requested: Option<i64>) -> i64 {
    let unbound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if unbound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

/// Deletes (or marks for deletion) one object; 200 with the removed
/// object, or 202 with the marked one.
pub async fn delete_object(
    ctx: &Ctx,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let info = ctx.info;
    let store = &ctx.state.store;
    admission_hooks::admit_delete(ctx, name)?;
    for attempt in 0.. {
        let old = objects::get(store, info, ctx.ns(), name).await?;
        let uid = old
            .obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(want) = &opts.uid
            && want != uid
        {
            return Err(precondition_failed(
                info,
                name,
                &format!("UID in precondition: {want}, UID in object meta: {uid}"),
            ));
        }
        if let Some(want) = &opts.resource_version
            && *want != old.mod_revision.to_string()
        {
            return Err(precondition_failed(
                info,
                name,
                &format!(
                    "ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    old.mod_revision
                ),
            ));
        }
        let mut obj = old.obj.clone();
        let mut finalizers = meta::finalizers(&obj);
        let deleting = meta::is_deleting(&obj);
        if !deleting {
            let extra = match opts.propagation.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(f) = extra.filter(|f| !finalizers.iter().any(|x| x == f)) {
                finalizers.push(f.to_string());
            }
        }
        let is_pod = info.group.is_empty() && info.kind == "Pod";
        let grace = if is_pod {
            pod_grace(&obj, opts.grace)
        } else {
            0
        };
        let ns_pending = info.group.is_empty()
            && info.kind == "Namespace"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        let result = if grace > 0 || !finalizers.is_empty() || ns_pending {
            let current = obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if deleting
                && current.is_some_and(|c| c <= grace)
                && meta::finalizers(&obj) == finalizers
            {
                return Ok((StatusCode::ACCEPTED, obj));
            }
            let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
            let md = meta::metadata_mut(&mut obj);
            if !deleting || grace < current.unwrap_or(i64::MAX) {
                md.insert(
                    "deletionTimestamp".into(),
                    json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                md.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !finalizers.is_empty() {
                md.insert("finalizers".into(), json!(finalizers));
            }
            if ns_pending {
                obj["status"]["phase"] = json!("Terminating");
            }
            if opts.dry_run {
                return Ok((StatusCode::ACCEPTED, obj));
            }
            objects::put(
                store,
                info,
                ctx.ns(),
                name,
                obj,
                old.mod_revision,
                SideEffects::default(),
            )
            .await
            .map(|o| (StatusCode::ACCEPTED, o.into_value()))
        } else {
            if opts.dry_run {
                return Ok((StatusCode::OK, obj));
            }
            let side = if info.group.is_empty() && info.kind == "Service" {
                alloc::on_delete(&obj)
            } else {
                SideEffects::default()
            };
            objects::delete(store, info, ctx.ns(), name, old.mod_revision, side)
                .await
                .map(|o| (StatusCode::OK, o))
        };
        match result {
            Err(ApiError::Conflict { .. }) if attempt < 8 => continue,
            Ok((code, obj)) => {
                let remaining = (code == StatusCode::ACCEPTED).then_some(&obj);
                admission_hooks::written(ctx, Some(&old.obj), remaining).await;
                return Ok((code, obj));
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Internal("unreachable".into()))
}

fn precondition_failed(
    info: &crate::api::registry::ResourceInfo,
    name: &str,
    detail: &str,
) -> ApiError {
    ApiError::Conflict {
        group: info.group.into(),
        kind: info.plural.into(),
        name: name.into(),
        message: format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {detail}",
            info.plural
        ),
    }
}

/// DELETE of a collection (selectors as for list).
pub async fn delete_collection(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let opts = options(&ctx, body).await?;
    let listed = list_objects(&ctx).await?;
    let mut items = Vec::new();
    for obj in listed.items {
        let Some(name) = meta::name(&obj).map(String::from) else {
            continue;
        };
        match delete_object(&ctx, &name, &opts).await {
            Ok((_, o)) => items.push(o),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(body::ok(&json!({
        "kind": format!("{}List", ctx.info.kind),
        "apiVersion": ctx.info.api_version(),
        "metadata": {},
        "items": items,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_grace_rules() {
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(pod_grace(&bound, None), 10);
        assert_eq!(pod_grace(&bound, Some(0)), 0);
        let unbound = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(pod_grace(&unbound, Some(30)), 0);
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod_grace(&done, None), 0);
    }
}
