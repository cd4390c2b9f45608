//! PodSecurity: pods are held to the Pod Security Standards level their
//! namespace's `pod-security.kubernetes.io/enforce` label names — baseline
//! when unset (skiff's default), `privileged` disables, `restricted` adds
//! the restricted checks — and refused with 403 `violates PodSecurity
//! "baseline:latest": ...`. The `warn` level (defaulting to the enforce
//! level) adds `Warning` headers for pods and for workload pod templates,
//! which are never refused, as upstream. Namespace labels are validated,
//! and tightening a namespace's level warns about its existing pods.
//! `kube-system` is exempt. Audit annotations are not produced; every
//! version label is evaluated with the latest (1.33) checks.

mod baseline;
mod checks;
mod restricted;

use serde_json::{Map, Value};

use self::checks::{Level, describe, evaluate, reasons};
use super::super::error::{ApiError, StatusCause};
use super::{Attributes, Operation, go_quote, reads, warnings};

const EXEMPT_NAMESPACES: &[&str] = &["kube-system"];
const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// Pods checked when a namespace's level tightens (upstream's default).
const MAX_PODS_TO_CHECK: usize = 3000;
/// Pod subresources that never change the pod spec.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// A level at a policy version (`baseline:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LevelVersion {
    level: Level,
    version: String,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The levels a namespace enforces and warns at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    enforce: LevelVersion,
    warn: LevelVersion,
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.")
            .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
}

/// The policy of a namespace's labels, and the causes of any invalid label.
/// Invalid levels fail closed (restricted), invalid versions mean latest.
fn policy(labels: Option<&Map<String, Value>>) -> (Policy, Vec<StatusCause>) {
    let mut causes = Vec::new();
    let mut read = |mode: &str, default: Level| -> (LevelVersion, bool) {
        let label = |suffix: &str| {
            labels
                .and_then(|l| l.get(&format!("{LABEL_PREFIX}{mode}{suffix}")))
                .map(|v| v.as_str().unwrap_or("").to_string())
        };
        let mut invalid = |suffix: &str, value: &str, why: &str| {
            causes.push(StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {}: {why}", go_quote(value)),
                field: format!("metadata.labels[{LABEL_PREFIX}{mode}{suffix}]"),
            });
        };
        let level_label = label("");
        let level = match level_label.as_deref() {
            None => default,
            Some(l) => Level::parse(l).unwrap_or_else(|| {
                invalid("", l, "must be one of privileged, baseline, restricted");
                Level::Restricted
            }),
        };
        let version = match label("-version") {
            None => "latest".to_string(),
            Some(v) if valid_version(&v) => v,
            Some(v) => {
                invalid("-version", &v, "must be \"latest\" or \"v1.x\"");
                "latest".to_string()
            }
        };
        let explicit = level_label.is_some_and(|l| Level::parse(&l).is_some());
        (LevelVersion { level, version }, explicit)
    };
    let (enforce, _) = read("enforce", Level::Baseline);
    let (mut warn, warn_set) = read("warn", Level::Privileged);
    // Warn at least at the enforce level unless a warn level is given.
    if !warn_set && enforce.level > warn.level {
        warn = enforce.clone();
    }
    (Policy { enforce, warn }, causes)
}

fn labels(obj: Option<&Value>) -> Option<&Map<String, Value>> {
    obj?.pointer("/metadata/labels")?.as_object()
}

/// Whether a pod update changes what the checks see (images, containers, seccomp annotations).
fn significant_update(old: &Value, new: &Value) -> bool {
    let seccomp = |pod: &Value, key: &str| {
        pod.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .cloned()
    };
    if seccomp(old, "seccomp.security.alpha.kubernetes.io/pod")
        != seccomp(new, "seccomp.security.alpha.kubernetes.io/pod")
    {
        return true;
    }
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        let list = |pod: &Value| {
            pod.pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (a, b) = (list(old), list(new));
        if a.len() != b.len() {
            return true;
        }
        for (x, y) in a.iter().zip(&b) {
            let key = format!(
                "container.seccomp.security.alpha.kubernetes.io/{}",
                y.get("name").and_then(Value::as_str).unwrap_or("")
            );
            if x.get("image") != y.get("image") || seccomp(old, &key) != seccomp(new, &key) {
                return true;
            }
        }
    }
    false
}

