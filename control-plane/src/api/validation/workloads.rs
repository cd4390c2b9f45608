//! Validation of workload controllers (selector required, matching the
//! template, immutable), Jobs (restartPolicy) and Services (ports, types,
//! immutable clusterIP).

use serde_json::{Value, json};

use super::Errors;
use super::pods::validate_pod_spec;
use crate::api::selectors::LabelSelector;

fn template_matches_selector(obj: &Value, errs: &mut Errors) {
    let Some(selector) = obj.pointer("/spec/selector") else {
        errs.required("spec.selector", "");
        return;
    };
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    if empty {
        errs.invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        );
        return;
    }
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let probe = json!({ "metadata": { "labels": labels } });
    if !LabelSelector::from_object(selector).matches(&probe) {
        errs.invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        );
    }
}

/// Deployments, ReplicaSets, StatefulSets, DaemonSets.
pub fn validate_workload(obj: &Value, errs: &mut Errors) {
    template_matches_selector(obj, errs);
    if let Some(r) = obj.pointer("/spec/replicas")
        && r.as_i64().is_none_or(|n| n < 0)
    {
        errs.invalid("spec.replicas", r, "must be greater than or equal to 0");
    }
    validate_pod_spec(
        obj.pointer("/spec/template/spec").unwrap_or(&Value::Null),
        "spec.template.spec",
        errs,
    );
    if let Some(policy) = obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
        && policy != "Always"
    {
        errs.unsupported("spec.template.spec.restartPolicy", policy, &["Always"]);
    }
}

/// Jobs: pod template with restartPolicy OnFailure or Never.
pub fn validate_job(obj: &Value, errs: &mut Errors) {
    validate_pod_spec(
        obj.pointer("/spec/template/spec").unwrap_or(&Value::Null),
        "spec.template.spec",
        errs,
    );
    match obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
    {
        Some("OnFailure" | "Never") => {}
        _ => errs.required(
            "spec.template.spec.restartPolicy",
            "valid values: \"OnFailure\", \"Never\"",
        ),
    }
    for field in ["parallelism", "completions", "backoffLimit"] {
        if let Some(v) = obj.pointer(&format!("/spec/{field}"))
            && v.as_i64().is_none_or(|n| n < 0)
        {
            errs.invalid(
                &format!("spec.{field}"),
                v,
                "must be greater than or equal to 0",
            );
        }
    }
}

/// The selector of a controller may not change.
pub fn validate_selector_immutable(old: &Value, new: &Value, errs: &mut Errors) {
    let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if o.is_some() && o != n {
        errs.invalid(
            "spec.selector",
            n.unwrap_or(&Value::Null),
            "field is immutable",
        );
    }
}

/// Services: type, ports and clusterIP syntax.
pub fn validate_service(obj: &Value, errs: &mut Errors) {
    let kind = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.unsupported(
            "spec.type",
            kind,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && kind != "ExternalName" && !headless {
        errs.required("spec.ports", "");
    }
    if kind == "ExternalName"
        && obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        errs.required("spec.externalName", "");
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.invalid(
                &format!("spec.ports[{i}].port"),
                p.get("port").unwrap_or(&json!(0)),
                "must be between 1 and 65535, inclusive",
            );
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.required(&format!("spec.ports[{i}].name"), "");
        } else if !names.insert(name.to_string()) {
            errs.duplicate(&format!("spec.ports[{i}].name"), name);
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            if kind == "ClusterIP" {
                errs.forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            } else if !(30000..=32767).contains(&np) {
                errs.invalid(&format!("spec.ports[{i}].nodePort"), &json!(np), "provided port is not in the valid range. The range of valid ports is 30000-32767");
            }
        }
    }
    if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str)
        && !ip.is_empty()
        && ip != "None"
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        errs.invalid(
            "spec.clusterIPs[0]",
            &json!(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
}

/// clusterIP may not change once set (except to or from ExternalName).
pub fn validate_service_update(old: &Value, new: &Value, errs: &mut Errors) {
    let external =
        |v: &Value| v.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
    if external(old) || external(new) {
        return;
    }
    let (o, n) = (
        old.pointer("/spec/clusterIP"),
        new.pointer("/spec/clusterIP"),
    );
    if o.is_some_and(|o| o != "") && o != n {
        errs.invalid(
            "spec.clusterIPs[0]",
            n.unwrap_or(&Value::Null),
            "may not change once set",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_must_match_template() {
        let mut errs = Errors::default();
        validate_workload(
            &json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            &mut errs,
        );
        assert_eq!(errs.0[0].field, "spec.template.metadata.labels");
        let mut errs = Errors::default();
        validate_selector_immutable(
            &json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
            &json!({"spec": {"selector": {"matchLabels": {"a": "2"}}}}),
            &mut errs,
        );
        assert_eq!(errs.0[0].field, "spec.selector");
    }

    #[test]
    fn service_rules() {
        let mut errs = Errors::default();
        validate_service(
            &json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]}}),
            &mut errs,
        );
        assert_eq!(errs.0[0].field, "spec.ports[0].nodePort");
        let mut errs = Errors::default();
        validate_service_update(
            &json!({"spec": {"clusterIP": "10.43.0.5"}}),
            &json!({"spec": {"clusterIP": "10.43.0.6"}}),
            &mut errs,
        );
        assert_eq!(errs.0.len(), 1);
    }
}
