//! The resource registry: one table describing every kind the API serves
//! (group, version, kind, names, scope, verbs, subresources, storage). It
//! drives routing, discovery, OpenAPI and storage keys; no behaviour lives here.

/// The verbs of a normal stored resource.
const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection.
const RW_NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Review kinds: answered, never stored.
const CREATE_ONLY: &[&str] = &["create"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// A subresource of a kind, e.g. `pods/status` or `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// The group/version/kind of the subresource's body when it differs from the parent's.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

const fn sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group: "",
        version: "",
        kind,
        verbs,
    }
}

const fn sub_gv(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group,
        version,
        kind,
        verbs,
    }
}

/// One served resource (a group/version/kind with its REST names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The group and resource whose keys hold the objects (shared by versions
    /// and by events.k8s.io Events); None for kinds that are never stored.
    pub storage: Option<(&'static str, &'static str)>,
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The subresource called `name`, if this kind has it.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `verb` is served on the main resource.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Whether spec and status are written through separate endpoints.
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// The storage prefix of all objects of this kind (ends with '/').
    pub fn prefix(&self) -> Option<String> {
        let (group, resource) = self.storage?;
        Some(format!("/registry/{group}/{resource}/"))
    }

    /// The storage prefix of this kind within a namespace (or all, for None).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> Option<String> {
        let prefix = self.prefix()?;
        match namespace {
            Some(ns) if self.namespaced => Some(format!("{prefix}{ns}/")),
            _ => Some(prefix),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> Option<String> {
        let prefix = self.prefix()?;
        match namespace {
            Some(ns) if self.namespaced => Some(format!("{prefix}{ns}/{name}")),
            _ => Some(format!("{prefix}{name}")),
        }
    }
}

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr, $verbs:expr,
     short: [$($short:expr),*], cat: [$($cat:expr),*], sub: [$($sub:expr),*]) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            verbs: $verbs,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            storage: Some((if $group.is_empty() { "core" } else { $group }, $plural)),
        }
    };
}

const STATUS: Subresource = sub("status", "", STATUS_VERBS);
const SCALE: Subresource = sub_gv("scale", "autoscaling", "v1", "Scale", STATUS_VERBS);
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

