//! LimitRanger: the namespace's LimitRanges give new pods' containers the
//! `default` limits and `defaultRequest` requests they lack (noted in the
//! `kubernetes.io/limit-ranger` annotation), then bound containers, pods
//! and PersistentVolumeClaims by `min`, `max` and `maxLimitRequestRatio`
//! (403 with upstream's messages, e.g. `maximum cpu usage per Container is
//! 2, but limit is 4`). Also the LimitRange defaulting the API applies.

use serde_json::{Map, Value, json};

use super::super::defaults::qos_class;
use super::super::error::ApiError;
use super::quantity::Quantity;
use super::resources::{self, ResourceList};
use super::{Attributes, Operation, reads};

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Kubernetes' LimitRangeItem defaulting for type Container: `default`
/// from `max`, `defaultRequest` from `default`, then from `min`.
pub fn default_limit_range(obj: &mut Value) {
    let Some(items) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        for (from, to) in [
            ("max", "default"),
            ("default", "defaultRequest"),
            ("min", "defaultRequest"),
        ] {
            let Some(source) = item.get(from).and_then(Value::as_object).cloned() else {
                continue;
            };
            if source.is_empty() {
                continue;
            }
            let target = item.entry(to).or_insert_with(|| json!({}));
            if let Some(target) = target.as_object_mut() {
                for (k, v) in source {
                    target.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// The limit items (defaulted) of the namespace's LimitRanges that apply to this request.
pub async fn load(attrs: &Attributes<'_>) -> Result<Vec<Value>, ApiError> {
    let applies = (attrs.is_core("Pod") && attrs.operation == Operation::Create)
        || (attrs.is_core("PersistentVolumeClaim") && attrs.operation != Operation::Delete);
    let Some(ns) = attrs.namespace.filter(|_| applies) else {
        return Ok(Vec::new());
    };
    let mut items = Vec::new();
    for mut range in reads::list(attrs.store, reads::core("limitranges")?, ns).await? {
        default_limit_range(&mut range);
        if let Some(Value::Array(limits)) = range.pointer_mut("/spec/limits").map(Value::take) {
            items.extend(limits);
        }
    }
    Ok(items)
}

fn of_type<'a>(items: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    items
        .iter()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(kind))
}

/// Sets missing limits and requests of one container; returns what it set.
fn merge(
    container: &mut Value,
    limits: &ResourceList,
    requests: &ResourceList,
) -> (Vec<String>, Vec<String>) {
    let Some(c) = container.as_object_mut() else {
        return (Vec::new(), Vec::new());
    };
    let res = c.entry("resources").or_insert_with(|| json!({}));
    let Some(res) = res.as_object_mut() else {
        return (Vec::new(), Vec::new());
    };
    let mut set = |which: &str, defaults: &ResourceList| -> Vec<String> {
        let target = res.entry(which).or_insert_with(|| json!({}));
        let Some(target) = target.as_object_mut() else {
            return Vec::new();
        };
        let mut names = Vec::new();
        for (name, value) in defaults {
            if !target.contains_key(name) {
                target.insert(name.clone(), json!(value.to_string()));
                names.push(name.clone());
            }
        }
        names
    };
    let set_limits = set("limits", limits);
    let set_requests = set("requests", requests);
    (set_requests, set_limits)
}

/// Applies Container defaults to a pod; returns the annotation text, if anything was set.
fn apply_defaults(items: &[Value], pod: &mut Value) -> Option<String> {
    let mut limits = ResourceList::new();
    let mut requests = ResourceList::new();
    for item in of_type(items, "Container") {
        for (k, v) in resources::list(item.get("default")) {
            limits.entry(k).or_insert(v);
        }
        for (k, v) in resources::list(item.get("defaultRequest")) {
            requests.entry(k).or_insert(v);
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return None;
    }
    let mut notes = Vec::new();
    for (field, label) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let list = pod
            .pointer_mut(&format!("/spec/{field}"))
            .and_then(Value::as_array_mut);
        for c in list.into_iter().flatten() {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let (set_requests, set_limits) = merge(c, &limits, &requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {label} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {label} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    (!notes.is_empty()).then(|| format!("LimitRanger plugin set: {}", notes.join("; ")))
}

/// Applies the defaults to a new pod (and recomputes its QoS class).
pub fn mutate(attrs: &Attributes<'_>, items: &[Value], obj: &mut Value) {
    if !attrs.is_core("Pod") || items.is_empty() {
        return;
    }
    let Some(note) = apply_defaults(items, obj) else {
        return;
    };
    let annotations = super::super::meta::metadata_mut(obj)
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(ANNOTATION.into(), json!(note));
    }
    let qos = obj.get("spec").map(qos_class).unwrap_or("BestEffort");
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("qosClass".into(), json!(qos));
    }
}

fn min_constraint(
    kind: &str,
    res: &str,
    min: Quantity,
    req: Option<Quantity>,
    lim: Option<Quantity>,
) -> Option<String> {
    match (req, lim) {
        (None, _) => Some(format!(
            "minimum {res} usage per {kind} is {min}.  No request is specified"
        )),
        (Some(r), _) if r < min => Some(format!(
            "minimum {res} usage per {kind} is {min}, but request is {r}"
        )),
        (_, Some(l)) if l < min => Some(format!(
            "minimum {res} usage per {kind} is {min}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    max: Quantity,
    req: Option<Quantity>,
    lim: Option<Quantity>,
) -> Option<String> {
    match (req, lim) {
        (_, None) => Some(format!(
            "maximum {res} usage per {kind} is {max}.  No limit is specified"
        )),
        (_, Some(l)) if l > max => Some(format!(
            "maximum {res} usage per {kind} is {max}, but limit is {l}"
        )),
        (Some(r), _) if r > max => Some(format!(
            "maximum {res} usage per {kind} is {max}, but request is {r}"
        )),
        _ => None,
    }
}

fn max_request(kind: &str, res: &str, max: Quantity, req: Option<Quantity>) -> Option<String> {
    match req {
        None => Some(format!(
            "maximum {res} usage per {kind} is {max}.  No request is specified"
        )),
        Some(r) if r > max => Some(format!(
            "maximum {res} usage per {kind} is {max}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    ratio: Quantity,
    req: Option<Quantity>,
    lim: Option<Quantity>,
) -> Option<String> {
    let req = req.filter(|r| !r.is_zero());
    let lim = lim.filter(|l| !l.is_zero());
    match (req, lim) {
        (None, _) => Some(format!(
            "{res} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"
        )),
        (_, None) => Some(format!(
            "{res} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"
        )),
        (Some(r), Some(l)) => {
            let observed = l.ratio(&r);
            (observed > ratio.ratio(&Quantity::count(1)))
                .then(|| format!("{res} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}"))
        }
    }
}

/// min/max/ratio of one item against one set of requests and limits.
fn check(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errs: &mut Vec<String>,
) {
    for (res, min) in resources::list(item.get("min")) {
        errs.extend(min_constraint(
            kind,
            &res,
            min,
            requests.get(&res).copied(),
            limits.get(&res).copied(),
        ));
    }
    for (res, max) in resources::list(item.get("max")) {
        errs.extend(max_constraint(
            kind,
            &res,
            max,
            requests.get(&res).copied(),
            limits.get(&res).copied(),
        ));
    }
    for (res, ratio) in resources::list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(
            kind,
            &res,
            ratio,
            requests.get(&res).copied(),
            limits.get(&res).copied(),
        ));
    }
}

/// Every violation of `items` by a pod.
fn pod_violations(items: &[Value], pod: &Value) -> Vec<String> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for field in ["containers", "initContainers"] {
                    for c in resources::containers(spec, field) {
                        let req = resources::of_container(c, "requests");
                        let lim = resources::of_container(c, "limits");
                        check(item, "Container", &req, &lim, &mut errs);
                    }
                }
            }
            Some("Pod") => {
                let req = resources::of_pod(spec, "requests", false);
                let lim = resources::of_pod(spec, "limits", false);
                check(item, "Pod", &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    errs
}

/// Every violation of `items` by a PersistentVolumeClaim.
fn claim_violations(items: &[Value], pvc: &Value) -> Vec<String> {
    let requests = resources::list(pvc.pointer("/spec/resources/requests"));
    let mut errs = Vec::new();
    for item in of_type(items, "PersistentVolumeClaim") {
        for (res, min) in resources::list(item.get("min")) {
            errs.extend(min_constraint(
                "PersistentVolumeClaim",
                &res,
                min,
                requests.get(&res).copied(),
                None,
            ));
        }
        for (res, max) in resources::list(item.get("max")) {
            errs.extend(max_request(
                "PersistentVolumeClaim",
                &res,
                max,
                requests.get(&res).copied(),
            ));
        }
    }
    errs
}

/// Errors joined as apimachinery's aggregate prints them (`a` or `[a, b]`, deduplicated).
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// Refuses pods and claims outside the namespace's limits.
pub fn validate(attrs: &Attributes<'_>, items: &[Value], obj: &Value) -> Result<(), ApiError> {
    if items.is_empty() {
        return Ok(());
    }
    let errs = if attrs.is_core("Pod") {
        pod_violations(items, obj)
    } else {
        claim_violations(items, obj)
    };
    match aggregate(errs) {
        Some(reason) => Err(attrs.forbidden(reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Vec<Value> {
        let mut lr = json!({"spec": {"limits": limits}});
        default_limit_range(&mut lr);
        lr["spec"]["limits"].as_array().unwrap().clone()
    }

    #[test]
    fn limit_range_defaulting() {
        let items =
            range(json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "8Mi"}}]));
        assert_eq!(items[0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            items[0]["defaultRequest"],
            json!({"cpu": "2", "memory": "8Mi"})
        );
    }

    #[test]
    fn defaults_fill_only_missing_values() {
        let items = range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut pod = json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
        ]}});
        let note = apply_defaults(&items, &mut pod).unwrap();
        let a = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(a["limits"], json!({"cpu": "500m", "memory": "128Mi"}));
        assert_eq!(a["requests"], json!({"cpu": "100m", "memory": "128Mi"}));
        let b = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(b["limits"], json!({"cpu": "1", "memory": "128Mi"}));
        assert_eq!(
            note,
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; \
             memory request for container b; memory limit for container b"
        );
        assert_eq!(qos_class(&pod["spec"]), "Burstable");
    }

    #[test]
    fn min_max_and_ratio_messages() {
        let items = range(
            json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"}, "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let pod = |req: &str, lim: &str| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": req}, "limits": {"cpu": lim}}}]}});
        assert_eq!(
            aggregate(pod_violations(&items, &pod("3", "4"))).unwrap(),
            "maximum cpu usage per Container is 2, but limit is 4"
        );
        assert_eq!(
            aggregate(pod_violations(&items, &pod("50m", "3"))).unwrap(),
            "[minimum cpu usage per Container is 100m, but request is 50m, maximum cpu usage per Container is 2, \
             but limit is 3, cpu max limit to request ratio per Container is 2, but provided ratio is 60.000000]"
        );
        assert_eq!(
            aggregate(pod_violations(&items, &pod("50m", "100m"))).unwrap(),
            "minimum cpu usage per Container is 100m, but request is 50m"
        );
        assert_eq!(
            aggregate(pod_violations(&items, &pod("200m", "1"))).unwrap(),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"
        );
        assert!(pod_violations(&items, &pod("1", "2")).is_empty());
        let bare = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            pod_violations(&items, &bare)[0],
            "minimum cpu usage per Container is 100m.  No request is specified"
        );
    }

    #[test]
    fn pod_and_claim_limits() {
        let items = range(json!([
            {"type": "Pod", "max": {"memory": "1Gi"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}, "min": {"storage": "1Gi"}},
        ]));
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "768Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}}},
        ]}});
        assert_eq!(
            pod_violations(&items, &pod),
            vec!["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]
        );
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}});
        assert_eq!(
            claim_violations(&items, &pvc),
            vec!["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
    }
}
