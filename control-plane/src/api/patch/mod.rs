//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386),
//! strategic merge patch (`strategic`) and server-side apply (`apply`),
//! chosen by Content-Type.

pub mod apply;
pub mod strategic;

use serde_json::Value;

use super::error::ApiError;

/// The patch formats Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type (415 for anything else).
    pub fn from_content_type(media_type: &str) -> Result<PatchType, ApiError> {
        match media_type {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Applies a JSON, merge or strategic patch to `original` (an object of `kind`).
pub fn apply_patch(
    kind: &str,
    patch_type: PatchType,
    original: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::Invalid {
                group: String::new(),
                kind: kind.to_string(),
                name: super::meta::name(original).unwrap_or("").to_string(),
                causes: vec![super::error::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("the JSON patch could not be applied: {e}"),
                    field: String::new(),
                }],
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            strategic::apply(kind, original, patch).map_err(|e| ApiError::BadRequest(e.to_string()))
        }
        PatchType::Apply => Err(ApiError::Internal(
            "server-side apply is not a plain patch".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_merge_patches() {
        let obj = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let p = json!([{"op": "replace", "path": "/spec/replicas", "value": 3}, {"op": "add", "path": "/metadata/labels/b", "value": "2"}]);
        let out = apply_patch("Deployment", PatchType::Json, &obj, &p).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["metadata"]["labels"]["b"], "2");
        let bad = json!([{"op": "test", "path": "/spec/replicas", "value": 9}]);
        assert!(matches!(
            apply_patch("Deployment", PatchType::Json, &obj, &bad),
            Err(ApiError::Invalid { .. })
        ));
        let out = apply_patch(
            "Deployment",
            PatchType::Merge,
            &obj,
            &json!({"metadata": {"labels": {"a": null}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert!(PatchType::from_content_type("text/plain").is_err());
    }
}
