//! The Job controller (batch/v1): runs pods from `spec.template` until
//! `completions` succeed (or, without completions, until one succeeds and
//! none is running), at most `parallelism` at a time; Indexed mode gives
//! every pod a completion index and runs each index once; suspend, the
//! backoff limit, activeDeadlineSeconds and ttlSecondsAfterFinished; the
//! counts and conditions `kubectl get/wait` read. The arithmetic lives in
//! `job_plan.rs` and `job_indexes.rs`; this file reads the caches and
//! writes through the API (orphan pods the selector picks are adopted and
//! strays released through `controller_ref.rs`; created and deleted pods go straight into the
//! pod cache so a burst of reconciles never over-creates). Pods are counted
//! as they exist (no job-tracking finalizers): deleting the finished pods
//! of a running Job forgets them, as Kubernetes did before 1.26.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::controller_ref::{claim, claim_keys, selects};
use super::job_indexes::{COMPLETION_INDEX, format_intervals};
use super::job_plan::{
    BURST, COMPLETE, COMPLETIONS_REACHED, FAILED, FAILURE_TARGET, Observed, Params,
    SUCCESS_CRITERIA_MET, SUSPENDED, backoff_left, condition_true, deadline_left, failure,
    finished_at, scale, set_condition, success_met, ttl_left,
};
use super::pods::owner_ref;
use super::runtime::{Action, ObjectKey, WorkQueue, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "job-controller";

/// Label (and selector key) naming the Job that controls a pod, by uid.
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// Label naming the Job that controls a pod, by name.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";
/// The environment variable holding an Indexed pod's completion index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// `spec.managedBy` value of Jobs this controller handles (unset means the same).
const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// Longest generateName the API server keeps before its 5 random characters.
const MAX_GENERATE_NAME: usize = 58;

/// Subscribes the controller to Jobs and their pods.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.jobs.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.jobs.cache().clone();
    ctx.pods.feed(queue.clone(), shutdown.clone(), move |c| {
        claim_keys(c, "Job", &cache, |job: &Job, p: &Pod| {
            selects(
                job.spec.as_ref().and_then(|s| s.selector.as_ref()),
                p.labels(),
            )
        })
    });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.jobs.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("job", queue, workers, ctx, reconcile, sd).await
    })
}

/// Claims the pods of the Job's namespace (adopting orphans its selector
/// picks, releasing strays) and returns those it now controls.
pub async fn claim_pods(ctx: &Ctx, job: &Job) -> Result<Vec<Arc<Pod>>, ControllerError> {
    let candidates = ctx
        .pods
        .cache()
        .list_namespace(&job.namespace().unwrap_or_default());
    let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    claim(&ctx.client, job, ctx.pods.cache(), candidates, |p| {
        selects(selector, p.labels())
    })
    .await
}

/// How a Job is ending, once decided.
enum Ending {
    Success,
    Failure(String, String),
}

