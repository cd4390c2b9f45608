//! Strategic merge patch (application/strategic-merge-patch+json) as
//! kubectl and client libraries send it: maps merge recursively, `null`
//! deletes, lists merge by their patch merge key (containers by name, ports
//! by containerPort, env by name, volumes by name, volumeMounts by
//! mountPath, ...) or are replaced whole, and the directives `$patch`
//! (replace/delete/merge), `$setElementOrder/<list>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<list>` are honoured.

use serde_json::{Map, Value};

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original (atomic lists).
    Replace,
    /// Primitive lists merged as sets (e.g. finalizers).
    MergePrimitives,
    /// Lists of objects merged by this key.
    MergeByKey(&'static str),
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// The strategy of the list at `path` (field names from the root, without
/// indices) in an object of `kind`.
pub fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    let last = path.last().map(String::as_str).unwrap_or("");
    let parent = path
        .len()
        .checked_sub(2)
        .map(|i| path[i].as_str())
        .unwrap_or("");
    match last {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::MergeByKey("name"),
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            ListStrategy::MergeByKey("containerPort")
        }
        "ports" if kind == "Service" && path.len() == 2 => ListStrategy::MergeByKey("port"),
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates" => {
            ListStrategy::MergeByKey("name")
        }
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "ownerReferences" if parent == "metadata" => ListStrategy::MergeByKey("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitives,
        "taints" if kind == "Node" => ListStrategy::MergeByKey("key"),
        "addresses" if kind == "Node" && parent == "status" => ListStrategy::MergeByKey("type"),
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge `patch` to `original` (an object of `kind`).
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let (Some(orig), Some(p)) = (original.as_object(), patch.as_object()) else {
        return Err(PatchError(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let mut path = Vec::new();
    match merge_map(kind, orig, p, &mut path)? {
        Some(m) => Ok(Value::Object(m)),
        None => Ok(Value::Object(Map::new())),
    }
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Strips directives from a patch value that has no original counterpart.
fn clean(kind: &str, v: &Value, path: &mut Vec<String>) -> Result<Option<Value>, PatchError> {
    match v {
        Value::Object(m) => Ok(merge_map(kind, &Map::new(), m, path)?.map(Value::Object)),
        Value::Array(a) => Ok(Some(Value::Array(merge_list(kind, &[], a, path)?))),
        other => Ok(Some(other.clone())),
    }
}

fn merge_map(
    kind: &str,
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut out = Map::new();
            for (k, v) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
                path.push(k.clone());
                let cleaned = clean(kind, v, path)?;
                path.pop();
                if let Some(v) = cleaned {
                    out.insert(k.clone(), v);
                }
            }
            return Ok(Some(out));
        }
        Some("merge") | None => {}
        Some(other) => return Err(PatchError(format!("unknown patch type: {other:?}"))),
    }
    let mut out = orig.clone();
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(list) = out.get_mut(field).and_then(Value::as_array_mut) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        path.push(k.clone());
        let merged = match (out.get(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(kind, o, p, path)?.map(Value::Object)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list(kind, o, p, path)?))
            }
            _ => clean(kind, v, path)?,
        };
        path.pop();
        match merged {
            Some(m) => {
                out.insert(k.clone(), m);
            }
            None => {
                out.remove(k);
            }
        }
    }
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            path.push(field.to_string());
            let strategy = list_strategy(kind, path);
            path.pop();
            if let (Some(Value::Array(list)), Some(order)) = (out.get_mut(field), order.as_array())
            {
                reorder(list, order, strategy);
            }
        }
    }
    Ok(Some(out))
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key)
}

