//! `NodeContext`: what every pod worker and the node server share (config,
//! API client, runtime, IPAM, logs, object caches, the pod table, events).

use std::path::PathBuf;
use std::sync::Arc;

use super::events::EventRecorder;
use super::ipam::Ipam;
use super::source::ObjectSource;
use super::status_writer::StatusWriter;
use super::table::PodTable;
use crate::config::NodeConfig;
use crate::logs::LogRegistry;
use crate::runtime::Runtime;

/// Shared state of one node agent.
pub struct NodeContext {
    pub config: NodeConfig,
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub ipam: Ipam,
    pub logs: Arc<LogRegistry>,
    pub objects: Arc<dyn ObjectSource>,
    pub table: Arc<PodTable>,
    pub events: EventRecorder,
    /// Writes `pods/status` for every worker, newest status first.
    pub status: StatusWriter,
    /// The node's InternalIP (pods' hostIP).
    pub host_ip: String,
    /// Node allocatable cpu (cores) and memory (bytes), for resourceFieldRef defaults.
    pub node_cpu: f64,
    pub node_memory: f64,
    /// Where this node's in-memory volumes live (`volumes::memory_volume_root`).
    pub memory_root: Option<PathBuf>,
}
