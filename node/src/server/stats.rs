//! `GET /stats/summary`: the kubelet Summary API subset that the API
//! server's `metrics.k8s.io` (and so `kubectl top` and the HPA) reads — per
//! node, pod and container: cpu (`usageNanoCores` over the last sampling
//! window, `usageCoreNanoSeconds`) and memory (`workingSetBytes`).
//!
//! A sampler task reads every container's usage from the runtime every
//! [`SAMPLE_EVERY`] and keeps the previous reading to turn cpu time into a
//! rate, as cAdvisor does for the kubelet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::pods::context::NodeContext;

/// How often usage is sampled (metrics-server's default resolution is 15 s).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One container's key: namespace, pod, pod uid, container.
type ContainerKey = (String, String, String, String);

/// A reading of cumulative cpu time and current memory, and the rate since the previous one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sample {
    at: Option<Instant>,
    cpu_total: Duration,
    memory_bytes: u64,
    nano_cores: u64,
}

impl Sample {
    /// The next sample after `self` with a new cumulative cpu reading.
    fn next(self, now: Instant, cpu_total: Duration, memory_bytes: u64) -> Sample {
        let nano_cores = match self.at {
            Some(at) if now > at && cpu_total >= self.cpu_total => {
                let busy = (cpu_total - self.cpu_total).as_nanos();
                let window = (now - at).as_nanos().max(1);
                u64::try_from(busy * 1_000_000_000 / window).unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        Sample {
            at: Some(now),
            cpu_total,
            memory_bytes,
            nano_cores,
        }
    }
}

/// The latest samples of every container and of the node.
#[derive(Default)]
pub struct Sampler {
    containers: Mutex<HashMap<ContainerKey, Sample>>,
    node: Mutex<Sample>,
}

impl Sampler {
    /// Starts sampling `ctx`'s containers until `shutdown`.
    pub fn start(ctx: Arc<NodeContext>, shutdown: CancellationToken) -> Arc<Sampler> {
        let sampler = Arc::new(Sampler::default());
        let task = sampler.clone();
        tokio::spawn(async move {
            let mut host = sysinfo::System::new().ok();
            loop {
                task.sample(&ctx, host.as_mut());
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        });
        sampler
    }

    fn sample(&self, ctx: &NodeContext, host: Option<&mut sysinfo::System>) {
        let now = Instant::now();
        let mut fresh = HashMap::new();
        {
            let previous = lock(&self.containers);
            for view in ctx.table.all() {
                let (ns, name) = (
                    view.pod.metadata.namespace.clone().unwrap_or_default(),
                    view.pod.metadata.name.clone().unwrap_or_default(),
                );
                for (container, c) in &view.containers {
                    let Some(usage) = c.id.as_ref().and_then(|id| ctx.runtime.usage(id)) else {
                        continue;
                    };
                    let key = (
                        ns.clone(),
                        name.clone(),
                        view.uid.clone(),
                        container.clone(),
                    );
                    let before = previous.get(&key).copied().unwrap_or_default();
                    fresh.insert(key, before.next(now, usage.cpu_time, usage.memory_bytes));
                }
            }
        }
        *lock(&self.containers) = fresh;
        if let Some(sys) = host {
            sys.refresh_cpu_usage();
            sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
            let busy_cores = f64::from(sys.global_cpu_usage()) / 100.0 * ctx.node_cpu;
            let mut node = lock(&self.node);
            *node = Sample {
                at: Some(now),
                cpu_total: node.cpu_total,
                memory_bytes: sys.used_memory(),
                nano_cores: (busy_cores * 1e9) as u64,
            };
        }
    }

    /// The Summary API document for this node.
    fn summary(&self, node_name: &str) -> Value {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let containers = lock(&self.containers).clone();
        let mut pods: HashMap<(String, String, String), Vec<(String, Sample)>> = HashMap::new();
        for ((ns, pod, uid, container), sample) in containers {
            pods.entry((ns, pod, uid))
                .or_default()
                .push((container, sample));
        }
        let stats = |s: &Sample| {
            json!({
                "cpu": {"time": now, "usageNanoCores": s.nano_cores,
                        "usageCoreNanoSeconds": s.cpu_total.as_nanos() as u64},
                "memory": {"time": now, "workingSetBytes": s.memory_bytes, "usageBytes": s.memory_bytes},
            })
        };
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|((ns, name, uid), mut containers)| {
                containers.sort_by(|a, b| a.0.cmp(&b.0));
                let total = containers
                    .iter()
                    .fold(Sample::default(), |acc, (_, s)| Sample {
                        at: None,
                        cpu_total: acc.cpu_total + s.cpu_total,
                        memory_bytes: acc.memory_bytes + s.memory_bytes,
                        nano_cores: acc.nano_cores + s.nano_cores,
                    });
                let mut pod = stats(&total);
                pod["podRef"] = json!({"name": name, "namespace": ns, "uid": uid});
                pod["containers"] = containers
                    .iter()
                    .map(|(container, s)| {
                        let mut c = stats(s);
                        c["name"] = json!(container);
                        c
                    })
                    .collect();
                pod
            })
            .collect();
        let mut node = stats(&lock(&self.node));
        node["nodeName"] = json!(node_name);
        json!({"node": node, "pods": pods})
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn summary(
    State(ctx): State<Arc<NodeContext>>,
    Extension(sampler): Extension<Arc<Sampler>>,
) -> Response {
    axum::Json(sampler.summary(&ctx.config.name)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_becomes_a_rate_between_samples() {
        let t0 = Instant::now();
        let first = Sample::default().next(t0, Duration::from_millis(100), 10);
        assert_eq!(first.nano_cores, 0, "no rate from a single reading");
        // 250 ms of cpu over 1 s of wall time is a quarter core.
        let second = first.next(t0 + Duration::from_secs(1), Duration::from_millis(350), 20);
        assert_eq!(second.nano_cores, 250_000_000);
        assert_eq!(second.memory_bytes, 20);
        // A counter that went backwards (a restarted container) gives no rate.
        let restarted = second.next(t0 + Duration::from_secs(2), Duration::from_millis(5), 20);
        assert_eq!(restarted.nano_cores, 0);
    }
}
