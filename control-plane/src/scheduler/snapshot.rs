//! The scheduler's view of the cluster: `PodInfo` and `NodeInfo` hold
//! everything the plugins read, precomputed once from the API objects (no
//! JSON or quantity parsing in the hot path), and `Snapshot` indexes nodes
//! and the pods placed on them. The scheduling loop updates the snapshot
//! incrementally from watch events and from its own assumptions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeSelector, Pod, Taint, Toleration, TopologySpreadConstraint,
};

use super::index::{AntiAffinityIndex, NodeImageIndex, NodeLabelIndex, PodLabelIndex};
use super::plugins::runtime_support::{RuntimeNeeds, runtime_needs};
use super::resources::{Resources, pod_requests};
use crate::controllers::runtime::selector::Labels;

/// Node label saying the node runs wasm workloads.
pub const LABEL_RUNTIME_WASM: &str = "skiff.dev/runtime-wasm";
/// Node label saying the node runs OCI containers through runc.
pub const LABEL_RUNTIME_OCI: &str = "skiff.dev/runtime-oci";

/// A host port a pod binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub host_ip: String,
    pub port: i32,
}

impl HostPort {
    /// True when both bind the same port on overlapping addresses.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == o.port
            && self.protocol == o.protocol
            && (wild(&self.host_ip) || wild(&o.host_ip) || self.host_ip == o.host_ip)
    }
}

/// Everything the scheduler needs to know about one pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    pub priority: i32,
    pub preemption_never: bool,
    pub requests: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    /// `spec.nodeName` when the pod asks for a specific node.
    pub node_name: Option<String>,
    pub node_selector: Labels,
    pub required_node_affinity: Option<NodeSelector>,
    pub affinity: Option<Arc<Affinity>>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    pub images: Vec<String>,
    pub runtime: RuntimeNeeds,
    pub pvcs: Vec<String>,
    pub spread: Vec<TopologySpreadConstraint>,
    pub scheduler_name: String,
    pub resource_version: String,
}

impl PodInfo {
    /// Precomputes a pod's scheduling facts.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let (requests, nonzero_cpu, nonzero_memory) = pod_requests(&spec);
        let mut host_ports = Vec::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        host_ip: p.host_ip.clone().unwrap_or_default(),
                        port: hp,
                    });
                }
            }
        }
        let affinity = spec.affinity.clone();
        let required_node_affinity = affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .clone()
            });
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            preemption_never: spec.preemption_policy.as_deref() == Some("Never"),
            requests,
            nonzero_cpu,
            nonzero_memory,
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity,
            affinity: affinity.map(Arc::new),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            host_ports,
            images: spec
                .containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect(),
            runtime: runtime_needs(pod),
            pvcs: spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.clone())
                .collect(),
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// True when the pod has required pod anti-affinity terms.
    pub fn has_required_anti_affinity(&self) -> bool {
        self.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty())
    }
}

/// Everything the scheduler needs to know about one node, plus its pods.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    /// Taints implied by node conditions (not-ready, pressure) that the
    /// node does not already carry.
    pub condition_taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Image name → size in bytes.
    pub images: HashMap<String, i64>,
    pub runs_wasm: bool,
    pub runs_oci: bool,
}

fn condition_taint(key: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }
}

impl NodeInfo {
    /// Precomputes a node's facts (without pods).
    pub fn from_node(node: &Node) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let taints = spec.taints.unwrap_or_default();
        let mut allocatable = status
            .allocatable
            .as_ref()
            .or(status.capacity.as_ref())
            .map(Resources::from_map)
            .unwrap_or_default();
        if status.allocatable.is_none() && status.capacity.is_none() {
            allocatable.pods = 110;
        }
        let mut condition_taints = Vec::new();
        let mut has_ready = false;
        for c in status.conditions.iter().flatten() {
            let key = match (c.type_.as_str(), c.status.as_str()) {
                ("Ready", s) => {
                    has_ready = true;
                    match s {
                        "True" => continue,
                        "False" => "node.kubernetes.io/not-ready",
                        _ => "node.kubernetes.io/unreachable",
                    }
                }
                ("MemoryPressure", "True") => "node.kubernetes.io/memory-pressure",
                ("DiskPressure", "True") => "node.kubernetes.io/disk-pressure",
                ("PIDPressure", "True") => "node.kubernetes.io/pid-pressure",
                ("NetworkUnavailable", "True") => "node.kubernetes.io/network-unavailable",
                _ => continue,
            };
            if !taints.iter().any(|t| t.key == key) {
                condition_taints.push(condition_taint(key));
            }
        }
        if !has_ready
            && !taints
                .iter()
                .any(|t| t.key == "node.kubernetes.io/not-ready")
        {
            condition_taints.push(condition_taint("node.kubernetes.io/not-ready"));
        }
        let mut images = HashMap::new();
        for img in status.images.iter().flatten() {
            for n in img.names.iter().flatten() {
                images.insert(n.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        let runs_wasm = labels.get(LABEL_RUNTIME_WASM).is_some_and(|v| v == "true");
        let runs_oci = labels.get(LABEL_RUNTIME_OCI).is_some_and(|v| v == "true");
        NodeInfo {
            name,
            labels,
            taints,
            condition_taints,
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable,
            images,
            runs_wasm,
            runs_oci,
            ..Default::default()
        }
    }

    /// Accounts `pod` on this node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.requested.pods += 1;
        self.nonzero_cpu += pod.nonzero_cpu;
        self.nonzero_memory += pod.nonzero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Removes the pod `namespace/name`; returns it when it was here.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let i = self
            .pods
            .iter()
            .position(|p| p.name == name && p.namespace == namespace)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.requested.pods -= 1;
        self.nonzero_cpu -= pod.nonzero_cpu;
        self.nonzero_memory -= pod.nonzero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(pod)
    }
}

/// A PersistentVolumeClaim as the VolumeBinding plugin sees it.
#[derive(Clone, Debug, Default)]
pub struct ClaimInfo {
    pub volume_name: Option<String>,
    pub storage_class: Option<String>,
}

/// Claims, volumes and storage classes, for VolumeBinding.
#[derive(Clone, Debug, Default)]
pub struct VolumeIndex {
    /// `namespace/name` → claim.
    pub claims: HashMap<String, ClaimInfo>,
    /// PV name → its required node affinity (None: any node).
    pub volumes: HashMap<String, Option<NodeSelector>>,
    /// StorageClass name → volumeBindingMode is WaitForFirstConsumer.
    pub wait_for_first_consumer: HashMap<String, bool>,
}

/// The cluster as one scheduling cycle sees it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// `namespace/name` → node name, for every placed pod.
    locations: HashMap<String, String>,
    node_labels: NodeLabelIndex,
    /// Nodes that report each image (ImageLocality).
    node_images: NodeImageIndex,
    pod_labels: PodLabelIndex,
    /// Placed pods that carry required anti-affinity terms.
    anti_affinity: AntiAffinityIndex,
    pub volumes: VolumeIndex,
    /// Namespace labels, for affinity terms with a namespaceSelector.
    pub namespace_labels: HashMap<String, Labels>,
}

