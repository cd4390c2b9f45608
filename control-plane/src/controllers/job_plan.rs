//! What a Job needs next, worked out from its spec, its status and its
//! pods: the counts it reports, whether it has failed (backoffLimit,
//! activeDeadlineSeconds) or met its completions, which pods to create or
//! delete, the back-off before replacing failed pods, and its conditions.
//! Pure; `job.rs` does the I/O.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::job_indexes::{parse_intervals, pending_indexes, pod_index, redundant_pods};
use super::pods::{deletion_rank, is_ready, phase};

/// Most pods created or deleted in one reconcile (upstream's MaxPodCreateDeletePerSync).
pub const BURST: usize = 500;
/// The longest wait before replacing a failed pod.
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const FAILURE_TARGET: &str = "FailureTarget";
/// Reason and message of a Job that met its completions.
pub const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);
/// Reason and message of a Job with too many failed pods.
pub const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
/// Reason and message of a Job that ran past activeDeadlineSeconds.
pub const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);

/// A Job's spec with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `None`: a work queue, done once any pod succeeded and none is active.
    pub completions: Option<i32>,
    pub parallelism: i32,
    pub backoff_limit: i32,
    /// completionMode Indexed (only meaningful with completions).
    pub indexed: bool,
    pub suspend: bool,
    pub active_deadline_seconds: Option<i64>,
    /// podReplacementPolicy Failed: wait for terminating pods before replacing them.
    pub replace_failed_only: bool,
    /// restartPolicy OnFailure: container restarts count toward the backoff limit.
    pub on_failure: bool,
}

impl Params {
    /// Reads a Job spec, defaulting as the API server does.
    pub fn of(spec: &JobSpec) -> Self {
        let completions = spec
            .completions
            .or(spec.parallelism.is_none().then_some(1))
            .map(|c| c.max(0));
        Self {
            completions,
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            backoff_limit: spec.backoff_limit.unwrap_or(6).max(0),
            indexed: spec.completion_mode.as_deref() == Some("Indexed") && completions.is_some(),
            suspend: spec.suspend.unwrap_or(false),
            active_deadline_seconds: spec.active_deadline_seconds,
            replace_failed_only: spec.pod_replacement_policy.as_deref() == Some("Failed"),
            on_failure: spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                == Some("OnFailure"),
        }
    }
}

/// What a Job's pods say.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Pods neither finished nor being deleted.
    pub active: Vec<Arc<Pod>>,
    /// Unfinished pods being deleted.
    pub terminating: Vec<Arc<Pod>>,
    pub succeeded: i32,
    /// Failed pods, not counting those deleted (by this controller when
    /// suspending or scaling down, or by whoever evicted them).
    pub failed: i32,
    /// Ready active pods.
    pub ready: i32,
    /// Container restarts of the active pods.
    pub restarts: i32,
    /// Indexed Jobs: indexes with a succeeded pod, plus `status.completedIndexes`.
    pub completed: BTreeSet<i32>,
    /// Failed pods since the last succeeded one, and when the last of them finished.
    pub consecutive_failures: u32,
    pub last_failure: Option<Timestamp>,
}

impl Observed {
    /// Counts the Job's pods.
    pub fn of(p: &Params, status: &JobStatus, pods: &[Arc<Pod>]) -> Self {
        let mut o = Observed::default();
        let completions = p.completions.unwrap_or(0);
        if p.indexed {
            o.completed = parse_intervals(
                status.completed_indexes.as_deref().unwrap_or(""),
                completions,
            );
        }
        let mut finished = Vec::new();
        for pod in pods {
            let deleting = pod.metadata.deletion_timestamp.is_some();
            match phase(pod) {
                "Succeeded" => {
                    o.succeeded += 1;
                    finished.push((pod_finished_at(pod), true));
                    if let Some(i) = p.indexed.then(|| pod_index(pod, completions)).flatten() {
                        o.completed.insert(i);
                    }
                }
                "Failed" if !deleting => {
                    o.failed += 1;
                    finished.push((pod_finished_at(pod), false));
                }
                "Failed" => {}
                _ if deleting => o.terminating.push(pod.clone()),
                _ => {
                    o.ready += i32::from(is_ready(pod));
                    o.restarts += restarts(pod);
                    o.active.push(pod.clone());
                }
            }
        }
        finished.sort_by_key(|(t, _)| *t);
        for (t, ok) in finished {
            if ok {
                o.consecutive_failures = 0;
            } else {
                o.consecutive_failures += 1;
                o.last_failure = Some(t);
            }
        }
        o
    }

