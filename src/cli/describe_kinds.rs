//! The kind-specific parts of `describe` for the kinds users look at most:
//! Pods (node, status, containers and their states, conditions, volumes)
//! and Deployments (replicas, strategy, template, conditions).

use serde_json::Value;

use super::describe::Fields;
use super::table::labels_text;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn or_none(v: &str) -> &str {
    if v.is_empty() { "<none>" } else { v }
}

pub fn pod(pod: &Value, out: &mut Fields) {
    let spec = &pod["spec"];
    let status = &pod["status"];
    out.field(0, "Node", or_none(s(&spec["nodeName"])));
    out.field(0, "Start Time", or_none(s(&status["startTime"])));
    let phase = match pod["metadata"]["deletionTimestamp"].as_str() {
        Some(_) => "Terminating",
        None => s(&status["phase"]),
    };
    out.field(0, "Status", or_none(phase));
    out.field(0, "IP", or_none(s(&status["podIP"])));
    if let Some(rc) = spec["runtimeClassName"].as_str() {
        out.field(0, "Runtime Class Name", rc);
    }
    let statuses = |key: &str, name: &str| {
        status[key]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for (key, title, status_key) in [
        ("initContainers", "Init Containers", "initContainerStatuses"),
        ("containers", "Containers", "containerStatuses"),
    ] {
        let Some(containers) = spec[key].as_array().filter(|c| !c.is_empty()) else {
            continue;
        };
        out.heading(0, title);
        for c in containers {
            container(c, &statuses(status_key, s(&c["name"])), out);
        }
    }
    if let Some(conditions) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
        out.heading(0, "Conditions");
        for c in conditions {
            out.field(1, s(&c["type"]), s(&c["status"]));
        }
    }
    if let Some(volumes) = spec["volumes"].as_array().filter(|v| !v.is_empty()) {
        out.heading(0, "Volumes");
        for v in volumes {
            let source = v
                .as_object()
                .and_then(|m| m.keys().find(|k| k.as_str() != "name").cloned())
                .unwrap_or_default();
            out.heading(1, s(&v["name"]));
            out.field(2, "Type", &source);
            if let Some(name) = v[&source]["name"]
                .as_str()
                .or(v[&source]["secretName"].as_str())
            {
                out.field(2, "Name", name);
            }
        }
    }
    out.field(0, "QoS Class", or_none(s(&status["qosClass"])));
    out.multi(
        0,
        "Node-Selectors",
        &labels_text(&spec["nodeSelector"]).replace(',', "\n"),
    );
}

fn container(c: &Value, status: &Value, out: &mut Fields) {
    out.heading(1, s(&c["name"]));
    out.field(2, "Image", s(&c["image"]));
    if let Some(ports) = c["ports"].as_array().filter(|p| !p.is_empty()) {
        let text: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["containerPort"],
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect();
        out.field(2, "Port", &text.join(", "));
    }
    for (key, title) in [("command", "Command"), ("args", "Args")] {
        if let Some(items) = c[key].as_array().filter(|a| !a.is_empty()) {
            let text: Vec<&str> = items.iter().map(s).collect();
            out.multi(2, title, &text.join("\n"));
        }
    }
    if !status.is_null() {
        state(2, "State", &status["state"], out);
        if status["lastState"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
        {
            state(2, "Last State", &status["lastState"], out);
        }
        out.field(
            2,
            "Ready",
            &status["ready"].as_bool().unwrap_or(false).to_string(),
        );
        out.field(
            2,
            "Restart Count",
            &status["restartCount"].as_i64().unwrap_or(0).to_string(),
        );
    }
    for (key, title) in [("limits", "Limits"), ("requests", "Requests")] {
        if let Some(map) = c["resources"][key].as_object().filter(|m| !m.is_empty()) {
            out.heading(2, title);
            for (k, v) in map {
                out.field(3, k, &super::table::cell_text(v));
            }
        }
    }
    for (key, title) in [
        ("livenessProbe", "Liveness"),
        ("readinessProbe", "Readiness"),
        ("startupProbe", "Startup"),
    ] {
        if !c[key].is_null() {
            out.field(2, title, &probe_text(&c[key]));
        }
    }
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| match e["value"].as_str() {
            Some(v) => (s(&e["name"]).to_string(), v.to_string()),
            None => (
                s(&e["name"]).to_string(),
                format!("<set from {}>", env_source(&e["valueFrom"])),
            ),
        })
        .collect();
    if env.is_empty() {
        out.field(2, "Environment", "<none>");
    } else {
        out.heading(2, "Environment");
        for (name, value) in env {
            out.field(3, &name, &value);
        }
    }
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mode = if m["readOnly"] == true { "ro" } else { "rw" };
            format!("{} from {} ({mode})", s(&m["mountPath"]), s(&m["name"]))
        })
        .collect();
    out.multi(
        2,
        "Mounts",
        &if mounts.is_empty() {
            "<none>".to_string()
        } else {
            mounts.join("\n")
        },
    );
}

fn env_source(from: &Value) -> String {
    if let Some(r) = from["secretKeyRef"].as_object() {
        return format!("secret {}, key {}", s(&r["name"]), s(&r["key"]));
    }
    if let Some(r) = from["configMapKeyRef"].as_object() {
        return format!("configmap {}, key {}", s(&r["name"]), s(&r["key"]));
    }
    if let Some(r) = from["fieldRef"].as_object() {
        return format!("field {}", s(&r["fieldPath"]));
    }
    "a reference".to_string()
}

