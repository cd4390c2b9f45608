//! pods/binding, as kube-apiserver's BindingREST answers it: the Binding
//! names the pod (400 when it names another), its target is validated (422),
//! it passes admission as a create of the subresource (NamespaceLifecycle
//! refuses bindings in a namespace being terminated), then one guarded write
//! sets `spec.nodeName`, copies the Binding's annotations and marks the pod
//! PodScheduled. `metadata.uid` and `metadata.resourceVersion` of the
//! Binding are preconditions. A pod that is being deleted, already assigned
//! or still gated (`spec.schedulingGates`) is a 409 Conflict on
//! `pods/binding`. Deviation from upstream: an invalid target is a 422
//! (upstream answers 500 with the same field message).

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, read_object};
use crate::api::error::ApiError;
use crate::api::objects::{self, SideEffects};
use crate::api::{admission_hooks, body, meta, validation};

/// How often a write that lost a race is retried.
const ATTEMPTS: usize = 8;

/// POST pods/<name>/binding.
pub async fn binding(ctx: Ctx, body: axum::body::Body) -> Result<Response, ApiError> {
    let mut b = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    if meta::name(&b) != Some(name.as_str()) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    validation::validate_binding(&b, &name)?;
    admission_hooks::admit(&ctx, None, &mut b).await?;
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for attempt in 1..=ATTEMPTS {
        // Shared with the memo, not copied: `bound` makes the one copy.
        let old = objects::try_get_shared(&ctx.state.store, ctx.info, ctx.ns(), &name)
            .await?
            .ok_or_else(|| objects::not_found(ctx.info, &name))?;
        let pod = bound(
            &b,
            &old.decoded.object,
            old.mod_revision,
            &node,
            &meta::now(),
        )
        .map_err(|why| conflict(&name, &why))?;
        if ctx.query.dry_run() {
            return Ok(success());
        }
        let written = objects::put(
            &ctx.state.store,
            ctx.info,
            ctx.ns(),
            &name,
            pod,
            old.mod_revision,
            SideEffects::default(),
        )
        .await;
        match written {
            Ok(_) => {
                tracing::debug!(pod = %name, node = %node, "pod bound");
                return Ok(success());
            }
            Err(ApiError::Conflict { .. }) if attempt < ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Internal("unreachable".into()))
}

/// The pod bound to `node`, or why it cannot be (upstream's
/// `setPodNodeAndMetadata`); `revision` is the pod's resourceVersion.
fn bound(
    binding: &Value,
    pod: &Value,
    revision: i64,
    node: &str,
    now: &str,
) -> Result<Value, String> {
    let name = meta::name(pod).unwrap_or("");
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(want) = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        && want != uid
    {
        return Err(format!(
            "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
        ));
    }
    if let Some(want) = meta::resource_version(binding).filter(|rv| !rv.is_empty())
        && want != revision.to_string()
    {
        return Err(format!(
            "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {revision}"
        ));
    }
    if meta::is_deleting(pod) {
        return Err(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        ));
    }
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(format!(
            "pod {name} is already assigned to node \"{current}\""
        ));
    }
    if pod
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(format!("pod {name} has non-empty .spec.schedulingGates"));
    }
    let mut pod = pod.clone();
    pod["spec"]["nodeName"] = json!(node);
    if let Some(extra) = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .filter(|a| !a.is_empty())
    {
        let annotations = meta::metadata_mut(&mut pod)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        if let Some(a) = annotations.as_object_mut() {
            a.extend(extra.clone());
        }
    }
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let mut conditions: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now }));
    pod["status"]["conditions"] = json!(conditions);
    Ok(pod)
}

/// 409 on pods/binding, worded as upstream wraps the reason.
fn conflict(name: &str, why: &str) -> ApiError {
    ApiError::Conflict {
        group: String::new(),
        kind: "pods/binding".into(),
        name: name.into(),
        message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": {why}"),
    }
}

fn success() -> Response {
    body::json_response(
        StatusCode::CREATED,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "uid": "u1"}, "spec": spec, "status": {"phase": "Pending",
               "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})
    }

    fn binding(md: Value) -> Value {
        let mut b = json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
        if let (Some(m), Some(extra)) = (b["metadata"].as_object_mut(), md.as_object()) {
            m.extend(extra.clone());
        }
        b
    }

    #[test]
    fn binding_sets_the_node_annotations_and_condition() {
        let b = binding(json!({"annotations": {"a": "1"}}));
        let out = bound(&b, &pod(json!({})), 7, "n1", "2024-01-01T00:00:00Z").unwrap();
        assert_eq!(out["spec"]["nodeName"], "n1");
        assert_eq!(out["metadata"]["annotations"]["a"], "1");
        let conds = out["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0]["status"], "True");
        assert!(
            bound(
                &binding(json!({"uid": "u1", "resourceVersion": "7"})),
                &pod(json!({})),
                7,
                "n1",
                "t"
            )
            .is_ok()
        );
    }

    #[test]
    fn refusals_say_why() {
        let b = binding(json!({}));
        assert_eq!(
            bound(&b, &pod(json!({"nodeName": "n2"})), 1, "n1", "t").unwrap_err(),
            "pod p is already assigned to node \"n2\""
        );
        assert_eq!(
            bound(
                &b,
                &pod(json!({"schedulingGates": [{"name": "g"}]})),
                1,
                "n1",
                "t"
            )
            .unwrap_err(),
            "pod p has non-empty .spec.schedulingGates"
        );
        let mut deleting = pod(json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert!(
            bound(&b, &deleting, 1, "n1", "t")
                .unwrap_err()
                .contains("being deleted")
        );
        assert!(
            bound(
                &binding(json!({"uid": "other"})),
                &pod(json!({})),
                1,
                "n1",
                "t"
            )
            .unwrap_err()
            .contains("UID in precondition")
        );
        assert!(
            bound(
                &binding(json!({"resourceVersion": "3"})),
                &pod(json!({})),
                1,
                "n1",
                "t"
            )
            .unwrap_err()
            .contains("ResourceVersion in precondition: 3")
        );
        assert_eq!(
            conflict("p", "x").to_string(),
            "Operation cannot be fulfilled on pods/binding \"p\": x"
        );
    }

    #[test]
    fn targets_are_validated() {
        assert!(validation::validate_binding(&binding(json!({})), "p").is_ok());
        let bad = json!({"metadata": {"name": "p"}, "target": {"kind": "Pod", "name": "Bad_Node"}});
        let err = validation::validate_binding(&bad, "p").unwrap_err();
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        let causes = status["details"]["causes"].as_array().unwrap();
        assert_eq!(causes[0]["field"], "target.kind");
        assert_eq!(causes[1]["field"], "target.name");
        let missing = json!({"metadata": {"name": "p"}, "target": {}});
        assert!(
            validation::validate_binding(&missing, "p")
                .unwrap_err()
                .to_string()
                .contains("target.name: Required value")
        );
    }
}
