//! The CronJob controller (batch/v1): creates a Job from `spec.jobTemplate`
//! at each fire time of `spec.schedule` (named `<cronjob>-<minutes since
//! epoch>`), honouring suspend, concurrencyPolicy (Allow, Forbid, Replace),
//! startingDeadlineSeconds and the history limits, and reports the active
//! Jobs, lastScheduleTime and lastSuccessfulTime. It requeues itself for
//! the next fire time, so `* * * * *` fires within milliseconds of the
//! minute. Schedules and time zones are parsed by `cron_schedule.rs`; with
//! no time zone the schedule runs in UTC.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::{Offset, TimeZone};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::cron_schedule::{MAX_MISSED, Schedule};
use super::job_plan::{COMPLETE, FAILED, condition_true};
use super::pods::{controlled_by, owner_ref};
use super::runtime::events::object_ref;
use super::runtime::{Action, ObjectKey, WorkQueue, owner_keys, run_workers};
use super::{ControllerError, Ctx, Started, ignore_not_found};

/// Who this controller's Events are from (kube-controller-manager's name for it).
const EVENT_SOURCE: &str = "cronjob-controller";

/// Annotation on each Job: the fire time it was created for (RFC 3339).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Slack added to the wait for the next fire time, so the timer never wakes just before it.
const WAKE_SLACK: Duration = Duration::from_millis(5);

/// Subscribes the controller to CronJobs and their Jobs.
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Started {
    let queue = WorkQueue::default();
    ctx.cron_jobs.feed_keys(queue.clone(), shutdown.clone());
    let cache = ctx.cron_jobs.cache().clone();
    ctx.jobs.feed(queue.clone(), shutdown.clone(), move |c| {
        owner_keys(c, "CronJob", &cache)
    });
    let (ctx, sd) = (ctx.clone(), shutdown.clone());
    Started::new(async move {
        for k in ctx.cron_jobs.cache().keys() {
            queue.add(k);
        }
        let workers = ctx.config.workers;
        run_workers("cronjob", queue, workers, ctx, reconcile, sd).await
    })
}

/// The Jobs a CronJob controls, from the cache.
pub fn owned_jobs(ctx: &Ctx, cj: &CronJob) -> Vec<Arc<Job>> {
    let uid = cj.uid().unwrap_or_default();
    ctx.jobs
        .cache()
        .list_namespace(&cj.namespace().unwrap_or_default())
        .into_iter()
        .filter(|j| controlled_by(j.as_ref(), &uid))
        .collect()
}

/// The finished condition of a Job ("Complete" or "Failed"), if any.
fn finished(j: &Job) -> Option<&'static str> {
    let conds = j.status.as_ref()?.conditions.as_deref().unwrap_or_default();
    [COMPLETE, FAILED]
        .into_iter()
        .find(|t| condition_true(conds, t).is_some())
}

fn running(j: &Job) -> bool {
    j.metadata.deletion_timestamp.is_none() && finished(j).is_none()
}

/// The name of the Job for a fire time: `<cronjob>-<minutes since epoch>`.
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// An instant in RFC 3339 at a fixed offset ("Z" for UTC), as Go formats it.
pub fn rfc3339(t: Timestamp, offset: Offset) -> String {
    if offset == Offset::UTC {
        return t.to_string();
    }
    let secs = offset.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
    let local = offset.to_datetime(t).strftime("%Y-%m-%dT%H:%M:%S");
    format!("{local}{sign}{h:02}:{m:02}")
}

/// The schedule and the zone it runs in: a `CRON_TZ=` prefix, else
/// `spec.timeZone`, else UTC. On error: the event reason and message.
pub fn schedule_of(spec: &CronJobSpec) -> Result<(Schedule, TimeZone), (&'static str, String)> {
    let schedule = Schedule::parse(&spec.schedule).map_err(|e| {
        let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
        ("UnparseableSchedule", msg)
    })?;
    let zone = schedule
        .time_zone
        .clone()
        .or_else(|| spec.time_zone.clone());
    let tz = match zone {
        Some(z) => super::cron_schedule::zone(&z)
            .map_err(|e| ("UnknownTimeZone", format!("invalid timeZone: {z:?}: {e}")))?,
        None => TimeZone::UTC,
    };
    Ok((schedule, tz))
}

