//! What the node server needs to know about running pods: the pod table
//! (by namespace/name: uid, IP, spec, each container's runtime id, mounts and
//! log files) and the port map `(podIP, containerPort) → host address`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Pod;

use crate::runtime::{ContainerId, Mount};

/// One container as the node server sees it.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub id: Option<ContainerId>,
    pub restart_count: u32,
    /// The current start's log file, and the previous start's.
    pub log_path: Option<PathBuf>,
    pub previous_log_path: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    pub is_init: bool,
}

/// One pod as the node server sees it.
#[derive(Debug, Clone)]
pub struct PodView {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub pod_ip: Option<IpAddr>,
    pub containers: HashMap<String, ContainerView>,
}

impl PodView {
    /// The containerPort a port name or number refers to.
    pub fn resolve_port(&self, port: &str) -> Option<u16> {
        if let Ok(n) = port.parse::<u16>() {
            return Some(n);
        }
        let spec = self.pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(port))
            .map(|p| p.container_port as u16)
    }

    /// The first regular container's name (the default for logs and exec).
    pub fn default_container(&self) -> Option<String> {
        let annotated = self
            .pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
            .cloned();
        annotated.or_else(|| {
            self.pod
                .spec
                .as_ref()?
                .containers
                .first()
                .map(|c| c.name.clone())
        })
    }
}

/// Pods on this node by (namespace, name), plus their served ports.
#[derive(Default)]
pub struct PodTable {
    pods: RwLock<HashMap<(String, String), PodView>>,
    ports: RwLock<HashMap<(IpAddr, u16), SocketAddr>>,
}

impl PodTable {
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodView> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<PodView> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Inserts or updates a pod's view.
    pub fn upsert(
        &self,
        namespace: &str,
        name: &str,
        update: impl FnOnce(Option<PodView>) -> PodView,
    ) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let current = pods.remove(&key);
        pods.insert(key, update(current));
    }

    /// Forgets a pod (only if it is still the same uid) and its ports.
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if let Some(view) = pods.get(&key)
            && view.uid == uid
        {
            if let Some(ip) = view.pod_ip {
                self.ports
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(i, _), _| *i != ip);
            }
            pods.remove(&key);
        }
    }

    /// Records that `(pod_ip, port)` is served at `addr`.
    pub fn set_port(&self, pod_ip: IpAddr, port: u16, addr: SocketAddr) {
        self.ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((pod_ip, port), addr);
    }

    /// Forgets a served port.
    pub fn clear_port(&self, pod_ip: IpAddr, port: u16) {
        self.ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(pod_ip, port));
    }

    /// Where `(pod_ip, port)` is served on the host.
    pub fn port(&self, pod_ip: IpAddr, port: u16) -> Option<SocketAddr> {
        self.ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(pod_ip, port))
            .copied()
    }
}
