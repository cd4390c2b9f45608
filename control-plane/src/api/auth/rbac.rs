//! RBAC evaluation as Kubernetes does it: an in-memory policy (Roles,
//! ClusterRoles, RoleBindings, ClusterRoleBindings) fed from store keys, rule
//! matching (verbs, apiGroups, resources/subresources, resourceNames,
//! nonResourceURLs, wildcards, ClusterRole aggregation) and the exact 403
//! message. Pure: no I/O; the store watch that keeps it current is `cache.rs`.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::{RequestAttributes, UserInfo};

/// The store prefix all RBAC objects live under.
pub const RBAC_PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// The RBAC objects of the cluster, keyed as in the store.
#[derive(Debug, Default, Clone)]
pub struct RbacPolicy {
    roles: HashMap<(String, String), Role>,
    cluster_roles: HashMap<String, ClusterRole>,
    role_bindings: HashMap<(String, String), RoleBinding>,
    cluster_role_bindings: HashMap<String, ClusterRoleBinding>,
}

impl RbacPolicy {
    /// Applies one store change: `value` is the object JSON, None for a delete.
    /// Keys outside the RBAC prefix and undecodable values are ignored (a bad
    /// object grants nothing).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let Some(rest) = key.strip_prefix(RBAC_PREFIX) else {
            return;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (parts.as_slice(), value) {
            (["roles", ns, name], v) => {
                let k = (ns.to_string(), name.to_string());
                match v.and_then(|b| serde_json::from_slice::<Role>(b).ok()) {
                    Some(o) => self.roles.insert(k, o),
                    None => self.roles.remove(&k),
                };
            }
            (["rolebindings", ns, name], v) => {
                let k = (ns.to_string(), name.to_string());
                match v.and_then(|b| serde_json::from_slice::<RoleBinding>(b).ok()) {
                    Some(o) => self.role_bindings.insert(k, o),
                    None => self.role_bindings.remove(&k),
                };
            }
            (["clusterroles", name], v) => {
                match v.and_then(|b| serde_json::from_slice::<ClusterRole>(b).ok()) {
                    Some(o) => self.cluster_roles.insert(name.to_string(), o),
                    None => self.cluster_roles.remove(*name),
                };
            }
            (["clusterrolebindings", name], v) => {
                match v.and_then(|b| serde_json::from_slice::<ClusterRoleBinding>(b).ok()) {
                    Some(o) => self.cluster_role_bindings.insert(name.to_string(), o),
                    None => self.cluster_role_bindings.remove(*name),
                };
            }
            _ => {}
        }
    }

    /// Whether any binding that applies to `user` grants `attrs`.
    pub fn allows(&self, user: &UserInfo, attrs: &RequestAttributes) -> bool {
        let mut allowed = false;
        self.visit_rules(user, attrs.namespace.as_deref(), |rule| {
            allowed = rule_allows(rule, attrs);
            allowed
        });
        allowed
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide rules
    /// included), for SelfSubjectRulesReview.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        let mut rules = Vec::new();
        self.visit_rules(user, Some(namespace), |rule| {
            rules.push(rule.clone());
            false
        });
        rules
    }

    /// Calls `visit` with each rule granted to `user` for requests in
    /// `namespace` (None: cluster scope) until it returns true.
    fn visit_rules(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut visit: impl FnMut(&PolicyRule) -> bool,
    ) {
        for binding in self.cluster_role_bindings.values() {
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            if !subjects.iter().any(|s| subject_matches(s, user, "")) {
                continue;
            }
            if binding.role_ref.kind == "ClusterRole"
                && self
                    .cluster_role_rules(&binding.role_ref.name)
                    .iter()
                    .any(&mut visit)
            {
                return;
            }
        }
        let Some(ns) = namespace.filter(|ns| !ns.is_empty()) else {
            return;
        };
        for ((binding_ns, _), binding) in &self.role_bindings {
            if binding_ns != ns {
                continue;
            }
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            if !subjects.iter().any(|s| subject_matches(s, user, ns)) {
                continue;
            }
            let rules: Vec<PolicyRule> = match binding.role_ref.kind.as_str() {
                "ClusterRole" => self.cluster_role_rules(&binding.role_ref.name),
                "Role" => self
                    .roles
                    .get(&(ns.to_string(), binding.role_ref.name.clone()))
                    .and_then(|r| r.rules.clone())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if rules.iter().any(&mut visit) {
                return;
            }
        }
    }

    /// A ClusterRole's rules plus, when it aggregates, the rules of every
    /// ClusterRole its selectors match.
    fn cluster_role_rules(&self, name: &str) -> Vec<PolicyRule> {
        let Some(role) = self.cluster_roles.get(name) else {
            return Vec::new();
        };
        let mut rules = role.rules.clone().unwrap_or_default();
        let selectors = role
            .aggregation_rule
            .as_ref()
            .and_then(|a| a.cluster_role_selectors.clone())
            .unwrap_or_default();
        if selectors.is_empty() {
            return rules;
        }
        for (other_name, other) in &self.cluster_roles {
            if other_name == name {
                continue;
            }
            let labels = other.metadata.labels.clone().unwrap_or_default();
            if selectors.iter().any(|s| selector_matches(s, &labels)) {
                rules.extend(other.rules.clone().unwrap_or_default());
            }
        }
        rules
    }
}

