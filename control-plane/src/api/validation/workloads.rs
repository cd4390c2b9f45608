//! Validation of workload controllers (selector required, matching the
//! template, immutable; the DaemonSet update strategy), Jobs (restartPolicy)
//! and Services (ports, types, immutable clusterIP).

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

/// The value of an int-or-percent field as upstream's getIntOrPercentValue
/// reads it (`"25%"` is 25, a bare numeric string its number, else 0).
fn int_or_percent_value(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.strip_suffix('%').unwrap_or(s).parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

/// ValidatePositiveIntOrPercent and IsNotMoreThan100Percent.
fn validate_int_or_percent(v: &Value, field: &str, errs: &mut Errors) {
    match v {
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits {
                None => errs.invalid(
                    field,
                    v,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ),
                Some(d) if d.parse::<u64>().is_ok_and(|n| n > 100) => {
                    errs.invalid(field, v, "must not be greater than 100%")
                }
                Some(_) => {}
            }
        }
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            errs.invalid(field, v, "must be greater than or equal to 0")
        }
        Value::Number(n) if n.is_i64() || n.is_u64() => {}
        other => errs.invalid(field, other, "must be an integer or a percentage"),
    }
}

/// DaemonSets: the update strategy (upstream's ValidateDaemonSetUpdateStrategy):
/// RollingUpdate or OnDelete; maxUnavailable and maxSurge are non-negative
/// numbers or percentages up to 100%, and exactly one of them is non-zero.
pub fn validate_daemonset_strategy(obj: &Value, errs: &mut Errors) {
    let Some(strategy) = obj.pointer("/spec/updateStrategy") else {
        return;
    };
    match strategy.get("type").and_then(Value::as_str) {
        Some("OnDelete") => {}
        Some("RollingUpdate") => {
            let Some(ru) = strategy.get("rollingUpdate") else {
                errs.required("spec.updateStrategy.rollingUpdate", "");
                return;
            };
            let field = |f: &str| format!("spec.updateStrategy.rollingUpdate.{f}");
            let unavailable = ru.get("maxUnavailable").unwrap_or(&Value::Null);
            let surge = ru.get("maxSurge").unwrap_or(&Value::Null);
            for (name, v) in [("maxUnavailable", unavailable), ("maxSurge", surge)] {
                if !v.is_null() {
                    validate_int_or_percent(v, &field(name), errs);
                }
            }
            match (
                int_or_percent_value(unavailable) != 0,
                int_or_percent_value(surge) != 0,
            ) {
                (true, true) => errs.invalid(
                    &field("maxSurge"),
                    surge,
                    "may not be set when maxUnavailable is non-zero",
                ),
                (false, false) => {
                    errs.required(&field("maxUnavailable"), "cannot be 0 when maxSurge is 0")
                }
                _ => {}
            }
        }
        Some(other) => errs.unsupported(
            "spec.updateStrategy.type",
            other,
            &["OnDelete", "RollingUpdate"],
        ),
        None => errs.required("spec.updateStrategy.type", ""),
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
    fn daemonset_strategy_needs_exactly_one_of_surge_and_unavailable() {
        let check = |ru: Value| {
            let mut errs = Errors::default();
            validate_daemonset_strategy(
                &json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}}),
                &mut errs,
            );
            errs.0
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
        };
        assert!(check(json!({"maxUnavailable": 1, "maxSurge": 0})).is_empty());
        assert!(check(json!({"maxUnavailable": 0, "maxSurge": "10%"})).is_empty());
        assert!(check(json!({"maxUnavailable": "0%", "maxSurge": 2})).is_empty());
        assert_eq!(
            check(json!({"maxUnavailable": 0, "maxSurge": "0%"})),
            [
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
        assert_eq!(
            check(json!({"maxUnavailable": 1, "maxSurge": 1})),
            [
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"
            ]
        );
        let errs = check(json!({"maxUnavailable": 0, "maxSurge": "150%"}));
        assert!(
            errs[0].contains("must not be greater than 100%"),
            "{errs:?}"
        );
        let errs = check(json!({"maxUnavailable": -1, "maxSurge": 0}));
        assert!(
            errs[0].contains("must be greater than or equal to 0"),
            "{errs:?}"
        );
        let errs = check(json!({"maxUnavailable": "x", "maxSurge": 1}));
        assert!(errs[0].contains("a valid percent string"), "{errs:?}");
        let mut errs = Errors::default();
        validate_daemonset_strategy(
            &json!({"spec": {"updateStrategy": {"type": "Sideways"}}}),
            &mut errs,
        );
        assert_eq!(errs.0[0].field, "spec.updateStrategy.type");
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
