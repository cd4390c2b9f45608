//! The metadata rules of object writes, independent of kind: what create
//! fills in (uid, creationTimestamp, generateName, generation), what update
//! keeps from the stored object (identity, deletion state, status or spec
//! depending on the endpoint), and when metadata.generation bumps.

use rand::Rng as _;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::meta;
use super::registry::ResourceInfo;

/// Fields that are not "spec": changes to them never bump the generation.
const NON_SPEC: &[&str] = &["metadata", "status", "apiVersion", "kind"];

fn check_type(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    if let Some(v) = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        let ok = v == info.api_version()
            || (info.kind == "HorizontalPodAutoscaler" && v.starts_with("autoscaling/"))
            || (info.kind == "Event" && (v == "v1" || v == "events.k8s.io/v1"));
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
    }
    if let Some(k) = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        && k != info.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            info.kind
        )));
    }
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(())
}

/// The suffix generateName appends (Kubernetes' alphabet, 5 characters).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether anything but metadata and status differs.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in NON_SPEC {
                m.remove(*k);
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// Fills in server-set metadata of a new object; `namespace` comes from the URL.
pub fn prepare_create(
    info: &ResourceInfo,
    namespace: Option<&str>,
    mut obj: Value,
) -> Result<Value, ApiError> {
    check_type(info, &obj)?;
    let body_ns = meta::namespace(&obj).map(String::from);
    let md = meta::metadata_mut(&mut obj);
    if info.namespaced {
        let ns = namespace.ok_or_else(|| ApiError::BadRequest("a namespace is required".into()))?;
        if body_ns.as_deref().is_some_and(|b| b != ns) {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        md.insert("namespace".into(), json!(ns));
    } else {
        md.remove("namespace");
    }
    let has_name = md
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name
        && let Some(prefix) = md
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let name = format!("{prefix}{}", random_suffix());
        md.insert("name".into(), json!(name));
    }
    md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    md.insert("creationTimestamp".into(), json!(meta::now()));
    for k in [
        "resourceVersion",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        md.remove(k);
    }
    if obj.get("spec").is_some() || info.has_status() {
        meta::metadata_mut(&mut obj).insert("generation".into(), json!(1));
    }
    if info.has_status()
        && info.kind != "Node"
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    Ok(obj)
}

/// What a write of the status subresource stores: `old` with `new`'s
/// status (none if `new` has none) and, as upstream allows, `new`'s labels
/// and annotations. Built from `new`, whose other fields usually equal
/// `old`'s (a status patch is applied to the object it replaces), so only
/// fields that differ are copied from `old`.
fn status_update(old: &Value, mut new: Value) -> Value {
    let (Some(old_map), Some(map)) = (old.as_object(), new.as_object_mut()) else {
        let mut obj = old.clone();
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        return obj;
    };
    let new_md = match map.get_mut("metadata") {
        Some(Value::Object(md)) => std::mem::take(md),
        _ => Map::new(),
    };
    map.retain(|k, _| k == "status" || old_map.contains_key(k));
    keep_old_fields(map, old_map, &["status"]);
    let mut md = new_md;
    match old_map.get("metadata").and_then(Value::as_object) {
        Some(old_md) => {
            let written_with_status = ["labels", "annotations"];
            md.retain(|k, _| written_with_status.contains(&k.as_str()) || old_md.contains_key(k));
            keep_old_fields(&mut md, old_md, &written_with_status);
            for k in written_with_status {
                if !md.contains_key(k)
                    && let Some(v) = old_md.get(k)
                {
                    md.insert(k.into(), v.clone());
                }
            }
        }
        None => md.retain(|k, _| k == "labels" || k == "annotations"),
    }
    if !md.is_empty() || old_map.contains_key("metadata") {
        map.insert("metadata".into(), Value::Object(md));
    } else {
        map.shift_remove("metadata");
    }
    new
}

/// Sets every field of `old` except `except` in `map`, copying only those
/// whose value in `map` differs.
fn keep_old_fields(map: &mut Map<String, Value>, old: &Map<String, Value>, except: &[&str]) {
    for (k, v) in old {
        if except.contains(&k.as_str()) {
            continue;
        }
        if map.get(k) != Some(v) {
            map.insert(k.clone(), v.clone());
        }
    }
}