fn merge_list(
    kind: &str,
    orig: &[Value],
    patch: &[Value],
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    match list_strategy(kind, path) {
        ListStrategy::Replace => {
            let mut out = Vec::new();
            for item in patch {
                if let Some(v) = clean(kind, item, path)? {
                    out.push(v);
                }
            }
            Ok(out)
        }
        ListStrategy::MergePrimitives => {
            let mut out = orig.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeByKey(key) => {
            if patch.iter().any(|i| directive(i) == Some("replace")) {
                let mut out = Vec::new();
                for item in patch.iter().filter(|i| directive(i) != Some("replace")) {
                    if let Some(v) = clean(kind, item, path)? {
                        out.push(v);
                    }
                }
                return Ok(out);
            }
            let mut out = orig.to_vec();
            for item in patch {
                let Some(pm) = item.as_object() else {
                    return Err(PatchError(format!(
                        "list items at {} must be objects",
                        path.join(".")
                    )));
                };
                let k = key_of(item, key).cloned();
                let pos = k
                    .as_ref()
                    .and_then(|k| out.iter().position(|o| key_of(o, key) == Some(k)));
                if directive(item) == Some("delete") {
                    if let Some(pos) = pos {
                        out.remove(pos);
                    }
                    continue;
                }
                match pos {
                    Some(pos) => {
                        let merged = match out[pos].as_object() {
                            Some(om) => merge_map(kind, om, pm, path)?,
                            None => merge_map(kind, &Map::new(), pm, path)?,
                        };
                        match merged {
                            Some(m) => out[pos] = Value::Object(m),
                            None => {
                                out.remove(pos);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(kind, &Map::new(), pm, path)? {
                            out.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Orders `list` as `order` says; items it does not name keep their relative order after.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let matches = |item: &Value, o: &Value| match strategy {
        ListStrategy::MergeByKey(key) => {
            key_of(item, key).is_some() && key_of(item, key) == key_of(o, key)
        }
        _ => item == o,
    };
    let mut remaining = std::mem::take(list);
    for o in order {
        if let Some(pos) = remaining.iter().position(|i| matches(i, o)) {
            list.push(remaining.remove(pos));
        }
    }
    list.extend(remaining);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "d", "labels": {"a": "1"}, "finalizers": ["x"]},
               "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                 "template": {"spec": {
                    "containers": [
                        {"name": "web", "image": "web:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "side", "image": "side:1"}],
                    "volumes": [{"name": "v", "emptyDir": {}}]}}}})
    }

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "web:2", "ports": [{"containerPort": 8080}], "env": [{"name": "B", "value": "3"}]}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        let web = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(web["image"], "web:2");
        assert_eq!(web["ports"].as_array().unwrap().len(), 2);
        assert_eq!(
            web["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["name"],
            "side"
        );
    }

    #[test]
    fn null_deletes_and_patch_delete_removes_list_items() {
        let patch = json!({"metadata": {"labels": {"a": null}}, "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn patch_replace_on_maps_and_lists() {
        let patch = json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "o"}])
        );
    }

    #[test]
    fn set_element_order_and_retain_keys() {
        let patch = json!({"spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
                "containers": [{"name": "side", "image": "side:2"}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs[0]["name"], "side");
        assert_eq!(cs[0]["image"], "side:2");
        assert_eq!(cs[1]["name"], "web");
    }

    #[test]
    fn primitive_lists_merge_and_delete() {
        let patch = json!({"metadata": {"finalizers": ["y"]}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        let out = apply("Deployment", &out, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn service_ports_merge_by_port_and_atomic_lists_replace() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a"}}});
        let out = apply(
            "Service",
            &svc,
            &json!({"spec": {"ports": [{"port": 443}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
        let pod = json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}});
        let out = apply(
            "Pod",
            &pod,
            &json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
        assert!(apply("Pod", &pod, &json!([1])).is_err());
    }

    #[test]
    fn owner_references_merge_by_uid() {
        // The controllers' adopt and release patches (controllers/controller_ref.rs).
        let pod = json!({"metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u3"}]}});
        let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                           "uid": "u1", "controller": true, "blockOwnerDeletion": true});
        let adopted = apply(
            "Pod",
            &pod,
            &json!({"metadata": {"uid": "p1", "ownerReferences": [owner.clone()]}}),
        )
        .unwrap();
        assert_eq!(adopted["metadata"]["ownerReferences"][1], owner);
        assert_eq!(adopted["metadata"]["ownerReferences"][0]["uid"], "u3");
        let released = apply(
            "Pod",
            &adopted,
            &json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u1"}]}}),
        )
        .unwrap();
        assert_eq!(
            released["metadata"]["ownerReferences"],
            pod["metadata"]["ownerReferences"]
        );
    }
}
