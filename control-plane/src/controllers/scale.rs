//! The `/scale` subresource of workloads as the HPA and the disruption
//! controller use it: which served resource a `scaleTargetRef` or a
//! controller owner reference names, reading and writing the Scale through
//! the API, and parsing the selector string a Scale reports
//! (`status.selector`) back into a `LabelSelector`. No state lives here.

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};

use super::namespace::api_resource;

/// The kinds whose `/scale` the API serves: (group, kind, plural).
const SCALABLE: &[(&str, &str, &str)] = &[
    ("apps", "Deployment", "deployments"),
    ("apps", "ReplicaSet", "replicasets"),
    ("apps", "StatefulSet", "statefulsets"),
];

/// The served resource of a kind with a `/scale` subresource, from an
/// `apiVersion` (any version of the group) and kind; `None` when the API
/// serves no scale for it.
pub fn scalable(api_version: &str, kind: &str) -> Option<ApiResource> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    SCALABLE
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(g, k, p)| api_resource(g, "v1", k, p))
}

fn api(client: &Client, ns: &str, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, ar)
}

/// Reads the Scale of `name`.
pub async fn get(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    name: &str,
) -> Result<Scale, kube::Error> {
    api(client, ns, ar).get_scale(name).await
}

/// Writes `replicas` into a Scale read before (guarded by its resourceVersion).
pub async fn update(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    scale: &Scale,
    replicas: i32,
) -> Result<Scale, kube::Error> {
    let mut next = scale.clone();
    next.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    let name = scale.metadata.name.clone().unwrap_or_default();
    api(client, ns, ar)
        .replace_scale(&name, &PostParams::default(), &next)
        .await
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn values(part: &str, rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values in {part:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn requirement(key: &str, operator: &str, values: Vec<String>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.trim().to_string(),
        operator: operator.into(),
        values: (!values.is_empty()).then_some(values),
    }
}

/// Parses a selector string (`a=b,c!=d,e in (f,g),h notin (i),j,!k`) into
/// a `LabelSelector`; `!=` becomes `NotIn` with one value, which matches
/// the same labels. An empty string selects everything.
pub fn parse_selector(s: &str) -> Result<LabelSelector, String> {
    let mut sel = LabelSelector::default();
    let mut exprs = Vec::new();
    for part in split_top(s)
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Some(key) = part.strip_prefix('!') {
            exprs.push(requirement(key, "DoesNotExist", Vec::new()));
        } else if let Some((k, v)) = part.split_once("!=") {
            exprs.push(requirement(k, "NotIn", vec![v.trim().to_string()]));
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            sel.match_labels
                .get_or_insert_with(Default::default)
                .insert(k.trim().to_string(), v.trim().to_string());
        } else if let Some((k, rest)) = part.split_once(" notin ") {
            exprs.push(requirement(k, "NotIn", values(part, rest)?));
        } else if let Some((k, rest)) = part.split_once(" in ") {
            exprs.push(requirement(k, "In", values(part, rest)?));
        } else if part.contains(['(', ')', ' ', '<', '>']) {
            return Err(format!("unable to parse requirement {part:?}"));
        } else {
            exprs.push(requirement(part, "Exists", Vec::new()));
        }
    }
    sel.match_expressions = (!exprs.is_empty()).then_some(exprs);
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::runtime::selector::{Labels, selector_matches};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_strings_round_trip_to_label_selectors() {
        let sel = parse_selector("app=web, tier in (a,b),track!=canary,!legacy,zone").unwrap();
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "b"), ("zone", "z1")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[
                ("app", "web"),
                ("tier", "b"),
                ("zone", "z1"),
                ("track", "canary")
            ])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "c"), ("zone", "z1")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[
                ("app", "web"),
                ("tier", "a"),
                ("zone", "z"),
                ("legacy", "1")
            ])
        ));
        let all = parse_selector("").unwrap();
        assert!(selector_matches(&all, &labels(&[])));
        assert!(parse_selector("a (b)").is_err());
    }

    #[test]
    fn only_served_scales_resolve() {
        let ar = scalable("apps/v1", "Deployment").unwrap();
        assert_eq!(
            (ar.plural.as_str(), ar.api_version.as_str()),
            ("deployments", "apps/v1")
        );
        assert!(scalable("apps/v1beta2", "StatefulSet").is_some());
        assert!(scalable("apps/v1", "DaemonSet").is_none());
        assert!(scalable("batch/v1", "Job").is_none());
    }
}
