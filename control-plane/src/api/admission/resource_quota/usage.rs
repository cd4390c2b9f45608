//! What an object counts against a ResourceQuota, as upstream's quota
//! evaluators compute it: `count/<resource>[.<group>]` for every object;
//! `pods` and the compute resources (cpu, memory, requests.*, limits.*,
//! ephemeral storage, hugepages, extended resources) for pods that have not
//! finished; `services`, `services.loadbalancers`, `services.nodeports`;
//! `persistentvolumeclaims` and `requests.storage` (also per storage
//! class); `configmaps`, `secrets`, `resourcequotas`. Plus quota scopes and
//! the containers a compute quota requires requests or limits of. Pure.

use serde_json::Value;

use super::super::super::registry::ResourceInfo;
use super::super::quantity::Quantity;
use super::super::resources::{self, ResourceList};

/// Object-count names predating `count/*` that mean "objects of this kind".
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "resourcequotas",
    "replicationcontrollers",
];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// `count/pods`, `count/deployments.apps`.
pub fn count_name(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        format!("count/{}", info.plural)
    } else {
        format!("count/{}.{}", info.plural, info.group)
    }
}

/// The (group, plural) a quota resource name is about, e.g. `requests.cpu` → pods.
pub fn resource_of(name: &str) -> Option<(String, String)> {
    let core = |p: &str| Some((String::new(), p.to_string()));
    if let Some(rest) = name.strip_prefix("count/") {
        return match rest.split_once('.') {
            Some((plural, group)) => Some((group.to_string(), plural.to_string())),
            None => core(rest),
        };
    }
    if LEGACY_COUNTS.contains(&name) {
        return core(name);
    }
    if name.starts_with("services") {
        return core("services");
    }
    if name == "persistentvolumeclaims"
        || name == "requests.storage"
        || name.contains(STORAGE_CLASS_SUFFIX)
    {
        return core("persistentvolumeclaims");
    }
    let compute = ["pods", "cpu", "memory", "ephemeral-storage"].contains(&name)
        || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-");
    compute.then(|| core("pods")).flatten()
}

/// Whether a quota name can only be counted from the objects' contents (not just their number).
pub fn needs_contents(name: &str) -> bool {
    !name.starts_with("count/") && !LEGACY_COUNTS.contains(&name)
}

/// Whether a pod still counts as compute usage: not finished, not stuck past its deletion grace.
pub fn pod_counts(pod: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let deletion = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    match (deletion, grace) {
        (Some(at), Some(grace)) => {
            now <= at.with_timezone(&chrono::Utc) + chrono::Duration::seconds(grace)
        }
        _ => true,
    }
}

fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

fn pod_usage(pod: &Value, out: &mut ResourceList) {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let requests = resources::of_pod(spec, "requests", true);
    let limits = resources::of_pod(spec, "limits", true);
    out.insert("pods".into(), Quantity::count(1));
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(res) {
            out.insert(res.into(), *q);
            out.insert(format!("requests.{res}"), *q);
        }
        if let Some(q) = limits.get(res) {
            out.insert(format!("limits.{res}"), *q);
        }
    }
    for (res, q) in &requests {
        if res.starts_with("hugepages-") {
            out.insert(res.clone(), *q);
            out.insert(format!("requests.{res}"), *q);
        } else if is_extended(res) {
            out.insert(format!("requests.{res}"), *q);
        }
    }
}

fn service_usage(svc: &Value, out: &mut ResourceList) {
    out.insert("services".into(), Quantity::count(1));
    let kind = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as i64;
    let (lb, node_ports) = match kind {
        "LoadBalancer" => (1, ports),
        "NodePort" => (0, ports),
        _ => (0, 0),
    };
    out.insert("services.loadbalancers".into(), Quantity::count(lb));
    out.insert("services.nodeports".into(), Quantity::count(node_ports));
}

fn claim_usage(pvc: &Value, out: &mut ResourceList) {
    out.insert("persistentvolumeclaims".into(), Quantity::count(1));
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .and_then(Quantity::from_value);
    if let Some(q) = storage {
        out.insert("requests.storage".into(), q);
    }
    if let Some(class) = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        let prefix = format!("{class}{STORAGE_CLASS_SUFFIX}");
        out.insert(
            format!("{prefix}persistentvolumeclaims"),
            Quantity::count(1),
        );
        if let Some(q) = storage {
            out.insert(format!("{prefix}requests.storage"), q);
        }
    }
}

/// Everything one object counts for.
pub fn object_usage(
    info: &ResourceInfo,
    obj: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(count_name(info), Quantity::count(1));
    if !info.group.is_empty() {
        return out;
    }
    match info.kind {
        "Pod" if pod_counts(obj, now) => pod_usage(obj, &mut out),
        "Service" => service_usage(obj, &mut out),
        "PersistentVolumeClaim" => claim_usage(obj, &mut out),
        _ if LEGACY_COUNTS.contains(&info.plural) => {
            out.insert(info.plural.to_string(), Quantity::count(1));
        }
        _ => {}
    }
    out
}

/// The scope requirements of a quota: (scopeName, operator, values).
fn scope_requirements(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        out.push((s("scopeName"), s("operator"), values));
    }
    out
}