/// Builds the object an update stores: `new` as sent, with identity and
/// deletion state kept from `old`, and spec or status kept depending on
/// `subresource` ("status" writes status only; the main resource keeps status).
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    new: Value,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    check_type(info, &new)?;
    if let (Some(o), Some(n)) = (meta::name(old), meta::name(&new))
        && o != n
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({o})"
        )));
    }
    // As kube-apiserver: an update that names a uid must name this object's
    // (writers such as kubelet's status manager rely on it as a precondition,
    // so a write meant for a pod never lands on its same-named successor).
    let new_uid = new
        .pointer("/metadata/uid")
        .filter(|u| u.as_str() != Some(""));
    if let Some(uid) = new_uid
        && Some(uid) != old.pointer("/metadata/uid")
    {
        let mut errs = super::validation::Errors::default();
        errs.invalid("metadata.uid", uid, "field is immutable");
        errs.into_result(info, meta::name(old).unwrap_or(""))?;
    }
    let mut obj = if subresource == Some("status") {
        status_update(old, new)
    } else {
        let mut obj = new;
        if info.has_status() {
            match old.get("status") {
                Some(status) => obj["status"] = status.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        obj
    };
    let no_metadata = Map::new();
    let old_md = old
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&no_metadata);
    let md = meta::metadata_mut(&mut obj);
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_md.get(k) {
            Some(v) => md.insert(k.into(), v.clone()),
            None => md.remove(k),
        };
    }
    md.remove("selfLink");
    if subresource.is_none()
        && spec_changed(old, &obj)
        && let Some(g) = old_md.get("generation").and_then(Value::as_i64)
    {
        meta::metadata_mut(&mut obj).insert("generation".into(), json!(g + 1));
    }
    if let Some(rv) = meta::resource_version(old).map(String::from) {
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;

    #[test]
    fn create_fills_identity_and_generate_name() {
        let pods = lookup("", "v1", "pods").unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {}, "status": {"phase": "Running"}});
        let out = prepare_create(pods, Some("default"), obj).unwrap();
        let name = meta::name(&out).unwrap();
        assert!(name.starts_with("web-") && name.len() == 9);
        assert_eq!(meta::namespace(&out), Some("default"));
        assert!(out["metadata"]["uid"].is_string());
        assert_eq!(out["metadata"]["generation"], 1);
        assert!(out.get("status").is_none());
        let wrong = json!({"kind": "Service"});
        assert!(prepare_create(pods, Some("a"), wrong).is_err());
        let other_ns = json!({"metadata": {"name": "x", "namespace": "b"}});
        assert!(prepare_create(pods, Some("a"), other_ns).is_err());
    }

    #[test]
    fn generation_bumps_on_spec_changes_only() {
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3, "resourceVersion": "9"}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let labels_only =
            json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        let out = prepare_update(deploy, &old, labels_only, None).unwrap();
        assert_eq!(out["metadata"]["generation"], 3);
        assert_eq!(out["status"]["replicas"], 1, "main resource keeps status");
        assert_eq!(out["metadata"]["uid"], "u");
        let scaled = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}});
        assert_eq!(
            prepare_update(deploy, &old, scaled, None).unwrap()["metadata"]["generation"],
            4
        );
        let status =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 9}, "status": {"replicas": 2}});
        let out = prepare_update(deploy, &old, status, Some("status")).unwrap();
        assert_eq!(out["spec"]["replicas"], 1, "status endpoint keeps spec");
        assert_eq!(out["status"]["replicas"], 2);
        assert_eq!(out["metadata"]["generation"], 3);
        let renamed = json!({"metadata": {"name": "other"}});
        assert!(prepare_update(deploy, &old, renamed, None).is_err());
        let other_uid = json!({"metadata": {"name": "d", "uid": "v"}, "spec": {"replicas": 1}});
        let err = prepare_update(deploy, &old, other_uid, Some("status")).unwrap_err();
        assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
        let same_uid = json!({"metadata": {"name": "d", "uid": "u"}, "spec": {"replicas": 1}});
        assert!(prepare_update(deploy, &old, same_uid, Some("status")).is_ok());
    }

    #[test]
    fn a_status_write_keeps_everything_but_status_labels_and_annotations_from_old() {
        let old = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["f"], "annotations": {"x": "y"}},
            "spec": {"nodeName": "n"}, "status": {"phase": "Pending"},
        });
        // Fields changed, added and dropped outside status are put back.
        let new = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "2"}, "ownerReferences": []},
            "spec": {"nodeName": "other"}, "extra": true, "status": {"phase": "Running"},
        });
        let out = status_update(&old, new);
        assert_eq!(
            out,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "2"}, "finalizers": ["f"], "annotations": {"x": "y"}},
                "spec": {"nodeName": "n"}, "status": {"phase": "Running"},
            })
        );
        // No status and no metadata in the write: status goes, metadata stays.
        let out = status_update(&old, json!({"spec": {}}));
        assert_eq!(out["metadata"], old["metadata"]);
        assert_eq!(out["spec"], old["spec"]);
        assert!(out.get("status").is_none());
        assert!(out.get("kind").is_some());
    }
}
