//! Which resources the server offers (from `/api` and `/apis` discovery) and
//! how the names users type map to them: `po`, `pods`, `pod`, `Pod`,
//! `deployments.apps`, `deploy.v1.apps`, or a manifest's apiVersion + kind.

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};

/// One resource type served by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub subresources: Vec<String>,
    /// Categories such as `all` (`skiff get all`).
    pub categories: Vec<String>,
    /// Whether `version` is the group's preferred version.
    pub preferred: bool,
}

impl ResourceInfo {
    pub fn api_resource(&self) -> ApiResource {
        let gvk = GroupVersionKind::gvk(&self.group, &self.version, &self.kind);
        ApiResource::from_gvk_with_plural(&gvk, &self.plural)
    }

    /// `deployment.apps`, `pod` — as in `deployment.apps/web created`.
    pub fn kind_ref(&self) -> String {
        with_group(&self.kind.to_lowercase(), &self.group)
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s == name)
    }
}

fn with_group(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// Every resource type of every served group version.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    resources: Vec<ResourceInfo>,
}

impl Discovery {
    /// Asks the server for its groups and then, concurrently, for each group
    /// version's resources.
    pub async fn load(client: &Client) -> Result<Discovery, kube::Error> {
        let core = client.list_core_api_versions().await?;
        let groups = client.list_api_groups().await?;
        // (group, version, preferred), core first as kubectl orders them.
        let mut versions: Vec<(String, String, bool)> = core
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| (String::new(), v.clone(), i == 0))
            .collect();
        for group in &groups.groups {
            let preferred = group
                .preferred_version
                .as_ref()
                .map(|p| p.version.clone())
                .or_else(|| group.versions.first().map(|v| v.version.clone()));
            for v in &group.versions {
                let is_preferred = preferred.as_deref() == Some(v.version.as_str());
                versions.push((group.name.clone(), v.version.clone(), is_preferred));
            }
        }
        let lists = join_all(versions.iter().map(|(group, version, _)| async move {
            if group.is_empty() {
                client.list_core_api_resources(version).await
            } else {
                client
                    .list_api_group_resources(&format!("{group}/{version}"))
                    .await
            }
        }))
        .await;
        let mut discovery = Discovery::default();
        for ((group, version, preferred), list) in versions.iter().zip(lists) {
            // A group version that fails discovery (e.g. an aggregated API
            // that is down) is skipped, as kubectl does.
            if let Ok(list) = list {
                discovery.add_list(group, version, *preferred, &list);
            }
        }
        Ok(discovery)
    }

    /// Adds one group version's resource list (subresources are folded
    /// into their parent).
    pub fn add_list(
        &mut self,
        group: &str,
        version: &str,
        preferred: bool,
        list: &APIResourceList,
    ) {
        let start = self.resources.len();
        for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
            self.resources.push(ResourceInfo {
                group: r.group.clone().unwrap_or_else(|| group.to_string()),
                version: r.version.clone().unwrap_or_else(|| version.to_string()),
                kind: r.kind.clone(),
                plural: r.name.clone(),
                singular: if r.singular_name.is_empty() {
                    r.kind.to_lowercase()
                } else {
                    r.singular_name.clone()
                },
                short_names: r.short_names.clone().unwrap_or_default(),
                namespaced: r.namespaced,
                verbs: r.verbs.clone(),
                subresources: Vec::new(),
                categories: r.categories.clone().unwrap_or_default(),
                preferred,
            });
        }
        for r in list.resources.iter() {
            if let Some((parent, sub)) = r.name.split_once('/')
                && let Some(info) = self.resources[start..]
                    .iter_mut()
                    .find(|i| i.plural == parent)
            {
                info.subresources.push(sub.to_string());
            }
        }
    }

    /// The resource a user typed: `pods`, `po`, `pod`, `Pod`,
    /// `deployments.apps`, `deploy.v1.apps`. Core and preferred versions win.
    pub fn resolve(&self, typed: &str) -> Option<&ResourceInfo> {
        let typed = typed.to_lowercase();
        let (name, qualifier) = match typed.split_once('.') {
            Some((n, q)) => (n, Some(q)),
            None => (typed.as_str(), None),
        };
        self.best(|r| {
            let qualifies = match qualifier {
                None => true,
                Some(q) => r.group == q || format!("{}.{}", r.version, r.group) == q,
            };
            qualifies && names_match(r, name)
        })
    }

    /// The preferred-version resources in a category (`all`), core first.
    pub fn category(&self, name: &str) -> Vec<&ResourceInfo> {
        let mut out: Vec<&ResourceInfo> = self
            .resources
            .iter()
            .filter(|r| r.preferred && r.categories.iter().any(|c| c == name))
            .collect();
        out.sort_by_key(|r| !r.group.is_empty());
        out
    }

    /// The resource of a manifest's `apiVersion` and `kind`.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    fn best(&self, matches: impl Fn(&ResourceInfo) -> bool) -> Option<&ResourceInfo> {
        let mut found: Option<&ResourceInfo> = None;
        for r in self.resources.iter().filter(|r| matches(r)) {
            let better = match found {
                None => true,
                Some(f) => rank(r) < rank(f),
            };
            if better {
                found = Some(r);
            }
        }
        found
    }
}

