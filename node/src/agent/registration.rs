//! Node registration and status: builds the Node object from the config and a
//! host reading (pure), creates it, and keeps `nodes/status` current.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::error::{NodeError, is_conflict};
use crate::host::HostReading;

/// The kubelet version skiff reports.
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";

/// The Node labels: well-known topology labels, the runtimes offered, and the config's extras.
pub fn node_labels(config: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        (
            "kubernetes.io/os".to_string(),
            std::env::consts::OS.to_string(),
        ),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        (
            "beta.kubernetes.io/os".to_string(),
            std::env::consts::OS.to_string(),
        ),
        ("beta.kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("skiff.dev/runtime-wasm".to_string(), "true".to_string()),
    ]);
    labels.extend(config.labels.clone());
    labels
}

/// Go's spelling of this machine's architecture (what Kubernetes labels use).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The Node this agent registers (metadata, spec and a first status).
pub fn build_node(config: &NodeConfig, reading: &HostReading, port: u16) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(node_labels(config)),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(config.pod_cidr.clone()),
            pod_cidrs: Some(vec![config.pod_cidr.clone()]),
            ..Default::default()
        }),
        status: Some(build_status(config, reading, port, None)),
    }
}

/// The node status from a host reading; `previous` keeps condition transition times.
pub fn build_status(
    config: &NodeConfig,
    reading: &HostReading,
    port: u16,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let mut resources = BTreeMap::new();
    resources.insert("cpu".to_string(), Quantity(reading.cpus.to_string()));
    resources.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", reading.memory_total / 1024)),
    );
    resources.insert("pods".to_string(), Quantity(config.max_pods.to_string()));
    if reading.disk_total > 0 {
        resources.insert(
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", reading.disk_total / 1024)),
        );
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let prev = previous.and_then(|s| s.conditions.as_ref());
    let condition = |type_: &str, on: bool, reason: &str, message: &str| {
        let status = if on { "True" } else { "False" };
        let transition = prev
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    let mem = reading.memory_pressure();
    let disk = reading.disk_pressure();
    let pid = reading.pid_pressure();
    let conditions = vec![
        condition(
            "MemoryPressure",
            mem,
            if mem {
                "KubeletHasInsufficientMemory"
            } else {
                "KubeletHasSufficientMemory"
            },
            if mem {
                "node has less than 100Mi memory available"
            } else {
                "node has sufficient memory available"
            },
        ),
        condition(
            "DiskPressure",
            disk,
            if disk {
                "KubeletHasDiskPressure"
            } else {
                "KubeletHasNoDiskPressure"
            },
            if disk {
                "node has less than 10% disk available"
            } else {
                "node has no disk pressure"
            },
        ),
        condition(
            "PIDPressure",
            pid,
            if pid {
                "KubeletHasInsufficientPID"
            } else {
                "KubeletHasSufficientPID"
            },
            if pid {
                "node has more than 90% of its pids in use"
            } else {
                "node has sufficient PID available"
            },
        ),
        condition(
            "Ready",
            true,
            "KubeletReady",
            "skiff node agent is posting ready status",
        ),
    ];
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_string(),
                address: config.internal_ip().to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_string(),
                address: config.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: port as i32 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().to_string(),
            operating_system: std::env::consts::OS.to_string(),
            kernel_version: reading.kernel_version.clone(),
            os_image: reading.os_image.clone(),
            boot_id: reading.boot_id.clone(),
            machine_id: reading.machine_id.clone(),
            system_uuid: reading.machine_id.clone(),
            container_runtime_version: "wasmtime://48".to_string(),
            kubelet_version: KUBELET_VERSION.to_string(),
            kube_proxy_version: KUBELET_VERSION.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but heartbeat times (so a write is due).
pub fn status_changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) != strip(b)
}

/// Creates the Node (or adopts an existing one) and writes a first status.
pub async fn register(
    client: &kube::Client,
    config: &NodeConfig,
    port: u16,
) -> Result<NodeStatus, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let reading = read_host(config).await;
    let node = build_node(config, &reading, port);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => info!(node = %config.name, "registered node"),
        Err(e) if is_conflict(&e) => {
            info!(node = %config.name, "node already registered; updating it");
            let patch = serde_json::json!({
                "metadata": { "labels": node.metadata.labels },
                "spec": { "podCIDR": config.pod_cidr, "podCIDRs": [config.pod_cidr] },
            });
            nodes
                .patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    let status = node.status.unwrap_or_default();
    write_status(&nodes, &config.name, &status).await?;
    Ok(status)
}

async fn write_status(nodes: &Api<Node>, name: &str, status: &NodeStatus) -> Result<(), NodeError> {
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn read_host(config: &NodeConfig) -> HostReading {
    let dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || HostReading::read(&dir))
        .await
        .unwrap_or_default()
}

/// Re-reads the host every `status_interval` and writes `nodes/status` when it
/// changed, or at least once a minute, until shutdown.
pub async fn status_loop(
    client: kube::Client,
    config: NodeConfig,
    port: u16,
    mut last: NodeStatus,
    shutdown: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut last_write = tokio::time::Instant::now();
    let refresh = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.status_interval) => {}
        }
        let reading = read_host(&config).await;
        let status = build_status(&config, &reading, port, Some(&last));
        if !status_changed(&status, &last) && last_write.elapsed() < refresh {
            continue;
        }
        match write_status(&nodes, &config.name, &status).await {
            Ok(()) => {
                last = status;
                last_write = tokio::time::Instant::now();
            }
            Err(e) => {
                warn!(node = %config.name, error = %e, "node status update failed; retrying next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> HostReading {
        HostReading {
            cpus: 4,
            memory_total: 8 << 30,
            memory_available: 4 << 30,
            disk_total: 100 << 30,
            disk_available: 50 << 30,
            pids: 10,
            pid_max: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn node_carries_labels_capacity_addresses_and_endpoint() {
        let config = NodeConfig::new("n1", "/tmp/x");
        let node = build_node(&config, &reading(), 12345);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["skiff.dev/runtime-wasm"], "true");
        let status = node.status.unwrap();
        let cap = status.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, format!("{}Ki", 8 * 1024 * 1024));
        assert_eq!(cap["pods"].0, "16384");
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            12345
        );
        let addrs = status.addresses.unwrap();
        assert_eq!(addrs[0].type_, "InternalIP");
        assert_eq!(addrs[0].address, "127.0.0.1");
        let conds = status.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.node_info.unwrap().kubelet_version, KUBELET_VERSION);
    }

    #[test]
    fn transition_time_kept_while_status_holds_and_reset_on_flip() {
        let config = NodeConfig::new("n1", "/tmp/x");
        let mut first = build_status(&config, &reading(), 1, None);
        let old = Time(
            k8s_openapi::jiff::Timestamp::now()
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(3600))
                .unwrap(),
        );
        for c in first.conditions.iter_mut().flatten() {
            c.last_transition_time = Some(old.clone());
        }
        let same = build_status(&config, &reading(), 1, Some(&first));
        assert!(!status_changed(&first, &same));
        let mut low = reading();
        low.memory_available = 1;
        let flipped = build_status(&config, &low, 1, Some(&first));
        assert!(status_changed(&first, &flipped));
        let conds = flipped.conditions.unwrap();
        let mem = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(mem.status, "True");
        assert_ne!(mem.last_transition_time, Some(old.clone()));
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(old));
    }
}
