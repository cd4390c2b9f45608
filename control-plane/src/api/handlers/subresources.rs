//! Subresources: status (spec and status written separately), scale,
//! pods/binding, pods/eviction, namespaces/finalize, serviceaccounts/token,
//! and the proxying ones (log, exec, attach, portforward, proxy).

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::delete::{self, delete_object};
use super::write::{patch_object, read_patch, replace, update_object};
use super::{Ctx, object_response, read_object};
use crate::api::error::ApiError;
use crate::api::objects;
use crate::api::patch::{self, PatchType};
use crate::api::selectors::LabelSelector;
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
        ("binding", &Method::POST) => binding(ctx, body).await,
        ("eviction", &Method::POST) => eviction(ctx, body).await,
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
        match update_object(&ctx, old, new, None).await {
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

fn success(code: StatusCode) -> Response {
    body::json_response(
        code,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16() }),
    )
}

async fn binding(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let b = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest("a binding must name its target node in target.name".into())
        })?;
    for attempt in 0.. {
        let old = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
        if let Some(uid) = b.pointer("/metadata/uid").and_then(Value::as_str)
            && old.obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(objects::conflict(ctx.info, &name));
        }
        if meta::is_deleting(&old.obj) {
            return Err(ApiError::Conflict {
                group: String::new(),
                kind: "pods".into(),
                name: name.clone(),
                message: format!("pod {name} is being deleted, cannot be assigned to a host"),
            });
        }
        if let Some(current) = old
            .obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::Conflict {
                group: String::new(),
                kind: "pods".into(),
                name: name.clone(),
                message: format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
                ),
            });
        }
        let mut pod = old.obj.clone();
        pod["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now() }));
        pod["status"]["conditions"] = json!(conditions);
        let result = objects::put(
            &ctx.state.store,
            ctx.info,
            ctx.ns(),
            &name,
            &pod,
            old.mod_revision,
            Default::default(),
        )
        .await;
        match result {
            Ok(_) => return Ok(success(StatusCode::CREATED)),
            Err(ApiError::Conflict { .. }) if attempt < 8 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Internal("unreachable".into()))
}

async fn eviction(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let ev = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    let pod = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
    let pdbs = crate::api::registry::lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::Internal("poddisruptionbudgets not registered".into()))?;
    let terminal = matches!(
        pod.obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !terminal
        && !meta::is_deleting(&pod.obj)
        && let Some(prefix) = pdbs.namespace_prefix(ctx.ns())
    {
        let range = ctx
            .state
            .store
            .range(crate::store::RangeRequest {
                prefix,
                ..Default::default()
            })
            .await?;
        for kv in &range.kvs {
            let pdb = objects::decode(&ctx.state.store, pdbs, kv)?;
            let sel =
                LabelSelector::from_object(pdb.pointer("/spec/selector").unwrap_or(&Value::Null));
            if sel.is_empty() || !sel.matches(&pod.obj) {
                continue;
            }
            if pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                <= 0
            {
                return Err(ApiError::TooManyRequests(format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {} healthy pods and has {} currently",
                    meta::name(&pdb).unwrap_or(""),
                    pdb.pointer("/status/desiredHealthy")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                    pdb.pointer("/status/currentHealthy")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                )));
            }
        }
    }
    let opts = delete::from_value(ev.get("deleteOptions").unwrap_or(&Value::Null), &ctx);
    delete_object(&ctx, &name, &opts).await?;
    Ok(success(StatusCode::CREATED))
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
    let out = update_object(&ctx, old, obj, Some("finalize")).await?;
    object_response(&ctx, StatusCode::OK, &out)
}

async fn token(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let req = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    let sa = objects::get(&ctx.state.store, ctx.info, ctx.ns(), &name).await?;
    let out = crate::api::tokens::issue(&ctx, &sa.obj, req).await?;
    Ok(body::json_response(StatusCode::CREATED, &out))
}
