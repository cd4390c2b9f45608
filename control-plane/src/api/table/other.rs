//! Table printers of the remaining kinds: networking, RBAC, leases,
//! scheduling, policy, storage and node classes, endpoint slices.

use serde_json::{Value, json};

use super::{Printer, age_of, col, int_at, name_of, selector_string, str_or};

fn created_at(o: &Value) -> Value {
    json!(str_or(o, "metadata.creationTimestamp", ""))
}

fn subjects(o: &Value, kind: &str) -> String {
    let names: Vec<String> = o
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .map(|s| match (kind, s["namespace"].as_str()) {
            ("ServiceAccount", Some(ns)) => format!("{ns}/{}", s["name"].as_str().unwrap_or("")),
            _ => s["name"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    names.join(", ")
}

fn binding_cells(o: &Value) -> Vec<Value> {
    vec![
        json!(name_of(o)),
        json!(format!(
            "{}/{}",
            str_or(o, "roleRef.kind", ""),
            str_or(o, "roleRef.name", "")
        )),
        json!(age_of(o)),
        json!(subjects(o, "User")),
        json!(subjects(o, "Group")),
        json!(subjects(o, "ServiceAccount")),
    ]
}

const BINDING_COLUMNS: &[super::Column] = &[
    col("Name", "string", 0),
    col("Role", "string", 0),
    col("Age", "string", 0),
    col("Users", "string", 1),
    col("Groups", "string", 1),
    col("ServiceAccounts", "string", 1),
];

/// The printer of one of these kinds, if it has one.
pub fn printer(group: &str, kind: &str) -> Option<Printer> {
    Some(match (group, kind) {
        ("networking.k8s.io", "Ingress") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Class", "string", 0),
                col("Hosts", "string", 0),
                col("Address", "string", 0),
                col("Ports", "string", 0),
                col("Age", "string", 0),
            ],
            cells: |o| {
                let rules = o
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let hosts: Vec<&str> = rules.iter().filter_map(|r| r["host"].as_str()).collect();
                let addrs: Vec<&str> = o
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                    .collect();
                let tls = o
                    .pointer("/spec/tls")
                    .and_then(Value::as_array)
                    .is_some_and(|t| !t.is_empty());
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "spec.ingressClassName", "<none>")),
                    json!(if hosts.is_empty() {
                        "*".to_string()
                    } else {
                        hosts.join(",")
                    }),
                    json!(addrs.join(",")),
                    json!(if tls { "80, 443" } else { "80" }),
                    json!(age_of(o)),
                ]
            },
        },
        ("networking.k8s.io", "IngressClass") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Controller", "string", 0),
                col("Parameters", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "spec.controller", "")),
                    json!("<none>"),
                    json!(age_of(o)),
                ]
            },
        },
        ("networking.k8s.io", "NetworkPolicy") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Pod-Selector", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                let sel = selector_string(o.pointer("/spec/podSelector"));
                vec![
                    json!(name_of(o)),
                    json!(if sel == "<none>" { String::new() } else { sel }),
                    json!(age_of(o)),
                ]
            },
        },
        ("discovery.k8s.io", "EndpointSlice") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("AddressType", "string", 0),
                col("Ports", "string", 0),
                col("Endpoints", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                let ports: Vec<String> = o
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_i64().map(|p| p.to_string()))
                    .collect();
                let eps: Vec<&str> = o
                    .get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["addresses"][0].as_str())
                    .collect();
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "addressType", "")),
                    json!(if ports.is_empty() {
                        "<unset>".to_string()
                    } else {
                        ports.join(",")
                    }),
                    json!(if eps.is_empty() {
                        "<unset>".to_string()
                    } else {
                        eps.join(",")
                    }),
                    json!(age_of(o)),
                ]
            },
        },
        ("coordination.k8s.io", "Lease") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Holder", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "spec.holderIdentity", "")),
                    json!(age_of(o)),
                ]
            },
        },
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => Printer {
            columns: columns![col("Name", "string", 0), col("Created At", "date", 0)],
            cells: |o| vec![json!(name_of(o)), created_at(o)],
        },
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => Printer {
            columns: BINDING_COLUMNS,
            cells: binding_cells,
        },
        ("scheduling.k8s.io", "PriorityClass") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Value", "integer", 0),
                col("Global-Default", "boolean", 0),
                col("Age", "string", 0),
                col("Preemption-Policy", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(int_at(o, "value")),
                    json!(
                        o.get("globalDefault")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    ),
                    json!(age_of(o)),
                    json!(str_or(o, "preemptionPolicy", "PreemptLowerPriority")),
                ]
            },
        },
        ("policy", "PodDisruptionBudget") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Min Available", "string", 0),
                col("Max Unavailable", "string", 0),
                col("Allowed Disruptions", "integer", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                let text = |p: &str| match o.pointer(p) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => "N/A".into(),
                };
                vec![
                    json!(name_of(o)),
                    json!(text("/spec/minAvailable")),
                    json!(text("/spec/maxUnavailable")),
                    json!(int_at(o, "status.disruptionsAllowed")),
                    json!(age_of(o)),
                ]
            },
        },
        ("storage.k8s.io", "StorageClass") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Provisioner", "string", 0),
                col("ReclaimPolicy", "string", 0),
                col("VolumeBindingMode", "string", 0),
                col("AllowVolumeExpansion", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "provisioner", "")),
                    json!(str_or(o, "reclaimPolicy", "Delete")),
                    json!(str_or(o, "volumeBindingMode", "Immediate")),
                    json!(
                        o.get("allowVolumeExpansion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                            .to_string()
                    ),
                    json!(age_of(o)),
                ]
            },
        },
        ("node.k8s.io", "RuntimeClass") => Printer {
            columns: columns![
                col("Name", "string", 0),
                col("Handler", "string", 0),
                col("Age", "string", 0)
            ],
            cells: |o| {
                vec![
                    json!(name_of(o)),
                    json!(str_or(o, "handler", "")),
                    json!(age_of(o)),
                ]
            },
        },
        _ => return None,
    })
}
