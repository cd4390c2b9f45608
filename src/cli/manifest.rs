//! Reading manifests for `apply -f` and `delete -f`: files, directories and
//! stdin, split into one JSON object per YAML (or JSON) document, with
//! `kind: List` expanded into its items. No API calls happen here.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// One object read from a manifest, with where it came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> Option<&str> {
        self.object["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
    }
}

/// Reads every `-f` argument: `-` is stdin, a directory contributes its
/// `.yaml`/`.yml`/`.json` files in name order (sub-directories only when
/// `recursive`), anything else is read as one file.
pub fn read_all(paths: &[PathBuf], recursive: bool) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("error: reading stdin")?;
            out.extend(parse_documents(&text, "STDIN")?);
        } else if path.is_dir() {
            for file in manifest_files(path, recursive)? {
                out.extend(read_file(&file)?);
            }
        } else {
            out.extend(read_file(path)?);
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Manifest>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("error: the path \"{}\" cannot be read: {e}", path.display())
    })?;
    parse_documents(&text, &path.display().to_string())
}

fn manifest_files(dir: &Path, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("error: reading directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                files.extend(manifest_files(&entry, true)?);
            }
        } else if is_manifest_file(&entry) {
            files.push(entry);
        }
    }
    Ok(files)
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Splits a multi-document YAML (or JSON) text into objects; empty
/// documents are skipped and `kind: List` (any `*List`) is expanded.
pub fn parse_documents(text: &str, source: &str) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| anyhow::anyhow!("error: error parsing {source}: {e}"))?;
        push_object(value, source, index, &mut out)?;
    }
    Ok(out)
}

fn push_object(
    value: Value,
    source: &str,
    index: usize,
    out: &mut Vec<Manifest>,
) -> anyhow::Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Object(ref map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
                if let Some(Value::Array(items)) = map.get("items") {
                    for item in items.clone() {
                        push_object(item, source, index, out)?;
                    }
                }
                return Ok(());
            }
            let api_version = map
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if kind.is_empty() || api_version.is_empty() {
                let missing = if kind.is_empty() {
                    "kind"
                } else {
                    "apiVersion"
                };
                bail!(
                    "error: error validating \"{source}\": error validating data: {missing} not set (document {})",
                    index + 1
                );
            }
            out.push(Manifest {
                source: source.to_string(),
                object: value,
            });
            Ok(())
        }
        _ => bail!(
            "error: error parsing {source}: document {} is not an object",
            index + 1
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\n# only a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n  namespace: x\n";
        let docs = parse_documents(text, "f.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].kind(), "ConfigMap");
        assert_eq!(docs[0].name(), Some("a"));
        assert_eq!(docs[0].namespace(), None);
        assert_eq!(docs[1].api_version(), "apps/v1");
        assert_eq!(docs[1].namespace(), Some("x"));
        assert_eq!(docs[1].source, "f.yaml");
    }

    #[test]
    fn expands_lists_and_reads_json() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}]}"#;
        let docs = parse_documents(text, "l.json").unwrap();
        let kinds: Vec<&str> = docs.iter().map(Manifest::kind).collect();
        assert_eq!(kinds, ["Service", "Pod"]);
    }

    #[test]
    fn rejects_documents_without_kind_or_that_are_not_objects() {
        let err = parse_documents("apiVersion: v1\nmetadata: {name: a}\n", "f").unwrap_err();
        assert!(err.to_string().contains("kind not set"), "{err}");
        let err = parse_documents("- 1\n- 2\n", "f").unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
        let err = parse_documents("a: [unclosed\n", "f").unwrap_err();
        assert!(
            err.to_string().starts_with("error: error parsing f"),
            "{err}"
        );
    }

    #[test]
    fn keeps_values_typed() {
        let docs = parse_documents(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 2\n  paused: false\n  x: \"3\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(docs[0].object["spec"]["replicas"], 2);
        assert_eq!(docs[0].object["spec"]["paused"], false);
        assert_eq!(docs[0].object["spec"]["x"], "3");
    }

    #[test]
    fn reads_directories_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/c.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        let flat = read_all(&[dir.path().to_path_buf()], false).unwrap();
        let names: Vec<_> = flat.iter().filter_map(Manifest::name).collect();
        assert_eq!(names, ["a", "b"]);
        let deep = read_all(&[dir.path().to_path_buf()], true).unwrap();
        let names: Vec<_> = deep.iter().filter_map(Manifest::name).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
