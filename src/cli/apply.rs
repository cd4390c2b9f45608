//! `skiff apply -f FILE|DIR|-`: server-side apply of every object in the
//! manifests (field manager `skiff`, conflicts forced, as the last writer
//! the user asked for), falling back to create / JSON merge patch when the
//! server does not accept apply patches. Prints kubectl's
//! `deployment.apps/web created|configured|unchanged`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use super::context::Ctx;
use super::manifest::{self, Manifest};

/// The field manager skiff's apply writes as.
pub const FIELD_MANAGER: &str = "skiff";

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Manifest file, directory of manifests, or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<PathBuf>,
    /// Also read sub-directories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Namespace for objects whose manifest names none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }

    /// From the resourceVersion before (None: did not exist) and after.
    pub fn from_versions(before: Option<&str>, after: Option<&str>) -> Outcome {
        match before {
            None => Outcome::Created,
            Some(b) if Some(b) == after => Outcome::Unchanged,
            Some(_) => Outcome::Configured,
        }
    }
}

pub async fn run(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<()> {
    let manifests = manifest::read_all(&args.filenames, args.recursive)?;
    if manifests.is_empty() {
        bail!("error: no objects passed to apply");
    }
    let mut failed = None;
    for m in &manifests {
        match apply_one(ctx, m, args.namespace.as_deref()).await {
            Ok(line) => println!("{line}"),
            // Like kubectl: report each failure and go on with the rest.
            Err(e) => {
                // Print earlier failures now; the last one is the error returned.
                if let Some(previous) = failed.replace(super::error::one_line(&e)) {
                    eprintln!("{previous}");
                }
            }
        }
    }
    match failed {
        Some(last) => Err(anyhow::anyhow!(last)),
        None => Ok(()),
    }
}

async fn apply_one(ctx: &Ctx, m: &Manifest, namespace: Option<&str>) -> anyhow::Result<String> {
    let discovery = ctx.discovery().await?;
    let Some(info) = discovery.for_kind(m.api_version(), m.kind()).cloned() else {
        bail!(
            "error: resource mapping not found for name: \"{}\" namespace: \"{}\" from \"{}\": no matches for kind \"{}\" in version \"{}\"",
            m.name().unwrap_or_default(),
            m.namespace().unwrap_or_default(),
            m.source,
            m.kind(),
            m.api_version()
        );
    };
    let mut object = m.object.clone();
    let ns = if info.namespaced {
        let ns = m
            .namespace()
            .map(str::to_string)
            .unwrap_or_else(|| ctx.namespace(namespace));
        object["metadata"]["namespace"] = Value::String(ns.clone());
        Some(ns)
    } else {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        None
    };
    let api = ctx.api(&info, ns.as_deref());
    let dynamic: DynamicObject =
        serde_json::from_value(object.clone()).context("error: decoding the manifest")?;
    let Some(name) = m.name() else {
        // generateName: nothing to apply to, so create.
        let created = api.create(&PostParams::default(), &dynamic).await?;
        let name = created.metadata.name.unwrap_or_default();
        return Ok(format!("{}/{name} created", info.kind_ref()));
    };

    let before = api.get_opt(name).await?;
    let before_rv = before
        .as_ref()
        .and_then(|o| o.metadata.resource_version.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let after = match api.patch(name, &params, &Patch::Apply(&object)).await {
        Ok(obj) => obj,
        Err(e) if apply_unsupported(&e) => match before {
            None => api.create(&PostParams::default(), &dynamic).await?,
            Some(_) => {
                api.patch(name, &PatchParams::default(), &Patch::Merge(&object))
                    .await?
            }
        },
        Err(e) => return Err(e.into()),
    };
    let mut outcome = Outcome::from_versions(
        before_rv.as_deref(),
        after.metadata.resource_version.as_deref(),
    );
    // A server that bumps resourceVersion on a no-op apply (only the
    // managedFields timestamp moved) still left the object unchanged.
    if let (Outcome::Configured, Some(before)) = (outcome, &before)
        && same_content(
            &serde_json::to_value(before)?,
            &serde_json::to_value(&after)?,
        )
    {
        outcome = Outcome::Unchanged;
    }
    Ok(format!("{}/{name} {}", info.kind_ref(), outcome.word()))
}

/// Equal apart from resourceVersion and managedFields.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Whether the server refused the apply-patch content type itself.
fn apply_unsupported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 415 || s.code == 405
        || (s.code == 400 && s.message.contains("apply-patch")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_resource_versions() {
        assert_eq!(Outcome::from_versions(None, Some("5")), Outcome::Created);
        assert_eq!(
            Outcome::from_versions(Some("5"), Some("5")),
            Outcome::Unchanged
        );
        assert_eq!(
            Outcome::from_versions(Some("5"), Some("9")),
            Outcome::Configured
        );
        assert_eq!(Outcome::Configured.word(), "configured");
    }

    #[test]
    fn timestamps_of_managed_fields_do_not_count_as_changes() {
        let a = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{"time": "t1"}]}, "data": {"k": "v"}});
        let b = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "2",
            "managedFields": [{"time": "t2"}]}, "data": {"k": "v"}});
        let c = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "3"}, "data": {"k": "w"}});
        assert!(same_content(&a, &b));
        assert!(!same_content(&a, &c));
    }

    #[test]
    fn only_content_type_refusals_fall_back() {
        let status = |code: u16, msg: &str| {
            let mut s = kube::core::Status::failure(msg, "");
            s.code = code;
            kube::Error::Api(s.boxed())
        };
        assert!(apply_unsupported(&status(415, "unsupported media type")));
        assert!(apply_unsupported(&status(
            400,
            "apply-patch is not supported"
        )));
        assert!(!apply_unsupported(&status(422, "invalid")));
        assert!(!apply_unsupported(&status(409, "conflict")));
    }
}
