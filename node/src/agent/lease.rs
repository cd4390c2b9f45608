//! The node heartbeat: a coordination.k8s.io/v1 Lease named after the node in
//! `kube-node-lease`, renewed every `lease_interval`.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::NodeConfig;
use crate::error::{NodeError, is_conflict, is_not_found};

/// The namespace node leases live in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Lease object for this node, renewed now.
pub fn build_lease(config: &NodeConfig, node_uid: Option<&str>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_string(),
                    kind: "Node".to_string(),
                    name: config.name.clone(),
                    uid: uid.to_string(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.name.clone()),
            lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        }),
    }
}

/// Renews the lease once: get → bump renewTime → replace (create when missing).
pub async fn renew(client: &kube::Client, config: &NodeConfig) -> Result<(), NodeError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    match leases.get_opt(&config.name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            spec.holder_identity = Some(config.name.clone());
            spec.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
            leases
                .replace(&config.name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let nodes: Api<Node> = Api::all(client.clone());
            let uid = nodes
                .get_opt(&config.name)
                .await?
                .and_then(|n| n.metadata.uid);
            let lease = build_lease(config, uid.as_deref());
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    ensure_namespace(client).await?;
                    leases.create(&PostParams::default(), &lease).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn ensure_namespace(client: &kube::Client) -> Result<(), NodeError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(LEASE_NAMESPACE.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Renews the lease every `lease_interval` until shutdown; failures are logged and retried.
pub async fn lease_loop(client: kube::Client, config: NodeConfig, shutdown: CancellationToken) {
    loop {
        match renew(&client, &config).await {
            Ok(()) => debug!(node = %config.name, "renewed node lease"),
            Err(e) => {
                warn!(node = %config.name, error = %e, "node lease renewal failed; retrying next interval")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.lease_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_holder_duration_and_owner() {
        let config = NodeConfig::new("n1", "/tmp/x");
        let lease = build_lease(&config, Some("uid-1"));
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert!(spec.renew_time.is_some());
        assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }
}
