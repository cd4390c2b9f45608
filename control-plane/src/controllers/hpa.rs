//! The HorizontalPodAutoscaler controller (autoscaling/v2; v1 objects are
//! stored as v2 by the API, so one watch sees both): every sync period
//! (15 s by default) it reads the target's `/scale`, the usage of the pods
//! its selector picks from `metrics.k8s.io` (Resource and ContainerResource
//! metrics, cpu or memory, Utilization or AverageValue targets), proposes a
//! replica count per metric (`hpa_replicas.rs`, `hpa_metrics.rs`), takes the highest,
//! stabilizes and rate-limits it by `behavior` (`hpa_behavior.rs`), writes
//! the new count through `/scale`, and reports currentReplicas,
//! desiredReplicas, currentMetrics, lastScaleTime and the AbleToScale /
//! ScalingActive / ScalingLimited conditions through the status
//! subresource. The stabilization history lives in memory, as upstream
//! (a restart waits one scale-down window again); the scale events the
//! policies count are kept in the `autoscaling.skiff.dev/scale-events`
//! annotation so a restart cannot exceed a policy. Pods, Object and
//! External metrics need a custom metrics API skiff does not serve; they
//! are reported as failing metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerSpec,
    HorizontalPodAutoscalerStatus, MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::hpa_behavior::{
    Behavior, Recommendation, ScaleEvent, format_events, normalize, parse_events, record_event,
};
use super::hpa_replicas::{Combined, Inputs, combine, metric_specs};
use super::runtime::selector::selector_matches;
use super::runtime::{Action, Change, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, scale};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "horizontal-pod-autoscaler";

/// Annotation holding the rescales the scaling policies still count.
pub const SCALE_EVENTS: &str = "autoscaling.skiff.dev/scale-events";

/// Per-HPA memory: recent recommendations (for the stabilization windows)
/// and when the next periodic sync is due.
#[derive(Default)]
pub struct History {
    entries: Mutex<HashMap<ObjectKey, Entry>>,
}

/// Which object and spec a sync saw: uid and generation.
type Version = (Option<String>, Option<i64>);

#[derive(Default)]
struct Entry {
    recommendations: Vec<Recommendation>,
    /// The version last synced and when its next sync is due.
    due: Option<(Version, Instant)>,
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False when a sync of this version already has its next one
    /// scheduled later (a duplicate wake-up, which then ends).
    fn due(&self, key: &ObjectKey, version: &Version, now: Instant) -> bool {
        match self.lock().get(key).and_then(|e| e.due.as_ref()) {
            Some((v, at)) => v != version || *at <= now + std::time::Duration::from_secs(1),
            None => true,
        }
    }

    fn schedule(&self, key: &ObjectKey, due: Option<(Version, Instant)>) {
        self.lock().entry(key.clone()).or_default().due = due;
    }

    fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }

    /// Runs `f` over the recommendations, seeded with `current` the first
    /// time (upstream's initial recommendation).
    fn with<R>(
        &self,
        key: &ObjectKey,
        current: i32,
        now: Timestamp,
        f: impl FnOnce(&mut Vec<Recommendation>) -> R,
    ) -> R {
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_default();
        if entry.recommendations.is_empty() {
            entry.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
        f(&mut entry.recommendations)
    }
}

/// Subscribes the controller to HPAs (spec changes; status writes are ours).
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    let cache = ctx.hpas.cache().clone();
    ctx.hpas
        .feed(queue.clone(), shutdown.clone(), move |c| match c {
            Change::Upsert { old, new } => {
                let changed = old
                    .as_ref()
                    .is_none_or(|o| o.metadata.generation != new.metadata.generation);
                changed
                    .then(|| ObjectKey::of(new.as_ref()))
                    .into_iter()
                    .collect()
            }
            Change::Delete(o) => vec![ObjectKey::of(o.as_ref())],
            Change::Resync => cache.keys(),
        });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.hpas.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers(
            "horizontal-pod-autoscaler",
            queue,
            workers,
            ctx,
            reconcile,
            sd,
        )
        .await
    })
}

