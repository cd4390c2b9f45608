//! Admission: the plugins Kubernetes enables by default that skiff needs,
//! run over an object after defaulting and before validation and storage,
//! in kube-apiserver's order — the mutating ones first (NamespaceLifecycle,
//! LimitRanger defaults, ServiceAccount), then the validating ones
//! (LimitRanger limits, PodSecurity, ResourceQuota). Also the delete-time
//! check (immortal namespaces), the ResourceQuota status refresh after
//! writes, and the `Warning` headers plugins add. One file per plugin;
//! webhooks and admission policies are not implemented.

mod limit_ranger;
mod namespace_lifecycle;
mod pod_security;
mod quantity;
mod reads;
mod resource_quota;
mod resources;
mod service_account;
mod warnings;

use std::fmt::Display;

use serde_json::Value;

use super::error::ApiError;
use super::objects::ObjectStore;
use super::registry::ResourceInfo;

pub use limit_ranger::default_limit_range;
pub use warnings::with_warnings;

/// What a request does to an object, in admission's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// The request being admitted (Kubernetes' `admission.Attributes`).
pub struct Attributes<'a> {
    pub store: &'a ObjectStore,
    pub info: &'static ResourceInfo,
    pub operation: Operation,
    /// The object's namespace (None for cluster-scoped kinds).
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// e.g. "status", "finalize"; None for the object itself.
    pub subresource: Option<&'a str>,
}

impl Attributes<'_> {
    /// Whether the request is about the core/v1 kind `kind` itself (no subresource).
    fn is_core(&self, kind: &str) -> bool {
        self.info.group.is_empty() && self.info.kind == kind && self.subresource.is_none()
    }

    /// `pods "x"` or `deployments.apps "x"`, as Forbidden messages name objects.
    fn resource(&self) -> String {
        if self.info.group.is_empty() {
            self.info.plural.to_string()
        } else {
            format!("{}.{}", self.info.plural, self.info.group)
        }
    }

    /// 403 Forbidden, worded as `admission.NewForbidden`: `pods "x" is forbidden: <reason>`.
    fn forbidden(&self, reason: impl Display) -> ApiError {
        let message = if self.name.is_empty() {
            format!("{} is forbidden: {reason}", self.resource())
        } else {
            format!(
                "{} \"{}\" is forbidden: {reason}",
                self.resource(),
                self.name
            )
        };
        ApiError::Forbidden {
            message,
            group: self.info.group.into(),
            kind: self.info.plural.into(),
            name: self.name.into(),
        }
    }
}

/// Runs the admission chain over a created (`old` None) or updated object.
pub async fn admit(
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    // Mutating plugins.
    let namespace = namespace_lifecycle::admit(attrs).await?;
    let ranges = limit_ranger::load(attrs).await?;
    limit_ranger::mutate(attrs, &ranges, obj);
    service_account::admit(attrs, obj).await?;
    // Validating plugins.
    limit_ranger::validate(attrs, &ranges, obj)?;
    pod_security::validate(attrs, namespace.as_ref().map(|ns| &ns.object), old, obj).await?;
    resource_quota::validate(attrs, obj).await
}

/// Admits the deletion of the object `attrs` names.
pub fn admit_delete(attrs: &Attributes<'_>) -> Result<(), ApiError> {
    namespace_lifecycle::admit_delete(attrs)
}

/// After a write was stored: keeps the namespace's ResourceQuota status
/// current. `old`/`new` are the object before and after (None when absent).
pub async fn written(
    store: &ObjectStore,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    resource_quota::written(store, info, namespace, old, new).await;
}

/// `"a", "b"` — names quoted as Go's `%q` quotes them, joined with ", ".
fn join_quoted<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| go_quote(s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string quoted as Go's `%q` does for printable text.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go() {
        assert_eq!(join_quoted(&["a", "b"]), r#""a", "b""#);
        assert_eq!(go_quote(r#"k="v""#), r#""k=\"v\"""#);
    }
}
