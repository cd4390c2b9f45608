//! One HPA sync's replica proposals, metric by metric, combined as
//! upstream's `computeReplicasForMetrics`: the highest proposal wins; the
//! sync fails when every metric failed, or some failed and the others
//! would scale down. Resource and ContainerResource metrics are read from
//! `metrics.k8s.io` (`hpa_metrics.rs`); Pods, Object and External metrics
//! need a custom metrics API skiff does not serve and always fail. Each
//! success also yields the `status.currentMetrics` entry and the phrase
//! upstream uses in reasons ("cpu resource utilization (percentage of
//! request)").

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HorizontalPodAutoscalerSpec, MetricSpec, MetricStatus,
    MetricTarget, MetricValueStatus, ResourceMetricSource, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::Client;

use super::hpa_behavior::Behavior;
use super::hpa_metrics::{Observed, Target, fetch, milli, pod_requests, propose};

/// The target of an HPA without metrics (upstream's API default).
const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// What the metrics of one sync are computed from.
pub struct Inputs<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    /// The target's selector, as its Scale reports it.
    pub selector: &'a str,
    /// The pods the selector picks.
    pub pods: &'a [Arc<Pod>],
    /// The target's replicas (Scale spec).
    pub current: i32,
    pub behavior: &'a Behavior,
    pub now: Timestamp,
}

/// A metric that could not be computed: the condition reason and the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub error: String,
}

/// The combined proposal of every metric.
#[derive(Debug, Default)]
pub struct Combined {
    pub replicas: i32,
    /// Description of the metric that made the proposal.
    pub metric: String,
    pub statuses: Vec<MetricStatus>,
    /// The first failure and how many metrics failed.
    pub failed: Option<(Failure, usize)>,
}

impl Combined {
    /// The failure to report when the proposal cannot be used (every metric
    /// failed, or some failed and the rest would scale down).
    pub fn blocking(&self, specs: usize, current: i32) -> Option<&Failure> {
        self.failed
            .as_ref()
            .filter(|(_, n)| *n >= specs || self.replicas < current)
            .map(|(f, _)| f)
    }
}

/// The metrics of an HPA, with upstream's default when it lists none.
pub fn metric_specs(spec: &HorizontalPodAutoscalerSpec) -> Vec<MetricSpec> {
    match spec.metrics.as_ref().filter(|m| !m.is_empty()) {
        Some(m) => m.clone(),
        None => vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }],
    }
}

/// Computes every metric and keeps the highest proposal.
pub async fn combine(inputs: &Inputs<'_>, specs: &[MetricSpec]) -> Combined {
    let mut out = Combined::default();
    for m in specs {
        match metric_replicas(inputs, m).await {
            Ok((replicas, metric, status)) => {
                out.statuses.push(status);
                if out.replicas == 0 || replicas > out.replicas {
                    (out.replicas, out.metric) = (replicas, metric);
                }
            }
            Err(f) => match &mut out.failed {
                Some((_, n)) => *n += 1,
                None => out.failed = Some((f, 1)),
            },
        }
    }
    out
}

/// A quantity of milli-units as upstream prints it (`250m`, `2`).
pub fn milli_quantity(m: i64) -> Quantity {
    Quantity(if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    })
}

fn fail(reason: &'static str, error: impl Into<String>) -> Failure {
    Failure {
        reason,
        error: error.into(),
    }
}

/// The resource, container and target of a resource metric, with the
/// reason its failures carry.
fn resource_source(
    m: &MetricSpec,
) -> Result<(String, Option<String>, &MetricTarget, &'static str), Failure> {
    match m.type_.as_str() {
        "Resource" => {
            let reason = "FailedGetResourceMetric";
            let r = m
                .resource
                .as_ref()
                .ok_or_else(|| fail(reason, "no resource metric source"))?;
            Ok((r.name.clone(), None, &r.target, reason))
        }
        "ContainerResource" => {
            let reason = "FailedGetContainerResourceMetric";
            let r = m
                .container_resource
                .as_ref()
                .ok_or_else(|| fail(reason, "no container resource metric source"))?;
            Ok((r.name.clone(), Some(r.container.clone()), &r.target, reason))
        }
        t @ ("Pods" | "Object" | "External") => {
            let reason = match t {
                "Pods" => "FailedGetPodsMetric",
                "Object" => "FailedGetObjectMetric",
                _ => "FailedGetExternalMetric",
            };
            let why =
                format!("unable to get {t} metric: skiff serves no custom or external metrics API");
            Err(fail(reason, why))
        }
        other => Err(fail(
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        )),
    }
}

