//! The baseline Pod Security Standard checks (policy version 1.33): host
//! namespaces, privileged containers, added capabilities beyond the default
//! set, hostPath volumes, host ports, AppArmor/SELinux/seccomp overrides,
//! /proc mounts, unsafe sysctls and Windows host processes. Each returns
//! pod-security-admission's reason and detail wording. Pure.

use std::collections::BTreeSet;

use serde_json::Value;

use super::super::{go_quote, join_quoted};
use super::checks::{
    Violation, all_containers, bad_containers, containers_phrase, pluralize, sc, violation,
};

/// Capabilities a baseline container may add.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls considered safe (namespaced and isolated).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn str_at<'a>(v: Option<&'a Value>, field: &str) -> Option<&'a str> {
    v?.get(field)?.as_str()
}

fn flag(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// "pod", `container "c"`, joined with " and ": who set a forbidden value.
fn setters(pod: bool, containers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(containers_phrase(containers));
    }
    out
}

/// AppArmor profiles must be RuntimeDefault or Localhost (fields and the beta annotations).
pub fn app_armor_profile(metadata: &Value, spec: &Value) -> Option<Violation> {
    let allowed = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let mut values = BTreeSet::new();
    let pod_type = sc(spec, "appArmorProfile").map(|p| str_at(Some(p), "type"));
    let pod_bad = pod_type.is_some_and(|t| !allowed(t));
    if pod_bad {
        values.insert(pod_type.flatten().unwrap_or("").to_string());
    }
    let containers = bad_containers(spec, |c| {
        let t = sc(c, "appArmorProfile").map(|p| str_at(Some(p), "type"));
        t.is_some_and(|t| !allowed(t))
    });
    for c in all_containers(spec) {
        if let Some(t) = sc(c, "appArmorProfile").map(|p| str_at(Some(p), "type"))
            && !allowed(t)
        {
            values.insert(t.unwrap_or("").to_string());
        }
    }
    let mut annotations: Vec<String> = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (k.starts_with(APPARMOR_ANNOTATION_PREFIX) && !ok)
                .then(|| format!("{k}={}", go_quote(v)))
        })
        .collect();
    annotations.sort();
    let mut who = setters(pod_bad, &containers);
    let mut bad: Vec<String> = values.into_iter().collect();
    if !annotations.is_empty() {
        who.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        bad.extend(annotations);
    }
    if who.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            who.join(" and "),
            join_quoted(&bad)
        ),
    )
}

/// Containers may only add capabilities from the default set.
pub fn capabilities(_: &Value, spec: &Value) -> Option<Violation> {
    let mut forbidden = BTreeSet::new();
    let containers = bad_containers(spec, |c| {
        let added = sc(c, "capabilities.add").and_then(Value::as_array);
        let extra: Vec<&str> = added
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
            .collect();
        !extra.is_empty()
    });
    for c in all_containers(spec) {
        for cap in sc(c, "capabilities.add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(cap) = cap
                .as_str()
                .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
            {
                forbidden.insert(cap.to_string());
            }
        }
    }
    if containers.is_empty() {
        return None;
    }
    let caps: Vec<String> = forbidden.into_iter().collect();
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&containers),
            join_quoted(&caps)
        ),
    )
}

/// No host network, PID or IPC namespace.
pub fn host_namespaces(_: &Value, spec: &Value) -> Option<Violation> {
    let shared: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(field, _)| flag(spec.get(*field)))
    .map(|(_, shown)| shown)
    .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

/// No hostPath volumes.
pub fn host_path_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let names: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(|v| {
            v.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quoted(&names)
        ),
    )
}

fn host_ports_of(c: &Value) -> impl Iterator<Item = i64> + '_ {
    c.get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
        .filter(|p| *p != 0)
}

/// No host ports.
pub fn host_ports(_: &Value, spec: &Value) -> Option<Violation> {
    let containers = bad_containers(spec, |c| host_ports_of(c).next().is_some());
    if containers.is_empty() {
        return None;
    }
    let ports: BTreeSet<String> = all_containers(spec)
        .flat_map(host_ports_of)
        .map(|p| p.to_string())
        .collect();
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&containers),
            pluralize("uses", "use", containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

/// No privileged containers.
pub fn privileged(_: &Value, spec: &Value) -> Option<Violation> {
    let containers = bad_containers(spec, |c| flag(sc(c, "privileged")));
    if containers.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&containers)
        ),
    )
}

/// A procMount other than Default.
fn bad_proc_mount(c: &Value) -> Option<&str> {
    sc(c, "procMount")
        .and_then(Value::as_str)
        .filter(|m| *m != "Default")
}

/// /proc is mounted with the default masks.
pub fn proc_mount(_: &Value, spec: &Value) -> Option<Violation> {
    let containers = bad_containers(spec, |c| bad_proc_mount(c).is_some());
    if containers.is_empty() {
        return None;
    }
    let types: BTreeSet<String> = all_containers(spec)
        .filter_map(bad_proc_mount)
        .map(String::from)
        .collect();
    let types: Vec<String> = types.into_iter().collect();
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&containers),
            join_quoted(&types)
        ),
    )
}

/// SELinux options: only the container types, no user or role.
pub fn se_linux_options(_: &Value, spec: &Value) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut inspect = |holder: &Value| -> bool {
        let Some(opts) = sc(holder, "seLinuxOptions") else {
            return false;
        };
        let t = str_at(Some(opts), "type").unwrap_or("");
        let bad_type = !SELINUX_TYPES.contains(&t);
        if bad_type {
            types.insert(t.to_string());
        }
        let set_user = str_at(Some(opts), "user").is_some_and(|s| !s.is_empty());
        let set_role = str_at(Some(opts), "role").is_some_and(|s| !s.is_empty());
        user |= set_user;
        role |= set_role;
        bad_type || set_user || set_role
    };
    let pod = inspect(spec);
    let containers: Vec<String> = all_containers(spec)
        .filter(|c| inspect(c))
        .map(super::checks::name)
        .collect();
    let who = setters(pod, &containers);
    if who.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    let mut data = Vec::new();
    if !types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quoted(&types)
        ));
    }
    if user {
        data.push("user may not be set".to_string());
    }
    if role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            who.join(" and "),
            data.join("; ")
        ),
    )
}

