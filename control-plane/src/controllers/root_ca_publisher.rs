//! The root CA publisher (Kubernetes' root-ca-cert-publisher): every active
//! namespace has the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the
//! cluster CA (PEM), annotated `kubernetes.io/description`; it is
//! re-created when deleted and put back when edited. Pods read it through
//! their `kube-api-access-*` volume. Runs only when the controller manager
//! knows the CA (`ControllersConfig::root_ca_pem`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Action, ObjectKey};
use super::{ControllerError, Ctx, Started, ignore_conflict, per_namespace};

/// The published ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Subscribes the publisher to namespaces and the published ConfigMaps.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let concerns = |cm: &ConfigMap, _deleted: bool| cm.name_any() == CONFIG_MAP;
    per_namespace::start(
        ctx,
        shutdown,
        "root-ca-publisher",
        &ctx.root_ca_config_maps,
        concerns,
        reconcile,
    )
}

/// The ConfigMap's data for `ca_pem`.
fn wanted_data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())])
}

/// Whether a published ConfigMap is as it should be.
fn up_to_date(cm: &ConfigMap, ca_pem: &str) -> bool {
    cm.data.as_ref() == Some(&wanted_data(ca_pem))
        && cm
            .annotations()
            .get(DESCRIPTION_ANNOTATION)
            .is_some_and(|d| !d.is_empty())
}

/// Ensures the ConfigMap of one namespace.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(ca_pem) = ctx.config.root_ca_pem.as_deref() else {
        return Ok(Action::AwaitChange);
    };
    let Some(ns) = ctx.namespaces.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    let terminating = ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if ns.metadata.deletion_timestamp.is_some() || terminating {
        return Ok(Action::AwaitChange);
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let current = ctx
        .root_ca_config_maps
        .cache()
        .get(&ObjectKey::new(name.clone(), CONFIG_MAP));
    match current {
        Some(cm) if up_to_date(&cm, ca_pem) => {}
        Some(cm) => {
            let mut next = (*cm).clone();
            next.data = Some(wanted_data(ca_pem));
            next.annotations_mut()
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            api.replace(CONFIG_MAP, &PostParams::default(), &next)
                .await?;
            tracing::info!(namespace = %name, "restored the root CA ConfigMap");
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.into()),
                    namespace: Some(name.clone()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(wanted_data(ca_pem)),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                // The namespace went away or began terminating meanwhile.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => {}
                r => {
                    if ignore_conflict(r)?.is_some() {
                        tracing::info!(namespace = %name, "published the root CA ConfigMap");
                    }
                }
            }
        }
    }
    Ok(Action::AwaitChange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_maps_need_the_ca_and_the_description() {
        let pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        let mut cm = ConfigMap {
            data: Some(wanted_data(pem)),
            ..Default::default()
        };
        assert!(!up_to_date(&cm, pem), "no description");
        cm.annotations_mut()
            .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
        assert!(up_to_date(&cm, pem));
        assert!(!up_to_date(&cm, "other"));
        cm.data
            .get_or_insert_with(Default::default)
            .insert("extra".into(), "x".into());
        assert!(!up_to_date(&cm, pem), "only ca.crt");
    }
}