/// Reconciles one HPA, then again after the sync period.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(hpa) = ctx.hpas.cache().get(&key) else {
        ctx.hpa_history.forget(&key);
        return Ok(Action::AwaitChange);
    };
    if hpa.metadata.deletion_timestamp.is_some() {
        ctx.hpa_history.forget(&key);
        return Ok(Action::AwaitChange);
    }
    let version = (hpa.uid(), hpa.metadata.generation);
    if !ctx.hpa_history.due(&key, &version, Instant::now()) {
        return Ok(Action::AwaitChange);
    }
    let period = ctx.config.hpa_sync_period;
    match sync(&ctx, &key, &hpa).await {
        Ok(()) => {
            let next = Instant::now() + period;
            ctx.hpa_history.schedule(&key, Some((version, next)));
            Ok(Action::RequeueAfter(period))
        }
        Err(e) => {
            ctx.hpa_history.schedule(&key, None);
            Err(e)
        }
    }
}

/// Sets a condition; true when its status or reason changed.
fn set_condition(
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let i = match conds.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            conds.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                ..Default::default()
            });
            conds.len() - 1
        }
    };
    let c = &mut conds[i];
    let changed = c.status != status || c.reason.as_deref() != Some(reason);
    if c.status != status {
        c.last_transition_time = Some(Time(now));
    }
    c.status = status.into();
    c.reason = Some(reason.into());
    c.message = Some(message.into());
    changed
}

/// What one sync decided, to be written as status.
struct Outcome {
    status: HorizontalPodAutoscalerStatus,
    events: Vec<(&'static str, &'static str, String)>,
    scale_events: Option<String>,
}

/// One sync of one HPA: what it read and what it will write.
struct Run<'a> {
    ctx: &'a Ctx,
    key: &'a ObjectKey,
    hpa: &'a HorizontalPodAutoscaler,
    spec: HorizontalPodAutoscalerSpec,
    behavior: Behavior,
    now: Timestamp,
    out: Outcome,
}