/// The Job a CronJob runs for `scheduled`.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj.spec.clone().unwrap_or_default().job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        rfc3339(scheduled, tz.to_offset(scheduled)),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Reconciles one CronJob.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(cj) = ctx.cron_jobs.cache().get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    let now = Timestamp::now();
    let jobs = owned_jobs(&ctx, &cj);
    let mut status = cj.status.clone().unwrap_or_default();
    let mut active = sync_active(&ctx, &cj, &jobs, &status).await?;
    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some(COMPLETE))
        .filter_map(|j| j.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    if last_success.as_ref().map(|t| t.0) > status.last_successful_time.as_ref().map(|t| t.0) {
        status.last_successful_time = last_success;
    }
    let cleaned = cleanup_history(&ctx, &cj, &jobs).await;
    let ran = run_due(&ctx, &cj, &jobs, &mut active, &mut status, now).await;
    status.active = (!active.is_empty()).then_some(active);
    write_status(&ctx, &cj, status).await?;
    cleaned?;
    let next = ran?;
    Ok(next.map_or(Action::AwaitChange, |t| {
        let wait = t.as_millisecond() - Timestamp::now().as_millisecond();
        Action::RequeueAfter(Duration::from_millis(wait.max(0) as u64) + WAKE_SLACK)
    }))
}

/// The references of the Jobs still running: those listed that still run
/// (checked with a live GET when the cache lacks them), then any running
/// Job of ours that a lost status write left out.
async fn sync_active(
    ctx: &Ctx,
    cj: &CronJob,
    jobs: &[Arc<Job>],
    status: &CronJobStatus,
) -> Result<Vec<ObjectReference>, ControllerError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    let mut active = Vec::new();
    for r in status.active.iter().flatten() {
        let name = r.name.clone().unwrap_or_default();
        match jobs.iter().find(|j| j.uid() == r.uid) {
            Some(j) if running(j) => active.push(r.clone()),
            Some(j) => {
                if let Some(cond) = finished(j) {
                    let msg = format!("Saw completed job: {name}, condition: {cond}");
                    ctx.events(EVENT_SOURCE)
                        .record(cj, "Normal", "SawCompletedJob", &msg);
                }
            }
            None => match api.get_opt(&name).await? {
                Some(j) if j.uid() == r.uid && running(&j) => active.push(r.clone()),
                Some(_) => {}
                None => {
                    let msg = format!("Active job went missing: {name}");
                    ctx.events(EVENT_SOURCE)
                        .record(cj, "Normal", "MissingJob", &msg);
                }
            },
        }
    }
    for j in jobs.iter().filter(|j| running(j)) {
        if !active.iter().any(|r| r.uid == j.uid()) {
            active.push(object_ref(j.as_ref()));
        }
    }
    Ok(active)
}

