//! ServiceAccount: a new pod runs as `spec.serviceAccountName` (the
//! deprecated `serviceAccount`, else `default`), both fields set; a pod
//! naming a service account that does not exist is refused (403). The
//! `default` account is created per namespace by the ServiceAccount
//! controller shortly after the namespace, so a pod using it is admitted
//! even before it exists (upstream would retry instead).
//!
//! Unless `automountServiceAccountToken: false` on the pod (or, when the
//! pod does not say, on its account), the pod gets upstream's projected
//! volume `kube-api-access-<5 random>` — a bound ServiceAccount token
//! (`token`, 3607 s), the cluster CA from the `kube-root-ca.crt` ConfigMap
//! (`ca.crt`) and the namespace (`namespace`) — mounted read-only at
//! /var/run/secrets/kubernetes.io/serviceaccount in every container and
//! init container that has nothing mounted there. The node agent fetches
//! the token (`node/src/pods/tokens.rs`); the root CA publisher controller
//! keeps the ConfigMap in every namespace.
//!
//! A pod that names no `imagePullSecrets` gets its account's.
//!
//! Not done: the `kubernetes.io/enforce-mountable-secrets` check.

use serde_json::{Value, json};

use super::super::error::ApiError;
use super::{Attributes, Operation, reads};

const DEFAULT: &str = "default";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Where the token volume is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name, before its random suffix.
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// Sets the pod's service account fields; returns the account it runs as
/// (None for pods this plugin leaves alone).
fn assign(pod: &mut Value) -> Option<String> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
    {
        return None;
    }
    let spec = pod.get_mut("spec")?.as_object_mut()?;
    let named = |field: &str| {
        spec.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let name = named("serviceAccountName")
        .or_else(|| named("serviceAccount"))
        .unwrap_or_else(|| DEFAULT.to_string());
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    Some(name)
}

/// The refusal for a pod naming a missing account.
fn missing(ns: &str, name: &str) -> String {
    format!("error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found")
}

/// Whether the pod gets a token: the pod's `automountServiceAccountToken`
/// wins, then its account's, else yes.
fn automount(pod: &Value, account: Option<&Value>) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.and_then(|a| a.get("automountServiceAccountToken")?.as_bool()))
        .unwrap_or(true)
}

/// Upstream's `TokenVolumeSource`.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Mounts the token volume into every container and init container that
/// mounts nothing at the token path, adding the volume (named with
/// `suffix`) unless the pod already has one (upstream's
/// `mountServiceAccountToken`).
fn mount_token(pod: &mut Value, suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(String::from);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
                continue;
            }
            mounts.push(mount.clone());
            mounted = true;
        }
    }
    if mounted && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&name));
        }
    }
}

/// Admits a pod create.
pub async fn admit(attrs: &Attributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if !attrs.is_core("Pod") || attrs.operation != Operation::Create {
        return Ok(());
    }
    let (Some(name), Some(ns)) = (assign(obj), attrs.namespace) else {
        return Ok(());
    };
    let accounts = reads::core("serviceaccounts")?;
    let account = reads::get(attrs.store, accounts, Some(ns), &name).await?;
    if account.is_none() && name != DEFAULT {
        return Err(attrs.forbidden(missing(ns, &name)));
    }
    if let Some(account) = &account {
        inherit_pull_secrets(obj, &account.object);
    }
    if automount(obj, account.as_ref().map(|a| &a.object)) {
        mount_token(obj, &super::super::lifecycle::random_suffix());
    }
    Ok(())
}

/// A pod that names no imagePullSecrets gets its account's (upstream does the same).
fn inherit_pull_secrets(pod: &mut Value, account: &Value) {
    let has_own = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty());
    let Some(inherited) = account
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return;
    };
    if !has_own && let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("imagePullSecrets".into(), Value::Array(inherited.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_inherit_the_accounts_pull_secrets_unless_they_name_their_own() {
        let account = json!({"imagePullSecrets": [{"name": "regcred"}]});
        let mut pod = json!({"spec": {"containers": []}});
        inherit_pull_secrets(&mut pod, &account);
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}])
        );
        let mut own = json!({"spec": {"imagePullSecrets": [{"name": "mine"}]}});
        inherit_pull_secrets(&mut own, &account);
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    #[test]
    fn pods_get_the_default_account_unless_they_name_one() {
        let mut pod = json!({"spec": {"containers": []}});
        assert_eq!(assign(&mut pod).as_deref(), Some("default"));
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["serviceAccount"], "default");
        let mut named = json!({"spec": {"serviceAccount": "bot"}});
        assert_eq!(assign(&mut named).as_deref(), Some("bot"));
        assert_eq!(named["spec"]["serviceAccountName"], "bot");
        let mut mirror = json!({"metadata": {"annotations": {MIRROR_ANNOTATION: "x"}}, "spec": {}});
        assert_eq!(assign(&mut mirror), None);
        assert_eq!(assign(&mut json!({})), None);
        assert_eq!(
            missing("a", "bot"),
            "error looking up service account a/bot: serviceaccount \"bot\" not found"
        );
    }

    #[test]
    fn automount_prefers_the_pod_then_the_account() {
        let pod = |v: Value| json!({"spec": {"automountServiceAccountToken": v}});
        let sa = |v: bool| json!({"automountServiceAccountToken": v});
        assert!(automount(&json!({"spec": {}}), None));
        assert!(!automount(&json!({"spec": {}}), Some(&sa(false))));
        assert!(automount(&pod(json!(true)), Some(&sa(false))));
        assert!(!automount(&pod(json!(false)), Some(&sa(true))));
    }

    #[test]
    fn the_token_volume_is_mounted_everywhere_once() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [
                {"name": "a"},
                {"name": "b", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
        }});
        mount_token(&mut pod, "abcde");
        let spec = &pod["spec"];
        assert_eq!(
            spec["volumes"],
            json!([token_volume("kube-api-access-abcde")])
        );
        let sources = &spec["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(spec["volumes"][0]["projected"]["defaultMode"], 420);
        let mount = json!({"name": "kube-api-access-abcde", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1),
            "a container with its own mount there keeps it"
        );
        // Admitting again (or a pod that brings its own volume) adds nothing new.
        let before = pod.clone();
        mount_token(&mut pod, "zzzzz");
        assert_eq!(pod, before);
        // Nothing to mount into: no volume either.
        let mut own = json!({"spec": {"containers": [{"name": "b", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}]}});
        mount_token(&mut own, "abcde");
        assert!(own["spec"]["volumes"].is_null());
    }
}