/// Reconciles one Job.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(job) = ctx.jobs.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    let spec = job.spec.clone().unwrap_or_default();
    let managed = spec.managed_by.as_deref().is_none_or(|m| m == MANAGED_BY);
    if job.metadata.deletion_timestamp.is_some() || !managed {
        return Ok(Action::AwaitChange);
    }
    let now = Timestamp::now();
    if let Some(done) = finished_at(job.status.as_ref()) {
        return expire(&ctx, &job, done, now).await;
    }
    let p = Params::of(&spec);
    let mut status = job.status.clone().unwrap_or_default();
    let o = Observed::of(&p, &status, &claim_pods(&ctx, &job).await?);
    let mut conds = status.conditions.take().unwrap_or_default();
    let started = status.start_time.as_ref().map(|t| t.0);
    // Events about conditions, recorded once the status that sets them is written.
    let mut news: Vec<(&str, String, String)> = Vec::new();
    let ending = if condition_true(&conds, SUCCESS_CRITERIA_MET).is_some() {
        Some(Ending::Success)
    } else if let Some(c) = condition_true(&conds, FAILURE_TARGET) {
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        Some(Ending::Failure(text(&c.reason), text(&c.message)))
    } else if let Some((reason, message)) = failure(&p, &o, started, now) {
        set_condition(&mut conds, FAILURE_TARGET, "True", (reason, message), now);
        news.push(("Warning", reason.into(), message.into()));
        Some(Ending::Failure(reason.into(), message.into()))
    } else if success_met(&p, &o) {
        set_condition(
            &mut conds,
            SUCCESS_CRITERIA_MET,
            "True",
            COMPLETIONS_REACHED,
            now,
        );
        Some(Ending::Success)
    } else {
        None
    };

    let mut requeue = None;
    let mut created = 0;
    let mut deleted = 0;
    let mut first_err = None;
    match ending {
        Some(ending) => {
            // Stop what still runs; finish once nothing does.
            let doomed = &o.active[..o.active.len().min(BURST)];
            (deleted, first_err) = delete_pods(&ctx, &job, doomed).await;
            if o.active.is_empty() && o.terminating.is_empty() {
                news.extend(finish(&mut status, &mut conds, ending, now));
            }
        }
        None if p.suspend => {
            let doomed = &o.active[..o.active.len().min(BURST)];
            (deleted, first_err) = delete_pods(&ctx, &job, doomed).await;
            let suspended = ("JobSuspended", "Job suspended");
            if set_condition(&mut conds, SUSPENDED, "True", suspended, now) {
                news.push(("Normal", "Suspended".into(), "Job suspended".into()));
            }
        }
        None => {
            if condition_true(&conds, SUSPENDED).is_some() {
                set_condition(
                    &mut conds,
                    SUSPENDED,
                    "False",
                    ("JobResumed", "Job resumed"),
                    now,
                );
                news.push(("Normal", "Resumed".into(), "Job resumed".into()));
                // activeDeadlineSeconds counts from the resume.
                status.start_time = None;
            }
            let started = status.start_time.get_or_insert(Time(now)).0;
            requeue = deadline_left(&p, Some(started), now);
            let plan = scale(&p, &o);
            if !plan.delete.is_empty() {
                (deleted, first_err) = delete_pods(&ctx, &job, &plan.delete).await;
            } else if !plan.create.is_empty() {
                match backoff_left(&o, ctx.config.job_pod_failure_backoff, now) {
                    Some(wait) => requeue = Some(requeue.map_or(wait, |r: Duration| r.min(wait))),
                    None => (created, first_err) = create_pods(&ctx, &job, &plan.create).await,
                }
            }
        }
    }

    let count = |n: usize| (n > 0).then_some(n as i32);
    status.active = count((o.active.len() + created).saturating_sub(deleted));
    status.ready = Some(o.ready);
    status.terminating = Some((o.terminating.len() + deleted) as i32);
    // Indexed Jobs count each completed index once, however many pods ran it.
    status.succeeded = count(o.done(&p) as usize);
    status.failed = count(o.failed as usize);
    if p.indexed {
        status.completed_indexes = Some(format_intervals(&o.completed)).filter(|s| !s.is_empty());
    }
    status.conditions = (!conds.is_empty()).then_some(conds);
    let finished = finished_at(Some(&status));
    write_status(&ctx, &job, status).await?;
    for (type_, reason, message) in news {
        ctx.events(EVENT_SOURCE)
            .record(job.as_ref(), type_, &reason, &message);
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if let Some(done) = finished {
        requeue = ttl_left(spec.ttl_seconds_after_finished, done, now);
    }
    Ok(requeue.map_or(Action::AwaitChange, |d| {
        Action::RequeueAfter(d.max(Duration::from_millis(10)))
    }))
}

/// Adds the final condition (Complete or Failed); returns the event to record.
fn finish(
    status: &mut JobStatus,
    conds: &mut Vec<JobCondition>,
    ending: Ending,
    now: Timestamp,
) -> Option<(&'static str, String, String)> {
    match ending {
        Ending::Success => {
            set_condition(conds, COMPLETE, "True", COMPLETIONS_REACHED, now);
            status.completion_time = Some(Time(now));
            tracing::info!("job completed");
            Some(("Normal", "Completed".into(), "Job completed".into()))
        }
        Ending::Failure(reason, message) => {
            set_condition(conds, FAILED, "True", (&reason, &message), now);
            tracing::info!(reason, "job failed");
            None
        }
    }
}

/// Deletes a finished Job once its ttlSecondsAfterFinished has passed.
async fn expire(
    ctx: &Ctx,
    job: &Job,
    finished: Timestamp,
    now: Timestamp,
) -> Result<Action, ControllerError> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    match ttl_left(ttl, finished, now) {
        None => Ok(Action::AwaitChange),
        Some(left) if !left.is_zero() => Ok(Action::RequeueAfter(left)),
        Some(_) => {
            let api: Api<Job> =
                Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: job.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            ignore_not_found(api.delete(&job.name_any(), &dp).await.map(|_| ()))?;
            tracing::info!("ttlSecondsAfterFinished passed; deleted the job");
            Ok(Action::AwaitChange)
        }
    }
}

/// The generateName of a Job's pods: `<job>-` or `<job>-<index>-`,
/// shortened so the generated name stays a valid DNS label.
fn generate_name(job: &str, index: Option<i32>) -> String {
    let tail = index.map_or("-".to_string(), |i| format!("-{i}-"));
    let keep = MAX_GENERATE_NAME.saturating_sub(tail.len()).min(job.len());
    let mut cut = keep;
    while !job.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tail}", &job[..cut])
}

/// A pod for the Job (with the completion index of Indexed Jobs).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let (name, uid) = (job.name_any(), job.uid().unwrap_or_default());
    let mut labels = meta.labels.unwrap_or_default();
    if spec.manual_selector != Some(true) {
        for (k, v) in [
            (CONTROLLER_UID, &uid),
            (JOB_NAME, &name),
            (LEGACY_CONTROLLER_UID, &uid),
            (LEGACY_JOB_NAME, &name),
        ] {
            labels.entry(k.into()).or_insert_with(|| v.clone());
        }
    }
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut pod_spec = template.spec.unwrap_or_default();
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        let containers = pod_spec
            .containers
            .iter_mut()
            .chain(pod_spec.init_containers.iter_mut().flatten());
        for c in containers {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
                env.push(index_env());
            }
        }
        let host = format!("{name}-{i}");
        if host.len() <= 63 {
            pod_spec.hostname = Some(host);
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(&name, index)),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner_ref(job)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