/// Starts the Job for the latest fire time that is due, if policy allows;
/// returns the next fire time to wake up for.
async fn run_due(
    ctx: &Ctx,
    cj: &CronJob,
    jobs: &[Arc<Job>],
    active: &mut Vec<ObjectReference>,
    status: &mut CronJobStatus,
    now: Timestamp,
) -> Result<Option<Timestamp>, ControllerError> {
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let (schedule, tz) = match schedule_of(&spec) {
        Ok(s) => s,
        Err((reason, msg)) => {
            ctx.events(EVENT_SOURCE).record(cj, "Warning", reason, &msg);
            return Ok(None);
        }
    };
    let next = schedule.next_after(now, &tz);
    let created = cj.creation_timestamp().map_or(now, |t| t.0);
    let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
    if let Some(d) = spec.starting_deadline_seconds
        && let Ok(floor) = Timestamp::from_second(now.as_second().saturating_sub(d))
    {
        earliest = earliest.max(floor);
    }
    let missed = schedule.missed(earliest, now, &tz);
    let Some(scheduled) = missed.latest else {
        return Ok(next);
    };
    if missed.count > MAX_MISSED {
        let msg = format!(
            "too many missed start times: more than {MAX_MISSED}. Set or decrease \
             .spec.startingDeadlineSeconds or check clock skew"
        );
        ctx.events(EVENT_SOURCE)
            .record(cj, "Warning", "TooManyMissedTimes", &msg);
    }
    let name = job_name(&cj.name_any(), scheduled);
    let already = jobs.iter().any(|j| j.name_any() == name)
        || active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()));
    if already {
        // Started by an earlier reconcile whose status write was lost.
        status.last_schedule_time = Some(Time(scheduled));
        return Ok(next);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
            ctx.events(EVENT_SOURCE)
                .record(cj, "Normal", "JobAlreadyActive", msg);
            return Ok(next);
        }
        Some("Replace") => replace_active(ctx, cj, active).await?,
        _ => {}
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    let job = job_for(cj, scheduled, &tz);
    let created = match api.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Created by us before a lost status write, or someone else's Job.
            let uid = cj.uid().unwrap_or_default();
            match api.get_opt(&name).await? {
                Some(j) if controlled_by(&j, &uid) => j,
                _ => {
                    let msg = format!(
                        "Error creating job: {name} exists and is not controlled by this CronJob"
                    );
                    ctx.events(EVENT_SOURCE)
                        .record(cj, "Warning", "FailedCreate", &msg);
                    return Err(ControllerError::Invalid(msg));
                }
            }
        }
        Err(e) => {
            let msg = format!("Error creating job: {e}");
            ctx.events(EVENT_SOURCE)
                .record(cj, "Warning", "FailedCreate", &msg);
            return Err(e.into());
        }
    };
    let msg = format!("Created job {name}");
    ctx.events(EVENT_SOURCE)
        .record(cj, "Normal", "SuccessfulCreate", &msg);
    tracing::info!(job = %name, scheduled = %scheduled, "created job");
    if running(&created) && !active.iter().any(|r| r.uid == created.uid()) {
        active.push(object_ref(&created));
    }
    ctx.jobs
        .cache()
        .write_through(ObjectKey::of(&created), Arc::new(created));
    status.last_schedule_time = Some(Time(scheduled));
    Ok(next)
}

/// concurrencyPolicy Replace: deletes the running Jobs (and, in the
/// background, their pods), dropping each from `active` once it is gone.
async fn replace_active(
    ctx: &Ctx,
    cj: &CronJob,
    active: &mut Vec<ObjectReference>,
) -> Result<(), ControllerError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    while let Some(r) = active.first() {
        let name = r.name.clone().unwrap_or_default();
        ignore_not_found(
            api.delete(&name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
        let msg = format!("Deleted job {name}");
        ctx.events(EVENT_SOURCE)
            .record(cj, "Normal", "SuccessfulDelete", &msg);
        active.remove(0);
    }
    Ok(())
}

/// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit
/// (default 3) and failedJobsHistoryLimit (default 1).
async fn cleanup_history(
    ctx: &Ctx,
    cj: &CronJob,
    jobs: &[Arc<Job>],
) -> Result<(), ControllerError> {
    let spec = cj.spec.clone().unwrap_or_default();
    let limits = [
        (COMPLETE, spec.successful_jobs_history_limit.unwrap_or(3)),
        (FAILED, spec.failed_jobs_history_limit.unwrap_or(1)),
    ];
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    for (cond, limit) in limits {
        let limit = limit.max(0) as usize;
        let mut done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none() && finished(j) == Some(cond))
            .collect();
        if done.len() <= limit {
            continue;
        }
        done.sort_by_key(|j| {
            let started = j.status.as_ref().and_then(|s| s.start_time.clone());
            (
                started.or_else(|| j.creation_timestamp()).map(|t| t.0),
                j.name_any(),
            )
        });
        for j in &done[..done.len() - limit] {
            let name = j.name_any();
            ignore_not_found(
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            )?;
            let mut gone = (***j).clone();
            gone.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
            ctx.jobs
                .cache()
                .write_through(ObjectKey::of(&gone), Arc::new(gone));
            let msg = format!("Deleted job {name}");
            ctx.events(EVENT_SOURCE)
                .record(cj, "Normal", "SuccessfulDelete", &msg);
        }
    }
    Ok(())
}

