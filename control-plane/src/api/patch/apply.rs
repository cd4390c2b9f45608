//! Server-side apply: the applied configuration's field set (fieldsV1) is
//! recorded per field manager in `metadata.managedFields`; fields another
//! manager owns with a different value conflict (409) unless forced; fields
//! this manager applied before and no longer applies are removed when no
//! one else owns them; the rest merges like a strategic merge patch.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::strategic::{self, ListStrategy, list_strategy};
use crate::api::error::{ApiError, StatusCause};
use crate::api::meta;

/// One field path: `f:spec`, `k:{"name":"web"}`, `v:"x"`, `.`.
type FieldPath = Vec<String>;

/// Metadata fields the server owns; never tracked.
const SERVER_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The set of leaf fields an applied configuration specifies.
pub fn field_set(kind: &str, obj: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" || k == "status" {
                continue;
            }
            if k == "metadata" {
                if let Some(md) = v.as_object() {
                    for (mk, mv) in md
                        .iter()
                        .filter(|(mk, _)| !SERVER_FIELDS.contains(&mk.as_str()))
                    {
                        walk(
                            kind,
                            mv,
                            &mut vec!["metadata".into(), mk.clone()],
                            &mut vec![format!("f:metadata"), format!("f:{mk}")],
                            &mut out,
                        );
                    }
                }
                continue;
            }
            walk(
                kind,
                v,
                &mut vec![k.clone()],
                &mut vec![format!("f:{k}")],
                &mut out,
            );
        }
    }
    out
}

fn walk(
    kind: &str,
    v: &Value,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                names.push(k.clone());
                path.push(format!("f:{k}"));
                walk(kind, child, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) => match list_strategy(kind, names) {
            ListStrategy::MergeByKey(key) => {
                for item in items {
                    let Some(k) = item.get(key) else { continue };
                    path.push(format!("k:{}", json!({ key: k })));
                    let mut dot = path.clone();
                    dot.push(".".into());
                    out.insert(dot);
                    if let Some(m) = item.as_object() {
                        for (ik, iv) in m {
                            names.push(ik.clone());
                            path.push(format!("f:{ik}"));
                            walk(kind, iv, names, path, out);
                            path.pop();
                            names.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListStrategy::MergePrimitives => {
                for item in items {
                    let mut p = path.clone();
                    p.push(format!("v:{item}"));
                    out.insert(p);
                }
            }
            ListStrategy::Replace => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// A field set as a fieldsV1 tree.
pub fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur.entry(seg.clone()).or_insert_with(|| json!({}));
            cur = match entry.as_object_mut() {
                Some(m) => m,
                None => break,
            };
        }
    }
    Value::Object(root)
}

/// A fieldsV1 tree as a set of leaf paths.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    rec(child, path, out);
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// The value at a field path of `obj`, if present.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = if let Some(f) = seg.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))?
        } else {
            return Some(cur);
        };
    }
    Some(cur)
}

/// Removes the field at `path` from `obj`.
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    let mut parent = parent;
    if last == "." {
        // Removing a list item: the parent path ends with its k: segment.
        let Some((item, list_path)) = parent.split_last() else {
            return;
        };
        parent = list_path;
        for seg in parent {
            cur = match step(cur, seg) {
                Some(c) => c,
                None => return,
            };
        }
        if let (Some(k), Some(list)) = (item.strip_prefix("k:"), cur.as_array_mut())
            && let Ok(key) = serde_json::from_str::<Map<String, Value>>(k)
        {
            list.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
        }
        return;
    }
    for seg in parent {
        cur = match step(cur, seg) {
            Some(c) => c,
            None => return,
        };
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(v), Some(list)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
    {
        list.retain(|i| *i != v);
    }
}

fn step<'a>(cur: &'a mut Value, seg: &str) -> Option<&'a mut Value> {
    if let Some(f) = seg.strip_prefix("f:") {
        cur.get_mut(f)
    } else if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array_mut()?
            .iter_mut()
            .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))
    } else {
        None
    }
}

fn dotted(path: &[String]) -> String {
    path.iter()
        .filter(|s| *s != ".")
        .map(|s| match s.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", s.trim_start_matches("k:").trim_start_matches("v:")),
        })
        .collect()
}

