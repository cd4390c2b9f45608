//! Conversion between served versions and the storage version for kinds
//! that share storage: `events.k8s.io/v1` Events are stored as core v1
//! Events, `autoscaling/v1` HorizontalPodAutoscalers as `autoscaling/v2`.
//! Every other kind is stored exactly as served.

use serde_json::{Map, Value, json};

use super::registry::ResourceInfo;

/// The (apiVersion, kind) objects of this resource are stored as.
fn storage_version(info: &ResourceInfo) -> (&'static str, &'static str) {
    match (info.group, info.kind) {
        ("events.k8s.io", "Event") => ("v1", "Event"),
        ("autoscaling", "HorizontalPodAutoscaler") => ("autoscaling/v2", "HorizontalPodAutoscaler"),
        _ => ("", ""),
    }
}

/// Converts an object of the served version into its storage version.
pub fn to_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    match (info.group, info.version, info.kind) {
        ("events.k8s.io", _, "Event") => obj = rename_fields(obj, EVENT_FIELDS, false),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => hpa_v1_to_v2(&mut obj),
        _ => return set_type(obj, &info.api_version(), info.kind),
    }
    let (api_version, kind) = storage_version(info);
    set_type(obj, api_version, kind)
}

/// Whether `info`'s objects are stored as they are served (only their
/// apiVersion and kind set), so a written object is what a read decodes.
pub fn is_stored_as_served(info: &ResourceInfo) -> bool {
    !matches!(
        (info.group, info.version, info.kind),
        ("events.k8s.io", _, "Event") | ("autoscaling", "v1", "HorizontalPodAutoscaler")
    )
}

/// Converts a stored object into the served version of `info`.
pub fn from_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    match (info.group, info.version, info.kind) {
        ("events.k8s.io", _, "Event") => obj = rename_fields(obj, EVENT_FIELDS, true),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => hpa_v2_to_v1(&mut obj),
        _ => {}
    }
    set_type(obj, &info.api_version(), info.kind)
}

fn set_type(mut obj: Value, api_version: &str, kind: &str) -> Value {
    if let Some(map) = obj.as_object_mut() {
        // apiVersion and kind first, as Kubernetes prints them.
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(api_version));
        out.insert("kind".into(), json!(kind));
        for (k, v) in std::mem::take(map) {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, v);
            }
        }
        *map = out;
    }
    obj
}

/// (core v1 field, events.k8s.io/v1 field).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("count", "deprecatedCount"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("source", "deprecatedSource"),
    ("related", "related"),
    ("reportingComponent", "reportingController"),
];

/// Renames top-level fields: core → events.k8s.io when `to_new`, else back.
fn rename_fields(mut obj: Value, fields: &[(&str, &str)], to_new: bool) -> Value {
    if let Some(map) = obj.as_object_mut() {
        for (core, new) in fields {
            let (from, to) = if to_new { (core, new) } else { (new, core) };
            if from != to
                && let Some(v) = map.remove(*from)
            {
                map.insert(to.to_string(), v);
            }
        }
    }
    obj
}

fn hpa_v1_to_v2(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(target) = spec.remove("targetCPUUtilizationPercentage") {
        spec.insert(
            "metrics".into(),
            json!([{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": target } } }]),
        );
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(current) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
                "currentMetrics".into(),
                json!([{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": current } } }]),
            );
    }
}

fn hpa_v2_to_v1(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(metrics) = spec.remove("metrics") {
            let cpu = metrics
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["resource"]["name"] == "cpu");
            if let Some(u) = cpu.and_then(|m| m["resource"]["target"].get("averageUtilization")) {
                spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
            }
        }
        spec.remove("behavior");
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        if let Some(metrics) = status.remove("currentMetrics") {
            let cpu = metrics
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["resource"]["name"] == "cpu");
            if let Some(u) = cpu.and_then(|m| m["resource"]["current"].get("averageUtilization")) {
                status.insert("currentCPUUtilizationPercentage".into(), u.clone());
            }
        }
        status.remove("conditions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;

    #[test]
    fn events_round_trip_between_groups() {
        let info = lookup("events.k8s.io", "v1", "events").unwrap();
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "p"}, "note": "hi", "reason": "Started"});
        let stored = to_storage(info, new);
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "hi");
        let back = from_storage(info, stored);
        assert_eq!(back["note"], "hi");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }

    #[test]
    fn hpa_v1_cpu_target_maps_to_v2_metrics() {
        let v1 = lookup("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let stored = to_storage(v1, obj);
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        let back = from_storage(v1, stored);
        assert_eq!(back["spec"]["targetCPUUtilizationPercentage"], 50);
    }
}
