//! ServiceAccount: a new pod runs as `spec.serviceAccountName` (the
//! deprecated `serviceAccount`, else `default`), both fields set; a pod
//! naming a service account that does not exist is refused (403). The
//! `default` account is created per namespace by the ServiceAccount
//! controller shortly after the namespace, so a pod using it is admitted
//! even before it exists (upstream would retry instead).
//!
//! Not done: the projected `kube-api-access-*` token volume upstream mounts
//! at /var/run/secrets/kubernetes.io/serviceaccount — the node agent cannot
//! project `serviceAccountToken` sources yet — and the
//! `kubernetes.io/enforce-mountable-secrets` check.

use serde_json::{Value, json};

use super::super::error::ApiError;
use super::{Attributes, Operation, reads};

const DEFAULT: &str = "default";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

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

/// Admits a pod create.
pub async fn admit(attrs: &Attributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if !attrs.is_core("Pod") || attrs.operation != Operation::Create {
        return Ok(());
    }
    let (Some(name), Some(ns)) = (assign(obj), attrs.namespace) else {
        return Ok(());
    };
    if name == DEFAULT {
        return Ok(());
    }
    let accounts = reads::core("serviceaccounts")?;
    if reads::get(attrs.store, accounts, Some(ns), &name)
        .await?
        .is_none()
    {
        return Err(attrs.forbidden(missing(ns, &name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