/// What a metric target aims at.
pub fn target_of(t: &MetricTarget) -> Option<Target> {
    match (t.average_value.as_ref(), t.average_utilization) {
        (Some(v), _) => Some(Target::AverageValue(milli(&v.0).unwrap_or(0).max(1))),
        (None, Some(u)) => Some(Target::Utilization(u.max(1))),
        (None, None) => None,
    }
}

/// One metric's proposal, its description and its `currentMetrics` entry.
async fn metric_replicas(
    inputs: &Inputs<'_>,
    m: &MetricSpec,
) -> Result<(i32, String, MetricStatus), Failure> {
    let (name, container, target, reason) = resource_source(m)?;
    let goal = target_of(target).ok_or_else(|| {
        fail(
            reason,
            "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set",
        )
    })?;
    let utilization = matches!(goal, Target::Utilization(_));
    let what = if utilization { "utilization" } else { "usage" };
    let failed = |e: String| fail(reason, format!("failed to get {name} {what}: {e}"));
    let samples = fetch(
        inputs.client,
        inputs.namespace,
        inputs.selector,
        &name,
        container.as_deref(),
    )
    .await
    .map_err(|e| failed(format!("unable to get metrics for resource {name}: {e}")))?;
    let requests = if utilization {
        pod_requests(inputs.pods, &name, container.as_deref()).map_err(failed)?
    } else {
        Default::default()
    };
    let observed = Observed {
        pods: inputs.pods,
        samples: &samples,
        requests: &requests,
    };
    let b = inputs.behavior;
    let p = propose(
        inputs.current,
        goal,
        |r| b.within_tolerance(r),
        &observed,
        name == "cpu",
        inputs.now,
    )
    .map_err(failed)?;
    let current = MetricValueStatus {
        average_utilization: p.utilization,
        average_value: Some(milli_quantity(p.average)),
        value: None,
    };
    let (kind, status) = match container {
        Some(container) => (
            "container resource",
            MetricStatus {
                type_: "ContainerResource".into(),
                container_resource: Some(ContainerResourceMetricStatus {
                    container,
                    current,
                    name: name.clone(),
                }),
                ..Default::default()
            },
        ),
        None => (
            "resource",
            MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    current,
                    name: name.clone(),
                }),
                ..Default::default()
            },
        ),
    };
    let described = if utilization {
        format!("{name} {kind} utilization (percentage of request)")
    } else {
        format!("{name} {kind}")
    };
    Ok((p.replicas, described, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpas_without_metrics_target_80_percent_cpu() {
        let specs = metric_specs(&HorizontalPodAutoscalerSpec::default());
        let r = specs[0].resource.as_ref().unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.average_utilization),
            ("cpu", Some(80))
        );
        assert_eq!(milli_quantity(1500).0, "1500m");
        assert_eq!(milli_quantity(2000).0, "2");
    }

    #[test]
    fn targets_and_unsupported_sources() {
        let value = MetricTarget {
            type_: "AverageValue".into(),
            average_value: Some(Quantity("64Mi".into())),
            ..Default::default()
        };
        assert_eq!(
            target_of(&value),
            Some(Target::AverageValue(64 * 1024 * 1024 * 1000))
        );
        assert_eq!(target_of(&MetricTarget::default()), None);
        let pods = MetricSpec {
            type_: "Pods".into(),
            ..Default::default()
        };
        assert_eq!(
            resource_source(&pods).unwrap_err().reason,
            "FailedGetPodsMetric"
        );
        let odd = MetricSpec {
            type_: "Weird".into(),
            ..Default::default()
        };
        assert_eq!(
            resource_source(&odd).unwrap_err().reason,
            "InvalidMetricSourceType"
        );
    }

    #[test]
    fn failures_block_only_when_nothing_else_scales_up() {
        let f = fail("FailedGetResourceMetric", "x");
        let mut c = Combined {
            replicas: 4,
            failed: Some((f.clone(), 1)),
            ..Default::default()
        };
        assert_eq!(
            c.blocking(2, 3),
            None,
            "one metric failed, the other scales up"
        );
        assert_eq!(c.blocking(1, 3), Some(&f), "every metric failed");
        c.replicas = 2;
        assert_eq!(
            c.blocking(2, 3),
            Some(&f),
            "would scale down on partial data"
        );
        c.failed = None;
        assert_eq!(c.blocking(2, 3), None);
    }
}
