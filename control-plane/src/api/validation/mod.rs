//! Validation of objects with Kubernetes' rules before they are stored:
//! metadata (names, labels, annotations), per-kind required fields, and
//! immutable fields on update. Failures are 422 Invalid with one cause per
//! field, worded as kube-apiserver words them.

mod names;
mod pods;
mod workloads;

use serde_json::Value;

use super::error::{ApiError, StatusCause};
use super::registry::ResourceInfo;

/// Collected field errors of one object.
#[derive(Debug, Default)]
pub struct Errors(Vec<StatusCause>);

impl Errors {
    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        let shown = match value {
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        self.push(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {shown}: {detail}"),
        );
    }

    /// `field: Required value[: detail]`.
    pub fn required(&mut self, field: &str, detail: &str) {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push("FieldValueRequired", field, msg);
    }

    /// `field: Unsupported value: "x": supported values: "a", "b"`.
    pub fn unsupported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        self.push(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: \"{value}\": supported values: {}",
                list.join(", ")
            ),
        );
    }

    /// `field: Duplicate value: "x"`.
    pub fn duplicate(&mut self, field: &str, value: &str) {
        self.push(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: \"{value}\""),
        );
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(&mut self, field: &str, detail: &str) {
        self.push("FieldValueForbidden", field, format!("Forbidden: {detail}"));
    }

    fn push(&mut self, reason: &str, field: &str, message: String) {
        self.0.push(StatusCause {
            reason: reason.into(),
            message,
            field: field.into(),
        });
    }

    /// Ok when empty, else Invalid naming the object.
    pub fn into_result(self, info: &ResourceInfo, name: &str) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(ApiError::Invalid {
            group: info.group.into(),
            kind: info.kind.into(),
            name: name.into(),
            causes: self.0,
        })
    }
}

fn validate_name(info: &ResourceInfo, name: &str, errs: &mut Errors) {
    let problems = match (info.group, info.kind) {
        ("", "Namespace") => names::dns1123_label(name),
        ("", "Service") => names::dns1035_label(name),
        ("rbac.authorization.k8s.io", _)
        | ("", "Event")
        | ("events.k8s.io", _)
        | ("", "ServiceAccount" | "Secret" | "ConfigMap") => {
            if matches!(info.kind, "ServiceAccount" | "Secret" | "ConfigMap") {
                names::dns1123_subdomain(name)
            } else {
                names::path_segment(name)
            }
        }
        _ => names::dns1123_subdomain(name),
    };
    for p in problems {
        errs.invalid("metadata.name", &Value::String(name.into()), &p);
    }
}

fn validate_metadata(info: &ResourceInfo, obj: &Value, errs: &mut Errors) {
    let md = obj.get("metadata").cloned().unwrap_or(Value::Null);
    match md
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(name) => validate_name(info, name, errs),
        None => errs.required("metadata.name", "name or generateName is required"),
    }
    if let Some(labels) = md.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for p in names::qualified_name(k) {
                errs.invalid("metadata.labels", &Value::String(k.clone()), &p);
            }
            match v.as_str() {
                Some(s) => {
                    for p in names::label_value(s) {
                        errs.invalid(&format!("metadata.labels[{k}]"), v, &p);
                    }
                }
                None => errs.invalid(&format!("metadata.labels[{k}]"), v, "must be a string"),
            }
        }
    }
    if let Some(annotations) = md.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
            for p in names::qualified_name(k) {
                errs.invalid("metadata.annotations", &Value::String(k.clone()), &p);
            }
        }
        if total > 256 * 1024 {
            errs.push(
                "FieldValueTooLong",
                "metadata.annotations",
                format!("Too long: may not be more than {} bytes", 256 * 1024),
            );
        }
    }
}

fn validate_data_keys(obj: &Value, errs: &mut Errors) {
    for field in ["data", "binaryData", "stringData"] {
        for k in obj
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            for p in names::config_key(k) {
                errs.invalid(&format!("{field}[{k}]"), &Value::String(k.clone()), &p);
            }
        }
    }
}

/// Validates the Binding of a pods/binding request for pod `name`.
pub fn validate_binding(binding: &Value, name: &str) -> Result<(), ApiError> {
    let mut errs = Errors::default();
    pods::validate_binding(binding, &mut errs);
    if errs.0.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        group: String::new(),
        kind: "Binding".into(),
        name: name.into(),
        causes: errs.0,
    })
}

/// Validates a new object.
pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let mut errs = Errors::default();
    validate_metadata(info, obj, &mut errs);
    validate_kind(info, obj, &mut errs);
    errs.into_result(info, super::meta::name(obj).unwrap_or(""))
}

/// Validates an update of `old` into `new` (including immutable fields).
pub fn validate_update(info: &ResourceInfo, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut errs = Errors::default();
    validate_metadata(info, new, &mut errs);
    validate_kind(info, new, &mut errs);
    match (info.group, info.kind) {
        ("", "Pod") => pods::validate_pod_update(old, new, &mut errs),
        ("", "Service") => workloads::validate_service_update(old, new, &mut errs),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            workloads::validate_selector_immutable(old, new, &mut errs)
        }
        ("", "ConfigMap" | "Secret") => {
            if old.get("immutable") == Some(&Value::Bool(true)) {
                for f in ["data", "binaryData"] {
                    if old.get(f) != new.get(f) {
                        errs.forbidden(f, "field is immutable when `immutable` is set");
                    }
                }
            }
            if info.kind == "Secret" && old.get("type") != new.get("type") {
                errs.invalid(
                    "type",
                    new.get("type").unwrap_or(&Value::Null),
                    "field is immutable",
                );
            }
        }
        _ => {}
    }
    errs.into_result(info, super::meta::name(new).unwrap_or(""))
}

fn validate_kind(info: &ResourceInfo, obj: &Value, errs: &mut Errors) {
    match (info.group, info.kind) {
        ("", "Pod") => {
            pods::validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec", errs)
        }
        ("", "Service") => workloads::validate_service(obj, errs),
        ("", "ConfigMap" | "Secret") => validate_data_keys(obj, errs),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workloads::validate_workload(obj, errs);
            if info.kind == "DaemonSet" {
                workloads::validate_daemonset_strategy(obj, errs);
            }
        }
        ("batch", "Job") => workloads::validate_job(obj, errs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;
    use serde_json::json;

    #[test]
    fn invalid_names_and_labels_give_causes() {
        let cm = lookup("", "v1", "configmaps").unwrap();
        let err = validate_create(
            cm,
            &json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "bad value"}}}),
        )
        .unwrap_err();
        let ApiError::Invalid { causes, kind, .. } = err else {
            panic!("not invalid")
        };
        assert_eq!(kind, "ConfigMap");
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[0].field, "metadata.name");
        assert!(
            causes[0]
                .message
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
        assert_eq!(causes[1].field, "metadata.labels[ok]");
        let missing = validate_create(cm, &json!({"metadata": {}})).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("metadata.name: Required value")
        );
        assert!(
            validate_create(
                cm,
                &json!({"metadata": {"name": "ok"}, "data": {"a.b": "1"}})
            )
            .is_ok()
        );
    }
}
