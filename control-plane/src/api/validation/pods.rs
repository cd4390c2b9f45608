//! Pod validation: the PodSpec rules that matter to clients (containers,
//! names, images, ports, restartPolicy), pod update immutability, and the
//! Binding a pods/binding request carries.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::Errors;
use super::names;

fn validate_containers(list: &[Value], path: &str, errs: &mut Errors, seen: &mut HashSet<String>) {
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match c
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None => errs.required(&format!("{at}.name"), ""),
            Some(name) => {
                for p in names::dns1123_label(name) {
                    errs.invalid(&format!("{at}.name"), &json!(name), &p);
                }
                if !seen.insert(name.to_string()) {
                    errs.duplicate(&format!("{at}.name"), name);
                }
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            errs.required(&format!("{at}.image"), "");
        }
        for (j, p) in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                errs.invalid(
                    &format!("{at}.ports[{j}].containerPort"),
                    p.get("containerPort").unwrap_or(&json!(0)),
                    "must be between 1 and 65535, inclusive",
                );
            }
            if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                && !matches!(proto, "TCP" | "UDP" | "SCTP")
            {
                errs.unsupported(
                    &format!("{at}.ports[{j}].protocol"),
                    proto,
                    &["SCTP", "TCP", "UDP"],
                );
            }
        }
        if let Some(policy) = c.get("imagePullPolicy").and_then(Value::as_str)
            && !matches!(policy, "Always" | "IfNotPresent" | "Never")
        {
            errs.unsupported(
                &format!("{at}.imagePullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
            );
        }
    }
}

/// Validates a PodSpec found at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Errors) {
    let mut seen = HashSet::new();
    match spec.get("containers").and_then(Value::as_array) {
        Some(cs) if !cs.is_empty() => {
            validate_containers(cs, &format!("{path}.containers"), errs, &mut seen)
        }
        _ => errs.required(&format!("{path}.containers"), ""),
    }
    if let Some(init) = spec.get("initContainers").and_then(Value::as_array) {
        validate_containers(init, &format!("{path}.initContainers"), errs, &mut seen);
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        errs.unsupported(
            &format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(policy) = spec.get("dnsPolicy").and_then(Value::as_str)
        && !matches!(
            policy,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        errs.unsupported(
            &format!("{path}.dnsPolicy"),
            policy,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        );
    }
    let mut volumes = HashSet::new();
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match v.get("name").and_then(Value::as_str) {
            Some(n) if !volumes.insert(n.to_string()) => {
                errs.duplicate(&format!("{path}.volumes[{i}].name"), n)
            }
            Some(n) => {
                for p in names::dns1123_label(n) {
                    errs.invalid(&format!("{path}.volumes[{i}].name"), &json!(n), &p);
                }
            }
            None => errs.required(&format!("{path}.volumes[{i}].name"), ""),
        }
    }
    if let Some(g) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && g < 0
    {
        errs.invalid(
            &format!("{path}.terminationGracePeriodSeconds"),
            &json!(g),
            "must be greater than or equal to 0",
        );
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Pod specs are immutable except images, activeDeadlineSeconds, added
/// tolerations and removed scheduling gates.
pub fn validate_pod_update(old: &Value, new: &Value, errs: &mut Errors) {
    // A mirror pod stays one, and a pod never becomes one (upstream's
    // ValidatePodSpecificAnnotationUpdates).
    const MIRROR: &str = "kubernetes.io/config.mirror";
    let mirror = |pod: &Value| pod["metadata"]["annotations"].get(MIRROR).cloned();
    match (mirror(old), mirror(new)) {
        (None, Some(_)) => errs.forbidden(
            &format!("metadata.annotations[{MIRROR}]"),
            "field is forbidden to add",
        ),
        (Some(o), n) if n.as_ref() != Some(&o) => errs.forbidden(
            &format!("metadata.annotations[{MIRROR}]"),
            "field is immutable",
        ),
        _ => {}
    }
    let (Some(old_spec), Some(new_spec)) = (old.get("spec"), new.get("spec")) else {
        return;
    };
    let mut allowed = old_spec.clone();
    for list in ["containers", "initContainers"] {
        let new_list = new_spec.get(list).and_then(Value::as_array);
        if let (Some(a), Some(n)) = (
            allowed.get_mut(list).and_then(Value::as_array_mut),
            new_list,
        ) {
            for (c, nc) in a.iter_mut().zip(n) {
                if let Some(img) = nc.get("image") {
                    c["image"] = img.clone();
                }
            }
        }
    }
    for field in [
        "activeDeadlineSeconds",
        "tolerations",
        "schedulingGates",
        "terminationGracePeriodSeconds",
    ] {
        match new_spec.get(field) {
            Some(v) => allowed[field] = v.clone(),
            None => {
                if let Some(m) = allowed.as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    if allowed.get("nodeName").is_none()
        && let Some(n) = new_spec.get("nodeName")
    {
        allowed["nodeName"] = n.clone();
    }
    if &allowed != new_spec {
        errs.forbidden("spec", POD_UPDATE_MSG);
    }
}

/// A pods/binding Binding: its target is a Node (`kind` "Node" or empty)
/// named by a DNS subdomain (upstream's `ValidatePodBinding`, plus the
/// node-name rule Node objects obey).
pub fn validate_binding(binding: &Value, errs: &mut Errors) {
    let target = binding.get("target").unwrap_or(&Value::Null);
    if let Some(kind) = target
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && *k != "Node")
    {
        errs.unsupported("target.kind", kind, &["Node", "<empty>"]);
    }
    match target
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        None => errs.required("target.name", ""),
        Some(name) => {
            for p in names::dns1123_subdomain(name) {
                errs.invalid("target.name", &json!(name), &p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_rules() {
        let mut errs = Errors::default();
        validate_pod_spec(
            &json!({"containers": [{"name": "a", "image": ""}, {"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}], "restartPolicy": "Sometimes"}),
            "spec",
            &mut errs,
        );
        let fields: Vec<&str> = errs.0.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.containers[0].image",
                "spec.containers[1].name",
                "spec.containers[1].ports[0].containerPort",
                "spec.restartPolicy"
            ]
        );
        let mut errs = Errors::default();
        validate_pod_spec(&json!({}), "spec", &mut errs);
        assert_eq!(errs.0[0].field, "spec.containers");
    }

    #[test]
    fn pod_updates_may_change_images_only() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}], "restartPolicy": "Always"}});
        let mut errs = Errors::default();
        validate_pod_update(
            &old,
            &json!({"spec": {"containers": [{"name": "a", "image": "x:2"}], "restartPolicy": "Always"}}),
            &mut errs,
        );
        assert!(errs.0.is_empty());
        validate_pod_update(
            &old,
            &json!({"spec": {"containers": [{"name": "a", "image": "x:1"}], "restartPolicy": "Never"}}),
            &mut errs,
        );
        assert_eq!(errs.0[0].field, "spec");
        assert!(
            errs.0[0]
                .message
                .starts_with("Forbidden: pod updates may not change fields")
        );
    }
}
