//! Table printers of core/v1 kinds: pods, services, nodes, namespaces,
//! configmaps, secrets, serviceaccounts, events, endpoints, volumes, quotas.

use serde_json::{Value, json};

use super::pod_status::{restarts_cell, summarize};
use super::{Printer, age_of, col, int_at, map_string, name_of, str_or};
use crate::api::meta;

/// The printer of a core kind, if it has one.
pub fn printer(group: &str, kind: &str) -> Option<Printer> {
    if !group.is_empty() {
        return None;
    }
    Some(match kind {
        "Pod" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
                col("Nominated Node", "string", 1),
                col("Readiness Gates", "string", 1),
            ],
            cells: pod_cells,
        },
        "Service" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                col("Age", "string", 0),
                col("Selector", "string", 1),
            ],
            cells: service_cells,
        },
        "Node" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Roles", "string", 0),
                col("Age", "string", 0),
                col("Version", "string", 0),
                col("Internal-IP", "string", 1),
                col("External-IP", "string", 1),
                col("OS-Image", "string", 1),
                col("Kernel-Version", "string", 1),
                col("Container-Runtime", "string", 1),
            ],
            cells: node_cells,
        },
        "Namespace" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "status.phase", "")),
                    json!(age_of(o)),
                ]
            },
        },
        "ConfigMap" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Data", "integer", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(count(o, "data") + count(o, "binaryData")),
                    json!(age_of(o)),
                ]
            },
        },
        "Secret" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Data", "integer", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                let n = count(o, "data") + count(o, "stringData");
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "type", "Opaque")),
                    json!(n),
                    json!(age_of(o)),
                ]
            },
        },
        "ServiceAccount" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Secrets", "integer", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(count(o, "secrets")),
                    json!(age_of(o)),
                ]
            },
        },
        "Event" => Printer {
            columns: columns![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Subobject", "string", 1),
                col("Source", "string", 1),
                col("Message", "string", 0),
                col("First Seen", "string", 1),
                col("Count", "string", 1),
                col("Name", "string", 1),
            ],
            cells: event_cells,
        },
        "Endpoints" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Endpoints", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(endpoints_string(o)),
                    json!(age_of(o)),
                ]
            },
        },
        "PersistentVolumeClaim" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Volume", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("StorageClass", "string", 0),
                col("VolumeAttributesClass", "string", 0),
                col("Age", "string", 0),
                col("VolumeMode", "string", 1),
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "status.phase", "")),
                    json!(str_or(o, "spec.volumeName", "")),
                    json!(str_or(o, "status.capacity.storage", "")),
                    json!(access_modes(o.pointer("/status/accessModes"))),
                    json!(str_or(o, "spec.storageClassName", "<unset>")),
                    json!(str_or(o, "spec.volumeAttributesClassName", "<unset>")),
                    json!(age_of(o)),
                    json!(str_or(o, "spec.volumeMode", "Filesystem")),
                ]
            },
        },
        "PersistentVolume" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("Reclaim Policy", "string", 0),
                col("Status", "string", 0),
                col("Claim", "string", 0),
                col("StorageClass", "string", 0),
                col("VolumeAttributesClass", "string", 0),
                col("Reason", "string", 0),
                col("Age", "string", 0),
            ],
            cells: |o| {
                let claim = match o.pointer("/spec/claimRef") {
                    Some(c) => format!(
                        "{}/{}",
                        c["namespace"].as_str().unwrap_or(""),
                        c["name"].as_str().unwrap_or("")
                    ),
                    None => String::new(),
                };
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "spec.capacity.storage", "")),
                    json!(access_modes(o.pointer("/spec/accessModes"))),
                    json!(str_or(o, "spec.persistentVolumeReclaimPolicy", "")),
                    json!(str_or(o, "status.phase", "")),
                    json!(claim),
                    json!(str_or(o, "spec.storageClassName", "")),
                    json!(str_or(o, "spec.volumeAttributesClassName", "<unset>")),
                    json!(str_or(o, "status.reason", "")),
                    json!(age_of(o)),
                ]
            },
        },
        "ResourceQuota" => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Age", "string", 0),
                col("Request", "string", 0),
                col("Limit", "string", 0)
            ],
            cells: quota_cells,
        },
        "LimitRange" => Printer {
            columns: columns![col("Name", "string", 0), col("Created At", "date", 0)],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "metadata.creationTimestamp", "")),
                ]
            },
        },
        _ => return None,
    })
}

fn count(o: &Value, field: &str) -> usize {
    match o.get(field) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn access_modes(modes: Option<&Value>) -> String {
    let short: Vec<&str> = modes
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    short.join(",")
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let s = summarize(o);
    let gates = o
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let gates_cell = if gates == 0 {
        "<none>".to_string()
    } else {
        let conditions = o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ok = o
            .pointer("/spec/readinessGates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|g| {
                conditions
                    .iter()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            });
        format!("{}/{gates}", ok.count())
    };
    vec![
        json!(name_of(o)),
        json!(s.ready),
        json!(s.reason),
        json!(restarts_cell(&s)),
        json!(age_of(o)),
        json!(str_or(o, "status.podIP", "<none>")),
        json!(str_or(o, "spec.nodeName", "<none>")),
        json!(str_or(o, "status.nominatedNodeName", "<none>")),
        json!(gates_cell),
    ]
}