    /// Completions reached: succeeded pods, or completed indexes.
    pub fn done(&self, p: &Params) -> i32 {
        if p.indexed {
            self.completed.len() as i32
        } else {
            self.succeeded
        }
    }
}

/// Restarts of all containers of a pod.
fn restarts(p: &Pod) -> i32 {
    let Some(s) = p.status.as_ref() else { return 0 };
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// When a finished pod finished: its last container's exit, else when it
/// stopped being Ready, else its deletion or creation time.
pub fn pod_finished_at(p: &Pod) -> Timestamp {
    let status = p.status.as_ref();
    let exited = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let unready = || {
        status?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    };
    exited
        .or_else(unready)
        .or_else(|| p.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Why a running Job has failed, if it has: too many failed pods (or, with
/// restartPolicy OnFailure, container restarts), or past its deadline.
pub fn failure(
    p: &Params,
    o: &Observed,
    started: Option<Timestamp>,
    now: Timestamp,
) -> Option<(&'static str, &'static str)> {
    let restarts_exceeded = p.on_failure
        && if p.backoff_limit == 0 {
            o.restarts > 0
        } else {
            o.restarts >= p.backoff_limit
        };
    if o.failed > p.backoff_limit || restarts_exceeded {
        return Some(BACKOFF_LIMIT_EXCEEDED);
    }
    if deadline_left(p, started, now) == Some(Duration::ZERO) {
        return Some(DEADLINE_EXCEEDED);
    }
    None
}

/// Time left before activeDeadlineSeconds passes (zero once it has); `None`
/// without a deadline, before the Job started or while it is suspended.
pub fn deadline_left(p: &Params, started: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let (Some(secs), Some(started), false) = (p.active_deadline_seconds, started, p.suspend) else {
        return None;
    };
    let end = started
        .as_millisecond()
        .saturating_add(secs.saturating_mul(1000));
    Some(Duration::from_millis(
        end.saturating_sub(now.as_millisecond()).max(0) as u64,
    ))
}

/// True when the Job has its completions (a work queue: a success and no active pods).
pub fn success_met(p: &Params, o: &Observed) -> bool {
    match p.completions {
        None => o.succeeded > 0 && o.active.is_empty(),
        Some(c) => o.done(p) >= c,
    }
}

/// How many pods should be active: min(parallelism, remaining completions);
/// for a work queue, parallelism until the first success, then no new pods.
pub fn want_active(p: &Params, o: &Observed) -> usize {
    let want = match p.completions {
        None if o.succeeded > 0 => o.active.len() as i32,
        None => p.parallelism,
        Some(c) => (c - o.done(p)).clamp(0, p.parallelism),
    };
    want.max(0) as usize
}

/// The pods a running Job deletes or creates this round.
#[derive(Debug, Default)]
pub struct Scale {
    pub delete: Vec<Arc<Pod>>,
    /// One entry per pod to create: its completion index (Indexed Jobs).
    pub create: Vec<Option<i32>>,
}

/// Brings the active pods to `want_active`: first deletes redundant pods
/// (Indexed: duplicates and finished indexes) and the most disposable
/// extras; only when nothing is deleted, creates the missing pods.
pub fn scale(p: &Params, o: &Observed) -> Scale {
    let want = want_active(p, o);
    let completions = p.completions.unwrap_or(0);
    let mut delete = if p.indexed {
        redundant_pods(&o.active, completions, &o.completed)
    } else {
        Vec::new()
    };
    let mut keep: Vec<Arc<Pod>> = o
        .active
        .iter()
        .filter(|a| !delete.iter().any(|d| Arc::ptr_eq(a, d)))
        .cloned()
        .collect();
    if keep.len() > want {
        keep.sort_by_key(|p| deletion_rank(p));
        let extra = keep.len() - want;
        delete.extend(keep.drain(..extra));
    }
    if !delete.is_empty() {
        delete.truncate(BURST);
        return Scale {
            delete,
            create: Vec::new(),
        };
    }
    let waiting = if p.replace_failed_only {
        o.terminating.len()
    } else {
        0
    };
    let n = want.saturating_sub(keep.len() + waiting).min(BURST);
    let create = if p.indexed {
        let mut taken: BTreeSet<i32> = keep
            .iter()
            .filter_map(|k| pod_index(k, completions))
            .collect();
        if p.replace_failed_only {
            taken.extend(
                o.terminating
                    .iter()
                    .filter_map(|t| pod_index(t, completions)),
            );
        }
        pending_indexes(completions, &o.completed, &taken, n)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; n]
    };
    Scale {
        delete: Vec::new(),
        create,
    }
}

/// Time left before failed pods may be replaced: `base`, doubled for each
/// failure since the last success, capped at six minutes, counted from the
/// last failure. `None` when pods may be created now.
pub fn backoff_left(o: &Observed, base: Duration, now: Timestamp) -> Option<Duration> {
    let last = o.last_failure?;
    if o.consecutive_failures == 0 {
        return None;
    }
    let exp = (o.consecutive_failures - 1).min(16);
    let delay = base.saturating_mul(1 << exp).min(MAX_BACKOFF);
    let elapsed = now
        .as_millisecond()
        .saturating_sub(last.as_millisecond())
        .max(0) as u64;
    delay
        .checked_sub(Duration::from_millis(elapsed))
        .filter(|d| !d.is_zero())
}

/// The condition of `type_` if its status is True.
pub fn condition_true<'a>(conds: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conds
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition, keeping lastTransitionTime when its status does not
/// flip; true when anything changed.
pub fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    (reason, message): (&str, &str),
    now: Timestamp,
) -> bool {
    let now = Some(Time(now));
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c)
            if c.status == status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message) =>
        {
            false
        }
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = now;
            true
        }
        None => {
            conds.push(JobCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_probe_time: now.clone(),
                last_transition_time: now,
            });
            true
        }
    }
}

