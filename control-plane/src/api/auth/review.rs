//! The review APIs answered from authentication and RBAC, never stored:
//! authorization.k8s.io/v1 SelfSubjectAccessReview (what `kubectl auth
//! can-i` sends), SubjectAccessReview, SelfSubjectRulesReview (`can-i
//! --list`), authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth
//! whoami`) and TokenReview.
//!
//! Each takes the request body as JSON and returns the object to answer
//! with (201 Created, as Kubernetes does): the request echoed with `status`
//! filled in. The handler authorizes the `create` itself as usual first.

use serde_json::{Value, json};

use super::{Authenticator, Authorizer};
use crate::api::{ApiError, RequestAttributes, StatusCause, UserInfo};
use crate::pki::MASTERS_GROUP;

/// Answers a SelfSubjectAccessReview for `user`: `status.allowed` for
/// `spec.resourceAttributes` or `spec.nonResourceAttributes`.
pub async fn self_subject_access_review(
    authorizer: &Authorizer,
    user: &UserInfo,
    review: Value,
) -> Result<Value, ApiError> {
    access_review(authorizer, user, review, "SelfSubjectAccessReview").await
}

/// Answers a SubjectAccessReview for the user in `spec.user`/`spec.groups`/`spec.uid`.
pub async fn subject_access_review(
    authorizer: &Authorizer,
    review: Value,
) -> Result<Value, ApiError> {
    let spec = &review["spec"];
    let subject = UserInfo {
        username: spec["user"].as_str().unwrap_or_default().to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups: string_list(&spec["groups"]),
    };
    if subject.username.is_empty() && subject.groups.is_empty() {
        return Err(invalid(
            "SubjectAccessReview",
            "spec.user",
            "at least one of user or group must be specified",
        ));
    }
    access_review(authorizer, &subject, review, "SubjectAccessReview").await
}

async fn access_review(
    authorizer: &Authorizer,
    user: &UserInfo,
    mut review: Value,
    kind: &str,
) -> Result<Value, ApiError> {
    let attrs = attributes(&review["spec"], kind)?;
    let allowed = authorizer.allows(user, &attrs).await;
    let mut status = json!({ "allowed": allowed });
    if allowed {
        status["reason"] = json!("RBAC: allowed");
    }
    review["status"] = status;
    fill_meta(&mut review, kind);
    Ok(review)
}

/// The request attributes a review's spec asks about.
fn attributes(spec: &Value, kind: &str) -> Result<RequestAttributes, ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    match (resource, non_resource) {
        (Some(r), None) => {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let namespace = Some(text("namespace")).filter(|n| !n.is_empty());
            let name = Some(text("name")).filter(|n| !n.is_empty());
            Ok(RequestAttributes {
                verb: text("verb"),
                resource_request: true,
                api_group: text("group"),
                api_version: text("version"),
                resource: text("resource"),
                subresource: text("subresource"),
                namespace,
                name,
                path: String::new(),
            })
        }
        (None, Some(n)) => Ok(RequestAttributes {
            verb: n["verb"].as_str().unwrap_or_default().to_string(),
            path: n["path"].as_str().unwrap_or_default().to_string(),
            ..Default::default()
        }),
        _ => Err(invalid(
            kind,
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

/// Answers a SelfSubjectRulesReview: the rules `user` holds in `spec.namespace`.
pub fn self_subject_rules_review(
    authorizer: &Authorizer,
    user: &UserInfo,
    mut review: Value,
) -> Result<Value, ApiError> {
    let namespace = review["spec"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rules = if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        vec![
            serde_json::from_value(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}))
                .ok(),
            serde_json::from_value(json!({"nonResourceURLs": ["*"], "verbs": ["*"]})).ok(),
        ]
        .into_iter()
        .flatten()
        .collect()
    } else {
        authorizer.rules_for(user, &namespace)
    };
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if let Some(urls) = rule.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({ "verbs": rule.verbs, "nonResourceURLs": urls }));
        }
        if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
            let mut r = json!({
                "verbs": rule.verbs,
                "apiGroups": rule.api_groups.clone().unwrap_or_default(),
                "resources": rule.resources.clone().unwrap_or_default(),
            });
            if let Some(names) = rule.resource_names.as_ref().filter(|n| !n.is_empty()) {
                r["resourceNames"] = json!(names);
            }
            resource_rules.push(r);
        }
    }
    review["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    fill_meta(&mut review, "SelfSubjectRulesReview");
    Ok(review)
}

/// Answers a SelfSubjectReview (`kubectl auth whoami`).
pub fn self_subject_review(user: &UserInfo) -> Value {
    let mut info = json!({ "username": user.username, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": Value::Null },
        "status": { "userInfo": info },
    })
}

/// Answers a TokenReview of `spec.token`.
pub async fn token_review(
    authenticator: &Authenticator,
    mut review: Value,
) -> Result<Value, ApiError> {
    let token = review["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if token.is_empty() {
        return Err(invalid(
            "TokenReview",
            "spec.token",
            "token must not be empty",
        ));
    }
    review["status"] = match authenticator.authenticate_token(&token).await {
        Ok(user) => json!({
            "authenticated": true,
            "user": { "username": user.username, "uid": user.uid, "groups": user.groups },
            "audiences": authenticator.audiences,
        }),
        Err(ApiError::Unauthorized) => {
            json!({ "authenticated": false, "error": "invalid bearer token" })
        }
        Err(other) => return Err(other),
    };
    fill_meta(&mut review, "TokenReview");
    Ok(review)
}

fn fill_meta(review: &mut Value, kind: &str) {
    let group = if kind.ends_with("AccessReview") || kind == "SelfSubjectRulesReview" {
        "authorization.k8s.io/v1"
    } else {
        "authentication.k8s.io/v1"
    };
    if let Some(obj) = review.as_object_mut() {
        obj.insert("kind".into(), json!(kind));
        obj.insert("apiVersion".into(), json!(group));
        obj.entry("metadata")
            .or_insert_with(|| json!({ "creationTimestamp": Value::Null }));
    }
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(kind: &str, field: &str, message: &str) -> ApiError {
    let group = if kind.contains("Token") || kind == "SelfSubjectReview" {
        "authentication.k8s.io"
    } else {
        "authorization.k8s.io"
    };
    ApiError::Invalid {
        group: group.to_string(),
        kind: kind.to_string(),
        name: String::new(),
        causes: vec![StatusCause {
            reason: "FieldValueRequired".to_string(),
            message: message.to_string(),
            field: field.to_string(),
        }],
    }
}
