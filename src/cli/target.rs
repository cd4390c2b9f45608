//! Parsing what the user names on the command line — `pods`, `pods a b`,
//! `pods,svc`, `deploy/web svc/web` — and turning an object's selector into
//! a label selector string. Pure helpers, no API calls.

use serde_json::Value;

/// One resource type and the names asked for (empty: all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: String,
    pub names: Vec<String>,
}

/// Parses kubectl's `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` forms.
pub fn parse_targets(args: &[String]) -> anyhow::Result<Vec<Target>> {
    let Some(first) = args.first() else {
        anyhow::bail!("error: you must specify the type of resource");
    };
    if first.contains('/') {
        let mut out: Vec<Target> = Vec::new();
        for arg in args {
            let Some((resource, name)) = arg
                .split_once('/')
                .filter(|(r, n)| !r.is_empty() && !n.is_empty())
            else {
                anyhow::bail!(
                    "error: there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiff get resource/<resource_name>' instead of 'skiff get resource resource/<resource_name>'): {arg}"
                );
            };
            match out.last_mut() {
                Some(last) if last.resource == resource => last.names.push(name.to_string()),
                _ => out.push(Target {
                    resource: resource.to_string(),
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        anyhow::bail!(
            "error: arguments in resource/name form must have a single resource and name: {bad}"
        );
    }
    Ok(first
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| Target {
            resource: t.to_string(),
            names: names.clone(),
        })
        .collect())
}

/// One `TYPE NAME` or `TYPE/NAME` (for verbs acting on a single object).
pub fn parse_single(args: &[String]) -> anyhow::Result<(String, String)> {
    match args {
        [one] => match one.split_once('/') {
            Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok((t.to_string(), n.to_string())),
            _ => anyhow::bail!("error: expected TYPE/NAME or TYPE NAME, got \"{one}\""),
        },
        [t, n] if !t.contains('/') && !n.contains('/') => Ok((t.clone(), n.clone())),
        _ => anyhow::bail!("error: expected TYPE/NAME or TYPE NAME"),
    }
}

/// A label selector string for an object's `spec.selector` — a
/// LabelSelector (`matchLabels` + `matchExpressions`) or, as in Services,
/// a plain map. `None` when the object selects nothing.
pub fn selector_string(selector: &Value) -> Option<String> {
    let map = selector.as_object()?;
    let is_label_selector = map.contains_key("matchLabels") || map.contains_key("matchExpressions");
    let labels = if is_label_selector {
        selector["matchLabels"].as_object()
    } else {
        Some(map)
    };
    let mut parts: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match expr["operator"].as_str().unwrap_or_default() {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_type_and_names() {
        assert_eq!(
            parse_targets(&args(&["pods"])).unwrap(),
            [Target {
                resource: "pods".into(),
                names: vec![]
            }]
        );
        assert_eq!(
            parse_targets(&args(&["po,svc", "a"])).unwrap(),
            [
                Target {
                    resource: "po".into(),
                    names: vec!["a".into()]
                },
                Target {
                    resource: "svc".into(),
                    names: vec!["a".into()]
                }
            ]
        );
        assert_eq!(
            parse_targets(&args(&["deploy/web", "deploy/api", "svc/web"])).unwrap(),
            [
                Target {
                    resource: "deploy".into(),
                    names: vec!["web".into(), "api".into()]
                },
                Target {
                    resource: "svc".into(),
                    names: vec!["web".into()]
                }
            ]
        );
        assert!(parse_targets(&[]).is_err());
        assert!(parse_targets(&args(&["deploy/web", "pods"])).is_err());
        assert!(parse_targets(&args(&["pods", "deploy/web"])).is_err());
    }

    #[test]
    fn parses_single_objects() {
        assert_eq!(
            parse_single(&args(&["deploy/web"])).unwrap(),
            ("deploy".into(), "web".into())
        );
        assert_eq!(
            parse_single(&args(&["deploy", "web"])).unwrap(),
            ("deploy".into(), "web".into())
        );
        assert!(parse_single(&args(&["deploy"])).is_err());
        assert!(parse_single(&args(&["a", "b", "c"])).is_err());
    }

    #[test]
    fn selectors_become_strings() {
        let sel = json!({"matchLabels": {"app": "web", "tier": "fe"},
                         "matchExpressions": [
                            {"key": "env", "operator": "In", "values": ["a", "b"]},
                            {"key": "x", "operator": "NotIn", "values": ["c"]},
                            {"key": "y", "operator": "Exists"},
                            {"key": "z", "operator": "DoesNotExist"}]});
        assert_eq!(
            selector_string(&sel).unwrap(),
            "app=web,tier=fe,env in (a,b),x notin (c),y,!z"
        );
        assert_eq!(selector_string(&json!({"app": "web"})).unwrap(), "app=web");
        assert_eq!(selector_string(&json!({})), None);
        assert_eq!(selector_string(&Value::Null), None);
    }
}