/// Applies `applied` for `manager` to `live` (Null when the object is new);
/// returns the merged object with updated managedFields.
pub fn apply(
    kind: &str,
    api_version: &str,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let new_set = field_set(kind, applied);
    let mut entries: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut causes = Vec::new();
    let mut old_set = BTreeSet::new();
    for e in entries.iter_mut() {
        let owner = e["manager"].as_str().unwrap_or("").to_string();
        let mut set = from_fields_v1(&e["fieldsV1"]);
        if owner == manager && e["operation"] == "Apply" {
            old_set = set;
            continue;
        }
        let clashing: Vec<FieldPath> = set
            .intersection(&new_set)
            .filter(|p| {
                p.last().is_some_and(|l| l != ".") && value_at(live, p) != value_at(applied, p)
            })
            .cloned()
            .collect();
        if clashing.is_empty() {
            continue;
        }
        if force {
            for p in &clashing {
                set.remove(p);
            }
            e["fieldsV1"] = to_fields_v1(&set);
        } else {
            let using = e["apiVersion"].as_str().unwrap_or(api_version).to_string();
            causes.extend(clashing.iter().map(|p| StatusCause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with \"{owner}\" using {using}"),
                field: dotted(p),
            }));
        }
    }
    if !causes.is_empty() {
        let n = causes.len();
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("- {}: {}", c.message, c.field))
            .collect();
        return Err(ApiError::Conflict {
            group: String::new(),
            kind: kind.to_string(),
            name: meta::name(live)
                .or(meta::name(applied))
                .unwrap_or("")
                .to_string(),
            message: format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                list.join("\n")
            ),
        });
    }
    let others: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| !(e["manager"] == manager && e["operation"] == "Apply"))
        .flat_map(|e| from_fields_v1(&e["fieldsV1"]))
        .collect();
    let mut merged = if live.is_null() {
        json!({})
    } else {
        live.clone()
    };
    for removed in old_set.difference(&new_set) {
        let shared = others.iter().any(|o| {
            o.starts_with(&removed[..removed.len().saturating_sub(1)]) && o.len() >= removed.len()
        });
        if !shared {
            remove_at(&mut merged, removed);
        }
    }
    let mut clean_applied = applied.clone();
    if let Some(md) = clean_applied
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        md.remove("managedFields");
    }
    let mut merged = strategic::apply(kind, &merged, &clean_applied)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    entries.retain(|e| !(e["manager"] == manager && e["operation"] == "Apply"));
    entries.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": meta::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(&new_set),
    }));
    meta::metadata_mut(&mut merged).insert("managedFields".into(), Value::Array(entries));
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": data})
    }

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let d = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}, "metadata": {"name": "d", "finalizers": ["f"]}});
        let set = field_set("Deployment", &d);
        let tree = to_fields_v1(&set);
        assert!(tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"].is_object());
        assert!(tree["f:metadata"]["f:finalizers"]["v:\"f\""].is_object());
        assert!(tree["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&tree), set);
    }

    #[test]
    fn apply_creates_merges_and_removes_dropped_fields() {
        let first = apply(
            "ConfigMap",
            "v1",
            &Value::Null,
            &cm(json!({"x": "1", "y": "2"})),
            "mgr",
            false,
        )
        .unwrap();
        assert_eq!(first["data"], json!({"x": "1", "y": "2"}));
        assert_eq!(first["metadata"]["managedFields"][0]["manager"], "mgr");
        let second = apply(
            "ConfigMap",
            "v1",
            &first,
            &cm(json!({"x": "1"})),
            "mgr",
            false,
        )
        .unwrap();
        assert_eq!(
            second["data"],
            json!({"x": "1"}),
            "y was dropped from the applied config"
        );
    }

    #[test]
    fn conflicting_managers_need_force() {
        let first = apply(
            "ConfigMap",
            "v1",
            &Value::Null,
            &cm(json!({"x": "1"})),
            "a",
            false,
        )
        .unwrap();
        let err = apply(
            "ConfigMap",
            "v1",
            &first,
            &cm(json!({"x": "2"})),
            "b",
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("Apply failed with 1 conflict: - conflict with \"a\""),
            "{err}"
        );
        let forced = apply("ConfigMap", "v1", &first, &cm(json!({"x": "2"})), "b", true).unwrap();
        assert_eq!(forced["data"]["x"], "2");
        let same = apply(
            "ConfigMap",
            "v1",
            &first,
            &cm(json!({"x": "1"})),
            "b",
            false,
        )
        .unwrap();
        assert_eq!(
            same["metadata"]["managedFields"].as_array().unwrap().len(),
            2
        );
    }
}
