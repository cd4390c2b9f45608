//! Where pod workers read ConfigMaps and Secrets from (the node's watch
//! caches in production, plain maps in tests), and the downward API's field
//! paths, shared by env vars and downwardAPI volumes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

/// Read access to the ConfigMaps and Secrets pods reference.
pub trait ObjectSource: Send + Sync {
    fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>>;
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>>;
}

/// A ConfigMap's keys and bytes (`data` and `binaryData`).
pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

/// A Secret's keys and bytes (`data`, and `stringData` if a server left it).
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// The value of a downward API `fieldPath` for this pod.
pub fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<Option<String>> {
        let rest = path.strip_prefix(prefix)?;
        let key = rest
            .strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .or_else(|| rest.strip_prefix("[\"").and_then(|r| r.strip_suffix("\"]")));
        Some(match key {
            Some(k) => Some(map.and_then(|m| m.get(k)).cloned().unwrap_or_default()),
            None if rest.is_empty() => Some(format_map(map)),
            None => None,
        })
    };
    if let Some(v) = keyed("metadata.labels", meta.labels.as_ref()) {
        return v;
    }
    if let Some(v) = keyed("metadata.annotations", meta.annotations.as_ref()) {
        return v;
    }
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => Some(meta.namespace.clone().unwrap_or_else(|| "default".into())),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        _ => None,
    }
}

/// `key="value"` lines, as the downward API writes a whole label map.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A simple in-memory [`ObjectSource`] (tests, static pods).
#[derive(Default, Clone)]
pub struct MapSource {
    pub config_maps: BTreeMap<(String, String), Arc<ConfigMap>>,
    pub secrets: BTreeMap<(String, String), Arc<Secret>>,
}

impl ObjectSource for MapSource {
    fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn field_paths() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([
                    ("app".into(), "web".into()),
                    ("tier".into(), "x".into()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            field_value(&pod, "metadata.name", "", "").as_deref(),
            Some("p")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']", "", "").as_deref(),
            Some("web")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels", "", "").as_deref(),
            Some("app=\"web\"\ntier=\"x\"")
        );
        assert_eq!(
            field_value(&pod, "status.podIP", "10.42.0.2", "").as_deref(),
            Some("10.42.0.2")
        );
        assert_eq!(field_value(&pod, "spec.bogus", "", ""), None);
    }
}