/// Every resource the API serves, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    res!("", "v1", "Namespace", "namespaces", "namespace", false, RW_NO_COLLECTION,
        short: ["ns"], cat: [], sub: [STATUS, sub("finalize", "", &["update"])]),
    res!("", "v1", "Pod", "pods", "pod", true, RW, short: ["po"], cat: ["all"],
        sub: [STATUS,
              sub_gv("binding", "", "v1", "Binding", &["create"]),
              sub_gv("eviction", "policy", "v1", "Eviction", &["create"]),
              sub("log", "", &["get"]),
              sub_gv("exec", "", "v1", "PodExecOptions", &["create", "get"]),
              sub_gv("attach", "", "v1", "PodAttachOptions", &["create", "get"]),
              sub_gv("portforward", "", "v1", "PodPortForwardOptions", &["create", "get"]),
              sub_gv("proxy", "", "v1", "PodProxyOptions", PROXY_VERBS)]),
    res!("", "v1", "Service", "services", "service", true, RW, short: ["svc"], cat: ["all"],
        sub: [STATUS, sub_gv("proxy", "", "v1", "ServiceProxyOptions", PROXY_VERBS)]),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", true, RW, short: ["ep"], cat: [], sub: []),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", true, RW, short: ["cm"], cat: [], sub: []),
    res!("", "v1", "Secret", "secrets", "secret", true, RW, short: [], cat: [], sub: []),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, RW, short: ["sa"], cat: [],
        sub: [sub_gv("token", "authentication.k8s.io", "v1", "TokenRequest", &["create"])]),
    res!("", "v1", "Event", "events", "event", true, RW, short: ["ev"], cat: [], sub: []),
    res!("", "v1", "Node", "nodes", "node", false, RW, short: ["no"], cat: [],
        sub: [STATUS, sub_gv("proxy", "", "v1", "NodeProxyOptions", PROXY_VERBS)]),
    res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, RW, short: ["pv"], cat: [],
        sub: [STATUS]),
    res!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, RW,
        short: ["pvc"], cat: [], sub: [STATUS]),
    res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, RW, short: ["quota"], cat: [],
        sub: [STATUS]),
    res!("", "v1", "LimitRange", "limitranges", "limitrange", true, RW, short: ["limits"], cat: [], sub: []),
    res!("apps", "v1", "Deployment", "deployments", "deployment", true, RW, short: ["deploy"], cat: ["all"],
        sub: [STATUS, SCALE]),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, RW, short: ["rs"], cat: ["all"],
        sub: [STATUS, SCALE]),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, RW, short: ["sts"], cat: ["all"],
        sub: [STATUS, SCALE]),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, RW, short: ["ds"], cat: ["all"],
        sub: [STATUS]),
    res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, RW,
        short: [], cat: [], sub: []),
    res!("batch", "v1", "Job", "jobs", "job", true, RW, short: [], cat: ["all"], sub: [STATUS]),
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, RW, short: ["cj"], cat: ["all"], sub: [STATUS]),
    res!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        true, RW, short: ["hpa"], cat: ["all"], sub: [STATUS]),
    res!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        true, RW, short: ["hpa"], cat: ["all"], sub: [STATUS]),
    res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, RW, short: ["ing"], cat: [],
        sub: [STATUS]),
    res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, RW, short: [],
        cat: [], sub: []),
    res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, RW,
        short: ["netpol"], cat: [], sub: []),
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, RW, short: [],
        cat: [], sub: []),
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, RW, short: [], cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, RW, short: [], cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, RW, short: [],
        cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, RW, short: [],
        cat: [], sub: []),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
        false, RW, short: [], cat: [], sub: []),
    res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, RW,
        short: ["pc"], cat: [], sub: []),
    res!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, RW,
        short: ["pdb"], cat: [], sub: [STATUS]),
    res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, RW, short: ["sc"],
        cat: [], sub: []),
    res!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", false, RW, short: [], cat: [],
        sub: []),
    ResourceInfo {
        storage: Some(("core", "events")),
        ..res!("events.k8s.io", "v1", "Event", "events", "event", true, RW, short: ["ev"], cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
            "selfsubjectaccessreview", false, CREATE_ONLY, short: [], cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
            "subjectaccessreview", false, CREATE_ONLY, short: [], cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
            "selfsubjectrulesreview", true, CREATE_ONLY, short: [], cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
            false, CREATE_ONLY, short: [], cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, CREATE_ONLY,
            short: [], cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "", true, &["get", "list"], short: [],
            cat: [], sub: [])
    },
    ResourceInfo {
        storage: None,
        ..res!("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "", false, &["get", "list"], short: [],
            cat: [], sub: [])
    },
];

/// The preferred version of each group, in discovery order (core "" first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group/version.
pub fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let (group, version) = (group.to_string(), version.to_string());
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The resource served at `/…/<group>/<version>/<plural>`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The (preferred) resource of a kind within a group.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_store_contract() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web").unwrap(),
            "/registry/core/pods/default/web"
        );
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert_eq!(
            nodes.key(Some("ignored"), "n1").unwrap(),
            "/registry/core/nodes/n1"
        );
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(
            deploy.namespace_prefix(Some("a")).unwrap(),
            "/registry/apps/deployments/a/"
        );
        assert_eq!(deploy.api_version(), "apps/v1");
    }

    #[test]
    fn shared_storage_between_versions_and_groups() {
        let v1 = lookup("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = lookup("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(v1.prefix(), v2.prefix());
        let ev = lookup("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(ev.prefix().unwrap(), "/registry/core/events/");
        assert!(
            lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
                .unwrap()
                .prefix()
                .is_none()
        );
    }

    #[test]
    fn groups_list_preferred_version_first() {
        let groups = groups();
        assert_eq!(groups[0].0, "");
        let autoscaling = groups.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
        assert!(by_kind("apps", "Deployment").unwrap().has_status());
    }
}