/// When a Job finished (Complete or Failed), if it has.
pub fn finished_at(status: Option<&JobStatus>) -> Option<Timestamp> {
    let status = status?;
    let conds = status.conditions.as_deref().unwrap_or_default();
    let done = condition_true(conds, COMPLETE).or_else(|| condition_true(conds, FAILED))?;
    let completed = (done.type_ == COMPLETE)
        .then_some(status.completion_time.as_ref())
        .flatten();
    Some(
        completed
            .or(done.last_transition_time.as_ref())
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

/// Time left before a finished Job's ttlSecondsAfterFinished runs out
/// (zero once it has); `None` without a TTL.
pub fn ttl_left(ttl: Option<i32>, finished: Timestamp, now: Timestamp) -> Option<Duration> {
    let end = finished
        .as_millisecond()
        .saturating_add(i64::from(ttl?).saturating_mul(1000));
    Some(Duration::from_millis(
        end.saturating_sub(now.as_millisecond()).max(0) as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::job_indexes::COMPLETION_INDEX;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
    use kube::api::ObjectMeta;

    fn params(completions: Option<i32>, parallelism: i32) -> Params {
        Params {
            completions,
            parallelism,
            backoff_limit: 6,
            indexed: false,
            suspend: false,
            active_deadline_seconds: None,
            replace_failed_only: false,
            on_failure: false,
        }
    }

    fn pod(phase: &str, index: Option<i32>, deleting: bool, finished: i64) -> Arc<Pod> {
        let t = |s: i64| Time(Timestamp::from_second(s).unwrap());
        Arc::new(Pod {
            metadata: ObjectMeta {
                annotations: index.map(|i| [(COMPLETION_INDEX.to_string(), i.to_string())].into()),
                deletion_timestamp: deleting.then(|| t(finished)),
                creation_timestamp: Some(t(finished)),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: 1,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn observe(p: &Params, pods: &[Arc<Pod>]) -> Observed {
        Observed::of(p, &JobStatus::default(), pods)
    }

    #[test]
    fn defaults_follow_the_api_server() {
        let p = Params::of(&JobSpec::default());
        assert_eq!(
            (p.completions, p.parallelism, p.backoff_limit),
            (Some(1), 1, 6)
        );
        let wq = Params::of(&JobSpec {
            parallelism: Some(3),
            ..Default::default()
        });
        assert_eq!(wq.completions, None);
        let ix = Params::of(&JobSpec {
            parallelism: Some(2),
            completion_mode: Some("Indexed".into()),
            ..Default::default()
        });
        assert!(!ix.indexed, "Indexed needs completions");
    }

    #[test]
    fn counts_pods_by_phase() {
        let p = params(Some(5), 2);
        let o = observe(
            &p,
            &[
                pod("Succeeded", None, false, 10),
                pod("Failed", None, false, 20),
                pod("Failed", None, true, 30),
                pod("Running", None, true, 40),
                pod("Running", None, false, 50),
                pod("Pending", None, false, 60),
            ],
        );
        assert_eq!((o.succeeded, o.failed), (1, 1));
        assert_eq!((o.active.len(), o.terminating.len()), (2, 1));
        assert_eq!(o.restarts, 2);
        assert_eq!(o.consecutive_failures, 1);
        assert_eq!(o.last_failure, Some(Timestamp::from_second(20).unwrap()));
    }

    #[test]
    fn keeps_min_of_parallelism_and_remaining_completions() {
        let running = |n: usize| {
            (0..n)
                .map(|_| pod("Running", None, false, 1))
                .collect::<Vec<_>>()
        };
        let done = |n: usize| {
            (0..n)
                .map(|_| pod("Succeeded", None, false, 1))
                .collect::<Vec<_>>()
        };
        // 5 completions, parallelism 2, nothing yet: create 2.
        let p = params(Some(5), 2);
        assert_eq!(scale(&p, &observe(&p, &[])).create.len(), 2);
        // 4 succeeded: only 1 left to run; one of the 2 running is extra.
        let pods = [done(4), running(2)].concat();
        let s = scale(&p, &observe(&p, &pods));
        assert_eq!((s.delete.len(), s.create.len()), (1, 0));
        // 3 succeeded, 1 running: create 1.
        let pods = [done(3), running(1)].concat();
        assert_eq!(scale(&p, &observe(&p, &pods)).create.len(), 1);
        // Parallelism 0 deletes everything (suspended-like).
        let p0 = params(Some(5), 0);
        assert_eq!(scale(&p0, &observe(&p0, &running(3))).delete.len(), 3);
        // A work queue runs parallelism pods until one succeeds, then adds none.
        let wq = params(None, 3);
        assert_eq!(scale(&wq, &observe(&wq, &running(1))).create.len(), 2);
        let pods = [done(1), running(1)].concat();
        let s = scale(&wq, &observe(&wq, &pods));
        assert!(s.create.is_empty() && s.delete.is_empty());
        // podReplacementPolicy Failed waits for terminating pods.
        let mut pf = params(Some(5), 2);
        pf.replace_failed_only = true;
        let pods = [running(1), vec![pod("Running", None, true, 1)]].concat();
        assert!(scale(&pf, &observe(&pf, &pods)).create.is_empty());
        assert_eq!(scale(&p, &observe(&p, &pods)).create.len(), 1);
    }

    #[test]
    fn indexed_jobs_run_each_index_once() {
        let mut p = params(Some(4), 3);
        p.indexed = true;
        let s = scale(&p, &observe(&p, &[]));
        assert_eq!(s.create, vec![Some(0), Some(1), Some(2)]);
        // 0 succeeded, 2 is running, 1 failed: 1 and 3 are next.
        let pods = [
            pod("Succeeded", Some(0), false, 1),
            pod("Failed", Some(1), false, 2),
            pod("Running", Some(2), false, 3),
        ];
        let o = observe(&p, &pods);
        assert_eq!(o.completed, [0].into());
        assert_eq!(scale(&p, &o).create, vec![Some(1), Some(3)]);
        // A pod for an index that already succeeded (per status) is deleted.
        let status = JobStatus {
            completed_indexes: Some("2".into()),
            ..Default::default()
        };
        let o = Observed::of(&p, &status, &pods);
        let s = scale(&p, &o);
        assert_eq!((s.delete.len(), s.create.len()), (1, 0));
        assert_eq!(o.done(&p), 2);
        assert!(!success_met(&p, &o));
    }

    #[test]
    fn success_and_failure() {
        let now = Timestamp::from_second(1000).unwrap();
        let p = params(Some(2), 1);
        let two = [
            pod("Succeeded", None, false, 1),
            pod("Succeeded", None, false, 2),
        ];
        assert!(success_met(&p, &observe(&p, &two)));
        assert!(!success_met(&p, &observe(&p, &two[..1])));
        let wq = params(None, 2);
        let busy = [two[0].clone(), pod("Running", None, false, 3)];
        assert!(!success_met(&wq, &observe(&wq, &busy)));
        assert!(success_met(&wq, &observe(&wq, &two[..1])));
        // Zero completions are met at once.
        assert!(success_met(&params(Some(0), 1), &Observed::default()));

        let mut b = params(Some(1), 1);
        b.backoff_limit = 1;
        let fails = |n: usize| {
            (0..n)
                .map(|i| pod("Failed", None, false, i as i64))
                .collect::<Vec<_>>()
        };
        assert_eq!(failure(&b, &observe(&b, &fails(1)), None, now), None);
        assert_eq!(
            failure(&b, &observe(&b, &fails(2)), None, now),
            Some(BACKOFF_LIMIT_EXCEEDED)
        );
        b.on_failure = true;
        let restarted = [pod("Running", None, false, 1)];
        assert_eq!(
            failure(&b, &observe(&b, &restarted), None, now),
            Some(BACKOFF_LIMIT_EXCEEDED)
        );

        let mut d = params(Some(1), 1);
        d.active_deadline_seconds = Some(60);
        let started = Timestamp::from_second(950).ok();
        assert_eq!(failure(&d, &Observed::default(), started, now), None);
        assert_eq!(
            deadline_left(&d, started, now),
            Some(Duration::from_secs(10))
        );
        let later = Timestamp::from_second(1010).unwrap();
        assert_eq!(
            failure(&d, &Observed::default(), started, later),
            Some(DEADLINE_EXCEEDED)
        );
        d.suspend = true;
        assert_eq!(failure(&d, &Observed::default(), started, later), None);
    }

    #[test]
    fn failed_pods_back_off_exponentially() {
        let p = params(Some(1), 1);
        let base = Duration::from_secs(10);
        let at = |s| Timestamp::from_second(s).unwrap();
        let o = observe(&p, &[pod("Failed", None, false, 100)]);
        assert_eq!(
            backoff_left(&o, base, at(104)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(backoff_left(&o, base, at(110)), None);
        let o = observe(
            &p,
            &[
                pod("Failed", None, false, 100),
                pod("Failed", None, false, 200),
            ],
        );
        assert_eq!(
            backoff_left(&o, base, at(205)),
            Some(Duration::from_secs(15))
        );
        let many: Vec<_> = (0..12).map(|i| pod("Failed", None, false, i)).collect();
        let o = observe(&p, &many);
        assert_eq!(backoff_left(&o, base, at(11)), Some(MAX_BACKOFF));
        // A success resets the count.
        let o = observe(
            &p,
            &[
                pod("Failed", None, false, 100),
                pod("Succeeded", None, false, 150),
            ],
        );
        assert_eq!(backoff_left(&o, base, at(151)), None);
        assert_eq!(observe(&p, &[]).consecutive_failures, 0);
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t1 = Timestamp::from_second(1).unwrap();
        let t2 = Timestamp::from_second(2).unwrap();
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            SUSPENDED,
            "True",
            ("JobSuspended", "Job suspended"),
            t1
        ));
        assert!(!set_condition(
            &mut conds,
            SUSPENDED,
            "True",
            ("JobSuspended", "Job suspended"),
            t2
        ));
        assert!(set_condition(
            &mut conds,
            SUSPENDED,
            "False",
            ("JobResumed", "Job resumed"),
            t2
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, Some(Time(t2)));
        assert!(condition_true(&conds, SUSPENDED).is_none());

        let status = JobStatus {
            conditions: Some(vec![JobCondition {
                type_: FAILED.into(),
                status: "True".into(),
                last_transition_time: Some(Time(t1)),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(finished_at(Some(&status)), Some(t1));
        assert_eq!(finished_at(None), None);
        assert_eq!(ttl_left(Some(5), t1, t2), Some(Duration::from_secs(4)));
        assert_eq!(ttl_left(Some(0), t1, t2), Some(Duration::ZERO));
        assert_eq!(ttl_left(None, t1, t2), None);
    }
}
