//! The default ClusterRoles and ClusterRoleBindings Kubernetes bootstraps
//! (cluster-admin, admin, edit, view, system:basic-user, system:discovery,
//! system:public-info-viewer, system:node), created in the store at first
//! start if absent. Existing objects are never overwritten, so an operator's
//! edits survive restarts.

use serde_json::{Value, json};

use crate::store::{Store, StoreError};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> Value {
    json!({ "nonResourceURLs": urls, "verbs": verbs })
}

/// Resources `view` may read (no Secrets), by API group.
const VIEWABLE: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "pods/log",
            "pods/status",
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "serviceaccounts",
            "services",
            "services/status",
            "bindings",
            "events",
            "limitranges",
            "resourcequotas",
            "resourcequotas/status",
            "namespaces",
            "namespaces/status",
        ],
    ),
    (
        "apps",
        &[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    (
        "autoscaling",
        &[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ],
    ),
    (
        "batch",
        &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
    ),
    (
        "policy",
        &["poddisruptionbudgets", "poddisruptionbudgets/status"],
    ),
    (
        "networking.k8s.io",
        &["ingresses", "ingresses/status", "networkpolicies"],
    ),
    ("discovery.k8s.io", &["endpointslices"]),
    ("events.k8s.io", &["events"]),
];

/// Resources `edit` may change, by API group.
const EDITABLE: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "pods/eviction",
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "serviceaccounts/token",
            "services",
            "services/proxy",
            "events",
        ],
    ),
    (
        "apps",
        &[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
    ),
    ("autoscaling", &["horizontalpodautoscalers"]),
    ("batch", &["cronjobs", "jobs"]),
    ("policy", &["poddisruptionbudgets"]),
    ("networking.k8s.io", &["ingresses", "networkpolicies"]),
    ("discovery.k8s.io", &["endpointslices"]),
];

fn view_rules() -> Vec<Value> {
    VIEWABLE.iter().map(|(g, r)| rule(&[g], r, READ)).collect()
}

fn edit_rules() -> Vec<Value> {
    let mut rules = view_rules();
    rules.push(rule(
        &[""],
        &[
            "secrets",
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "services/proxy",
        ],
        READ,
    ));
    rules.extend(EDITABLE.iter().map(|(g, r)| rule(&[g], r, WRITE)));
    rules
}

fn admin_rules() -> Vec<Value> {
    let mut rules = edit_rules();
    rules.push(rule(
        &["rbac.authorization.k8s.io"],
        &["roles", "rolebindings"],
        &["*"],
    ));
    rules.push(rule(
        &["authorization.k8s.io"],
        &["localsubjectaccessreviews"],
        &["create"],
    ));
    rules
}

fn node_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &["nodes"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        rule(&[""], &["nodes/status"], &["patch", "update"]),
        rule(
            &[""],
            &["pods"],
            &["get", "list", "watch", "create", "delete"],
        ),
        rule(&[""], &["pods/status"], &["patch", "update"]),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(&[""], &["events"], &["create", "patch", "update"]),
        rule(
            &["events.k8s.io"],
            &["events"],
            &["create", "patch", "update"],
        ),
        rule(
            &[""],
            &[
                "configmaps",
                "secrets",
                "services",
                "endpoints",
                "namespaces",
            ],
            READ,
        ),
        rule(
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
            &["get"],
        ),
        rule(&[""], &["serviceaccounts"], &["get"]),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingressclasses", "networkpolicies"],
            READ,
        ),
        rule(&["node.k8s.io"], &["runtimeclasses"], READ),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
    ]
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name),
        "rules": rules,
    })
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g }))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": subjects,
    })
}

fn metadata(name: &str) -> Value {
    json!({
        "name": name,
        "uid": uuid::Uuid::new_v4().to_string(),
        "creationTimestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" },
        "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
    })
}

/// The default policy as (store key, object) pairs.
pub fn default_policy() -> Vec<(String, Value)> {
    let discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi",
        "/openapi/*",
        "/version",
        "/version/",
    ];
    let public_urls = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let roles = [
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        cluster_role("admin", admin_rules()),
        cluster_role("edit", edit_rules()),
        cluster_role("view", view_rules()),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            vec![url_rule(&discovery_urls, &["get"])],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![url_rule(&public_urls, &["get"])],
        ),
        cluster_role("system:node", node_rules()),
    ];
    let bindings = [
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding("system:node", "system:node", &["system:nodes"]),
    ];
    let mut out = Vec::new();
    for role in roles {
        let name = role["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        out.push((
            format!("/registry/rbac.authorization.k8s.io/clusterroles/{name}"),
            role,
        ));
    }
    for b in bindings {
        let name = b["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        out.push((
            format!("/registry/rbac.authorization.k8s.io/clusterrolebindings/{name}"),
            b,
        ));
    }
    out
}

/// Creates each default role and binding that does not exist yet.
pub async fn ensure_default_policy(store: &Store) -> Result<(), StoreError> {
    for (key, object) in default_policy() {
        match store.create(&key, object.to_string().into_bytes()).await {
            Ok(_) => tracing::debug!(%key, "created default RBAC object"),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::rbac::RbacPolicy;
    use crate::api::{RequestAttributes, UserInfo};

    fn policy() -> RbacPolicy {
        let mut p = RbacPolicy::default();
        for (key, obj) in default_policy() {
            p.apply(&key, Some(obj.to_string().as_bytes()));
        }
        p
    }

    fn req(verb: &str, group: &str, resource: &str, ns: Option<&str>) -> RequestAttributes {
        RequestAttributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_grant_what_kubernetes_grants() {
        let p = policy();
        let admin = UserInfo {
            username: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let sa = UserInfo {
            username: "system:serviceaccount:default:x".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
            ..Default::default()
        };
        let node = UserInfo {
            username: "system:bootstrap:abcdef".into(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..Default::default()
        };
        assert!(p.allows(&admin, &req("delete", "apps", "deployments", Some("x"))));
        assert!(p.allows(
            &admin,
            &RequestAttributes {
                verb: "get".into(),
                path: "/metrics".into(),
                ..Default::default()
            }
        ));
        assert!(!p.allows(&sa, &req("list", "", "pods", Some("default"))));
        assert!(p.allows(
            &sa,
            &req(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None
            )
        ));
        assert!(p.allows(
            &sa,
            &RequestAttributes {
                verb: "get".into(),
                path: "/apis/apps/v1".into(),
                ..Default::default()
            }
        ));
        assert!(p.allows(&node, &req("patch", "", "nodes", None)));
        assert!(p.allows(
            &node,
            &req(
                "update",
                "coordination.k8s.io",
                "leases",
                Some("kube-node-lease")
            )
        ));
        assert!(!p.allows(&node, &req("delete", "", "secrets", Some("default"))));
    }
}
