//! Container environment: `env` (value, valueFrom configMapKeyRef,
//! secretKeyRef, fieldRef, resourceFieldRef) and `envFrom`, and the `$(VAR)`
//! expansion Kubernetes applies to env values, command and args.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::resources::container_resource;
use super::source::{ObjectSource, config_map_data, field_value, secret_data};

/// Why a container's environment could not be built (`CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Expands `$(VAR)` from `vars`; `$$` escapes a `$`; unknown references stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The pod facts env and downward API need besides the pod itself.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// Node allocatable cpu (cores) and memory (bytes), used when a container has no limit.
    pub node_cpu: f64,
    pub node_memory: f64,
}

/// The container's environment in order (envFrom first, then env, later names win).
pub fn container_env(
    facts: &PodFacts<'_>,
    container: &Container,
    source: &dyn ObjectSource,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = facts.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |k: String, v: String, order: &mut Vec<String>, vars: &mut HashMap<String, String>| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match source.config_map(ns, &r.name) {
                Some(cm) => config_map_data(&cm),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match source.secret(ns, &r.name) {
                Some(s) => secret_data(&s),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError(format!("secret \"{}\" not found", r.name))),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            if is_env_name(&name) {
                set(
                    name,
                    String::from_utf8_lossy(&v).into_owned(),
                    &mut order,
                    &mut vars,
                );
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match env_value_from(facts, container, source, ns, from)? {
                Some(v) => v,
                None => continue,
            },
            (Some(v), None) => expand(v, &vars),
            (None, None) => String::new(),
        };
        set(var.name.clone(), value, &mut order, &mut vars);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

fn env_value_from(
    facts: &PodFacts<'_>,
    container: &Container,
    source: &dyn ObjectSource,
    ns: &str,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
) -> Result<Option<String>, EnvError> {
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match source
            .config_map(ns, &r.name)
            .map(|cm| config_map_data(&cm))
        {
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                None if optional => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {} in ConfigMap {ns}/{}",
                    r.key, r.name
                ))),
            },
            None if optional => Ok(None),
            None => Err(EnvError(format!("configmap \"{}\" not found", r.name))),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match source.secret(ns, &r.name).map(|s| secret_data(&s)) {
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                None if optional => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {} in Secret {ns}/{}",
                    r.key, r.name
                ))),
            },
            None if optional => Ok(None),
            None => Err(EnvError(format!("secret \"{}\" not found", r.name))),
        };
    }
    if let Some(f) = &from.field_ref {
        return field_value(facts.pod, &f.field_path, facts.pod_ip, facts.host_ip)
            .map(Some)
            .ok_or_else(|| EnvError(format!("unsupported fieldPath {:?}", f.field_path)));
    }
    if let Some(r) = &from.resource_field_ref {
        let target = match r.container_name.as_deref() {
            Some(name) if !name.is_empty() => facts
                .pod
                .spec
                .as_ref()
                .and_then(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                        .find(|c| c.name == name)
                })
                .ok_or_else(|| {
                    EnvError(format!("resourceFieldRef names unknown container {name:?}"))
                })?,
            _ => container,
        };
        return Ok(Some(resource_value(
            facts,
            target,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
        )?));
    }
    Ok(None)
}

