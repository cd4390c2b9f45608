//! Resource metrics for the HorizontalPodAutoscaler: reading PodMetrics
//! from `metrics.k8s.io/v1beta1` (served by the API from the nodes'
//! `/stats/summary`), and upstream's replica calculation as pure functions
//! — pods grouped into ready / unready / missing / ignored, utilization as
//! usage over the pods' requests, the tolerance, and the conservative
//! treatment of unready pods and pods without metrics (missing pods count
//! as at the target on a scale-down and as idle on a scale-up; unready pods
//! count as idle on a scale-up and are left out otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use super::namespace::api_resource;
use crate::scheduler::resources::parse_quantity;

/// How long after a pod starts its cpu samples may still be start-up noise
/// (upstream's `--horizontal-pod-autoscaler-cpu-initialization-period`).
const CPU_INITIALIZATION_PERIOD: i64 = 300;
/// How long after start a never-ready pod is still considered starting
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
const INITIAL_READINESS_DELAY: i64 = 30;

/// One pod's usage of one resource (milli-units), with when and over how
/// long it was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window_seconds: i64,
}

/// Usage by pod name.
pub type PodMetrics = BTreeMap<String, PodMetric>;

/// A quantity in milli-units, rounded up (after forgiving float noise).
pub fn milli(q: &str) -> Option<i64> {
    let v = parse_quantity(q)?;
    Some(((v * 1e6).round() / 1e3).ceil() as i64)
}

fn pod_metrics_resource() -> ApiResource {
    api_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods")
}

/// Reads the usage of `resource` ("cpu", "memory") of the pods matching
/// `selector` (selector syntax), summed over their containers or taken from
/// one `container`.
pub async fn fetch(
    client: &Client,
    ns: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<PodMetrics, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &pod_metrics_resource());
    let list = api.list(&ListParams::default().labels(selector)).await?;
    Ok(parse(&list.items, resource, container))
}

fn window_seconds(w: &str) -> i64 {
    let secs = w.strip_suffix('s').and_then(|s| s.parse::<f64>().ok());
    secs.map_or(0, |s| s.ceil() as i64)
}

/// Usage per pod from PodMetrics objects; pods lacking the container or the
/// resource are left out (they count as missing).
pub fn parse(items: &[DynamicObject], resource: &str, container: Option<&str>) -> PodMetrics {
    let mut out = PodMetrics::new();
    for item in items {
        let containers = item.data.get("containers").and_then(Value::as_array);
        let mut sum = None;
        for c in containers.into_iter().flatten() {
            if container.is_some_and(|want| c.get("name").and_then(Value::as_str) != Some(want)) {
                continue;
            }
            let q = c
                .pointer(&format!("/usage/{resource}"))
                .and_then(Value::as_str)
                .and_then(milli);
            if let Some(v) = q {
                *sum.get_or_insert(0) += v;
            }
        }
        let Some(value) = sum else { continue };
        let timestamp = item
            .data
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(Timestamp::now);
        let window_seconds = item
            .data
            .get("window")
            .and_then(Value::as_str)
            .map_or(0, window_seconds);
        out.insert(
            item.name_any(),
            PodMetric {
                value,
                timestamp,
                window_seconds,
            },
        );
    }
    out
}

/// The pods of a calculation, by what their samples are worth.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Groups {
    pub ready: usize,
    pub unready: BTreeSet<String>,
    pub missing: BTreeSet<String>,
    pub ignored: BTreeSet<String>,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Groups pods as upstream's `groupPods`: deleted and finished pods are
/// ignored, pending ones unready, ones without a sample missing; for cpu, a
/// pod whose sample may predate its readiness is unready.
pub fn group_pods(pods: &[Arc<Pod>], metrics: &PodMetrics, cpu: bool, now: Timestamp) -> Groups {
    let mut g = Groups::default();
    for p in pods {
        let name = p.name_any();
        if p.metadata.deletion_timestamp.is_some() || matches!(phase(p), "Failed" | "Succeeded") {
            g.ignored.insert(name);
            continue;
        }
        if phase(p) == "Pending" {
            g.unready.insert(name);
            continue;
        }
        let Some(m) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if cpu && cpu_sample_unready(p, m, now) {
            g.unready.insert(name);
            continue;
        }
        g.ready += 1;
    }
    g
}

fn cpu_sample_unready(p: &Pod, m: &PodMetric, now: Timestamp) -> bool {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let (Some(ready), Some(start)) = (ready, status.and_then(|s| s.start_time.as_ref())) else {
        return true;
    };
    let changed = ready
        .last_transition_time
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let start = start.0;
    if start + SignedDuration::from_secs(CPU_INITIALIZATION_PERIOD) > now {
        ready.status == "False"
            || m.timestamp < changed + SignedDuration::from_secs(m.window_seconds)
    } else {
        ready.status == "False"
            && start + SignedDuration::from_secs(INITIAL_READINESS_DELAY) > changed
    }
}

