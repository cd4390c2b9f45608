//! Table printers of workload kinds: deployments, replicasets,
//! statefulsets, daemonsets, jobs, cronjobs, HPAs, controllerrevisions.

use serde_json::{Value, json};

use super::{
    Printer, age_of, col, containers_and_images, int_at, name_of, selector_string, str_or,
};
use crate::api::meta;

/// The printer of a workload kind, if it has one.
pub fn printer(group: &str, kind: &str) -> Option<Printer> {
    Some(match (group, kind) {
        ("apps", "Deployment") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            cells: |o| {
                let (c, i) = containers_and_images(o.pointer("/spec/template/spec"));
                vec![
                    json!(name_of(o)),
                    json!(format!(
                        "{}/{}",
                        int_at(o, "status.readyReplicas"),
                        int_at(o, "spec.replicas")
                    )),
                    json!(int_at(o, "status.updatedReplicas")),
                    json!(int_at(o, "status.availableReplicas")),
                    json!(age_of(o)),
                    json!(c),
                    json!(i),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            },
        },
        ("apps", "ReplicaSet") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            cells: |o| {
                let (c, i) = containers_and_images(o.pointer("/spec/template/spec"));
                vec![
                    json!(name_of(o)),
                    json!(int_at(o, "spec.replicas")),
                    json!(int_at(o, "status.replicas")),
                    json!(int_at(o, "status.readyReplicas")),
                    json!(age_of(o)),
                    json!(c),
                    json!(i),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            },
        },
        ("apps", "StatefulSet") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
            ],
            cells: |o| {
                let (c, i) = containers_and_images(o.pointer("/spec/template/spec"));
                vec![
                    json!(name_of(o)),
                    json!(format!(
                        "{}/{}",
                        int_at(o, "status.readyReplicas"),
                        int_at(o, "spec.replicas")
                    )),
                    json!(age_of(o)),
                    json!(c),
                    json!(i),
                ]
            },
        },
        ("apps", "DaemonSet") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Node Selector", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            cells: |o| {
                let (c, i) = containers_and_images(o.pointer("/spec/template/spec"));
                vec![
                    json!(name_of(o)),
                    json!(int_at(o, "status.desiredNumberScheduled")),
                    json!(int_at(o, "status.currentNumberScheduled")),
                    json!(int_at(o, "status.numberReady")),
                    json!(int_at(o, "status.updatedNumberScheduled")),
                    json!(int_at(o, "status.numberAvailable")),
                    json!(super::map_string(
                        o.pointer("/spec/template/spec/nodeSelector")
                    )),
                    json!(age_of(o)),
                    json!(c),
                    json!(i),
                    json!(selector_string(o.pointer("/spec/selector"))),
                ]
            },
        },
        ("apps", "ControllerRevision") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Controller", "string", 0),
                col("Revision", "integer", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                let owner = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first());
                let controller = owner
                    .map(|r| {
                        format!(
                            "{}.{}/{}",
                            r["kind"].as_str().unwrap_or("").to_lowercase(),
                            r["apiVersion"]
                                .as_str()
                                .unwrap_or("")
                                .split('/')
                                .next()
                                .unwrap_or(""),
                            r["name"].as_str().unwrap_or("")
                        )
                    })
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    json!(name_of(o)),
                    json!(controller),
                    json!(int_at(o, "revision")),
                    json!(age_of(o)),
                ]
            },
        },
        ("batch", "Job") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Duration", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            cells: job_cells,
        },
        ("batch", "CronJob") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Schedule", "string", 0),
                col("Timezone", "string", 0),
                col("Suspend", "boolean", 0),
                col("Active", "integer", 0),
                col("Last Schedule", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            cells: |o| {
                let (c, i) =
                    containers_and_images(o.pointer("/spec/jobTemplate/spec/template/spec"));
                let last = o
                    .pointer("/status/lastScheduleTime")
                    .and_then(Value::as_str);
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "spec.schedule", "")),
                    json!(str_or(o, "spec.timeZone", "<none>")),
                    json!(
                        o.pointer("/spec/suspend")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    ),
                    json!(
                        o.pointer("/status/active")
                            .and_then(Value::as_array)
                            .map(Vec::len)
                            .unwrap_or(0)
                    ),
                    json!(if last.is_some() {
                        meta::age(last)
                    } else {
                        "<none>".into()
                    }),
                    json!(age_of(o)),
                    json!(c),
                    json!(i),
                    json!(selector_string(
                        o.pointer("/spec/jobTemplate/spec/selector")
                    )),
                ]
            },
        },
        ("autoscaling", "HorizontalPodAutoscaler") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Reference", "string", 0),
                col("Targets", "string", 0),
                col("MinPods", "string", 0),
                col("MaxPods", "string", 0),
                col("Replicas", "string", 0),
                col("Age", "string", 0),
            ],
            cells: hpa_cells,
        },
        _ => return None,
    })
}