/// Lower is better: core group first, then preferred versions.
fn rank(r: &ResourceInfo) -> (bool, bool) {
    (!r.group.is_empty(), !r.preferred)
}

fn names_match(r: &ResourceInfo, name: &str) -> bool {
    r.plural == name
        || r.singular == name
        || r.kind.to_lowercase() == name
        || r.short_names.iter().any(|s| s == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(name: &str, kind: &str, namespaced: bool, short: &[&str]) -> APIResource {
        APIResource {
            name: name.to_string(),
            kind: kind.to_string(),
            namespaced,
            singular_name: String::new(),
            short_names: Some(short.iter().map(|s| s.to_string()).collect()),
            verbs: vec!["get".into(), "list".into()],
            categories: (name == "pods" || name == "deployments").then(|| vec!["all".to_string()]),
            ..Default::default()
        }
    }

    fn list(group_version: &str, resources: Vec<APIResource>) -> APIResourceList {
        APIResourceList {
            group_version: group_version.to_string(),
            resources,
        }
    }

    fn sample() -> Discovery {
        let mut d = Discovery::default();
        d.add_list(
            "",
            "v1",
            true,
            &list(
                "v1",
                vec![
                    resource("pods", "Pod", true, &["po"]),
                    resource("pods/log", "Pod", true, &[]),
                    resource("pods/status", "Pod", true, &[]),
                    resource("events", "Event", true, &["ev"]),
                    resource("nodes", "Node", false, &["no"]),
                ],
            ),
        );
        d.add_list(
            "apps",
            "v1",
            true,
            &list(
                "apps/v1",
                vec![
                    resource("deployments", "Deployment", true, &["deploy"]),
                    resource("deployments/scale", "Scale", true, &[]),
                ],
            ),
        );
        d.add_list(
            "events.k8s.io",
            "v1",
            true,
            &list(
                "events.k8s.io/v1",
                vec![resource("events", "Event", true, &["ev"])],
            ),
        );
        d.add_list(
            "autoscaling",
            "v1",
            false,
            &list(
                "autoscaling/v1",
                vec![resource(
                    "horizontalpodautoscalers",
                    "HorizontalPodAutoscaler",
                    true,
                    &["hpa"],
                )],
            ),
        );
        d.add_list(
            "autoscaling",
            "v2",
            true,
            &list(
                "autoscaling/v2",
                vec![resource(
                    "horizontalpodautoscalers",
                    "HorizontalPodAutoscaler",
                    true,
                    &["hpa"],
                )],
            ),
        );
        d
    }

    #[test]
    fn resolves_every_spelling() {
        let d = sample();
        for typed in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(
                d.resolve(typed).map(|r| r.plural.as_str()),
                Some("pods"),
                "{typed}"
            );
        }
        for typed in [
            "deploy",
            "deployments",
            "deployment.apps",
            "deployments.v1.apps",
        ] {
            let r = d.resolve(typed).unwrap();
            assert_eq!(
                (r.group.as_str(), r.kind.as_str()),
                ("apps", "Deployment"),
                "{typed}"
            );
        }
        assert!(d.resolve("deployments.batch").is_none());
        assert!(d.resolve("nothing").is_none());
    }

    #[test]
    fn prefers_core_then_preferred_versions() {
        let d = sample();
        assert_eq!(d.resolve("events").unwrap().group, "");
        assert_eq!(
            d.resolve("events.events.k8s.io").unwrap().group,
            "events.k8s.io"
        );
        assert_eq!(d.resolve("hpa").unwrap().version, "v2");
        assert_eq!(d.resolve("hpa.v1.autoscaling").unwrap().version, "v1");
    }

    #[test]
    fn folds_subresources_and_names_things_like_kubectl() {
        let d = sample();
        let pods = d.resolve("po").unwrap();
        assert_eq!(pods.subresources, ["log", "status"]);
        assert!(pods.has_subresource("log"));
        assert_eq!(pods.kind_ref(), "pod");
        assert_eq!(pods.singular, "pod");
        let deploy = d.resolve("deploy").unwrap();
        assert!(deploy.has_subresource("scale"));
        assert_eq!(deploy.kind_ref(), "deployment.apps");
        assert!(!d.resolve("no").unwrap().namespaced);
        let all: Vec<&str> = d
            .category("all")
            .iter()
            .map(|r| r.plural.as_str())
            .collect();
        assert_eq!(all, ["pods", "deployments"]);
    }

    #[test]
    fn finds_manifest_kinds_by_exact_version() {
        let d = sample();
        assert_eq!(
            d.for_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(d.for_kind("v1", "Pod").unwrap().group, "");
        assert_eq!(
            d.for_kind("autoscaling/v1", "HorizontalPodAutoscaler")
                .unwrap()
                .version,
            "v1"
        );
        assert!(d.for_kind("apps/v1beta1", "Deployment").is_none());
        assert!(d.for_kind("v1", "Deployment").is_none());
    }
}