fn index_env() -> EnvVar {
    EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    }
}

/// Creates pods in batches of 1, 2, 4, ... (stopping at the first error, so
/// a failing template costs one request), writing each through to the
/// cache. Returns how many were created and the first error.
async fn create_pods(
    ctx: &Ctx,
    job: &Job,
    indexes: &[Option<i32>],
) -> (usize, Option<ControllerError>) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let pp = PostParams::default();
    let mut names = Vec::new();
    let mut first_err = None;
    let (mut done, mut batch) = (0, 1);
    while done < indexes.len() && first_err.is_none() {
        let chunk = &indexes[done..(done + batch).min(indexes.len())];
        let results = join_all(chunk.iter().map(|i| {
            let (api, pp) = (&api, &pp);
            async move { api.create(pp, &pod_for(job, *i)).await }
        }))
        .await;
        for r in results {
            match r {
                Ok(p) => {
                    names.push(p.name_any());
                    ctx.pods
                        .cache()
                        .write_through(ObjectKey::of(&p), Arc::new(p));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        done += chunk.len();
        batch *= 2;
    }
    for n in &names {
        let msg = format!("Created pod: {n}");
        ctx.events(EVENT_SOURCE)
            .record(job, "Normal", "SuccessfulCreate", &msg);
    }
    if !names.is_empty() {
        tracing::info!(created = names.len(), "created pods");
    }
    if let Some(e) = &first_err {
        ctx.events(EVENT_SOURCE).record(
            job,
            "Warning",
            "FailedCreate",
            &format!("Error creating: {e}"),
        );
    }
    (names.len(), first_err.map(Into::into))
}

/// Deletes pods, marking them as terminating in the cache. Returns how many
/// are gone or going and the first error.
async fn delete_pods(ctx: &Ctx, job: &Job, pods: &[Arc<Pod>]) -> (usize, Option<ControllerError>) {
    if pods.is_empty() {
        return (0, None);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let results = join_all(pods.iter().map(|p| {
        let api = &api;
        async move { api.delete(&p.name_any(), &DeleteParams::default()).await }
    }))
    .await;
    let mut gone = Vec::new();
    let mut first_err = None;
    for (p, r) in pods.iter().zip(results) {
        match ignore_not_found(r.map(|_| ())) {
            Ok(_) => {
                let mut dying = (**p).clone();
                dying.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
                ctx.pods
                    .cache()
                    .write_through(ObjectKey::of(&dying), Arc::new(dying));
                gone.push(p.name_any());
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    join_all(gone.iter().map(|n| async move {
        let msg = format!("Deleted pod: {n}");
        ctx.events(EVENT_SOURCE)
            .record(job, "Normal", "SuccessfulDelete", &msg)
    }))
    .await;
    tracing::info!(deleted = gone.len(), "deleted pods");
    (gone.len(), first_err)
}

/// Writes the status through the status subresource (guarded by the Job's
/// resourceVersion) and into the cache, unless it is unchanged.
async fn write_status(ctx: &Ctx, job: &Job, status: JobStatus) -> Result<(), ControllerError> {
    if job.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut next = job.clone();
    next.status = Some(status);
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let written = api
        .replace_status(&job.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.jobs
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn job(name: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "x".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            ..Default::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pods_carry_job_labels_and_owner() {
        let p = pod_for(&job("pi"), None);
        let labels = p.labels();
        assert_eq!(labels.get(CONTROLLER_UID).map(String::as_str), Some("u1"));
        assert_eq!(labels.get(JOB_NAME).map(String::as_str), Some("pi"));
        assert_eq!(labels.get("job-name").map(String::as_str), Some("pi"));
        assert_eq!(labels.get("app").map(String::as_str), Some("x"));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str()),
            ("Job", "batch/v1")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert!(p.annotations().is_empty());
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let p = pod_for(&job("work"), Some(3));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("work-3-"));
        assert_eq!(
            p.annotations().get(COMPLETION_INDEX).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            p.labels().get(COMPLETION_INDEX).map(String::as_str),
            Some("3")
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-3"));
        let env = spec.containers[0].env.clone().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, COMPLETION_INDEX_ENV);
        let path = env[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            path.field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
    }

    #[test]
    fn long_names_are_shortened() {
        let long = "a".repeat(70);
        let g = generate_name(&long, Some(12));
        assert_eq!(g.len(), MAX_GENERATE_NAME);
        assert!(g.ends_with("a-12-"));
        assert_eq!(generate_name(&long, None).len(), MAX_GENERATE_NAME);
        assert_eq!(generate_name("short", None), "short-");
    }
}