fn seccomp_type(holder: &Value) -> Option<&str> {
    sc(holder, "seccompProfile").map(|p| str_at(Some(p), "type").unwrap_or(""))
}

/// Explicitly set seccomp profiles that are neither RuntimeDefault nor Localhost (setters, values).
pub fn bad_seccomp(spec: &Value) -> (bool, Vec<String>, Vec<String>) {
    let valid = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut values = BTreeSet::new();
    let pod_type = seccomp_type(spec);
    let pod = pod_type.is_some_and(|t| !valid(t));
    if let Some(t) = pod_type.filter(|t| !valid(t)) {
        values.insert(t.to_string());
    }
    let containers = bad_containers(spec, |c| seccomp_type(c).is_some_and(|t| !valid(t)));
    for t in all_containers(spec)
        .filter_map(seccomp_type)
        .filter(|t| !valid(t))
    {
        values.insert(t.to_string());
    }
    (pod, containers, values.into_iter().collect())
}

/// seccomp must not be Unconfined where it is set.
pub fn seccomp_profile(_: &Value, spec: &Value) -> Option<Violation> {
    let (pod, containers, values) = bad_seccomp(spec);
    let who = setters(pod, &containers);
    if who.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            who.join(" and "),
            join_quoted(&values)
        ),
    )
}

/// Only safe sysctls.
pub fn sysctls(_: &Value, spec: &Value) -> Option<Violation> {
    let forbidden: Vec<&str> = sc(spec, "sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

/// No Windows HostProcess containers.
pub fn windows_host_process(_: &Value, spec: &Value) -> Option<Violation> {
    let host = |h: &Value| flag(sc(h, "windowsOptions.hostProcess"));
    let containers = bad_containers(spec, host);
    let who = setters(host(spec), &containers);
    if who.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            who.join(" and ")
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
    fn host_namespaces_paths_and_ports() {
        let spec = json!({"hostPID": true, "hostIPC": true, "volumes": [{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "emptyDir": {}}],
            "containers": [{"name": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 0}]},
                           {"name": "y", "ports": [{"containerPort": 90, "hostPort": 9090}]}]});
        assert_eq!(
            detail(host_namespaces(&json!({}), &spec)),
            "host namespaces (hostPID=true, hostIPC=true)"
        );
        assert_eq!(
            detail(host_path_volumes(&json!({}), &spec)),
            "hostPath volumes (volume \"a\")"
        );
        assert_eq!(
            detail(host_ports(&json!({}), &spec)),
            "hostPort (containers \"x\", \"y\" use hostPorts 8080, 9090)"
        );
        assert!(host_namespaces(&json!({}), &json!({"hostNetwork": false})).is_none());
    }

    #[test]
    fn capabilities_and_privileged() {
        let spec = json!({"initContainers": [{"name": "i", "securityContext": {"capabilities": {"add": ["CHOWN", "SYS_ADMIN"]}}}],
            "containers": [{"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_RAW"]}}}]});
        assert_eq!(
            detail(capabilities(&json!({}), &spec)),
            "non-default capabilities (containers \"i\", \"c\" must not include \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
        );
        assert_eq!(
            detail(privileged(&json!({}), &spec)),
            "privileged (container \"c\" must not set securityContext.privileged=true)"
        );
        let fine = json!({"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}, "privileged": false}}]});
        assert!(
            capabilities(&json!({}), &fine).is_none() && privileged(&json!({}), &fine).is_none()
        );
    }

    #[test]
    fn profiles_and_options() {
        let spec = json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"},
                "seLinuxOptions": {"type": "spc_t"}, "sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
            "containers": [{"name": "c", "securityContext": {"procMount": "Unmasked", "seLinuxOptions": {"user": "root"},
                "windowsOptions": {"hostProcess": true}}}]});
        let meta = json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}});
        assert_eq!(
            detail(app_armor_profile(&meta, &spec)),
            "forbidden AppArmor profiles (pod and annotation must not set AppArmor profile type to \"Unconfined\", \
             \"container.apparmor.security.beta.kubernetes.io/c=\\\"unconfined\\\"\")"
        );
        assert_eq!(
            detail(seccomp_profile(&json!({}), &spec)),
            "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
        assert_eq!(
            detail(se_linux_options(&json!({}), &spec)),
            "seLinuxOptions (pod and container \"c\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set)"
        );
        assert_eq!(
            detail(sysctls(&json!({}), &spec)),
            "forbidden sysctls (kernel.msgmax)"
        );
        assert_eq!(
            detail(proc_mount(&json!({}), &spec)),
            "procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\")"
        );
        assert_eq!(
            detail(windows_host_process(&json!({}), &spec)),
            "hostProcess (container \"c\" must not set securityContext.windowsOptions.hostProcess=true)"
        );
        let fine = json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "seLinuxOptions": {"type": "container_t"}},
            "containers": [{"name": "c", "securityContext": {"procMount": "Default", "appArmorProfile": {"type": "Localhost"}}}]});
        for check in [
            app_armor_profile,
            seccomp_profile,
            se_linux_options,
            proc_mount,
            sysctls,
        ] {
            assert!(check(&json!({}), &fine).is_none());
        }
    }
}
