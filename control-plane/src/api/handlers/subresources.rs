//! Subresources: status (spec and status written separately), scale,
//! namespaces/finalize, serviceaccounts/token, and the proxying ones (log,
//! exec, attach, portforward, proxy); pods/binding and pods/eviction have
//! their own files.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::write::{patch_object, read_patch, replace, update_object};
use super::{Ctx, object_response, read_object};
use crate::api::error::ApiError;
use crate::api::objects;
use crate::api::patch::{self, PatchType};
use crate::api::{body, meta, proxy, table};

/// Dispatches a subresource request.
pub async fn handle(ctx: Ctx, sub: &str, body: Body) -> Result<Response, ApiError> {
    match (sub, &ctx.method) {
        ("status", &Method::GET) => {
            let stored = objects::get(&ctx.state.store, ctx.info, ctx.ns(), ctx.name()?).await?;
            object_response(&ctx, StatusCode::OK, &stored.obj)
        }
        ("status", &Method::PUT) => {
            let new = read_object(&ctx, body).await?;
            let out = replace(&ctx, new, Some("status")).await?;
            object_response(&ctx, StatusCode::OK, &out)
        }
        ("status", &Method::PATCH) => {
            let (pt, value) = read_patch(&ctx, body).await?;
            let out = patch_object(&ctx, pt, &value, Some("status")).await?;
            object_response(&ctx, StatusCode::OK, &out)
        }
        ("scale", &Method::GET | &Method::PUT | &Method::PATCH) => scale(ctx, body).await,
        ("binding", &Method::POST) => super::binding::binding(ctx, body).await,
        ("eviction", &Method::POST) => super::eviction::eviction(ctx, body).await,
        ("finalize", &Method::PUT) => finalize(ctx, body).await,
        ("token", &Method::POST) => token(ctx, body).await,
        ("log" | "exec" | "attach" | "portforward" | "proxy", _) => {
            proxy::handle(ctx, sub, body).await
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({} {}/{sub})",
            ctx.method, ctx.info.plural
        ))),
    }
}

fn selector_text(obj: &Value) -> String {
    match obj.pointer("/spec/selector") {
        Some(Value::Object(m))
            if m.contains_key("matchLabels") || m.contains_key("matchExpressions") =>
        {
            let s = table::selector_string(Some(&Value::Object(m.clone())));
            if s == "<none>" { String::new() } else { s }
        }
        Some(Value::Object(m)) => table::map_string(Some(&Value::Object(m.clone()))),
        _ => String::new(),
    }
}

fn scale_of(obj: &Value) -> Value {
    let md = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": md.get("name"), "namespace": md.get("namespace"), "uid": md.get("uid"),
            "resourceVersion": md.get("resourceVersion"), "creationTimestamp": md.get("creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_text(obj),
        },
    })
}

async fn scale(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let name = ctx.name()?.to_string();
    if ctx.method == Method::GET {
        let stored = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
        return Ok(body::ok(&scale_of(&stored.obj)));
    }
    let (pt, value) = if ctx.method == Method::PUT {
        (None, read_object(&ctx, body).await?)
    } else {
        let (pt, v) = read_patch(&ctx, body).await?;
        (Some(pt), v)
    };
    for attempt in 0.. {
        let old = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
        let current = scale_of(&old.obj);
        let wanted = match pt {
            None => value.clone(),
            Some(PatchType::Apply) => {
                patch::apply_patch("Scale", PatchType::Merge, &current, &value)?
            }
            Some(pt) => patch::apply_patch("Scale", pt, &current, &value)?,
        };
        if let Some(rv) = meta::resource_version(&wanted)
            && rv != old.mod_revision.to_string()
        {
            return Err(objects::conflict(ctx.info, &name));
        }
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::Invalid {
                group: "autoscaling".into(),
                kind: "Scale".into(),
                name: name.clone(),
                causes: vec![crate::api::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            });
        }
        let mut new = old.obj.clone();
        new["spec"]["replicas"] = json!(replicas);
        match update_object(&ctx, old.current(), new, None).await {
            Ok(obj) => return Ok(body::ok(&scale_of(&obj))),
            Err(ApiError::Conflict { .. })
                if attempt < 8 && meta::resource_version(&wanted).is_none() =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Internal("unreachable".into()))
}

async fn finalize(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let new = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    let old = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
    let mut obj = old.obj.clone();
    obj["spec"]["finalizers"] = new
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or(json!([]));
    let out = update_object(&ctx, old.current(), obj, Some("finalize")).await?;
    object_response(&ctx, StatusCode::OK, &out)
}

async fn token(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let req = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    let sa = objects::try_get_shared(&ctx.state.store, ctx.info, ctx.ns(), &name)
        .await?
        .ok_or_else(|| objects::not_found(ctx.info, &name))?;
    let out = crate::api::tokens::issue(&ctx, &sa.decoded.object, req).await?;
    Ok(body::json_response(StatusCode::CREATED, &out))
}
