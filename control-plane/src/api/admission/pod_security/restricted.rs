//! The restricted Pod Security Standard checks (policy version 1.33), run
//! after the baseline ones: allowPrivilegeEscalation=false, capabilities
//! dropping ALL (adding at most NET_BIND_SERVICE), the volume type
//! allow-list, runAsNonRoot, no runAsUser=0, and a RuntimeDefault or
//! Localhost seccomp profile. Pure.

use std::collections::BTreeSet;

use serde_json::Value;

use super::super::join_quoted;
use super::baseline::bad_seccomp;
use super::checks::{
    Violation, all_containers, bad_containers, containers_phrase, is_windows, pluralize, sc,
    violation,
};

/// Volume sources a restricted pod may use.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume sources upstream names when refusing them.
const KNOWN_VOLUMES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn bool_at(holder: &Value, path: &str) -> Option<bool> {
    sc(holder, path).and_then(Value::as_bool)
}

/// Containers must set allowPrivilegeEscalation=false.
pub fn allow_privilege_escalation(_: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    let containers = bad_containers(spec, |c| {
        bool_at(c, "allowPrivilegeEscalation") != Some(false)
    });
    if containers.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&containers)
        ),
    )
}

fn strs<'a>(holder: &'a Value, path: &str) -> impl Iterator<Item = &'a str> {
    sc(holder, path)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Containers must drop ALL capabilities and may add only NET_BIND_SERVICE.
pub fn capabilities(_: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    let missing_drop = bad_containers(spec, |c| !strs(c, "capabilities.drop").any(|d| d == "ALL"));
    let adding = bad_containers(spec, |c| {
        strs(c, "capabilities.add").any(|a| a != "NET_BIND_SERVICE")
    });
    let forbidden: BTreeSet<String> = all_containers(spec)
        .flat_map(|c| strs(c, "capabilities.add"))
        .filter(|a| *a != "NET_BIND_SERVICE")
        .map(String::from)
        .collect();
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = forbidden.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quoted(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// Only the allow-listed volume types.
pub fn volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let has = |k: &str| v.get(k).is_some_and(|s| !s.is_null());
        if ALLOWED_VOLUMES.iter().any(|k| has(k)) {
            continue;
        }
        names.push(
            v.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
        let kind = KNOWN_VOLUMES
            .iter()
            .find(|k| has(k))
            .copied()
            .unwrap_or("unknown");
        types.insert(kind.to_string());
    }
    if names.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quoted(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quoted(&types)
        ),
    )
}

/// Pod or every container must set runAsNonRoot=true (and none false).
pub fn run_as_non_root(_: &Value, spec: &Value) -> Option<Violation> {
    let pod = bool_at(spec, "runAsNonRoot");
    let explicit = bad_containers(spec, |c| bool_at(c, "runAsNonRoot") == Some(false));
    let implicit = bad_containers(spec, |c| {
        bool_at(c, "runAsNonRoot").is_none() && pod != Some(true)
    });
    let mut who = Vec::new();
    if pod == Some(false) {
        who.push("pod".to_string());
    }
    if !explicit.is_empty() {
        who.push(containers_phrase(&explicit));
    }
    if !who.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                who.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
    )
}

/// Neither pod nor containers may set runAsUser=0.
pub fn run_as_user(_: &Value, spec: &Value) -> Option<Violation> {
    let root = |h: &Value| sc(h, "runAsUser").and_then(Value::as_i64) == Some(0);
    let containers = bad_containers(spec, root);
    let mut who = Vec::new();
    if root(spec) {
        who.push("pod".to_string());
    }
    if !containers.is_empty() {
        who.push(containers_phrase(&containers));
    }
    if who.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", who.join(" and ")),
    )
}

/// seccomp must be RuntimeDefault or Localhost, on the pod or every container.
pub fn seccomp_profile(_: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    let (pod, explicit, values) = bad_seccomp(spec);
    let mut who = Vec::new();
    if pod {
        who.push("pod".to_string());
    }
    if !explicit.is_empty() {
        who.push(containers_phrase(&explicit));
    }
    if !who.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                who.join(" and "),
                join_quoted(&values)
            ),
        );
    }
    let pod_set = sc(spec, "seccompProfile").is_some();
    let implicit = bad_containers(spec, |c| sc(c, "seccompProfile").is_none() && !pod_set);
    if implicit.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(v: Option<Violation>) -> String {
        let v = v.expect("a violation");
        format!("{} ({})", v.reason, v.detail)
    }

    #[test]
    fn capabilities_and_escalation() {
        let spec = json!({"containers": [
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_TIME"]}}},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": false}},
        ]});
        assert_eq!(
            detail(allow_privilege_escalation(&json!({}), &spec)),
            "allowPrivilegeEscalation != false (container \"a\" must set securityContext.allowPrivilegeEscalation=false)"
        );
        assert_eq!(
            detail(capabilities(&json!({}), &spec)),
            "unrestricted capabilities (container \"b\" must set securityContext.capabilities.drop=[\"ALL\"]; \
             container \"a\" must not include \"SYS_TIME\" in securityContext.capabilities.add)"
        );
        let windows = json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]});
        assert!(capabilities(&json!({}), &windows).is_none());
        assert!(allow_privilege_escalation(&json!({}), &windows).is_none());
    }

    #[test]
    fn volumes_users_and_seccomp() {
        let spec = json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {}}, {"name": "ok", "configMap": {"name": "x"}}],
            "securityContext": {"runAsUser": 0},
            "containers": [{"name": "c", "securityContext": {"runAsNonRoot": false, "seccompProfile": {"type": "Unconfined"}}}, {"name": "d"}]});
        assert_eq!(
            detail(volumes(&json!({}), &spec)),
            "restricted volume types (volumes \"h\", \"n\" use restricted volume types \"hostPath\", \"nfs\")"
        );
        assert_eq!(
            detail(run_as_non_root(&json!({}), &spec)),
            "runAsNonRoot != true (container \"c\" must not set securityContext.runAsNonRoot=false)"
        );
        assert_eq!(
            detail(run_as_user(&json!({}), &spec)),
            "runAsUser=0 (pod must not set runAsUser=0)"
        );
        assert_eq!(
            detail(seccomp_profile(&json!({}), &spec)),
            "seccompProfile (container \"c\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
        let pod_level = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "Localhost"}}, "containers": [{"name": "c"}]});
        assert!(run_as_non_root(&json!({}), &pod_level).is_none());
        assert!(seccomp_profile(&json!({}), &pod_level).is_none());
    }
}