/// Writes the status through the status subresource (guarded by the
/// CronJob's resourceVersion) and into the cache, unless it is unchanged.
async fn write_status(
    ctx: &Ctx,
    cj: &CronJob,
    status: CronJobStatus,
) -> Result<(), ControllerError> {
    if cj.status.as_ref().unwrap_or(&CronJobStatus::default()) == &status {
        return Ok(());
    }
    let mut next = cj.clone();
    next.status = Some(status);
    let api: Api<CronJob> =
        Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    let written = api
        .replace_status(&cj.name_any(), &PostParams::default(), &next)
        .await?;
    ctx.cron_jobs
        .cache()
        .write_through(ObjectKey::of(&written), Arc::new(written));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::cron_schedule::zone_offset;
    use super::*;
    use k8s_openapi::api::batch::v1::{JobSpec, JobTemplateSpec};

    fn cron_job(schedule: &str, zone: Option<&str>) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("tick".into()),
                namespace: Some("ns".into()),
                uid: Some("cj-uid".into()),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                time_zone: zone.map(Into::into),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "tick".to_string())].into()),
                        annotations: Some([("a".to_string(), "b".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(JobSpec {
                        backoff_limit: Some(2),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn jobs_are_named_and_annotated_by_fire_time() {
        let t: Timestamp = "2024-01-01T10:05:00Z".parse().unwrap();
        let cj = cron_job("*/5 * * * *", None);
        let j = job_for(&cj, t, &TimeZone::UTC);
        assert_eq!(j.name_any(), format!("tick-{}", t.as_second() / 60));
        assert_eq!(j.name_any(), "tick-28401725");
        assert_eq!(
            j.annotations().get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2024-01-01T10:05:00Z")
        );
        assert_eq!(j.annotations().get("a").map(String::as_str), Some("b"));
        assert_eq!(j.labels().get("app").map(String::as_str), Some("tick"));
        let owner = &j.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("CronJob", "cj-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(j.spec.unwrap().backoff_limit, Some(2));
        let ist = zone_offset("+05:30").unwrap();
        assert_eq!(rfc3339(t, ist), "2024-01-01T15:35:00+05:30");
        assert_eq!(
            rfc3339(t, zone_offset("Etc/GMT+8").unwrap()),
            "2024-01-01T02:05:00-08:00"
        );
        // The annotation is in the CronJob's zone, at that instant's offset.
        let berlin = super::super::cron_schedule::zone("Europe/Berlin").unwrap();
        let summer: Timestamp = "2024-07-01T10:05:00Z".parse().unwrap();
        let j = job_for(&cj, summer, &berlin);
        assert_eq!(
            j.annotations().get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2024-07-01T12:05:00+02:00")
        );
    }

    #[test]
    fn schedule_and_zone_resolution() {
        let spec = |s: &str, z: Option<&str>| cron_job(s, z).spec.unwrap();
        let now: Timestamp = "2024-07-01T00:00:00Z".parse().unwrap();
        let offset = |tz: TimeZone| tz.to_offset(now).seconds();
        let (_, tz) = schedule_of(&spec("0 * * * *", None)).unwrap();
        assert_eq!(offset(tz), 0);
        let (_, tz) = schedule_of(&spec("0 * * * *", Some("Etc/GMT-3"))).unwrap();
        assert_eq!(offset(tz), 3 * 3600);
        let (_, tz) = schedule_of(&spec("0 * * * *", Some("America/New_York"))).unwrap();
        assert_eq!(offset(tz), -4 * 3600);
        // A CRON_TZ prefix wins over spec.timeZone, as in robfig/cron.
        let (_, tz) = schedule_of(&spec("CRON_TZ=UTC 0 * * * *", Some("Etc/GMT-3"))).unwrap();
        assert_eq!(offset(tz), 0);
        let (reason, _) = schedule_of(&spec("0 * * *", None)).unwrap_err();
        assert_eq!(reason, "UnparseableSchedule");
        let (reason, msg) = schedule_of(&spec("0 * * * *", Some("Mars/Olympus"))).unwrap_err();
        assert_eq!(reason, "UnknownTimeZone");
        assert!(msg.contains("Mars/Olympus"), "{msg}");
    }
}