fn state(depth: usize, title: &str, state: &Value, out: &mut Fields) {
    let Some((name, detail)) = state.as_object().and_then(|m| m.iter().next()) else {
        out.field(depth, title, "Waiting");
        return;
    };
    let mut word: Vec<char> = name.chars().collect();
    if let Some(c) = word.first_mut() {
        *c = c.to_ascii_uppercase();
    }
    out.field(depth, title, &word.into_iter().collect::<String>());
    for (key, label) in [
        ("reason", "Reason"),
        ("exitCode", "Exit Code"),
        ("startedAt", "Started"),
        ("finishedAt", "Finished"),
        ("message", "Message"),
    ] {
        if !detail[key].is_null() {
            out.field(depth + 1, label, &super::table::cell_text(&detail[key]));
        }
    }
}

fn probe_text(p: &Value) -> String {
    let action = if let Some(h) = p["httpGet"].as_object() {
        let port = super::table::cell_text(&h["port"]);
        format!(
            "http-get http://:{port}{}",
            h.get("path").and_then(Value::as_str).unwrap_or("/")
        )
    } else if let Some(t) = p["tcpSocket"].as_object() {
        format!("tcp-socket :{}", super::table::cell_text(&t["port"]))
    } else if let Some(cmd) = p["exec"]["command"].as_array() {
        let words: Vec<&str> = cmd.iter().map(s).collect();
        format!("exec [{}]", words.join(" "))
    } else {
        "unknown".to_string()
    };
    let num = |k: &str, d: i64| p[k].as_i64().unwrap_or(d);
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        num("initialDelaySeconds", 0),
        num("timeoutSeconds", 1),
        num("periodSeconds", 10),
        num("successThreshold", 1),
        num("failureThreshold", 3)
    )
}

pub fn deployment(d: &Value, out: &mut Fields) {
    let spec = &d["spec"];
    let status = &d["status"];
    let selector = super::target::selector_string(&spec["selector"]).unwrap_or_default();
    out.field(0, "Selector", or_none(&selector));
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let desired = spec["replicas"].as_i64().unwrap_or(1);
    out.field(
        0,
        "Replicas",
        &format!(
            "{desired} desired | {} updated | {} total | {} available | {} unavailable",
            n(&status["updatedReplicas"]),
            n(&status["replicas"]),
            n(&status["availableReplicas"]),
            n(&status["unavailableReplicas"])
        ),
    );
    out.field(0, "StrategyType", or_none(s(&spec["strategy"]["type"])));
    out.field(
        0,
        "MinReadySeconds",
        &n(&spec["minReadySeconds"]).to_string(),
    );
    if let Some(ru) = spec["strategy"]["rollingUpdate"].as_object() {
        out.field(
            0,
            "RollingUpdateStrategy",
            &format!(
                "{} max unavailable, {} max surge",
                ru.get("maxUnavailable")
                    .map(super::table::cell_text)
                    .unwrap_or_default(),
                ru.get("maxSurge")
                    .map(super::table::cell_text)
                    .unwrap_or_default()
            ),
        );
    }
    out.heading(0, "Pod Template");
    let template = &spec["template"];
    out.multi(
        1,
        "Labels",
        &labels_text(&template["metadata"]["labels"]).replace(',', "\n"),
    );
    out.heading(1, "Containers");
    for c in template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.heading(2, s(&c["name"]));
        out.field(3, "Image", s(&c["image"]));
    }
    if let Some(conditions) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
        out.heading(0, "Conditions");
        for c in conditions {
            out.field(
                1,
                s(&c["type"]),
                &format!("{}  {}", s(&c["status"]), s(&c["reason"])),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_shows_containers_states_and_probes() {
        let p = json!({
            "metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "web", "image": "samples/wasm/web.wasm",
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "A", "value": "1"},
                        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]
            }]},
            "status": {"phase": "Running", "podIP": "10.0.0.2", "containerStatuses": [{
                "name": "web", "ready": true, "restartCount": 2,
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
            }]}
        });
        let mut f = Fields::default();
        pod(&p, &mut f);
        let text = f.render();
        for want in [
            "Node:            n1",
            "    Image:          samples/wasm/web.wasm",
            "    Port:           8080/TCP",
            "    State:          Running",
            "      Started:  2024-01-01T00:00:00Z",
            "    Last State:     Terminated",
            "      Exit Code:  1",
            "    Restart Count:  2",
            "    Readiness:      http-get http://:http/healthz delay=0s timeout=1s period=5s #success=1 #failure=3",
            "      T:  <set from secret s, key token>",
            "    Mounts:         /shared from shared (rw)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn deployment_shows_replicas_line() {
        let d = json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                "strategy": {"type": "RollingUpdate"}},
                       "status": {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 1}});
        let mut f = Fields::default();
        deployment(&d, &mut f);
        let text = f.render();
        assert!(
            text.contains("2 desired | 2 updated | 3 total | 1 available | 0 unavailable"),
            "{text}"
        );
        assert!(
            text.contains("Selector:  app=web") || text.contains("app=web"),
            "{text}"
        );
    }
}