/// The (metadata, spec) of a workload's pod template, for the kinds upstream checks.
fn template(attrs: &Attributes<'_>, obj: &Value) -> Option<(Value, Value)> {
    let path = match (attrs.info.group, attrs.info.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            "/spec/template"
        }
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template",
        _ => return None,
    };
    let t = obj.pointer(path)?;
    let spec = t.get("spec")?.clone();
    Some((t.get("metadata").cloned().unwrap_or(Value::Null), spec))
}

fn would_violate(lv: &LevelVersion, violations: &[checks::Violation]) -> String {
    format!(
        "would violate PodSecurity {}: {}",
        go_quote(&lv.to_string()),
        describe(violations)
    )
}

fn check_pod(attrs: &Attributes<'_>, policy: &Policy, pod: &Value) -> Result<(), ApiError> {
    let metadata = pod.get("metadata").unwrap_or(&Value::Null);
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let violations = evaluate(policy.enforce.level, metadata, spec);
    if !violations.is_empty() {
        return Err(attrs.forbidden(format!(
            "violates PodSecurity {}: {}",
            go_quote(&policy.enforce.to_string()),
            describe(&violations)
        )));
    }
    if policy.warn.level > policy.enforce.level {
        let warned = evaluate(policy.warn.level, metadata, spec);
        if !warned.is_empty() {
            warnings::warn(would_violate(&policy.warn, &warned));
        }
    }
    Ok(())
}

/// Warnings for the existing pods of a namespace whose enforce level tightened.
async fn existing_pods(
    attrs: &Attributes<'_>,
    ns: &str,
    enforce: &LevelVersion,
) -> Result<(), ApiError> {
    let pods = reads::list(attrs.store, reads::core("pods")?, ns).await?;
    let total = pods.len();
    let mut by_reason: Vec<(String, String, usize)> = Vec::new();
    for pod in pods.iter().take(MAX_PODS_TO_CHECK) {
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let v = evaluate(
            enforce.level,
            pod.get("metadata").unwrap_or(&Value::Null),
            spec,
        );
        if v.is_empty() {
            continue;
        }
        let reason = reasons(&v);
        let name = super::super::meta::name(pod).unwrap_or("").to_string();
        match by_reason.iter_mut().find(|(r, _, _)| *r == reason) {
            Some((_, first, n)) => {
                *n += 1;
                if name < *first {
                    *first = name;
                }
            }
            None => by_reason.push((reason, name, 1)),
        }
    }
    if total > MAX_PODS_TO_CHECK {
        warnings::warn(format!(
            "new PodSecurity enforce level only checked against the first {MAX_PODS_TO_CHECK} of {total} existing pods"
        ));
    }
    if by_reason.is_empty() {
        return Ok(());
    }
    warnings::warn(format!(
        "existing pods in namespace {} violate the new PodSecurity enforce level {}",
        go_quote(ns),
        go_quote(&enforce.to_string())
    ));
    let mut lines: Vec<String> = by_reason
        .into_iter()
        .map(|(reason, first, n)| match n {
            1 => format!("{first}: {reason}"),
            2 => format!("{first} (and 1 other pod): {reason}"),
            n => format!("{first} (and {} other pods): {reason}", n - 1),
        })
        .collect();
    lines.sort();
    lines.into_iter().for_each(warnings::warn);
    Ok(())
}