fn condition_true(o: &Value, kind: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn job_cells(o: &Value) -> Vec<Value> {
    let (c, i) = containers_and_images(o.pointer("/spec/template/spec"));
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(n) => format!("{}/{n}", int_at(o, "status.succeeded")),
        None => {
            let parallelism = o
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if parallelism > 1 {
                format!("{}/1 of {parallelism}", int_at(o, "status.succeeded"))
            } else {
                format!("{}/1", int_at(o, "status.succeeded"))
            }
        }
    };
    let status = if condition_true(o, "Complete") {
        "Complete"
    } else if condition_true(o, "Failed") {
        "Failed"
    } else if meta::is_deleting(o) {
        "Terminating"
    } else if condition_true(o, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(o, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if condition_true(o, "Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    let start = o
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let end = o
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let duration = match (start, end) {
        (Some(s), Some(e)) => meta::human_duration((e - s).num_seconds()),
        (Some(s), None) => {
            meta::human_duration((chrono::Utc::now() - s.with_timezone(&chrono::Utc)).num_seconds())
        }
        _ => String::new(),
    };
    vec![
        json!(name_of(o)),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age_of(o)),
        json!(c),
        json!(i),
        json!(selector_string(o.pointer("/spec/selector"))),
    ]
}

fn hpa_cells(o: &Value) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_or(o, "spec.scaleTargetRef.kind", ""),
        str_or(o, "spec.scaleTargetRef.name", "")
    );
    let mut targets = Vec::new();
    let current = o
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in o
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m["type"] == "Resource" {
            let name = m["resource"]["name"].as_str().unwrap_or("");
            let cur = current
                .iter()
                .find(|c| c["resource"]["name"] == name)
                .and_then(|c| c["resource"]["current"]["averageUtilization"].as_i64())
                .map(|v| format!("{v}%"))
                .unwrap_or_else(|| "<unknown>".into());
            if let Some(t) = m["resource"]["target"]["averageUtilization"].as_i64() {
                targets.push(format!("{name}: {cur}/{t}%"));
            }
        }
    }
    if let Some(t) = o
        .pointer("/spec/targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
    {
        let cur = o
            .pointer("/status/currentCPUUtilizationPercentage")
            .and_then(Value::as_i64);
        targets.push(format!(
            "cpu: {}/{t}%",
            cur.map(|c| format!("{c}%"))
                .unwrap_or_else(|| "<unknown>".into())
        ));
    }
    vec![
        json!(name_of(o)),
        json!(reference),
        json!(if targets.is_empty() {
            "<none>".to_string()
        } else {
            targets.join(", ")
        }),
        json!(
            o.pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string()
        ),
        json!(int_at(o, "spec.maxReplicas").to_string()),
        json!(int_at(o, "status.currentReplicas").to_string()),
        json!(age_of(o)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ready_column() {
        let p = printer("apps", "Deployment").unwrap();
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let cells = (p.cells)(&d);
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[2], 3);
        assert_eq!(cells[5], "c");
    }

    #[test]
    fn job_status_and_completions() {
        let j = json!({"metadata": {"name": "j"}, "spec": {"completions": 2},
            "status": {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}],
                       "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:30Z"}});
        let cells = job_cells(&j);
        assert_eq!(cells[1], "Complete");
        assert_eq!(cells[2], "2/2");
        assert_eq!(cells[3], "30s");
    }
}