/// A `resourceFieldRef` value: the container's limit or request (node allocatable when
/// unset), divided by the divisor and rounded up, as Kubernetes does.
pub fn resource_value(
    facts: &PodFacts<'_>,
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, EnvError> {
    let is_cpu = resource.ends_with(".cpu");
    let value = container_resource(c, resource).unwrap_or(if is_cpu {
        facts.node_cpu
    } else {
        facts.node_memory
    });
    let divisor = match divisor {
        Some(d) => super::resources::parse_quantity(d)
            .filter(|d| *d > 0.0)
            .ok_or_else(|| EnvError(format!("invalid divisor {d:?}")))?,
        None => 1.0,
    };
    let out = (value / divisor - 1e-9)
        .ceil()
        .max(if value > 0.0 { 1.0 } else { 0.0 });
    Ok(format!("{}", out as u64))
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// argv for a container: the container name, then command + args with `$(VAR)` expanded.
/// (A wasm image has no entrypoint of its own, so `command` and `args` simply concatenate.)
pub fn container_argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    std::iter::once(container.name.clone())
        .chain(
            container
                .command
                .iter()
                .flatten()
                .chain(container.args.iter().flatten())
                .map(|a| expand(a, &vars)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::source::MapSource;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
        PodSpec, ResourceFieldSelector, Secret, SecretEnvSource,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn expansion_rules() {
        let vars = HashMap::from([
            ("A".to_string(), "x".to_string()),
            ("B".to_string(), "y".to_string()),
        ]);
        assert_eq!(expand("$(A)-$(B)", &vars), "x-y");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(C) $A $", &vars), "$(C) $A $");
        assert_eq!(expand("$(A", &vars), "$(A");
    }

    fn env(name: &str, value: Option<&str>, from: Option<EnvVarSource>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.map(Into::into),
            value_from: from,
        }
    }

    #[test]
    fn builds_env_from_all_sources() {
        let mut source = MapSource::default();
        source.config_maps.insert(
            ("ns".into(), "cm".into()),
            Arc::new(ConfigMap {
                data: Some(BTreeMap::from([
                    ("color".into(), "blue".into()),
                    ("1bad".into(), "x".into()),
                ])),
                ..Default::default()
            }),
        );
        source.secrets.insert(
            ("ns".into(), "s".into()),
            Arc::new(Secret {
                data: Some(BTreeMap::from([(
                    "token".into(),
                    ByteString(b"t0k".to_vec()),
                )])),
                ..Default::default()
            }),
        );
        let container = k8s_openapi::api::core::v1::Container {
            name: "app".into(),
            command: Some(vec!["run".into(), "--color=$(COLOR)".into()]),
            args: Some(vec!["$(POD)".into(), "$$(POD)".into()]),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "s".into(),
                    optional: None,
                }),
                prefix: Some("S_".into()),
                ..Default::default()
            }]),
            env: Some(vec![
                env(
                    "COLOR",
                    None,
                    Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cm".into(),
                            key: "color".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                ),
                env(
                    "POD",
                    None,
                    Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                ),
                env("GREETING", Some("hi $(POD)"), None),
                env(
                    "MEM",
                    None,
                    Some(EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.memory".into(),
                            divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                                "1Mi".into(),
                            )),
                            container_name: None,
                        }),
                        ..Default::default()
                    }),
                ),
                env(
                    "MISSING",
                    None,
                    Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "nope".into(),
                            key: "k".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    }),
                ),
            ]),
            ..Default::default()
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p1".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container.clone()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "10.42.0.5",
            host_ip: "127.0.0.1",
            node_cpu: 2.0,
            node_memory: 64.0 * 1024.0 * 1024.0,
        };
        let vars = container_env(&facts, &container, &source).unwrap();
        assert_eq!(
            vars,
            vec![
                ("S_token".to_string(), "t0k".to_string()),
                ("COLOR".to_string(), "blue".to_string()),
                ("POD".to_string(), "p1".to_string()),
                ("GREETING".to_string(), "hi p1".to_string()),
                ("MEM".to_string(), "64".to_string()),
            ]
        );
        assert_eq!(
            container_argv(&container, &vars),
            vec!["app", "run", "--color=blue", "p1", "$(POD)"]
        );
        let mut bad = container.clone();
        bad.env = Some(vec![env(
            "X",
            None,
            Some(EnvVarSource {
                secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                    name: "s".into(),
                    key: "nokey".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        )]);
        assert!(
            container_env(&facts, &bad, &source)
                .unwrap_err()
                .0
                .contains("nokey")
        );
    }
}
