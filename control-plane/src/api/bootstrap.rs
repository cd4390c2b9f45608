//! Objects every cluster starts with: the default, kube-system,
//! kube-public and kube-node-lease namespaces, and the `kubernetes`
//! Service (10.43.0.1:443) with Endpoints pointing at this API server.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::{self, SideEffects};
use super::registry::lookup;
use super::state::SharedState;
use super::{alloc, defaults, lifecycle};
use crate::store::{Compare, TxnOp};

const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_if_absent(
    state: &SharedState,
    group: &str,
    plural: &str,
    obj: Value,
    side: SideEffects,
) -> Result<(), String> {
    let info = lookup(group, "v1", plural).ok_or_else(|| format!("{plural} not registered"))?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(String::from);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if objects::try_get(&state.store, info, ns.as_deref(), &name)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    let mut obj = lifecycle::prepare_create(info, ns.as_deref(), obj).map_err(|e| e.to_string())?;
    defaults::apply(info, &mut obj, true);
    match objects::put(&state.store, info, ns.as_deref(), &name, obj, 0, side).await {
        Ok(_) | Err(super::error::ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn ensure_all(state: &SharedState, addr: SocketAddr) -> Result<(), String> {
    for ns in NAMESPACES {
        let obj = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        create_if_absent(state, "", "namespaces", obj, SideEffects::default()).await?;
    }
    let ip_key = format!("/registry/core/serviceips/{}", alloc::KUBERNETES_SERVICE_IP);
    let side = SideEffects {
        compares: vec![Compare::ModRevision {
            key: ip_key.clone(),
            equals: 0,
        }],
        ops: vec![TxnOp::Put {
            key: ip_key,
            value: b"/registry/core/services/default/kubernetes".to_vec(),
        }],
    };
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "component": "apiserver", "provider": "kubernetes" } },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": alloc::KUBERNETES_SERVICE_IP,
            "clusterIPs": [alloc::KUBERNETES_SERVICE_IP],
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port() }],
        },
    });
    create_if_absent(state, "", "services", svc, side).await?;
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let eps = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "kubernetes", "namespace": "default" },
        "subsets": [{ "addresses": [{ "ip": ip }], "ports": [{ "name": "https", "port": addr.port(), "protocol": "TCP" }] }],
    });
    create_if_absent(state, "", "endpoints", eps, SideEffects::default()).await
}

/// Creates the built-in objects (waiting briefly; retrying in the background if the store is not ready).
pub async fn ensure_defaults(state: &SharedState, addr: SocketAddr) {
    match tokio::time::timeout(Duration::from_secs(5), ensure_all(state, addr)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "bootstrap objects not created yet; retrying in the background")
        }
        Err(_) => {
            tracing::warn!("bootstrap objects not created within 5s; retrying in the background")
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            match ensure_all(&state, addr).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(error = %e, "bootstrap objects: retrying"),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
}
