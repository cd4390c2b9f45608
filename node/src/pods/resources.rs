//! Resource quantities (`100m`, `64Mi`, `1.5`) read as numbers, container
//! limits, and the pod's QoS class.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity's value in base units (cores for cpu, bytes for memory).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(value * factor)
}

fn get(map: Option<&BTreeMap<String, Quantity>>, key: &str) -> Option<f64> {
    map.and_then(|m| m.get(key))
        .and_then(|q| parse_quantity(&q.0))
}

/// The container's memory limit in bytes.
pub fn memory_limit(c: &Container) -> Option<u64> {
    get(
        c.resources.as_ref().and_then(|r| r.limits.as_ref()),
        "memory",
    )
    .map(|v| v as u64)
}

/// The container's cpu limit in millicores.
pub fn cpu_limit_millis(c: &Container) -> Option<u32> {
    get(c.resources.as_ref().and_then(|r| r.limits.as_ref()), "cpu")
        .map(|v| (v * 1000.0).ceil() as u32)
}

/// A container resource for `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...), in base units.
pub fn container_resource(c: &Container, resource: &str) -> Option<f64> {
    let (kind, name) = resource.split_once('.')?;
    let r = c.resources.as_ref()?;
    match kind {
        "limits" => get(r.limits.as_ref(), name),
        "requests" => get(r.requests.as_ref(), name).or_else(|| get(r.limits.as_ref(), name)),
        _ => None,
    }
}

/// Kubernetes' QoS class: Guaranteed, Burstable or BestEffort.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.as_ref();
        let limits = r.and_then(|r| r.limits.as_ref());
        let requests = r.and_then(|r| r.requests.as_ref());
        for res in ["cpu", "memory"] {
            let l = get(limits, res);
            let q = get(requests, res).or(l);
            if l.is_some() || q.is_some() {
                any = true;
            }
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let map = |xs: &[(&str, &str)]| {
            (!xs.is_empty()).then(|| {
                xs.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: map(limits),
                requests: map(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(
            cpu_limit_millis(&container(&[("cpu", "100m")], &[])),
            Some(100)
        );
        assert_eq!(
            memory_limit(&container(&[("memory", "16Mi")], &[])),
            Some(16 << 20)
        );
    }

    #[test]
    fn qos_classes() {
        let spec = |c: Container| PodSpec {
            containers: vec![c],
            ..Default::default()
        };
        assert_eq!(qos_class(&spec(container(&[], &[]))), "BestEffort");
        assert_eq!(
            qos_class(&spec(container(&[("cpu", "1"), ("memory", "1Gi")], &[]))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(container(
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "500m")]
            ))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(container(&[], &[("memory", "1Gi")]))),
            "Burstable"
        );
    }
}
