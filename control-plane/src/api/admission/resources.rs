//! Resource lists (`{cpu: 500m, memory: 64Mi}`) of containers and pods as
//! exact quantities, and a pod's effective requests and limits with
//! Kubernetes' init-container and sidecar rules. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::quantity::Quantity;

/// A resource list by name, sorted (as Kubernetes prints them).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a `{name: quantity}` map; malformed entries are skipped (validation reports them).
pub fn list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Quantity::from_value(q)?)))
        .collect()
}

/// `a + b`, key by key.
pub fn add(mut a: ResourceList, b: &ResourceList) -> ResourceList {
    for (k, v) in b {
        let sum = a.get(k).map_or(*v, |cur| cur.add(*v));
        a.insert(k.clone(), sum);
    }
    a
}

/// `max(a, b)`, key by key.
pub fn max(mut a: ResourceList, b: &ResourceList) -> ResourceList {
    for (k, v) in b {
        let m = a.get(k).map_or(*v, |cur| (*cur).max(*v));
        a.insert(k.clone(), m);
    }
    a
}

/// The containers of a pod spec under `field` (`containers`, `initContainers`).
pub fn containers<'a>(spec: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `resources.requests` (which = "requests") or `resources.limits` of a container.
pub fn of_container(c: &Value, which: &str) -> ResourceList {
    list(c.pointer(&format!("/resources/{which}")))
}

fn is_sidecar(c: &Value) -> bool {
    c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// A pod's effective requests or limits: the sum of its containers and
/// sidecars, or the largest init container (plus the sidecars started
/// before it) when that is larger; `overhead` adds `spec.overhead`.
pub fn of_pod(spec: &Value, which: &str, overhead: bool) -> ResourceList {
    let mut total = containers(spec, "containers")
        .map(|c| of_container(c, which))
        .fold(ResourceList::new(), |acc, r| add(acc, &r));
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in containers(spec, "initContainers") {
        let own = of_container(c, which);
        let running = if is_sidecar(c) {
            total = add(total, &own);
            sidecars = add(sidecars, &own);
            sidecars.clone()
        } else {
            add(own, &sidecars)
        };
        init_peak = max(init_peak, &running);
    }
    let mut out = max(total, &init_peak);
    if overhead {
        out = add(out, &list(spec.get("overhead")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn pod_requests_follow_init_and_sidecar_rules() {
        let spec = json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "big", "resources": {"requests": {"cpu": "1"}}},
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"memory": "32Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        });
        let r = of_pod(&spec, "requests", false);
        assert_eq!(r["cpu"], q("1"));
        assert_eq!(r["memory"], q("96Mi"));
        assert_eq!(of_pod(&spec, "requests", true)["cpu"], q("1010m"));
        assert!(of_pod(&spec, "limits", false).is_empty());
    }

    #[test]
    fn lists_skip_malformed_quantities() {
        let l = list(Some(&json!({"cpu": "1", "memory": "lots", "pods": 3})));
        assert_eq!(l.len(), 2);
        assert_eq!(l["pods"], Quantity::count(3));
    }
}