fn service_cells(o: &Value) -> Vec<Value> {
    let kind = str_or(o, "spec.type", "ClusterIP");
    let mut external: Vec<String> = o
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let external = match kind {
        "ExternalName" => str_or(o, "spec.externalName", "<none>").to_string(),
        "LoadBalancer" => {
            for ing in o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = ing["ip"].as_str().or(ing["hostname"].as_str()) {
                    external.push(ip.to_string());
                }
            }
            if external.is_empty() {
                "<pending>".into()
            } else {
                external.join(",")
            }
        }
        _ if external.is_empty() => "<none>".into(),
        _ => external.join(","),
    };
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    vec![
        json!(name_of(o)),
        json!(kind),
        json!(str_or(o, "spec.clusterIP", "<none>")),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        json!(age_of(o)),
        json!(map_string(o.pointer("/spec/selector"))),
    ]
}

fn node_cells(o: &Value) -> Vec<Value> {
    let conditions = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut status: Vec<&str> = Vec::new();
    match conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
    {
        Some("True") => status.push("Ready"),
        Some("False") => status.push("NotReady"),
        _ => status.push("Unknown"),
    }
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<String> = meta::labels(o)
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(String::from)
                .or_else(|| (k == "kubernetes.io/role").then(|| v.to_string()))
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let address = |kind: &str| {
        o.pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    vec![
        json!(name_of(o)),
        json!(status.join(",")),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age_of(o)),
        json!(str_or(o, "status.nodeInfo.kubeletVersion", "")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(str_or(o, "status.nodeInfo.osImage", "<unknown>")),
        json!(str_or(o, "status.nodeInfo.kernelVersion", "<unknown>")),
        json!(str_or(
            o,
            "status.nodeInfo.containerRuntimeVersion",
            "<unknown>"
        )),
    ]
}

fn event_cells(o: &Value) -> Vec<Value> {
    let last = o
        .get("lastTimestamp")
        .and_then(Value::as_str)
        .or_else(|| o.get("eventTime").and_then(Value::as_str))
        .or_else(|| meta::meta_str(o, "creationTimestamp"));
    let first = o.get("firstTimestamp").and_then(Value::as_str).or(last);
    let involved = o.get("involvedObject").cloned().unwrap_or(Value::Null);
    let object = format!(
        "{}/{}",
        involved["kind"].as_str().unwrap_or("").to_lowercase(),
        involved["name"].as_str().unwrap_or("")
    );
    let source = match (
        o.pointer("/source/component").and_then(Value::as_str),
        o.pointer("/source/host").and_then(Value::as_str),
    ) {
        (Some(c), Some(h)) => format!("{c}, {h}"),
        (Some(c), None) => c.to_string(),
        _ => str_or(o, "reportingComponent", "").to_string(),
    };
    vec![
        json!(meta::age(last)),
        json!(str_or(o, "type", "")),
        json!(str_or(o, "reason", "")),
        json!(object),
        json!(involved["fieldPath"].as_str().unwrap_or("")),
        json!(source),
        json!(str_or(o, "message", "").trim()),
        json!(meta::age(first)),
        json!(int_at(o, "count").max(1).to_string()),
        json!(name_of(o)),
    ]
}

fn endpoints_string(o: &Value) -> String {
    let mut out = Vec::new();
    for subset in o
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for addr in subset["addresses"].as_array().into_iter().flatten() {
            let ip = addr["ip"].as_str().unwrap_or("");
            if ports.is_empty() {
                out.push(ip.to_string());
            }
            out.extend(ports.iter().map(|p| format!("{ip}:{p}")));
        }
    }
    if out.is_empty() {
        return "<none>".into();
    }
    if out.len() > 3 {
        let more = out.len() - 3;
        out.truncate(3);
        return format!("{} + {more} more...", out.join(","));
    }
    out.join(",")
}

fn quota_cells(o: &Value) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    if let Some(hard) = o
        .pointer("/status/hard")
        .or_else(|| o.pointer("/spec/hard"))
        .and_then(Value::as_object)
    {
        let mut keys: Vec<&String> = hard.keys().collect();
        keys.sort();
        for k in keys {
            let used = o
                .pointer(&format!("/status/used/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let entry = format!("{k}: {used}/{}", hard[k].as_str().unwrap_or(""));
            if k.starts_with("limits.") {
                limits.push(entry)
            } else {
                requests.push(entry)
            }
        }
    }
    vec![
        json!(name_of(o)),
        json!(age_of(o)),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cells_like_kubectl() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.7", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}});
        let cells = service_cells(&svc);
        assert_eq!(cells[1], "NodePort");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80:30080/TCP");
        assert_eq!(cells[6], "app=web");
    }

    #[test]
    fn node_status_and_roles() {
        let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0-skiff"}}});
        let cells = node_cells(&node);
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[4], "v1.33.0-skiff");
    }

    #[test]
    fn endpoints_are_listed_and_truncated() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}], "ports": [{"port": 80}, {"port": 81}]}]});
        assert_eq!(
            endpoints_string(&ep),
            "1.1.1.1:80,1.1.1.1:81,2.2.2.2:80 + 1 more..."
        );
        assert_eq!(endpoints_string(&json!({})), "<none>");
    }
}
