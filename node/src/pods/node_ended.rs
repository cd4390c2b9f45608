//! Pods the node itself ends, as kubelet does, whatever their containers and
//! restartPolicy say: containers stopped at once, phase Failed with kubelet's
//! reason and message, a Warning Event of that reason, no restarts.
//! - emptyDir `sizeLimit` (kubelet's eviction manager): every
//!   [`CHECK_EVERY`] the node measures each limited emptyDir of a running
//!   pod; one over its limit evicts the pod (`Evicted`).
//! - `activeDeadlineSeconds`: a pod active on the node longer than that
//!   fails with `DeadlineExceeded`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::state::Ctr;

use super::resources::parse_quantity;
use super::worker::Worker;

/// How often limited emptyDirs are measured.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The reason an evicted pod's status carries.
pub const EVICTED: &str = "Evicted";
/// The reason of a pod past its activeDeadlineSeconds.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

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
        let limited = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|v| v.empty_dir.as_ref().is_some_and(|e| e.size_limit.is_some()));
        let watching =
            limited && self.volumes_ready && self.node_ended.is_none() && !self.volumes_torn_down;
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
        self.end_on_node(EVICTED, message).await;
    }

    /// When the pod's activeDeadlineSeconds runs out, if it has one and still runs.
    pub(super) fn active_deadline(&self) -> Option<Instant> {
        let seconds = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let running = self.node_ended.is_none() && !all_done(&self.init, &self.main);
        // Counted from status.startTime, so an agent restart does not reset it.
        let ends = self
            .start_time
            .0
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds.max(0)))
            .ok()?;
        let left = ends.duration_since(k8s_openapi::jiff::Timestamp::now());
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        running.then(|| Instant::now() + left)
    }

    /// Ends the pod once its activeDeadlineSeconds has passed.
    pub(super) async fn enforce_active_deadline(&mut self) {
        if self.active_deadline().is_none_or(|t| t > Instant::now()) {
            return;
        }
        let message = "Pod was active on the node longer than the specified deadline".to_string();
        warn!("pod ended: activeDeadlineSeconds passed");
        self.end_on_node(DEADLINE_EXCEEDED, message).await;
    }

    async fn end_on_node(&mut self, reason: &'static str, message: String) {
        self.event(None, "Warning", reason, message.clone());
        self.pod_message = Some(message);
        self.node_ended = Some(reason);
        self.stop_all(Duration::ZERO).await;
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            c.done = true;
            c.restart_at = None;
        }
    }
}

fn all_done(init: &[Ctr], main: &[Ctr]) -> bool {
    !main.is_empty()
        && main
            .iter()
            .chain(init.iter().filter(|c| !c.sidecar))
            .all(|c| c.done)
}