/// Whether a binding subject names this user (`binding_ns` defaults a
/// ServiceAccount subject's namespace).
pub fn subject_matches(subject: &Subject, user: &UserInfo, binding_ns: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.username,
        "Group" => user.groups.iter().any(|g| g == &subject.name),
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.username == format!("system:serviceaccount:{ns}:{}", subject.name)
        }
        _ => false,
    }
}

/// Whether one rule grants the request (Kubernetes' `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, attrs: &RequestAttributes) -> bool {
    if !has(&rule.verbs, &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return non_resource_url_matches(
            rule.non_resource_urls.as_deref().unwrap_or_default(),
            &attrs.path,
        );
    }
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    if !has(groups, &attrs.api_group) {
        return false;
    }
    if !resource_matches(
        rule.resources.as_deref().unwrap_or_default(),
        &attrs.resource,
        &attrs.subresource,
    ) {
        return false;
    }
    let names = rule.resource_names.as_deref().unwrap_or_default();
    names.is_empty()
        || attrs
            .name
            .as_deref()
            .is_some_and(|n| names.iter().any(|r| r == n))
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn resource_matches(rule_resources: &[String], resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule_resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

fn non_resource_url_matches(rule_urls: &[String], path: &str) -> bool {
    rule_urls.iter().any(|u| {
        u == "*"
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `labels` satisfy a label selector (matchLabels and matchExpressions).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let exprs_ok = selector
        .match_expressions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        });
    // An empty selector matches nothing in aggregation (Kubernetes skips it).
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty());
    !empty && labels_ok && exprs_ok
}

/// Kubernetes' 403 for a denied request, e.g. `pods is forbidden: User "x"
/// cannot list resource "pods" in API group "" in the namespace "default"`.
pub fn forbidden(user: &UserInfo, attrs: &RequestAttributes) -> crate::api::ApiError {
    let who = &user.username;
    if !attrs.resource_request {
        return crate::api::ApiError::Forbidden {
            message: format!(
                "forbidden: User {who:?} cannot {} path {:?}",
                attrs.verb, attrs.path
            ),
            group: String::new(),
            kind: String::new(),
            name: String::new(),
        };
    }
    let mut resource = attrs.resource.clone();
    if !attrs.subresource.is_empty() {
        resource = format!("{resource}/{}", attrs.subresource);
    }
    let reason = match attrs.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!(
            "User {who:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}",
            attrs.verb, attrs.api_group
        ),
        None => format!(
            "User {who:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            attrs.verb, attrs.api_group
        ),
    };
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    let name = attrs.name.clone().unwrap_or_default();
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {reason}"),
        (false, true) => format!("{qualified} is forbidden: {reason}"),
        (false, false) => format!("{qualified} {name:?} is forbidden: {reason}"),
    };
    crate::api::ApiError::Forbidden {
        message,
        group: attrs.api_group.clone(),
        kind: attrs.resource.clone(),
        name,
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