impl Run<'_> {
    /// Sets a condition, recording a Warning event (named by the reason)
    /// when AbleToScale or ScalingActive newly fails; a failed rescale has
    /// its own event, a target scaled to zero is not a failure.
    fn condition(&mut self, type_: &str, status: &str, reason: &'static str, message: &str) {
        let conds = self.out.status.conditions.get_or_insert_with(Vec::new);
        let failure = type_ != "ScalingLimited"
            && status == "False"
            && !matches!(reason, "ScalingDisabled" | "FailedUpdateScale");
        if set_condition(conds, type_, status, reason, message, self.now) && failure {
            self.out
                .events
                .push(("Warning", reason, message.to_string()));
        }
    }

    /// The target's Scale and the resource serving it.
    async fn target_scale(&self) -> Result<(ApiResource, Scale), String> {
        let target = &self.spec.scale_target_ref;
        let api_version = target
            .api_version
            .as_deref()
            .filter(|v| !v.is_empty())
            .unwrap_or("apps/v1");
        let Some(ar) = scale::scalable(api_version, &target.kind) else {
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            return Err(format!(
                "no matches for kind {:?} in group {group:?} with a scale subresource",
                target.kind
            ));
        };
        match scale::get(&self.ctx.client, &self.key.namespace, &ar, &target.name).await {
            Ok(s) => Ok((ar, s)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn sync(mut self) -> Result<(), ControllerError> {
        let (ar, current_scale) = match self.target_scale().await {
            Ok(found) => found,
            Err(e) => {
                let msg =
                    format!("the HPA controller was unable to get the target's current scale: {e}");
                self.condition("AbleToScale", "False", "FailedGetScale", &msg);
                return write_status(self.ctx, self.hpa, self.out).await;
            }
        };
        let msg = "the HPA controller was able to get the target's current scale";
        self.condition("AbleToScale", "True", "SucceededGetScale", msg);
        let current = current_scale
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        let (min, max) = (self.spec.min_replicas.unwrap_or(1), self.spec.max_replicas);
        let mut metrics = Vec::new();
        let (desired, reason) = if current == 0 && min != 0 {
            let msg = "scaling is disabled since the replica count of the target is zero";
            self.condition("ScalingActive", "False", "ScalingDisabled", msg);
            (0, String::new())
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".into(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".into(),
            )
        } else {
            let combined = match self.combined(&current_scale, current).await {
                Ok(c) => c,
                Err(statuses) => {
                    self.out.status.current_replicas = Some(current);
                    self.out.status.current_metrics = (!statuses.is_empty()).then_some(statuses);
                    return write_status(self.ctx, self.hpa, self.out).await;
                }
            };
            metrics = combined.statuses;
            let desired = combined.replicas.max(0);
            let reason = if desired > current {
                format!("{} above target", combined.metric)
            } else {
                "All metrics below target".into()
            };
            let (events, b, now) = (scale_events(self.hpa), &self.behavior, self.now);
            let n = self.ctx.hpa_history.with(self.key, current, now, |h| {
                normalize(h, &events, b, current, desired, (min, max), now)
            });
            self.condition("AbleToScale", "True", n.able.0, n.able.1);
            let limited = if n.limited.0 { "True" } else { "False" };
            self.condition("ScalingLimited", limited, n.limited.1, n.limited.2);
            (n.replicas, reason)
        };
        self.out.status.current_replicas = Some(current);
        self.out.status.current_metrics = (!metrics.is_empty()).then_some(metrics);
        self.out.status.desired_replicas = current;
        if desired != current {
            self.rescale(&ar, &current_scale, desired, &reason).await;
        }
        write_status(self.ctx, self.hpa, self.out).await
    }

    /// The proposal over every metric, with ScalingActive set; on failure,
    /// the metric statuses that could be computed.
    async fn combined(
        &mut self,
        current_scale: &Scale,
        current: i32,
    ) -> Result<Combined, Vec<MetricStatus>> {
        let selector = current_scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            let msg = "the HPA target's scale is missing a selector";
            self.condition("ScalingActive", "False", "InvalidSelector", msg);
            return Err(Vec::new());
        }
        let parsed = match scale::parse_selector(&selector) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                self.condition("ScalingActive", "False", "InvalidSelector", &msg);
                return Err(Vec::new());
            }
        };
        let pods: Vec<Arc<Pod>> = self
            .ctx
            .pods
            .cache()
            .list_namespace(&self.key.namespace)
            .into_iter()
            .filter(|p| selector_matches(&parsed, p.labels()))
            .collect();
        let specs = metric_specs(&self.spec);
        let inputs = Inputs {
            client: &self.ctx.client,
            namespace: &self.key.namespace,
            selector: &selector,
            pods: &pods,
            current,
            behavior: &self.behavior,
            now: self.now,
        };
        let combined = combine(&inputs, &specs).await;
        if let Some(f) = combined.blocking(specs.len(), current).cloned() {
            let msg = format!(
                "the HPA was unable to compute the replica count: {}",
                f.error
            );
            self.condition("ScalingActive", "False", f.reason, &msg);
            tracing::debug!(error = %f.error, "could not compute replicas from the metrics; retrying next sync");
            return Err(combined.statuses);
        }
        let msg = format!(
            "the HPA was able to successfully calculate a replica count from {}",
            combined.metric
        );
        self.condition("ScalingActive", "True", "ValidMetricFound", &msg);
        Ok(combined)
    }

    /// Writes the new count through `/scale` and records the rescale.
    async fn rescale(
        &mut self,
        ar: &ApiResource,
        current_scale: &Scale,
        desired: i32,
        reason: &str,
    ) {
        let current = current_scale
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        match scale::update(
            &self.ctx.client,
            &self.key.namespace,
            ar,
            current_scale,
            desired,
        )
        .await
        {
            Ok(_) => {
                let msg =
                    format!("the HPA controller was able to update the target scale to {desired}");
                self.condition("AbleToScale", "True", "SucceededRescale", &msg);
                let event = format!("New size: {desired}; reason: {reason}");
                self.out.events.push(("Normal", "SuccessfulRescale", event));
                let mut events = scale_events(self.hpa);
                record_event(&mut events, &self.behavior, current, desired, self.now);
                self.out.scale_events = Some(format_events(&events));
                self.out.status.last_scale_time = Some(Time(self.now));
                self.out.status.desired_replicas = desired;
                tracing::info!(from = current, to = desired, reason, "rescaled the target");
            }
            Err(e) => {
                let event = format!("New size: {desired}; reason: {reason}; error: {e}");
                self.out.events.push(("Warning", "FailedRescale", event));
                let msg = format!("the HPA controller was unable to update the target scale: {e}");
                self.condition("AbleToScale", "False", "FailedUpdateScale", &msg);
            }
        }
    }
}

