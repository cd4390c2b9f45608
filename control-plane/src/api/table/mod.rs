//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
//! answers a `meta.k8s.io/v1` Table with the columns kubectl shows for each
//! kind (priority-1 columns are the `-o wide` ones), rows carrying the
//! object's metadata or the whole object (`includeObject`).

/// A `&'static [Column]` built in a const context.
macro_rules! columns {
    ($($c:expr),* $(,)?) => {{
        const COLUMNS: &[$crate::api::table::Column] = &[$($c),*];
        COLUMNS
    }};
}

mod core;
mod other;
mod pod_status;
mod workloads;

use serde_json::{Value, json};

use super::error::ApiError;
use super::meta;
use super::query::Query;
use super::registry::ResourceInfo;

/// One column: header name, OpenAPI type, and priority (0 always shown, 1 wide).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub priority: u8,
}

/// Shorthand for a column.
pub const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind,
        priority,
    }
}

/// How a kind prints: its columns and a function computing one row's cells.
pub struct Printer {
    pub columns: &'static [Column],
    pub cells: fn(&Value) -> Vec<Value>,
}

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

const DEFAULT_COLUMNS: &[Column] = &[col("Name", "string", 0), col("Age", "string", 0)];

fn default_cells(obj: &Value) -> Vec<Value> {
    vec![json!(name_of(obj)), json!(age_of(obj))]
}

fn printer_for(info: &ResourceInfo) -> Printer {
    core::printer(info.group, info.kind)
        .or_else(|| workloads::printer(info.group, info.kind))
        .or_else(|| other::printer(info.group, info.kind))
        .unwrap_or(Printer {
            columns: DEFAULT_COLUMNS,
            cells: default_cells,
        })
}

/// `metadata.name` or "".
pub fn name_of(obj: &Value) -> &str {
    meta::name(obj).unwrap_or("")
}

/// The age cell of an object.
pub fn age_of(obj: &Value) -> String {
    meta::age(meta::meta_str(obj, "creationTimestamp"))
}

/// A string field, or `default` when absent or empty.
pub fn str_or<'a>(obj: &'a Value, path: &str, default: &'a str) -> &'a str {
    meta::at_path(obj, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
}

/// An integer field, or 0.
pub fn int_at(obj: &Value, path: &str) -> i64 {
    meta::at_path(obj, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The containers' names and images of a pod template spec, comma-joined.
pub fn containers_and_images(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let names: Vec<&str> = containers
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let images: Vec<&str> = containers
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .collect();
    (names.join(","), images.join(","))
}

/// A label selector object printed as kubectl does (`app=web,tier in (a)`), or `<none>`.
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        parts.extend(
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
        );
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// A string map (e.g. a Service selector) printed as `k=v,...`, or `<none>`.
pub fn map_string(map: Option<&Value>) -> String {
    match map.and_then(Value::as_object) {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

fn row_object(obj: &Value, include: &str) -> Option<Value> {
    match include {
        "None" => None,
        "Object" => Some(obj.clone()),
        _ => Some(super::render::metadata_of(obj)),
    }
}

/// A Table of `objs` printed as `info`'s kind.
pub fn table_for(
    info: &ResourceInfo,
    objs: &[Value],
    query: &Query,
    revision: Option<&str>,
) -> Result<Value, ApiError> {
    let include = query.get("includeObject").unwrap_or("Metadata");
    if !matches!(include, "None" | "Metadata" | "Object") {
        return Err(ApiError::BadRequest(format!(
            "includeObject: unsupported value {include:?}"
        )));
    }
    let printer = printer_for(info);
    let columns: Vec<Value> = printer
        .columns
        .iter()
        .map(|c| {
            let mut def = json!({ "name": c.name, "type": c.kind, "format": "", "description": c.name, "priority": c.priority });
            if c.name == "Name" {
                def["format"] = json!("name");
                def["description"] = json!("Name must be unique within a namespace.");
            }
            def
        })
        .collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": (printer.cells)(obj) });
            if let Some(o) = row_object(obj, include) {
                row["object"] = o;
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = revision {
        metadata["resourceVersion"] = json!(rv);
    }
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;

    #[test]
    fn table_accept_detection() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn rows_carry_metadata_by_default() {
        let cm = lookup("", "v1", "configmaps").unwrap();
        let obj = json!({"metadata": {"name": "c", "creationTimestamp": meta::now()}, "data": {"a": "1", "b": "2"}});
        let t = table_for(cm, &[obj], &Query::default(), Some("5")).unwrap();
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["Name", "Data", "Age"]);
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let full = table_for(
            cm,
            &[json!({"metadata": {"name": "c"}})],
            &Query::parse(Some("includeObject=Object")),
            None,
        )
        .unwrap();
        assert!(full["rows"][0]["object"].get("kind").is_none());
        let unknown = lookup("coordination.k8s.io", "v1", "leases").unwrap();
        assert!(table_for(unknown, &[], &Query::default(), None).is_ok());
    }

    #[test]
    fn selector_printing() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(selector_string(Some(&sel)), "app=web,t in (a,b)");
        assert_eq!(selector_string(None), "<none>");
    }
}
