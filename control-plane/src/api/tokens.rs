//! serviceaccounts/token: a TokenRequest answered with a ServiceAccount
//! token signed by the authenticator (audiences, expiry, optionally bound
//! to a pod running as that account), as `kubectl create token` and the
//! node agent ask for. Nodes (group `system:nodes`) may only ask for tokens
//! bound to a pod that is bound to a node, as Kubernetes' NodeRestriction
//! has it; their credentials do not say which node they are, so "its own
//! node" is not checked.

use std::time::Duration;

use serde_json::{Value, json};

use super::auth::{BoundObject, NODES_GROUP};
use super::error::ApiError;
use super::handlers::Ctx;
use super::{meta, objects, registry};

/// Kubernetes' default and minimum token lifetimes.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;

/// Issues a token for `service_account` as asked by the TokenRequest `req`.
pub async fn issue(ctx: &Ctx, service_account: &Value, mut req: Value) -> Result<Value, ApiError> {
    let ns = ctx.ns().unwrap_or("default").to_string();
    let name = meta::name(service_account).unwrap_or("").to_string();
    let uid = service_account
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec = req.get("spec").cloned().unwrap_or(Value::Null);
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION);
    if seconds < MIN_EXPIRATION {
        return Err(ApiError::Invalid {
            group: "authentication.k8s.io".into(),
            kind: "TokenRequest".into(),
            name: name.clone(),
            causes: vec![super::StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
                field: "spec.expirationSeconds".into(),
            }],
        });
    }
    let expiration = Duration::from_secs(seconds as u64);
    let from_node = ctx.user.groups.iter().any(|g| g == NODES_GROUP);
    if from_node && spec.pointer("/boundObjectRef/kind") != Some(&json!("Pod")) {
        return Err(node_forbidden(
            &name,
            "node requested token not bound to a pod",
        ));
    }
    let token = match spec.pointer("/boundObjectRef") {
        Some(bound) if bound["kind"] == "Pod" => {
            let pod_name = bound["name"].as_str().unwrap_or("");
            let pods = registry::lookup("", "v1", "pods")
                .ok_or_else(|| ApiError::Internal("pods not registered".into()))?;
            // Read shared with the memo, not copied: only a few fields are looked at.
            let shared = objects::try_get_shared(&ctx.state.store, pods, Some(&ns), pod_name)
                .await?
                .ok_or_else(|| objects::not_found(pods, pod_name))?;
            let pod = shared.current();
            let pod_uid = pod
                .obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let runs_as = pod
                .obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if runs_as != name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount \"{runs_as}\" to pod running with different serviceaccount name."
                )));
            }
            if from_node {
                if bound["uid"].as_str().is_none_or(str::is_empty) {
                    return Err(node_forbidden(
                        &name,
                        "node requested token with a pod binding without a uid",
                    ));
                }
                if pod
                    .obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(node_forbidden(
                        &name,
                        "node requested token bound to a pod not scheduled on a node",
                    ));
                }
            }
            if bound["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u != pod_uid)
            {
                return Err(ApiError::Conflict {
                    group: String::new(),
                    kind: "pods".into(),
                    name: pod_name.into(),
                    message: format!(
                        "the UID in the bound object reference ({}) does not match the UID in record ({pod_uid})",
                        bound["uid"].as_str().unwrap_or("")
                    ),
                });
            }
            let bound = BoundObject {
                name: pod_name.to_string(),
                uid: pod_uid,
            };
            ctx.state
                .authenticator
                .issue_pod_bound_token(&ns, &name, &uid, &audiences, expiration, bound)
        }
        _ => ctx
            .state
            .authenticator
            .issue_service_account_token(&ns, &name, &uid, &audiences, expiration),
    };
    let expires = chrono::Utc::now() + chrono::Duration::seconds(seconds);
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({ "name": name, "namespace": ns, "creationTimestamp": meta::now() });
    req["spec"]["expirationSeconds"] = json!(seconds);
    req["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    Ok(req)
}

/// 403 for a node's TokenRequest, worded as NodeRestriction words it.
fn node_forbidden(name: &str, why: &str) -> ApiError {
    ApiError::Forbidden {
        message: format!("serviceaccounts \"{name}\" is forbidden: {why}"),
        group: String::new(),
        kind: "serviceaccounts".into(),
        name: name.into(),
    }
}