async fn sync(
    ctx: &Ctx,
    key: &ObjectKey,
    hpa: &HorizontalPodAutoscaler,
) -> Result<(), ControllerError> {
    let spec = hpa.spec.clone().unwrap_or_default();
    let behavior = Behavior::of(
        spec.behavior.as_ref(),
        ctx.config.hpa_downscale_stabilization,
        ctx.config.hpa_tolerance,
    );
    let mut status = hpa.status.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    let run = Run {
        ctx,
        key,
        hpa,
        spec,
        behavior,
        now: Timestamp::now(),
        out: Outcome {
            status,
            events: Vec::new(),
            scale_events: None,
        },
    };
    run.sync().await
}

fn scale_events(hpa: &HorizontalPodAutoscaler) -> Vec<ScaleEvent> {
    hpa.annotations()
        .get(SCALE_EVENTS)
        .map(|s| parse_events(s))
        .unwrap_or_default()
}

/// Writes the status (and the scale-event annotation) through the status
/// subresource unless nothing changed, then records the events. A
/// conflict is retried once on a fresh read so a rescale is never left
/// unrecorded.
async fn write_status(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    out: Outcome,
) -> Result<(), ControllerError> {
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());
    let mut base = hpa.clone();
    for attempt in 0..2 {
        let unchanged = base.status.as_ref() == Some(&out.status)
            && out
                .scale_events
                .as_ref()
                .is_none_or(|e| base.annotations().get(SCALE_EVENTS) == Some(e));
        if unchanged {
            break;
        }
        let mut next = base.clone();
        next.status = Some(out.status.clone());
        if let Some(e) = &out.scale_events {
            next.annotations_mut()
                .insert(SCALE_EVENTS.into(), e.clone());
        }
        match api
            .replace_status(&hpa.name_any(), &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                ctx.hpas
                    .cache()
                    .write_through(ObjectKey::of(&written), Arc::new(written));
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt == 0 => {
                base = api.get(&hpa.name_any()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for (type_, reason, message) in &out.events {
        ctx.events(EVENT_SOURCE).record(hpa, type_, reason, message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "m",
            t0
        ));
        assert!(set_condition(
            &mut conds,
            "AbleToScale",
            "True",
            "SucceededRescale",
            "m2",
            t1
        ));
        assert_eq!(conds[0].last_transition_time, Some(Time(t0)));
        assert!(!set_condition(
            &mut conds,
            "AbleToScale",
            "True",
            "SucceededRescale",
            "m3",
            t1
        ));
        assert!(set_condition(
            &mut conds,
            "AbleToScale",
            "False",
            "FailedGetScale",
            "x",
            t1
        ));
        assert_eq!(conds[0].last_transition_time, Some(Time(t1)));
        assert_eq!(conds.len(), 1);
    }

    #[test]
    fn duplicate_wake_ups_are_dropped_until_due() {
        let h = History::default();
        let k = ObjectKey::new("ns", "a");
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(15);
        let v = |uid: &str, g| (Some(uid.to_string()), Some(g));
        assert!(h.due(&k, &v("u", 1), now));
        h.schedule(&k, Some((v("u", 1), later)));
        assert!(!h.due(&k, &v("u", 1), now));
        assert!(h.due(&k, &v("u", 2), now), "a spec change syncs at once");
        assert!(h.due(&k, &v("u2", 1), now), "so does a recreated HPA");
        assert!(h.due(&k, &v("u", 1), later));
        h.schedule(&k, None);
        assert!(
            h.due(&k, &v("u", 1), now),
            "after an error, retries go through"
        );
    }
}
