//! Defaulting of objects before validation and storage, per kind, as
//! Kubernetes' SetDefaults_* functions do (pods and pod templates in
//! `pods`; workloads, services, namespaces, secrets and others here).

mod pods;

use serde_json::{Map, Value, json};

use super::registry::ResourceInfo;

pub use pods::{default_pod_spec, qos_class};

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

fn obj_at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for p in path {
        cur = cur.get_mut(*p)?;
    }
    cur.as_object_mut()
}

fn default_template(obj: &mut Value, path: &[&str]) {
    let mut cur = &mut *obj;
    for p in path {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    default_pod_spec(cur);
}

/// Applies the defaults of `info`'s kind; `creating` is false for updates.
pub fn apply(info: &ResourceInfo, obj: &mut Value, creating: bool) {
    match (info.group, info.kind) {
        ("", "Pod") => pods::default_pod(obj, creating),
        ("", "Namespace") => {
            if let Some(name) = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(String::from)
                && let Some(md) = obj_at(obj, &["metadata"])
            {
                let labels = md.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            if creating && let Some(m) = obj.as_object_mut() {
                let spec = m.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = spec.as_object_mut() {
                    set_default(s, "finalizers", json!(["kubernetes"]));
                }
                m.insert("status".into(), json!({ "phase": "Active" }));
            }
        }
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "type", json!("Opaque"));
                if let Some(Value::Object(string_data)) = m.remove("stringData") {
                    use base64::Engine as _;
                    let data = m.entry("data").or_insert_with(|| json!({}));
                    if let Some(d) = data.as_object_mut() {
                        for (k, v) in string_data {
                            let s = v.as_str().unwrap_or("").as_bytes().to_vec();
                            d.insert(
                                k,
                                json!(base64::engine::general_purpose::STANDARD.encode(s)),
                            );
                        }
                    }
                }
            }
        }
        ("", "Service") => default_service(obj),
        ("", "LimitRange") => super::admission::default_limit_range(obj),
        ("", "PersistentVolumeClaim") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "volumeMode", json!("Filesystem"));
            }
            if creating {
                obj["status"] = json!({ "phase": "Pending" });
            }
        }
        ("apps", "Deployment") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "replicas", json!(1));
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(s, "progressDeadlineSeconds", json!(600));
                set_default(s, "strategy", json!({"type": "RollingUpdate"}));
                if let Some(st) = s.get_mut("strategy").and_then(Value::as_object_mut)
                    && st.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        set_default(ru, "maxUnavailable", json!("25%"));
                        set_default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            default_template(obj, &["spec", "template", "spec"]);
        }
        ("apps", "ReplicaSet") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "replicas", json!(1));
            }
            default_template(obj, &["spec", "template", "spec"]);
        }
        ("apps", "StatefulSet") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "replicas", json!(1));
                set_default(s, "podManagementPolicy", json!("OrderedReady"));
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(
                    s,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                set_default(
                    s,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            default_template(obj, &["spec", "template", "spec"]);
        }
        ("apps", "DaemonSet") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(s, "updateStrategy", json!({}));
                if let Some(st) = s.get_mut("updateStrategy").and_then(Value::as_object_mut) {
                    set_default(st, "type", json!("RollingUpdate"));
                    if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                        if let Some(ru) = ru.as_object_mut() {
                            set_default(ru, "maxUnavailable", json!(1));
                            set_default(ru, "maxSurge", json!(0));
                        }
                    }
                }
            }
            default_template(obj, &["spec", "template", "spec"]);
        }
        ("batch", "Job") => default_job(obj, creating),
        ("batch", "CronJob") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "concurrencyPolicy", json!("Allow"));
                set_default(s, "suspend", json!(false));
                set_default(s, "successfulJobsHistoryLimit", json!(3));
                set_default(s, "failedJobsHistoryLimit", json!(1));
            }
            default_template(obj, &["spec", "jobTemplate", "spec", "template", "spec"]);
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if let Some(s) = obj_at(obj, &["spec"]) {
                set_default(s, "minReplicas", json!(1));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        _ => {}
    }
}

fn default_service(obj: &mut Value) {
    let Some(s) = obj_at(obj, &["spec"]) else {
        return;
    };
    set_default(s, "type", json!("ClusterIP"));
    set_default(s, "sessionAffinity", json!("None"));
    let kind = s
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if kind != "ExternalName" {
        set_default(s, "ipFamilies", json!(["IPv4"]));
        set_default(s, "ipFamilyPolicy", json!("SingleStack"));
        set_default(s, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(s, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        set_default(s, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
}

fn default_job(obj: &mut Value, creating: bool) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(s) = obj_at(obj, &["spec"]) else {
        return;
    };
    set_default(s, "parallelism", json!(1));
    set_default(s, "backoffLimit", json!(6));
    set_default(s, "completionMode", json!("NonIndexed"));
    set_default(s, "suspend", json!(false));
    set_default(s, "manualSelector", json!(false));
    set_default(s, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if s.get("completions").is_none() && s.get("parallelism") == Some(&json!(1)) {
        s.insert("completions".into(), json!(1));
    }
    // The API server generates the Job's selector and labels its pod template.
    if creating && s.get("manualSelector") != Some(&json!(true)) && !uid.is_empty() {
        let labels = json!({
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        });
        s.insert(
            "selector".into(),
            json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } }),
        );
        let template = s.entry("template").or_insert_with(|| json!({}));
        if let Some(t) = template.as_object_mut() {
            let md = t.entry("metadata").or_insert_with(|| json!({}));
            if let Some(md) = md.as_object_mut() {
                let l = md.entry("labels").or_insert_with(|| json!({}));
                if let (Some(l), Some(add)) = (l.as_object_mut(), labels.as_object()) {
                    for (k, v) in add {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    default_template(obj, &["spec", "template", "spec"]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;

    #[test]
    fn deployment_defaults_include_template() {
        let info = lookup("apps", "v1", "deployments").unwrap();
        let mut d =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        apply(info, &mut d, true);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn secrets_merge_string_data() {
        let info = lookup("", "v1", "secrets").unwrap();
        let mut s = json!({"stringData": {"a": "hi"}});
        apply(info, &mut s, true);
        assert_eq!(s["data"]["a"], "aGk=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn services_and_jobs() {
        let svc = lookup("", "v1", "services").unwrap();
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply(svc, &mut s, true);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let job = lookup("batch", "v1", "jobs").unwrap();
        let mut j = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {"containers": []}}}});
        apply(job, &mut j, true);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        assert_eq!(j["spec"]["completions"], 1);
    }
}
