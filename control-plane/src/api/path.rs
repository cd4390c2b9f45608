//! Parsing of `/api/...` and `/apis/...` URL paths into what they address
//! (a discovery document or a resource request), and the RBAC verb of a
//! request. Pure functions; no I/O.

use http::Method;

use super::registry::{self, ResourceInfo};

/// What an API path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion { group: String, version: String },
    /// An object or collection (maybe with a subresource).
    Resource(ResourcePath),
}

/// A request for objects of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// What follows the subresource (for proxy): `a/b` of `.../proxy/a/b`.
    pub rest: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    pub legacy_watch: bool,
}

/// Parses an `/api` or `/apis` path; None when it addresses nothing served.
pub fn parse(path: &str) -> Option<ApiPath> {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    match segs.as_slice() {
        ["api"] => Some(ApiPath::CoreVersions),
        ["apis"] => Some(ApiPath::Groups),
        ["apis", group] => Some(ApiPath::Group(group.to_string())),
        ["api", version] => Some(ApiPath::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        }),
        ["apis", group, version] => Some(ApiPath::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["api", version, rest @ ..] => resource("", version, rest, path.ends_with('/')),
        ["apis", group, version, rest @ ..] => resource(group, version, rest, path.ends_with('/')),
        _ => None,
    }
}

fn resource(
    group: &str,
    version: &str,
    mut segs: &[&str],
    trailing_slash: bool,
) -> Option<ApiPath> {
    let mut legacy_watch = false;
    if segs.first() == Some(&"watch") {
        legacy_watch = true;
        segs = &segs[1..];
    }
    if segs.len() >= 3 && segs[0] == "namespaces" {
        // `/namespaces/<ns>/<plural>...` unless `<plural>` is a subresource of namespaces.
        if let Some(info) = registry::lookup(group, version, segs[2]).filter(|r| r.namespaced) {
            return build(
                info,
                Some(segs[1].to_string()),
                &segs[3..],
                legacy_watch,
                trailing_slash,
            );
        }
    }
    let info = registry::lookup(group, version, segs.first()?)?;
    if info.namespaced && segs.len() > 1 {
        // A namespaced kind addressed by name without a namespace is not served.
        return None;
    }
    build(info, None, &segs[1..], legacy_watch, trailing_slash)
}

fn build(
    info: &'static ResourceInfo,
    namespace: Option<String>,
    segs: &[&str],
    legacy_watch: bool,
    trailing_slash: bool,
) -> Option<ApiPath> {
    let name = segs.first().map(|s| s.to_string());
    let subresource = segs.get(1).map(|s| s.to_string());
    if let Some(sub) = &subresource {
        info.subresource(sub)?;
    }
    let rest = if segs.len() > 2 {
        let mut rest = segs[2..].join("/");
        if trailing_slash {
            rest.push('/');
        }
        Some(rest)
    } else if trailing_slash && subresource.is_some() {
        Some(String::new())
    } else {
        None
    };
    if rest.is_some() && subresource.as_deref() != Some("proxy") {
        return None;
    }
    Some(ApiPath::Resource(ResourcePath {
        info,
        namespace,
        name,
        subresource,
        rest,
        legacy_watch,
    }))
}

/// The RBAC verb of a request (Kubernetes' RequestInfo rules).
pub fn verb(method: &Method, path: &ResourcePath, watch_param: bool) -> &'static str {
    let named = path.name.is_some();
    match *method {
        Method::GET | Method::HEAD
            if path.legacy_watch || (watch_param && path.subresource.is_none()) =>
        {
            "watch"
        }
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse("/api"), Some(ApiPath::CoreVersions));
        assert_eq!(parse("/apis/"), Some(ApiPath::Groups));
        assert_eq!(parse("/apis/apps"), Some(ApiPath::Group("apps".into())));
        assert_eq!(
            parse("/api/v1"),
            Some(ApiPath::GroupVersion {
                group: String::new(),
                version: "v1".into()
            })
        );
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.info.kind, "Pod");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let all = res("/api/v1/pods");
        assert!(all.namespace.is_none() && all.name.is_none());
        let ns = res("/api/v1/namespaces/kube-system/finalize");
        assert_eq!(ns.info.kind, "Namespace");
        assert_eq!(ns.name.as_deref(), Some("kube-system"));
        let deploy = res("/apis/apps/v1/namespaces/a/deployments/d/scale");
        assert_eq!(deploy.subresource.as_deref(), Some("scale"));
        let node = res("/api/v1/nodes/n1");
        assert_eq!(node.name.as_deref(), Some("n1"));
        assert!(parse("/api/v1/pods/web").is_none());
        assert!(parse("/api/v1/namespaces/a/pods/web/nope").is_none());
        assert!(parse("/apis/apps/v1/widgets").is_none());
    }

    #[test]
    fn proxy_paths_keep_the_rest() {
        let r = res("/api/v1/namespaces/a/services/web:80/proxy/x/y/");
        assert_eq!(r.rest.as_deref(), Some("x/y/"));
        let n = res("/api/v1/nodes/n1/proxy/stats/summary");
        assert_eq!(n.rest.as_deref(), Some("stats/summary"));
    }

    #[test]
    fn verbs() {
        let one = res("/api/v1/namespaces/a/pods/p");
        let many = res("/api/v1/namespaces/a/pods");
        assert_eq!(verb(&Method::GET, &one, false), "get");
        assert_eq!(verb(&Method::GET, &many, false), "list");
        assert_eq!(verb(&Method::GET, &many, true), "watch");
        assert_eq!(verb(&Method::DELETE, &many, false), "deletecollection");
        let legacy = res("/api/v1/watch/namespaces/a/pods");
        assert!(legacy.legacy_watch);
        assert_eq!(verb(&Method::GET, &legacy, false), "watch");
    }
}
