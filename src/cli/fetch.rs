//! Raw reads for `get`: lists, single objects and watch streams asked for
//! as `meta.k8s.io` Tables (the server picks the columns, as for kubectl),
//! answered as plain objects when the server has no Table support.

use futures::{AsyncBufReadExt, Stream, TryStreamExt};
use http::HeaderValue;
use http::header::ACCEPT;
use kube::Resource;
use kube::api::{DynamicObject, GetParams, ListParams, WatchParams};
use serde_json::{Map, Value};

use super::context::Ctx;
use super::discovery::ResourceInfo;

/// Table first, plain JSON as the fallback, as kubectl asks.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// What the server answered: a Table, or objects.
pub enum Fetched {
    Table(Value),
    Objects {
        items: Vec<Value>,
        resource_version: String,
    },
}

impl Fetched {
    pub fn is_empty(&self) -> bool {
        match self {
            Fetched::Table(t) => t["rows"].as_array().is_none_or(|r| r.is_empty()),
            Fetched::Objects { items, .. } => items.is_empty(),
        }
    }

    /// The list's resourceVersion, to start a watch from.
    pub fn resource_version(&self) -> String {
        match self {
            Fetched::Table(t) => t["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Fetched::Objects {
                resource_version, ..
            } => resource_version.clone(),
        }
    }
}

fn request_builder(info: &ResourceInfo, namespace: Option<&str>) -> kube::core::Request {
    let ns = namespace.filter(|_| info.namespaced);
    kube::core::Request::new(DynamicObject::url_path(&info.api_resource(), ns))
}

fn as_table(mut req: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    req.headers_mut()
        .insert(ACCEPT, HeaderValue::from_static(TABLE_ACCEPT));
    req
}

/// Lists `info` (all of it, or the named objects), as a Table if `table`
/// and the server can.
pub async fn fetch(
    ctx: &Ctx,
    info: &ResourceInfo,
    namespace: Option<&str>,
    names: &[String],
    lp: &ListParams,
    table: bool,
) -> anyhow::Result<Fetched> {
    let builder = request_builder(info, namespace);
    let accept = |req| if table { as_table(req) } else { req };
    if names.is_empty() {
        let answer: Value = ctx.client.request(accept(builder.list(lp)?)).await?;
        return Ok(classify(answer, info));
    }
    let mut merged: Option<Fetched> = None;
    for name in names {
        let answer: Value = ctx
            .client
            .request(accept(builder.get(name, &GetParams::default())?))
            .await?;
        let fetched = classify(answer, info);
        merged = Some(match (merged, fetched) {
            (None, f) => f,
            (Some(Fetched::Table(mut acc)), Fetched::Table(t)) => {
                if let (Some(rows), Some(more)) = (acc["rows"].as_array_mut(), t["rows"].as_array())
                {
                    rows.extend(more.iter().cloned());
                }
                Fetched::Table(acc)
            }
            (
                Some(Fetched::Objects {
                    mut items,
                    resource_version,
                }),
                Fetched::Objects { items: more, .. },
            ) => {
                items.extend(more);
                Fetched::Objects {
                    items,
                    resource_version,
                }
            }
            (Some(acc), _) => acc,
        });
    }
    Ok(merged.unwrap_or(Fetched::Objects {
        items: Vec::new(),
        resource_version: String::new(),
    }))
}

fn classify(answer: Value, info: &ResourceInfo) -> Fetched {
    if super::table::is_table(&answer) {
        return Fetched::Table(answer);
    }
    let resource_version = answer["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let items = match answer.get("items").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .map(|i| with_type_meta(i.clone(), info))
            .collect(),
        None => vec![with_type_meta(answer, info)],
    };
    Fetched::Objects {
        items,
        resource_version,
    }
}

/// The object with `apiVersion` and `kind` first (list items lack them).
pub fn with_type_meta(object: Value, info: &ResourceInfo) -> Value {
    let Value::Object(map) = object else {
        return object;
    };
    let api_version = if info.group.is_empty() {
        info.version.clone()
    } else {
        format!("{}/{}", info.group, info.version)
    };
    let mut out = Map::new();
    out.insert(
        "apiVersion".into(),
        map.get("apiVersion")
            .cloned()
            .unwrap_or(Value::String(api_version)),
    );
    out.insert(
        "kind".into(),
        map.get("kind")
            .cloned()
            .unwrap_or(Value::String(info.kind.clone())),
    );
    for (k, v) in map {
        if k != "apiVersion" && k != "kind" {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// One watch event: its type and object (a Table with the changed rows,
/// or the changed object).
pub struct Event {
    pub kind: String,
    pub object: Value,
}

/// Watches from `resource_version`, asking for Table rows when `table`.
pub async fn watch(
    ctx: &Ctx,
    info: &ResourceInfo,
    namespace: Option<&str>,
    wp: &WatchParams,
    resource_version: &str,
    table: bool,
) -> anyhow::Result<impl Stream<Item = anyhow::Result<Event>> + use<>> {
    let mut req = request_builder(info, namespace).watch(wp, resource_version)?;
    if table {
        req = as_table(req);
    }
    let lines = ctx.client.request_stream(req).await?.lines();
    Ok(lines
        .map_err(anyhow::Error::from)
        .try_filter(|line| futures::future::ready(!line.trim().is_empty()))
        .and_then(|line| async move {
            let mut v: Value = serde_json::from_str(&line)?;
            Ok(Event {
                kind: v["type"].as_str().unwrap_or_default().to_string(),
                object: v["object"].take(),
            })
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> ResourceInfo {
        ResourceInfo {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            singular: "deployment".into(),
            short_names: vec![],
            namespaced: true,
            verbs: vec![],
            subresources: vec![],
            categories: vec![],
            preferred: true,
        }
    }

    #[test]
    fn list_items_get_type_meta_first() {
        let answer = json!({"kind": "DeploymentList", "metadata": {"resourceVersion": "7"},
                            "items": [{"metadata": {"name": "a"}, "spec": {}}]});
        let Fetched::Objects {
            items,
            resource_version,
        } = classify(answer, &deployments())
        else {
            panic!("not objects")
        };
        assert_eq!(resource_version, "7");
        let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
        assert_eq!(items[0]["apiVersion"], "apps/v1");
        assert_eq!(items[0]["kind"], "Deployment");
    }

    #[test]
    fn tables_are_recognised() {
        let t = json!({"kind": "Table", "columnDefinitions": [], "rows": [],
                       "metadata": {"resourceVersion": "3"}});
        let fetched = classify(t, &deployments());
        assert!(matches!(fetched, Fetched::Table(_)));
        assert!(fetched.is_empty());
        assert_eq!(fetched.resource_version(), "3");
    }
}
