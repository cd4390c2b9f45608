//! emptyDir `sizeLimit`, enforced as kubelet's eviction manager does: every
//! [`CHECK_EVERY`] the node measures each limited emptyDir of a running pod,
//! and a pod whose volume holds more than its limit is evicted — its
//! containers stopped at once, phase Failed with reason `Evicted` and
//! kubelet's message, an `Evicted` Event, no restarts.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::resources::parse_quantity;
use super::worker::Worker;

/// How often limited emptyDirs are measured.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The reason an evicted pod's status carries.
pub const EVICTED: &str = "Evicted";

impl Worker {
    /// The pod's emptyDirs with a sizeLimit: (volume name, directory, limit text, bytes).
    fn limited_empty_dirs(&self) -> Vec<(String, PathBuf, String, f64)> {
        let volumes = self.pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
        volumes
            .unwrap_or_default()
            .iter()
            .filter_map(|v| {
                let limit = v.empty_dir.as_ref()?.size_limit.as_ref()?;
                let bytes = parse_quantity(&limit.0)?;
                let dir = self.volume_dirs.get(&v.name)?.clone();
                Some((v.name.clone(), dir, limit.0.clone(), bytes))
            })
            .collect()
    }

    /// When the next measurement is due, if this pod has anything to measure.
    pub(super) fn next_size_check(&self) -> Option<Instant> {
        let watching = self.volumes_ready
            && self.evicted.is_none()
            && !self.volumes_torn_down
            && !self.limited_empty_dirs().is_empty();
        watching.then_some(self.size_checked_at + CHECK_EVERY)
    }

    /// Measures the limited emptyDirs when due and evicts the pod if one is over.
    pub(super) async fn enforce_size_limits(&mut self) {
        if self.next_size_check().is_none_or(|t| t > Instant::now()) {
            return;
        }
        self.size_checked_at = Instant::now();
        let limited = self.limited_empty_dirs();
        let measured = tokio::task::spawn_blocking(move || {
            limited
                .into_iter()
                .map(|(name, dir, text, bytes)| {
                    let used = super::volumes::dir_size(&dir);
                    (name, text, bytes, used)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let Some((name, text, _, used)) = measured
            .into_iter()
            .find(|(_, _, limit, used)| *used as f64 > *limit)
        else {
            return;
        };
        let message = format!("Usage of EmptyDir volume \"{name}\" exceeds the limit \"{text}\". ");
        warn!(volume = %name, used, limit = %text, "evicting pod: emptyDir over its sizeLimit");
        self.event(None, "Warning", EVICTED, message.clone());
        self.evicted = Some(message.clone());
        self.pod_message = Some(message);
        self.stop_all(Duration::ZERO).await;
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            c.done = true;
            c.restart_at = None;
        }
    }
}
