//! The Endpoints controller: for every Service with a selector, one
//! Endpoints object listing the matching pods' IPs (ready ones under
//! `addresses`, others under `notReadyAddresses`) with target ports
//! resolved per pod (named ports included). `backends` is the pure part,
//! shared with the EndpointSlice controller.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::pods::is_ready;
use super::runtime::selector::Labels;
use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// One pod behind a Service.
#[derive(Clone, Debug)]
pub struct Backend {
    pub pod: Arc<Pod>,
    pub ip: String,
    pub ready: bool,
    pub terminating: bool,
    /// (port name, resolved port, protocol) per Service port.
    pub ports: Vec<(Option<String>, i32, String)>,
}

fn selector_of(svc: &Service) -> Option<&Labels> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn resolve_port(pod: &Pod, target: Option<&IntOrString>, port: i32) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }
    }
}

/// The pods behind `svc` among `pods` (same namespace assumed), sorted by IP.
pub fn backends(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Backend> {
    let Some(selector) = selector_of(svc) else {
        return Vec::new();
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out: Vec<Backend> = pods
        .iter()
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| {
            let ip = p
                .status
                .as_ref()?
                .pod_ip
                .clone()
                .filter(|ip| !ip.is_empty())?;
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    let port = resolve_port(p, sp.target_port.as_ref(), sp.port)?;
                    Some((
                        sp.name.clone(),
                        port,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ))
                })
                .collect();
            Some(Backend {
                pod: p.clone(),
                ip,
                ready: publish || is_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip));
    out
}

/// A reference to a pod for targetRef.
pub fn pod_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: p.metadata.name.clone(),
        namespace: p.metadata.namespace.clone(),
        uid: p.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The hostname a pod gets under a (headless) service: spec.hostname when
/// spec.subdomain names the service.
pub fn hostname_for(p: &Pod, svc: &str) -> Option<String> {
    let spec = p.spec.as_ref()?;
    (spec.subdomain.as_deref() == Some(svc))
        .then(|| spec.hostname.clone())
        .flatten()
}

/// Endpoints subsets grouped by resolved port set.
pub fn subsets(svc: &Service, backends: &[Backend]) -> Vec<EndpointSubset> {
    let name = svc.name_any();
    let mut groups: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    for b in backends.iter().filter(|b| !b.terminating) {
        let key = format!("{:?}", b.ports);
        let subset = groups.entry(key).or_insert_with(|| EndpointSubset {
            ports: Some(
                b.ports
                    .iter()
                    .map(|(n, port, proto)| EndpointPort {
                        name: n.clone(),
                        port: *port,
                        protocol: Some(proto.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        let addr = EndpointAddress {
            ip: b.ip.clone(),
            hostname: hostname_for(&b.pod, &name),
            node_name: b.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(&b.pod)),
        };
        let list = if b.ready {
            subset.addresses.get_or_insert_with(Vec::new)
        } else {
            subset.not_ready_addresses.get_or_insert_with(Vec::new)
        };
        list.push(addr);
    }
    groups.into_values().collect()
}

/// Services in the pod's namespace whose selector matches the pod.
pub fn services_of_pod(ctx: &Ctx, c: &Change<Pod>) -> Vec<ObjectKey> {
    let pods: Vec<&Pod> = match c {
        Change::Upsert { old, new } => std::iter::once(new.as_ref())
            .chain(old.as_deref())
            .collect(),
        Change::Delete(p) => vec![p.as_ref()],
        Change::Resync => return ctx.services.cache().keys(),
    };
    let mut keys = Vec::new();
    for p in pods {
        let ns = p.namespace().unwrap_or_default();
        for svc in ctx.services.cache().list_namespace(&ns) {
            if let Some(sel) = selector_of(&svc)
                && sel.iter().all(|(k, v)| p.labels().get(k) == Some(v))
            {
                keys.push(ObjectKey::of(svc.as_ref()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Subscribes the controller to Services, pods and Endpoints.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.services.feed_keys(queue.clone(), shutdown.clone());
    ctx.endpoints.feed_keys(queue.clone(), shutdown.clone());
    let c2 = ctx.clone();
    ctx.pods.feed(queue.clone(), shutdown.clone(), move |c| {
        services_of_pod(&c2, c)
    });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.services.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("endpoints", queue, workers, ctx, reconcile, sd).await
    })
}

/// Reconciles the Endpoints of one Service.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let existing = ctx.endpoints.cache().get(&key);
    let Some(svc) = ctx.services.cache().get(&key) else {
        if existing.is_some() {
            ignore_not_found(api.delete(&key.name, &DeleteParams::default()).await)?;
        }
        return Ok(Action::AwaitChange);
    };
    if selector_of(&svc).is_none() {
        return Ok(Action::AwaitChange);
    }
    let pods = ctx.pods.cache().list_namespace(&key.namespace);
    let subsets = subsets(&svc, &backends(&svc, &pods));
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match existing {
        Some(ep) if ep.subsets == subsets => Ok(Action::AwaitChange),
        Some(ep) => {
            let mut ep = (*ep).clone();
            ep.subsets = subsets;
            let ep = api.replace(&key.name, &PostParams::default(), &ep).await?;
            ctx.endpoints.cache().insert(key, Arc::new(ep));
            Ok(Action::AwaitChange)
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(key.name.clone()),
                    namespace: Some(key.namespace.clone()),
                    labels: svc.metadata.labels.clone(),
                    ..Default::default()
                },
                subsets,
            };
            let ep = api.create(&PostParams::default(), &ep).await?;
            ctx.endpoints.cache().insert(key, Arc::new(ep));
            Ok(Action::AwaitChange)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };

    fn pod(name: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_ports() {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![ServicePort {
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = vec![pod("a", "10.0.0.2", true), pod("b", "10.0.0.1", false)];
        let s = subsets(&svc, &backends(&svc, &pods));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(s[0].not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
        assert_eq!(s[0].ports.as_ref().unwrap()[0].port, 8080);
    }
}
