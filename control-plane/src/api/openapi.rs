//! OpenAPI documents generated from the registry. `/openapi/v3` lists one
//! document per group/version whose operations carry the
//! `x-kubernetes-group-version-kind` and the `fieldValidation`/`dryRun`
//! parameters, so kubectl's default `--validate=strict` delegates validation
//! to the server. Schemas are object stubs (kubectl then computes strategic
//! merge patches from its built-in types). `/openapi/v2` is a minimal
//! document, as protobuf when asked (client-go parses only that).

use serde_json::{Value, json};

use super::discovery::GIT_VERSION;
use super::registry::{self, ResourceInfo};

/// A cheap, stable hash of the served documents (changes with the registry).
fn doc_hash() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for r in registry::RESOURCES {
        for b in r
            .plural
            .bytes()
            .chain(r.group.bytes())
            .chain(r.version.bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016X}")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group/version documents.
pub fn v3_index() -> Value {
    let hash = doc_hash();
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry::groups() {
        for version in versions {
            let path = gv_path(group, version);
            paths.insert(
                path.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
            );
        }
    }
    json!({ "paths": paths })
}

fn schema_name(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}

fn query_param(name: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(r: &ResourceInfo, action: &str, content: &[&str]) -> Value {
    let schema = json!({ "$ref": format!("#/components/schemas/{}", schema_name(r)) });
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
        "parameters": [query_param("dryRun"), query_param("fieldManager"), query_param("fieldValidation")],
        "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": schema } } } },
    });
    if !content.is_empty() {
        let body: serde_json::Map<String, Value> = content
            .iter()
            .map(|c| (c.to_string(), json!({ "schema": { "type": "object" } })))
            .collect();
        op["requestBody"] = json!({ "content": body, "required": true });
    }
    op
}

/// `/openapi/v3/<api|apis/group>/<version>`; None when the group/version is not served.
pub fn v3_group_version(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let base = format!("/{}", gv_path(group, version));
    for r in registry::resources_of(group, version) {
        let scope = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}")
        } else {
            base.clone()
        };
        let collection = format!("{scope}/{}", r.plural);
        let item = format!("{collection}/{{name}}");
        if r.supports("create") {
            paths.insert(
                collection.clone(),
                json!({ "post": operation(r, "post", &["*/*"]) }),
            );
        }
        if r.supports("get") {
            let mut ops = json!({ "get": operation(r, "get", &[]) });
            if r.supports("patch") {
                // No strategic-merge content type: kubectl then uses its built-in patch metadata.
                ops["patch"] = operation(
                    r,
                    "patch",
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                    ],
                );
                ops["put"] = operation(r, "put", &["*/*"]);
            }
            paths.insert(item, ops);
        }
        schemas.insert(
            schema_name(r),
            json!({
                "type": "object",
                "description": format!("{} ({})", r.kind, r.api_version()),
                "x-kubernetes-group-version-kind": [{ "group": r.group, "version": r.version, "kind": r.kind }],
            }),
        );
    }
    if paths.is_empty() && schemas.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

/// `/openapi/v2` as JSON.
pub fn v2_json() -> Value {
    json!({ "swagger": "2.0", "info": { "title": "Kubernetes", "version": GIT_VERSION }, "paths": {}, "definitions": {} })
}

/// `/openapi/v2` as a gnostic `openapi_v2.Document` protobuf (swagger and info only).
pub fn v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"Kubernetes");
    field(&mut info, 2, GIT_VERSION.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_points_at_every_group_version() {
        let index = v3_index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(index["paths"]["api/v1"].is_object());
    }

    #[test]
    fn patch_operations_declare_field_validation() {
        let doc = v3_group_version("apps", "v1").unwrap();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"));
        assert!(
            op["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        let nodes = v3_group_version("", "v1").unwrap();
        assert!(nodes["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
    }

    #[test]
    fn v2_protobuf_is_well_formed() {
        let pb = v2_protobuf();
        assert_eq!(&pb[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(pb[5], 0x12);
        assert_eq!(pb[6] as usize, pb.len() - 7);
    }
}
