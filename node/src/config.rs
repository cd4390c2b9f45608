//! `NodeConfig`: everything the node agent is told at start-up, with defaults.
//! Parsing of flags happens in the binary; this file only holds the values.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::NodeError;

/// Configuration of one node agent.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Node's name (default: the host name).
    pub name: String,
    /// Where pod directories, volumes and logs live.
    pub data_dir: PathBuf,
    /// The pod CIDR pod IPs come from (default `10.42.0.0/16`).
    pub pod_cidr: String,
    /// `status.capacity.pods` (default 16384: wasm pods are cheap).
    pub max_pods: u32,
    /// How often the node Lease is renewed (default 10 s).
    pub lease_interval: Duration,
    /// `leaseDurationSeconds` written on the Lease (default 40 s).
    pub lease_duration: Duration,
    /// How often host readings are refreshed and node status is written when changed (default 10 s).
    pub status_interval: Duration,
    /// First container restart back-off (default 10 s).
    pub backoff_initial: Duration,
    /// Back-off ceiling (default 5 min).
    pub backoff_max: Duration,
    /// A container running this long without exiting resets its back-off (default 10 min).
    pub backoff_reset: Duration,
    /// Node server (kubelet API) listen address (default `127.0.0.1:10250`; port 0 in tests).
    pub listen: SocketAddr,
    /// The InternalIP reported in the Node (default: the listen IP, or 127.0.0.1 if unspecified).
    pub advertise_address: Option<IpAddr>,
    /// Base directory for relative wasm image paths (default: the working directory).
    pub image_base_dir: PathBuf,
    /// A directory of static pod manifests (`*.yaml`, `*.yml`, `*.json`), mirrored in the API.
    pub static_pod_dir: Option<PathBuf>,
    /// Whether `hostPath` volumes are allowed (default false).
    pub allow_host_path: bool,
    /// The command module `kubectl exec` and exec probes run when the command's first
    /// word is not itself a wasm module (default: `samples/wasm/toolbox.wasm` under
    /// `image_base_dir` when that file exists).
    pub exec_toolbox: Option<PathBuf>,
    /// Extra labels on the Node.
    pub labels: BTreeMap<String, String>,
    /// A container log file is rotated when it grows past this size (default 10 MiB).
    pub log_max_bytes: u64,
    /// Log files kept per container and restart, the current one included (default 3).
    pub log_max_files: usize,
    /// Event writes per second after the burst; 0 for no limit (kubelet's `--event-qps`, default 50).
    pub event_qps: f64,
    /// Event writes allowed at once (kubelet's `--event-burst`, default 100).
    pub event_burst: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let name = sysinfo::System::host_name()
            .ok()
            .map(|h| h.to_lowercase())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "skiff-node".to_string());
        NodeConfig::new(name, PathBuf::from("skiff-data/node"))
    }
}

impl NodeConfig {
    /// A configuration with the given node name and data directory and defaults elsewhere.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let image_base_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let toolbox = image_base_dir.join("samples/wasm/toolbox.wasm");
        NodeConfig {
            name: name.into(),
            data_dir: data_dir.into(),
            pod_cidr: "10.42.0.0/16".to_string(),
            max_pods: 16384,
            lease_interval: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            status_interval: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            backoff_reset: Duration::from_secs(600),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10250),
            advertise_address: None,
            image_base_dir,
            static_pod_dir: None,
            allow_host_path: false,
            exec_toolbox: toolbox.is_file().then_some(toolbox),
            labels: BTreeMap::new(),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 3,
            event_qps: 50.0,
            event_burst: 100,
        }
    }

    /// The address reported as the Node's InternalIP.
    pub fn internal_ip(&self) -> IpAddr {
        match self.advertise_address {
            Some(ip) => ip,
            None if self.listen.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.listen.ip(),
        }
    }

    /// Checks the values that can be wrong (name, event rate, pod CIDR).
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.name.is_empty() {
            return Err(NodeError::Config("node name is empty".into()));
        }
        if !(self.event_qps.is_finite() && self.event_qps >= 0.0) {
            return Err(NodeError::Config(format!(
                "event qps must be a number ≥ 0, not {}",
                self.event_qps
            )));
        }
        crate::pods::ipam::PodCidr::parse(&self.pod_cidr)?;
        Ok(())
    }
}
