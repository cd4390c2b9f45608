//! The Pod Security Standards evaluator: which checks a level runs, in
//! pod-security-admission's order (baseline checks, then for restricted the
//! restricted checks, which replace the two overlapping baseline ones), and
//! how their violations read (`host namespaces (hostNetwork=true), ...`).
//! Checks see the pod's metadata and spec as JSON. Pure.

use serde_json::Value;

use super::super::join_quoted;
use super::{baseline, restricted};

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// Why a check refused a pod: a short reason and the specifics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// A violation with `reason` and `detail`.
pub fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// One check over (pod metadata, pod spec).
pub type Check = fn(&Value, &Value) -> Option<Violation>;

/// Baseline checks every level above privileged runs.
const BASELINE: &[Check] = &[
    baseline::app_armor_profile,
    baseline::host_namespaces,
    baseline::host_path_volumes,
    baseline::host_ports,
    baseline::privileged,
    baseline::proc_mount,
    baseline::se_linux_options,
    baseline::sysctls,
    baseline::windows_host_process,
];

/// Baseline checks that restricted replaces with stricter ones.
const BASELINE_OVERLAP: &[Check] = &[baseline::capabilities, baseline::seccomp_profile];

const RESTRICTED: &[Check] = &[
    restricted::allow_privilege_escalation,
    restricted::capabilities,
    restricted::volumes,
    restricted::run_as_non_root,
    restricted::run_as_user,
    restricted::seccomp_profile,
];

/// Every violation of `level` by a pod (or pod template).
pub fn evaluate(level: Level, metadata: &Value, spec: &Value) -> Vec<Violation> {
    let extra = match level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => BASELINE_OVERLAP,
        Level::Restricted => RESTRICTED,
    };
    BASELINE
        .iter()
        .chain(extra)
        .filter_map(|check| check(metadata, spec))
        .collect()
}

/// `reason (detail), reason (detail)` as AggregateCheckResult.ForbiddenDetail prints it.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reasons only, comma-separated (for namespace-wide summaries).
pub fn reasons(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Singular or plural by count.
pub fn pluralize<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

/// `container "a"` / `containers "a", "b"`.
pub fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quoted(names)
    )
}

/// The init, regular and ephemeral containers, in the order upstream visits them.
pub fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |f| spec.get(f).and_then(Value::as_array).into_iter().flatten())
}

/// A container's name.
pub fn name(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A field of a securityContext (the pod's or a container's), at `path` below it.
pub fn sc<'a>(holder: &'a Value, path: &str) -> Option<&'a Value> {
    holder
        .get("securityContext")?
        .pointer(&format!("/{}", path.replace('.', "/")))
        .filter(|v| !v.is_null())
}

/// The names of the containers for which `bad` holds.
pub fn bad_containers(spec: &Value, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    all_containers(spec).filter(|c| bad(c)).map(name).collect()
}

/// Whether the pod declares it runs on Windows (some restricted checks skip those).
pub fn is_windows(spec: &Value) -> bool {
    spec.pointer("/os/name").and_then(Value::as_str) == Some("windows")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn baseline_reports_in_upstream_order() {
        let spec = json!({
            "hostNetwork": true,
            "containers": [{"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}}}],
        });
        let v = evaluate(Level::Baseline, &json!({}), &spec);
        assert_eq!(
            describe(&v),
            "host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true), \
             non-default capabilities (container \"c\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)"
        );
        assert!(evaluate(Level::Privileged, &json!({}), &spec).is_empty());
    }

    #[test]
    fn restricted_reports_the_well_known_message() {
        let spec = json!({"containers": [{"name": "c", "image": "x"}]});
        assert!(evaluate(Level::Baseline, &json!({}), &spec).is_empty());
        let v = evaluate(Level::Restricted, &json!({}), &spec);
        assert_eq!(
            describe(&v),
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(
            reasons(&v),
            "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
        let hardened = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        });
        assert!(evaluate(Level::Restricted, &json!({}), &hardened).is_empty());
    }
}
