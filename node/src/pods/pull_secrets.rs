//! Registry credentials for a pod's images from its `imagePullSecrets`:
//! Secrets of type `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`,
//! `{"auths": {registry: {...}}}`) or `kubernetes.io/dockercfg`
//! (`.dockercfg`, the same map without `auths`), as `kubectl create secret
//! docker-registry` writes them. An entry gives `username`/`password` or
//! `auth` (base64 of `user:password`); its key may be a host, a host:port,
//! or a URL (`https://index.docker.io/v1/`). The first secret, in the pod's
//! order, with an entry for the image's registry wins, as in kubelet.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::Value;

use super::source::ObjectSource;

/// The registry host (and port) of an OCI reference; None for paths and URLs.
pub fn registry_of(image: &str) -> Option<&str> {
    if image.contains("://") || image.starts_with('/') || image.starts_with('.') {
        return None;
    }
    let (first, _) = image.split_once('/')?;
    // Docker's rule: the first component is a registry when it looks like a host.
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// The host[:port] a docker config key names.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Username and password of one docker config entry.
fn entry_credentials(entry: &Value) -> Option<(String, String)> {
    if let (Some(user), Some(pass)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some((user.to_string(), pass.to_string()));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The credentials one Secret holds for `registry`.
pub fn secret_credentials(secret: &Secret, registry: &str) -> Option<(String, String)> {
    let data = secret.data.as_ref()?;
    let auths: Value = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<Value>(&json.0).ok()?["auths"].clone()
    } else {
        serde_json::from_slice(&data.get(".dockercfg")?.0).ok()?
    };
    auths
        .as_object()?
        .iter()
        .find(|(key, _)| key_host(key) == registry)
        .and_then(|(_, entry)| entry_credentials(entry))
}

/// The credentials for `image` from the pod's pull secrets, if any names its registry.
pub fn credentials_for(
    pod: &Pod,
    image: &str,
    objects: &dyn ObjectSource,
) -> Option<(String, String)> {
    let registry = registry_of(image)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    pod.spec
        .as_ref()?
        .image_pull_secrets
        .as_deref()?
        .iter()
        .filter_map(|r| objects.secret(namespace, &r.name))
        .find_map(|s| secret_credentials(&s, registry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(key: &str, json: Value) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(serde_json::to_vec(&json).expect("json")),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn finds_the_registry_of_a_reference() {
        assert_eq!(
            registry_of("127.0.0.1:5000/wasm/hello:v1"),
            Some("127.0.0.1:5000")
        );
        assert_eq!(registry_of("ghcr.io/o/app@sha256:ab"), Some("ghcr.io"));
        assert_eq!(registry_of("localhost/app"), Some("localhost"));
        assert_eq!(registry_of("library/app:1"), None);
        assert_eq!(registry_of("samples/wasm/hello.wasm"), None);
        assert_eq!(registry_of("https://example.com/a.wasm"), None);
    }

    #[test]
    fn reads_dockerconfigjson_and_dockercfg_entries() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pw2");
        let json = secret(
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "https://ghcr.io/v1/": {"username": "amy", "password": "pw1"},
                "127.0.0.1:5000": {"auth": auth},
            }}),
        );
        assert_eq!(
            secret_credentials(&json, "ghcr.io"),
            Some(("amy".into(), "pw1".into()))
        );
        assert_eq!(
            secret_credentials(&json, "127.0.0.1:5000"),
            Some(("bob".into(), "pw2".into()))
        );
        assert_eq!(secret_credentials(&json, "quay.io"), None);
        let cfg = secret(
            ".dockercfg",
            serde_json::json!({"quay.io": {"username": "cy", "password": "pw3"}}),
        );
        assert_eq!(
            secret_credentials(&cfg, "quay.io"),
            Some(("cy".into(), "pw3".into()))
        );
    }
}
