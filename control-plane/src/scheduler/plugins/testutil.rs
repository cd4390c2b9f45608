//! Builders for plugin unit tests: nodes and pods as the scheduler sees them.

use std::sync::Arc;

use crate::scheduler::snapshot::{NodeInfo, PodInfo};

/// A ready node with `milli_cpu` cpu, `memory` bytes and room for 110 pods.
pub fn node(name: &str, milli_cpu: i64, memory: i64) -> NodeInfo {
    let mut n = NodeInfo {
        name: name.into(),
        runs_wasm: true,
        runs_oci: true,
        ..Default::default()
    };
    n.allocatable.milli_cpu = milli_cpu;
    n.allocatable.memory = memory;
    n.allocatable.pods = 110;
    n.labels
        .insert("kubernetes.io/hostname".into(), name.into());
    n
}

/// A pod in namespace `default` with no requests.
pub fn pod(name: &str) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        nonzero_cpu: 100,
        nonzero_memory: 200 << 20,
        scheduler_name: "default-scheduler".into(),
        ..Default::default()
    }
}

/// A pod requesting `milli_cpu` and `memory`.
pub fn pod_req(name: &str, milli_cpu: i64, memory: i64) -> PodInfo {
    let mut p = pod(name);
    p.requests.milli_cpu = milli_cpu;
    p.requests.memory = memory;
    p.nonzero_cpu = milli_cpu.max(1);
    p.nonzero_memory = memory.max(1);
    p
}

/// A pod with labels.
pub fn labelled(name: &str, labels: &[(&str, &str)]) -> Arc<PodInfo> {
    let mut p = pod(name);
    p.labels = crate::scheduler::snapshot::labels_of(labels);
    Arc::new(p)
}
