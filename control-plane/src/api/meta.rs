//! Helpers over `metadata` of untyped (JSON) objects: names, namespaces,
//! resourceVersion, labels, and Kubernetes timestamps. Pure functions.

use serde_json::{Map, Value, json};

/// The current time as Kubernetes writes it (RFC 3339, seconds, `Z`).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `obj.metadata` as a map, created when missing (non-objects are replaced).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("object ensured above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("object ensured above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`.
pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|s| !s.is_empty())
}

/// `metadata.namespace`.
pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

/// `metadata.resourceVersion`, when set and non-empty.
pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// `metadata.labels` as string pairs.
pub fn labels(obj: &Value) -> Vec<(&str, &str)> {
    match obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
    {
        Some(map) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
            .collect(),
        None => Vec::new(),
    }
}

/// A value at a dotted path (`spec.nodeName`), if present.
pub fn at_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, seg| v.get(seg))
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Age of an object like kubectl prints it (`5s`, `3m`, `2d4h`), from a timestamp.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(ts) = timestamp.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    human_duration(secs)
}

/// kubectl's `duration.HumanDuration` for whole seconds.
pub fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        let y = d / 365;
        let dd = d % 365;
        if dd == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{dd}d")
        }
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_accessors() {
        let mut obj =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"nodeName": "n"}});
        assert_eq!(name(&obj), Some("a"));
        assert_eq!(namespace(&obj), None);
        set_resource_version(&mut obj, 42);
        assert_eq!(resource_version(&obj), Some("42"));
        assert_eq!(labels(&obj), vec![("x", "1")]);
        assert_eq!(at_path(&obj, "spec.nodeName"), Some(&json!("n")));
        let mut bare = json!(null);
        metadata_mut(&mut bare).insert("name".into(), json!("b"));
        assert_eq!(name(&bare), Some("b"));
    }

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }
}
