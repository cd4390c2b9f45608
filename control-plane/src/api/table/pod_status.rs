//! The pod STATUS, READY and RESTARTS cells computed exactly as kubectl's
//! printer does (Init:N/M, Init:Error, CrashLoopBackOff, Completed,
//! ContainerCreating, Terminating, ...).

use serde_json::Value;

use crate::api::meta;

/// What kubectl shows for a pod: (ready "n/m", status reason, restarts, last restart time).
pub struct PodSummary {
    pub ready: String,
    pub reason: String,
    pub restarts: i64,
    pub last_restart: Option<String>,
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn terminated_reason(term: &Value, prefix: &str) -> String {
    match term
        .get("reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        Some(r) => format!("{prefix}{r}"),
        None => match term
            .get("signal")
            .and_then(Value::as_i64)
            .filter(|s| *s != 0)
        {
            Some(sig) => format!("{prefix}Signal:{sig}"),
            None => format!(
                "{prefix}ExitCode:{}",
                term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            ),
        },
    }
}

fn condition_true(status: &Value, kind: &str) -> bool {
    arr(status, "conditions")
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn later(a: Option<String>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) if b > a.as_str() => Some(b.to_string()),
        (None, Some(b)) => Some(b.to_string()),
        (a, _) => a,
    }
}

/// READY, STATUS and RESTARTS of a pod.
pub fn summarize(pod: &Value) -> PodSummary {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let status = pod.get("status").cloned().unwrap_or(Value::Null);
    let phase = status.get("phase").and_then(Value::as_str).unwrap_or("");
    let mut reason = status
        .get("reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_string();
    if arr(&status, "conditions")
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let init_specs = arr(&spec, "initContainers");
    let is_sidecar = |name: &str| {
        init_specs.iter().any(|c| {
            c["name"] == name && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
        })
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .count();
    let total = arr(&spec, "containers").len() + sidecars;
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<String> = None;
    let mut initializing = false;
    let init_count = init_specs.len();
    for (i, c) in arr(&status, "initContainerStatuses").iter().enumerate() {
        let name = c["name"].as_str().unwrap_or("");
        let count = c["restartCount"].as_i64().unwrap_or(0);
        restarts += count;
        last_restart = later(
            last_restart,
            c["lastState"]["terminated"]["finishedAt"].as_str(),
        );
        let state = &c["state"];
        if is_sidecar(name) {
            sidecar_restarts += count;
            if c["started"].as_bool() == Some(true) {
                if c["ready"].as_bool() == Some(true) {
                    ready += 1;
                }
                continue;
            }
        }
        if state.get("terminated").is_some() && state["terminated"]["exitCode"].as_i64() == Some(0)
        {
            continue;
        }
        if let Some(term) = state.get("terminated") {
            reason = terminated_reason(term, "Init:");
        } else if let Some(w) = state["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{init_count}");
        }
        initializing = true;
        break;
    }
    if !initializing || condition_true(&status, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for c in arr(&status, "containerStatuses").iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            last_restart = later(
                last_restart,
                c["lastState"]["terminated"]["finishedAt"].as_str(),
            );
            let state = &c["state"];
            if let Some(w) = state["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = w.to_string();
            } else if let Some(term) = state.get("terminated") {
                reason = terminated_reason(term, "");
            } else if c["ready"].as_bool() == Some(true) && state.get("running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(&status, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if meta::is_deleting(pod) {
        if status["reason"] == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    PodSummary {
        ready: format!("{ready}/{total}"),
        reason,
        restarts,
        last_restart,
    }
}

/// The RESTARTS cell: `3` or `3 (5m ago)`.
pub fn restarts_cell(summary: &PodSummary) -> String {
    match (&summary.last_restart, summary.restarts) {
        (Some(ts), n) if n > 0 => format!("{n} ({} ago)", meta::age(Some(ts))),
        (_, n) => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(pod: &Value) -> String {
        summarize(pod).reason
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec, "status": status})
    }

    #[test]
    fn pending_then_container_creating_then_running() {
        let spec = json!({"containers": [{"name": "a"}]});
        assert_eq!(
            reason(&pod(spec.clone(), json!({"phase": "Pending"}))),
            "Pending"
        );
        let creating = json!({"phase": "Pending", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
        assert_eq!(reason(&pod(spec.clone(), creating)), "ContainerCreating");
        let running = json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}}]});
        let s = summarize(&pod(spec, running));
        assert_eq!(
            (s.ready.as_str(), s.reason.as_str(), s.restarts),
            ("1/1", "Running", 2)
        );
    }

    #[test]
    fn init_containers_and_crash_loops() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let init = json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "restartCount": 0, "state": {"running": {}}}]});
        assert_eq!(reason(&pod(spec.clone(), init)), "Init:1/2");
        let failed = json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 1, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
        assert_eq!(reason(&pod(spec, failed)), "Init:Error");
        let crash = json!({"phase": "Running", "containerStatuses": [{"name": "a", "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        assert_eq!(
            reason(&pod(json!({"containers": [{"name": "a"}]}), crash)),
            "CrashLoopBackOff"
        );
        let done = json!({"phase": "Succeeded", "containerStatuses": [{"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        assert_eq!(
            reason(&pod(json!({"containers": [{"name": "a"}]}), done)),
            "Completed"
        );
    }

    #[test]
    fn deleting_pods_are_terminating() {
        let mut p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Running"}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(reason(&p), "Terminating");
    }
}