/// Each pod's request of `resource` (milli-units), summed over its
/// containers or from one `container`; an error names a container without one.
pub fn pod_requests(
    pods: &[Arc<Pod>],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for p in pods {
        let mut sum = 0;
        for c in p.spec.iter().flat_map(|s| &s.containers) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource));
            match req {
                Some(q) => sum += milli(&q.0).unwrap_or(0),
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {}",
                        c.name,
                        p.name_any()
                    ));
                }
            }
        }
        out.insert(p.name_any(), sum);
    }
    Ok(out)
}

/// What a resource metric is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Milli-units per pod.
    AverageValue(i64),
}

/// One metric's replica proposal and the current value to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    /// Percent of requests (Utilization targets only).
    pub utilization: Option<i32>,
    /// Average usage per pod, milli-units.
    pub average: i64,
}

/// (ratio to target, utilization, average) over the samples.
fn usage_ratio(
    target: Target,
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
) -> Result<(f64, Option<i32>, i64), String> {
    match target {
        Target::Utilization(t) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, v) in metrics {
                if let Some(r) = requests.get(pod) {
                    used += v;
                    requested += r;
                    n += 1;
                }
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = (used * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(t),
                Some(utilization),
                used / n,
            ))
        }
        Target::AverageValue(t) => {
            let average = metrics.values().sum::<i64>() / metrics.len().max(1) as i64;
            Ok((average as f64 / t as f64, None, average))
        }
    }
}

/// What a calculation observed: the selected pods, their samples and
/// (for Utilization targets) their requests.
pub struct Observed<'a> {
    pub pods: &'a [Arc<Pod>],
    pub samples: &'a PodMetrics,
    pub requests: &'a BTreeMap<String, i64>,
}