/// Whether the quota has scopes (and so only covers some pods).
pub fn is_scoped(quota: &Value) -> bool {
    !scope_requirements(quota).is_empty()
}

fn best_effort(spec: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|f| {
        resources::containers(spec, f).all(|c| {
            resources::of_container(c, "requests").is_empty()
                && resources::of_container(c, "limits").is_empty()
        })
    })
}

/// Whether `obj` falls under the quota's scopes (unscoped quotas cover everything;
/// scoped ones only pods).
pub fn in_scope(quota: &Value, info: &ResourceInfo, obj: &Value) -> bool {
    let reqs = scope_requirements(quota);
    if reqs.is_empty() {
        return true;
    }
    if !(info.group.is_empty() && info.kind == "Pod") {
        return false;
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let terminating = spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    reqs.iter().all(|(scope, op, values)| match scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort(spec),
        "NotBestEffort" => !best_effort(spec),
        "PriorityClass" => {
            let class = spec
                .get("priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            match op.as_str() {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        _ => false,
    })
}

/// The compute resources a quota requires every container to state:
/// `must specify limits.cpu for: c; requests.cpu for: c`, or None.
pub fn missing_requirements(hard: &ResourceList, pod: &Value) -> Option<String> {
    const VALIDATED: &[&str] = &[
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: Vec<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| VALIDATED.contains(k))
        .collect();
    if required.is_empty() {
        return None;
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut missing: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for field in ["containers", "initContainers"] {
        for c in resources::containers(spec, field) {
            let req = resources::of_container(c, "requests");
            let lim = resources::of_container(c, "limits");
            for name in &required {
                let stated = match *name {
                    "cpu" | "memory" => req.contains_key(*name),
                    n => match n.split_once('.') {
                        Some(("requests", r)) => req.contains_key(r),
                        Some((_, r)) => lim.contains_key(r),
                        None => true,
                    },
                };
                if !stated {
                    let names = missing.entry(name).or_default();
                    let cname = c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if !names.contains(&cname) {
                        names.push(cname);
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(res, mut names)| {
            names.sort();
            format!("{res} for: {}", names.join(","))
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn pods_count_compute_until_they_finish() {
        let pods = lookup("", "v1", "pods").unwrap();
        let now = chrono::Utc::now();
        let pod = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "example.com/gpu": "1"}, "limits": {"cpu": "500m"}}}]},
            "status": {"phase": "Running"}});
        let u = object_usage(pods, &pod, now);
        assert_eq!(u["pods"], Quantity::count(1));
        assert_eq!(u["count/pods"], Quantity::count(1));
        assert_eq!(u["requests.cpu"], q("250m"));
        assert_eq!(u["cpu"], q("250m"));
        assert_eq!(u["limits.cpu"], q("500m"));
        assert_eq!(u["requests.memory"], q("64Mi"));
        assert_eq!(u["requests.example.com/gpu"], q("1"));
        assert!(!u.contains_key("limits.memory"));
        let mut done = pod.clone();
        done["status"]["phase"] = json!("Succeeded");
        let u = object_usage(pods, &done, now);
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/pods"]);
        let stuck = json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30}});
        assert!(!pod_counts(&stuck, now));
    }

    #[test]
    fn other_kinds_and_names() {
        let now = chrono::Utc::now();
        let svc = lookup("", "v1", "services").unwrap();
        let u = object_usage(
            svc,
            &json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}}),
            now,
        );
        assert_eq!(
            (u["services"], u["services.nodeports"]),
            (Quantity::count(1), Quantity::count(2))
        );
        let pvcs = lookup("", "v1", "persistentvolumeclaims").unwrap();
        let u = object_usage(
            pvcs,
            &json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}}),
            now,
        );
        assert_eq!(u["requests.storage"], q("5Gi"));
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/requests.storage"],
            q("5Gi")
        );
        let deploys = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(object_usage(deploys, &json!({}), now).len(), 1);
        assert_eq!(count_name(deploys), "count/deployments.apps");
        assert_eq!(
            resource_of("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            resource_of("limits.memory"),
            Some((String::new(), "pods".into()))
        );
        assert_eq!(
            resource_of("configmaps"),
            Some((String::new(), "configmaps".into()))
        );
        assert_eq!(resource_of("bogus"), None);
        assert!(!needs_contents("count/pods") && needs_contents("pods"));
    }

    #[test]
    fn scopes_and_requirements() {
        let pods = lookup("", "v1", "pods").unwrap();
        let cms = lookup("", "v1", "configmaps").unwrap();
        let best = json!({"spec": {"containers": [{"name": "c"}]}});
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(in_scope(&quota, pods, &best));
        assert!(!in_scope(&quota, cms, &json!({})));
        assert!(in_scope(&json!({"spec": {}}), cms, &json!({})));
        let pc = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(!in_scope(&pc, pods, &best));
        let hard = resources::list(Some(
            &json!({"requests.cpu": "1", "limits.memory": "1Gi", "pods": "3"}),
        ));
        assert_eq!(
            missing_requirements(&hard, &best).unwrap(),
            "must specify limits.memory for: c; requests.cpu for: c"
        );
        let stated = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}]}});
        assert_eq!(missing_requirements(&hard, &stated), None);
    }
}
