//! NamespaceLifecycle: objects can only be written into a namespace that
//! exists (404 `namespaces "x" not found`), nothing new is created in a
//! namespace being terminated (403), and the `default`, `kube-system` and
//! `kube-public` namespaces cannot be deleted (403). Deletes of other
//! objects are always allowed.

use std::sync::Arc;

use serde_json::Value;

use super::super::decoded::DecodedObject;
use super::super::error::ApiError;
use super::{Attributes, Operation, reads};

/// Namespaces that may not be deleted.
const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Whether a namespace object is being terminated.
fn terminating(ns: &Value) -> bool {
    ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        || super::super::meta::is_deleting(ns)
}

/// The reason a create into `ns` is refused, when it is being terminated.
fn refuse_create(ns_name: &str, ns: &Value) -> Option<String> {
    terminating(ns).then(|| {
        format!(
            "unable to create new content in namespace {ns_name} because it is being terminated"
        )
    })
}

/// Admits a create or update; returns the object's namespace (for later plugins).
pub async fn admit(attrs: &Attributes<'_>) -> Result<Option<Arc<DecodedObject>>, ApiError> {
    let Some(ns_name) = attrs.namespace.filter(|_| attrs.info.namespaced) else {
        return Ok(None);
    };
    let found = reads::get(attrs.store, reads::core("namespaces")?, None, ns_name).await?;
    let Some(ns) = found else {
        return Err(ApiError::NotFound {
            group: String::new(),
            kind: "namespaces".into(),
            name: ns_name.into(),
        });
    };
    if attrs.operation == Operation::Create
        && let Some(reason) = refuse_create(ns_name, &ns.object)
    {
        return Err(attrs.forbidden(reason));
    }
    Ok(Some(ns))
}

/// Refuses deleting the immortal namespaces.
pub fn admit_delete(attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.is_core("Namespace") && IMMORTAL.contains(&attrs.name) {
        return Err(attrs.forbidden("this namespace may not be deleted"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terminating_namespaces_refuse_new_content() {
        let active = json!({"status": {"phase": "Active"}});
        assert_eq!(refuse_create("a", &active), None);
        let ending = json!({"status": {"phase": "Terminating"}});
        assert_eq!(
            refuse_create("a", &ending).as_deref(),
            Some("unable to create new content in namespace a because it is being terminated")
        );
        let marked = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
        assert!(refuse_create("a", &marked).is_some());
    }
}