/// Upstream's replica calculation for one resource metric, given the
/// target's current replicas and what was observed of its pods.
pub fn propose(
    current: i32,
    target: Target,
    within_tolerance: impl Fn(f64) -> bool,
    seen: &Observed<'_>,
    cpu: bool,
    now: Timestamp,
) -> Result<Proposal, String> {
    let (pods, samples, requests) = (seen.pods, seen.samples, seen.requests);
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group_pods(pods, samples, cpu, now);
    let mut metrics: BTreeMap<String, i64> = samples
        .iter()
        .filter(|(n, _)| !g.ignored.contains(*n) && !g.unready.contains(*n))
        .map(|(n, m)| (n.clone(), m.value))
        .collect();
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (ratio, utilization, average) = usage_ratio(target, &metrics, requests)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if within_tolerance(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal((ratio * g.ready as f64).ceil() as i32));
    }
    if ratio < 1.0 {
        // Scaling down: pods without samples count as using the target.
        for pod in &g.missing {
            let v = match target {
                Target::Utilization(t) => {
                    requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(t) => t,
            };
            metrics.insert(pod.clone(), v);
        }
    } else if ratio > 1.0 {
        for pod in &g.missing {
            metrics.insert(pod.clone(), 0);
        }
    }
    if up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = usage_ratio(target, &metrics, requests)?;
    let flips = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within_tolerance(new_ratio) || flips {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    /// A Running, Ready pod requesting `cpu_milli`, started long ago.
    fn pod(name: &str, cpu_milli: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(
                            [("cpu".to_string(), Quantity(format!("{cpu_milli}m")))].into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                start_time: Some(Time(t(-3600))),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t(-3500))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn samples(values: &[(&str, i64)]) -> PodMetrics {
        values
            .iter()
            .map(|(n, v)| {
                let m = PodMetric {
                    value: *v,
                    timestamp: t(0),
                    window_seconds: 10,
                };
                (n.to_string(), m)
            })
            .collect()
    }

    fn tol(r: f64) -> bool {
        (r - 1.0).abs() <= 0.1
    }

    fn run(
        current: i32,
        target: Target,
        pods: &[Arc<Pod>],
        s: &PodMetrics,
    ) -> Result<Proposal, String> {
        let req = pod_requests(pods, "cpu", None).unwrap();
        let seen = Observed {
            pods,
            samples: s,
            requests: &req,
        };
        propose(current, target, tol, &seen, true, t(0))
    }

    #[test]
    fn utilization_scales_by_the_usage_ratio() {
        let pods = [pod("a", 100)];
        // 200m of 100m requested = 200% against 50%: ceil(1 × 4) = 4.
        let p = run(1, Target::Utilization(50), &pods, &samples(&[("a", 200)])).unwrap();
        assert_eq!(
            p,
            Proposal {
                replicas: 4,
                utilization: Some(200),
                average: 200
            }
        );
        let pods = [pod("a", 100), pod("b", 100), pod("c", 100)];
        let p = run(
            3,
            Target::Utilization(50),
            &pods,
            &samples(&[("a", 10), ("b", 10), ("c", 10)]),
        );
        assert_eq!(p.unwrap().replicas, 1, "ceil(0.2 × 3)");
    }

    #[test]
    fn tolerance_keeps_the_count() {
        let pods = [pod("a", 100), pod("b", 100)];
        let p = run(
            2,
            Target::Utilization(50),
            &pods,
            &samples(&[("a", 54), ("b", 54)]),
        )
        .unwrap();
        assert_eq!(p.replicas, 2, "108% of target is within 10%");
        let p = run(
            2,
            Target::Utilization(50),
            &pods,
            &samples(&[("a", 56), ("b", 56)]),
        )
        .unwrap();
        assert_eq!(p.replicas, 3, "112% is not");
    }

    #[test]
    fn average_value_targets() {
        let pods = [pod("a", 100), pod("b", 100)];
        let p = run(
            2,
            Target::AverageValue(100),
            &pods,
            &samples(&[("a", 300), ("b", 100)]),
        )
        .unwrap();
        assert_eq!(
            p,
            Proposal {
                replicas: 4,
                utilization: None,
                average: 200
            }
        );
    }

    #[test]
    fn missing_pods_are_conservative() {
        let pods = [pod("a", 100), pod("b", 100), pod("c", 100)];
        // Scale-down with a pod missing: it counts as at 100% of its request,
        // (10+10+100)/300 = 40% → ratio 0.8 → ceil(0.8 × 3) = 3: no change.
        let p = run(
            3,
            Target::Utilization(50),
            &pods,
            &samples(&[("a", 10), ("b", 10)]),
        )
        .unwrap();
        assert_eq!(p.replicas, 3);
        // Scale-up with a pod missing: it counts as idle.
        let p = run(
            3,
            Target::Utilization(50),
            &pods,
            &samples(&[("a", 100), ("b", 100)]),
        )
        .unwrap();
        // (100+100+0)/300 = 66% → ratio 1.32 → ceil(1.32 × 3) = 4.
        assert_eq!(p.replicas, 4);
        assert_eq!(
            p.utilization,
            Some(100),
            "reported from the pods with samples"
        );
    }

    #[test]
    fn unready_pods_count_as_idle_on_scale_up_only() {
        let mut fresh = (*pod("b", 100)).clone();
        let st = fresh.status.as_mut().unwrap();
        st.start_time = Some(Time(t(-20)));
        st.conditions.as_mut().unwrap()[0].last_transition_time = Some(Time(t(-5)));
        let pods = [pod("a", 100), Arc::new(fresh)];
        // b's sample is within a window of becoming ready: unready.
        let s = samples(&[("a", 200), ("b", 200)]);
        let g = group_pods(&pods, &s, true, t(0));
        assert_eq!((g.ready, g.unready.len()), (1, 1));
        let p = run(2, Target::Utilization(100), &pods, &s).unwrap();
        // (200 + 0) / 200 = 100% → within tolerance → keep 2.
        assert_eq!(p.replicas, 2);
        // Memory has no readiness rule.
        assert_eq!(group_pods(&pods, &s, false, t(0)).ready, 2);
        let mut pending = (*pod("c", 100)).clone();
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        let g = group_pods(&[Arc::new(pending)], &s, true, t(0));
        assert_eq!(g.unready.len(), 1);
    }

    #[test]
    fn errors_without_pods_samples_or_requests() {
        assert!(run(1, Target::Utilization(50), &[], &samples(&[])).is_err());
        let pods = [pod("a", 100)];
        let e = run(1, Target::Utilization(50), &pods, &samples(&[])).unwrap_err();
        assert!(e.contains("did not receive metrics"), "{e}");
        let mut bare = (*pod("x", 1)).clone();
        bare.spec.as_mut().unwrap().containers[0].resources = None;
        let e = pod_requests(&[Arc::new(bare)], "cpu", None).unwrap_err();
        assert_eq!(e, "missing request for cpu in container c of Pod x");
    }

    #[test]
    fn milli_units_forgive_float_noise() {
        for (q, m) in [
            ("9m", 9),
            ("13m", 13),
            ("100m", 100),
            ("1", 1000),
            ("12500000n", 13),
            ("16Mi", 16 * 1024 * 1024 * 1000),
        ] {
            assert_eq!(milli(q), Some(m), "{q}");
        }
        assert_eq!(milli("x"), None);
    }

    #[test]
    fn pod_metrics_sum_containers() {
        let item: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": "a", "namespace": "default"},
            "timestamp": "2023-11-14T22:13:20Z", "window": "10s",
            "containers": [
                {"name": "app", "usage": {"cpu": "150m", "memory": "2Ki"}},
                {"name": "side", "usage": {"cpu": "12500000n", "memory": "1Ki"}}
            ]
        }))
        .unwrap();
        let cpu = parse(std::slice::from_ref(&item), "cpu", None);
        assert_eq!(cpu["a"].value, 163);
        assert_eq!(cpu["a"].window_seconds, 10);
        assert_eq!(cpu["a"].timestamp, t(0));
        let mem = parse(std::slice::from_ref(&item), "memory", Some("side"));
        assert_eq!(mem["a"].value, 1024 * 1000);
        assert!(parse(&[item], "cpu", Some("other")).is_empty());
    }
}