async fn check_namespace(
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &Value,
) -> Result<(), ApiError> {
    let (new_policy, causes) = policy(labels(Some(obj)));
    let invalid = || ApiError::Invalid {
        group: String::new(),
        kind: "Namespace".into(),
        name: attrs.name.into(),
        causes: causes.clone(),
    };
    let Some(old) = old else {
        return if causes.is_empty() {
            Ok(())
        } else {
            Err(invalid())
        };
    };
    let (old_policy, old_causes) = policy(labels(Some(old)));
    if !causes.is_empty() && causes != old_causes {
        return Err(invalid());
    }
    let (new, before) = (&new_policy.enforce, &old_policy.enforce);
    let relaxed = new.version == before.version && new.level <= before.level;
    if new == before
        || new.level == Level::Privileged
        || relaxed
        || EXEMPT_NAMESPACES.contains(&attrs.name)
    {
        return Ok(());
    }
    existing_pods(attrs, attrs.name, new).await
}

/// Enforces the namespace's level on pods, warns about templates, validates namespace labels.
pub async fn validate(
    attrs: &Attributes<'_>,
    namespace: Option<&Value>,
    old: Option<&Value>,
    obj: &Value,
) -> Result<(), ApiError> {
    if attrs.operation == Operation::Delete {
        return Ok(());
    }
    if attrs.is_core("Namespace") {
        return check_namespace(attrs, old, obj).await;
    }
    let pod = attrs.info.group.is_empty() && attrs.info.kind == "Pod";
    if attrs
        .subresource
        .is_some_and(|s| !pod || IGNORED_POD_SUBRESOURCES.contains(&s))
    {
        return Ok(());
    }
    if attrs
        .namespace
        .is_none_or(|ns| EXEMPT_NAMESPACES.contains(&ns))
    {
        return Ok(());
    }
    let (policy, _) = policy(labels(namespace));
    if pod {
        if policy.enforce.level == Level::Privileged && policy.warn.level == Level::Privileged {
            return Ok(());
        }
        if let Some(old) = old
            && !significant_update(old, obj)
        {
            return Ok(());
        }
        return check_pod(attrs, &policy, obj);
    }
    if let Some((metadata, spec)) = template(attrs, obj) {
        let v = evaluate(policy.warn.level, &metadata, &spec);
        if !v.is_empty() {
            warnings::warn(would_violate(&policy.warn, &v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy_of(labels: Value) -> (Policy, Vec<StatusCause>) {
        policy(labels.as_object())
    }

    #[test]
    fn namespace_labels_pick_the_levels() {
        let (p, errs) = policy_of(json!({}));
        assert!(errs.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert_eq!(p.warn.to_string(), "baseline:latest");
        let (p, _) = policy_of(json!({"pod-security.kubernetes.io/enforce": "privileged"}));
        assert_eq!(
            (p.enforce.level, p.warn.level),
            (Level::Privileged, Level::Privileged)
        );
        let (p, _) = policy_of(
            json!({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30"}),
        );
        assert_eq!(p.enforce.to_string(), "restricted:v1.30");
        assert_eq!(p.warn.to_string(), "restricted:v1.30");
        let (p, _) = policy_of(json!({"pod-security.kubernetes.io/warn": "restricted"}));
        assert_eq!(
            (p.enforce.level, p.warn.level),
            (Level::Baseline, Level::Restricted)
        );
    }

    #[test]
    fn invalid_labels_fail_closed_and_are_reported() {
        let (p, errs) = policy_of(
            json!({"pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/warn-version": "2"}),
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[0].field,
            "metadata.labels[pod-security.kubernetes.io/enforce]"
        );
        assert_eq!(
            errs[0].message,
            "Invalid value: \"strict\": must be one of privileged, baseline, restricted"
        );
    }

    #[test]
    fn only_image_and_container_changes_are_significant() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut labels_only = old.clone();
        labels_only["metadata"]["labels"]["a"] = json!("2");
        assert!(!significant_update(&old, &labels_only));
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(significant_update(&old, &image));
    }
}
