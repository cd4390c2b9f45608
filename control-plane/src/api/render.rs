//! How a response shows objects, chosen by its Accept header: whole objects
//! (JSON), a Table (server-side printing, `table/`), or PartialObjectMetadata
//! (`application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`, and
//! `as=PartialObjectMetadataList` for lists): the metadata alone, which
//! client-go's metadata informers and kube-rs' `metadata_watcher` ask for.

use serde_json::{Value, json};

use super::table;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    Object,
    Table,
    Metadata,
}

impl Render {
    /// The rendering `accept` asks for; whole objects unless it names
    /// Table or PartialObjectMetadata of meta.k8s.io.
    pub fn from_accept(accept: &str) -> Render {
        if table::wants_table(accept) {
            return Render::Table;
        }
        let metadata = accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"g=meta.k8s.io")
                && (params.contains(&"as=PartialObjectMetadata")
                    || params.contains(&"as=PartialObjectMetadataList"))
        });
        if metadata {
            Render::Metadata
        } else {
            Render::Object
        }
    }
}

/// `obj` as a meta.k8s.io/v1 PartialObjectMetadata.
pub fn metadata_of(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A PartialObjectMetadataList of `items` with the list's `metadata`.
pub fn metadata_list(list_meta: Value, items: &[Value]) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": items.iter().map(metadata_of).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_picks_the_rendering() {
        let cases = [
            ("application/json", Render::Object),
            ("", Render::Object),
            (
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                Render::Table,
            ),
            (
                "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                Render::Metadata,
            ),
            (
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
                Render::Metadata,
            ),
            // Another group's PartialObjectMetadata is not ours to serve.
            (
                "application/json;as=PartialObjectMetadata;g=example.com;v=v1",
                Render::Object,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Render::from_accept(accept), want, "{accept}");
        }
    }

    #[test]
    fn metadata_keeps_only_the_metadata() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"}, "spec": {"x": 1}});
        let m = metadata_of(&pod);
        assert_eq!(m["kind"], "PartialObjectMetadata");
        assert_eq!(m["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(m["metadata"], pod["metadata"]);
        assert!(m.get("spec").is_none());
        let list = metadata_list(json!({"resourceVersion": "9"}), &[pod]);
        assert_eq!(list["kind"], "PartialObjectMetadataList");
        assert_eq!(list["items"][0], m);
        assert_eq!(list["metadata"]["resourceVersion"], "9");
    }
}