impl Snapshot {
    /// Builds a snapshot from nodes and the pods placed on them.
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Self {
        let mut s = Snapshot::default();
        for n in nodes {
            s.upsert_node(NodeInfo::from_node(n));
        }
        for p in pods {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                s.place_pod(Arc::new(PodInfo::from_pod(p)), &node);
            }
        }
        s
    }

    /// All nodes, in a stable order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The position in `nodes()` of the node called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// How many nodes report `image`.
    pub fn image_spread(&self, image: &str) -> usize {
        self.node_images.nodes(image).len()
    }

    /// Image name → nodes reporting it.
    pub fn node_images(&self) -> &NodeImageIndex {
        &self.node_images
    }

    /// True when some placed pod has required anti-affinity.
    pub fn has_anti_affinity_pods(&self) -> bool {
        !self.anti_affinity.is_empty()
    }

    /// Node labels → node positions.
    pub fn node_labels(&self) -> &NodeLabelIndex {
        &self.node_labels
    }

    /// Placed pods' labels → node positions.
    pub fn pod_labels(&self) -> &PodLabelIndex {
        &self.pod_labels
    }

    /// Placed pods with required anti-affinity.
    pub fn anti_affinity(&self) -> &AntiAffinityIndex {
        &self.anti_affinity
    }

    /// Where `namespace/name` is placed.
    pub fn location(&self, key: &str) -> Option<&str> {
        self.locations.get(key).map(String::as_str)
    }

    /// Adds or replaces a node, keeping its pods.
    pub fn upsert_node(&mut self, mut info: NodeInfo) {
        match self.index.get(&info.name) {
            Some(&i) => {
                let old = std::mem::take(&mut self.nodes[i]);
                if old.images != info.images {
                    self.node_images.remove(&old.images, i);
                    self.node_images.add(&info.images, i);
                }
                if old.labels != info.labels {
                    self.node_labels.remove(&old.labels, i);
                    self.node_labels.add(&info.labels, i);
                }
                for p in old.pods {
                    info.add_pod(p);
                }
                self.nodes[i] = info;
            }
            None => {
                let i = self.nodes.len();
                self.index.insert(info.name.clone(), i);
                self.node_labels.add(&info.labels, i);
                self.node_images.add(&info.images, i);
                self.nodes.push(info);
            }
        }
    }

    /// Removes a node; its pods stay recorded as placed nowhere.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let old = self.nodes.swap_remove(i);
        self.node_labels.remove(&old.labels, i);
        self.node_images.remove(&old.images, i);
        for p in &old.pods {
            self.locations.remove(&p.key());
            self.pod_labels.remove(p, i);
            if p.has_required_anti_affinity() {
                self.anti_affinity.remove(p);
            }
        }
        // The last node now sits at `i`.
        let last = self.nodes.len();
        if i < last {
            let moved = &self.nodes[i];
            self.index.insert(moved.name.clone(), i);
            self.node_labels.moved(&moved.labels, last, i);
            self.node_images.moved(&moved.images, last, i);
            for p in &moved.pods {
                self.pod_labels.remove(p, last);
                self.pod_labels.add(p, i);
                if p.has_required_anti_affinity() {
                    self.anti_affinity.moved(p, last, i);
                }
            }
        }
    }

    /// Places (or moves) a pod on `node`; a no-op for unknown nodes.
    pub fn place_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        let key = pod.key();
        self.unplace_pod(&pod.namespace, &pod.name);
        let Some(&i) = self.index.get(node) else {
            return;
        };
        if pod.has_required_anti_affinity() {
            self.anti_affinity.add(&pod, i);
        }
        self.pod_labels.add(&pod, i);
        self.nodes[i].add_pod(pod);
        self.locations.insert(key, node.to_string());
    }

    /// Forgets a placed pod.
    pub fn unplace_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let node = self.locations.remove(&format!("{namespace}/{name}"))?;
        let &i = self.index.get(&node)?;
        let pod = self.nodes[i].remove_pod(namespace, name)?;
        self.pod_labels.remove(&pod, i);
        if pod.has_required_anti_affinity() {
            self.anti_affinity.remove(&pod);
        }
        Some(pod)
    }
}

/// A label map from pairs (tests and hollow nodes).
pub fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>()
}
