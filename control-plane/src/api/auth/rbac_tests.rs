//! Table tests of RBAC rule matching, binding resolution and the 403 text.

use serde_json::json;

use super::*;

fn rule(v: serde_json::Value) -> PolicyRule {
    serde_json::from_value(v).unwrap()
}

fn attrs(
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> RequestAttributes {
    RequestAttributes {
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.map(Into::into),
        name: name.map(Into::into),
        path: String::new(),
    }
}

fn path(verb: &str, p: &str) -> RequestAttributes {
    RequestAttributes {
        verb: verb.into(),
        path: p.into(),
        ..Default::default()
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

#[test]
fn rule_matching_table() {
    let pods_read =
        rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}));
    let all = rule(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
    let logs = rule(json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}));
    let any_status =
        rule(json!({"apiGroups": ["apps"], "resources": ["*/status"], "verbs": ["update"]}));
    let named = rule(
        json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"], "verbs": ["get"]}),
    );
    let urls = rule(json!({"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]}));
    let cases: Vec<(&PolicyRule, RequestAttributes, bool)> = vec![
        (
            &pods_read,
            attrs("get", "", "pods", "", Some("default"), Some("p")),
            true,
        ),
        (
            &pods_read,
            attrs("list", "", "pods", "", Some("default"), None),
            true,
        ),
        (
            &pods_read,
            attrs("delete", "", "pods", "", Some("default"), Some("p")),
            false,
        ),
        (
            &pods_read,
            attrs("get", "apps", "pods", "", Some("default"), Some("p")),
            false,
        ),
        (
            &pods_read,
            attrs("get", "", "pods", "log", Some("default"), Some("p")),
            false,
        ),
        (
            &pods_read,
            attrs("get", "", "services", "", Some("default"), Some("p")),
            false,
        ),
        (
            &all,
            attrs("deletecollection", "batch", "jobs", "", None, None),
            true,
        ),
        (
            &all,
            attrs("get", "", "pods", "exec", Some("x"), Some("p")),
            true,
        ),
        (
            &logs,
            attrs("get", "", "pods", "log", Some("default"), Some("p")),
            true,
        ),
        (
            &logs,
            attrs("get", "", "pods", "", Some("default"), Some("p")),
            false,
        ),
        (
            &any_status,
            attrs(
                "update",
                "apps",
                "deployments",
                "status",
                Some("d"),
                Some("x"),
            ),
            true,
        ),
        (
            &any_status,
            attrs("update", "apps", "deployments", "", Some("d"), Some("x")),
            false,
        ),
        (
            &named,
            attrs("get", "", "configmaps", "", Some("d"), Some("cfg")),
            true,
        ),
        (
            &named,
            attrs("get", "", "configmaps", "", Some("d"), Some("other")),
            false,
        ),
        (
            &named,
            attrs("get", "", "configmaps", "", Some("d"), None),
            false,
        ),
        (&urls, path("get", "/healthz"), true),
        (&urls, path("get", "/apis/apps/v1"), true),
        (&urls, path("get", "/api/v1"), false),
        (&urls, path("post", "/healthz"), false),
        (&pods_read, path("get", "/healthz"), false),
        (&urls, attrs("get", "", "pods", "", Some("d"), None), false),
    ];
    for (i, (rule, attrs, want)) in cases.iter().enumerate() {
        assert_eq!(rule_allows(rule, attrs), *want, "case {i}: {attrs:?}");
    }
}

fn policy() -> RbacPolicy {
    let mut p = RbacPolicy::default();
    let mut put = |key: &str, v: serde_json::Value| p.apply(key, Some(v.to_string().as_bytes()));
    put(
        "/registry/rbac.authorization.k8s.io/clusterroles/view",
        json!({"metadata": {"name": "view"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-view": "true"}}]}}),
    );
    put(
        "/registry/rbac.authorization.k8s.io/clusterroles/view-pods",
        json!({"metadata": {"name": "view-pods", "labels": {"agg-view": "true"}},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    );
    put(
        "/registry/rbac.authorization.k8s.io/roles/team/secrets",
        json!({"metadata": {"name": "secrets", "namespace": "team"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
    );
    put(
        "/registry/rbac.authorization.k8s.io/rolebindings/team/sa-secrets",
        json!({"metadata": {"name": "sa-secrets", "namespace": "team"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
    );
    put(
        "/registry/rbac.authorization.k8s.io/rolebindings/team/devs-view",
        json!({"metadata": {"name": "devs-view", "namespace": "team"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]}),
    );
    put(
        "/registry/rbac.authorization.k8s.io/clusterrolebindings/jane-view",
        json!({"metadata": {"name": "jane-view"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]}),
    );
    p
}

#[test]
fn bindings_resolve_subjects_namespaces_and_aggregation() {
    let p = policy();
    let bot = user(
        "system:serviceaccount:team:bot",
        &["system:serviceaccounts"],
    );
    let other_bot = user("system:serviceaccount:prod:bot", &[]);
    let dev = user("sam", &["devs"]);
    let jane = user("jane", &[]);
    let get_secret = |ns: &str| attrs("get", "", "secrets", "", Some(ns), Some("s"));
    let list_pods = |ns: Option<&str>| attrs("list", "", "pods", "", ns, None);
    assert!(p.allows(&bot, &get_secret("team")));
    assert!(!p.allows(&bot, &get_secret("prod")));
    assert!(!p.allows(&other_bot, &get_secret("team")));
    assert!(
        p.allows(&dev, &list_pods(Some("team"))),
        "aggregated view via RoleBinding"
    );
    assert!(!p.allows(&dev, &list_pods(Some("prod"))));
    assert!(
        !p.allows(&dev, &list_pods(None)),
        "RoleBinding grants nothing cluster-wide"
    );
    assert!(p.allows(&jane, &list_pods(None)));
    assert!(p.allows(&jane, &list_pods(Some("anything"))));
    assert!(!p.allows(
        &jane,
        &attrs("delete", "", "pods", "", Some("x"), Some("p"))
    ));
    assert_eq!(p.rules_for(&dev, "team").len(), 1);

    let mut p = p;
    p.apply(
        "/registry/rbac.authorization.k8s.io/clusterrolebindings/jane-view",
        None,
    );
    assert!(
        !p.allows(&jane, &list_pods(None)),
        "deleted binding stops granting"
    );
    p.apply(
        "/registry/rbac.authorization.k8s.io/clusterroles/view-pods",
        Some(b"not json"),
    );
    assert!(
        !p.allows(&dev, &list_pods(Some("team"))),
        "an undecodable role grants nothing"
    );
}

#[test]
fn forbidden_messages_match_kubernetes() {
    let sa = user("system:serviceaccount:default:x", &[]);
    let cases = [
        (
            attrs("list", "", "pods", "", Some("default"), None),
            r#"pods is forbidden: User "system:serviceaccount:default:x" cannot list resource "pods" in API group "" in the namespace "default""#,
        ),
        (
            attrs("get", "apps", "deployments", "", Some("ns1"), Some("web")),
            r#"deployments.apps "web" is forbidden: User "system:serviceaccount:default:x" cannot get resource "deployments" in API group "apps" in the namespace "ns1""#,
        ),
        (
            attrs("create", "", "pods", "exec", Some("default"), Some("p")),
            r#"pods "p" is forbidden: User "system:serviceaccount:default:x" cannot create resource "pods/exec" in API group "" in the namespace "default""#,
        ),
        (
            attrs("list", "", "nodes", "", None, None),
            r#"nodes is forbidden: User "system:serviceaccount:default:x" cannot list resource "nodes" in API group "" at the cluster scope"#,
        ),
        (
            path("get", "/metrics"),
            r#"forbidden: User "system:serviceaccount:default:x" cannot get path "/metrics""#,
        ),
    ];
    for (a, want) in cases {
        let err = forbidden(&sa, &a);
        assert_eq!(err.to_string(), want);
        assert_eq!(err.code_and_reason().0, http::StatusCode::FORBIDDEN);
    }
}
