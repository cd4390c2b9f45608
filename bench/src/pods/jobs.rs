//! `skiff-bench pods jobs`: short wasm pods (`samples/wasm/hello.wasm`, a
//! WASI p1 command that prints and exits 0) completed per second through the
//! API, on a fresh `skiff up` per case: N bare pods with `restartPolicy:
//! Never` created by a few concurrent clients (created → `Succeeded`), and
//! one Job with `completions: N, parallelism: P` (Job created → its last pod
//! `Succeeded`, which includes the Job controller's pod creation). A third
//! row runs the same module through skiff's wasm runtime alone (in this
//! process, no API, no node agent, no log files): what a runtime-level
//! figure such as runwasi's tasks/s compares with.

use std::path::Path;
use std::time::{Duration, Instant};

use super::cluster::{Cluster, temp_data_dir};
use super::phases::{Phases, count};
use super::{
    Pace, cpu_ms, create_pods, median_duration, median_of, ms, namespace, percentile, pod, send,
};

#[derive(clap::Args)]
pub struct JobsArgs {
    /// Bare pods, and the Job's completions.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Concurrent clients creating the bare pods.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// The Job's parallelism.
    #[arg(long, default_value_t = 100)]
    parallelism: usize,
    /// The short-lived command image.
    #[arg(long, default_value = "samples/wasm/hello.wasm")]
    image: String,
    /// Runs of each case (each on a fresh `skiff up`); the median row summarises them.
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

struct Run {
    succeeded: usize,
    creates_per_sec: f64,
    completed_per_sec: f64,
    /// Per-pod latencies (bare pods only: a Job's pods are created by the controller).
    p50: Option<Duration>,
    p99: Option<Duration>,
    wall: Duration,
    /// CPU time of the skiff process per succeeded pod.
    cpu_per_pod: Duration,
    /// Its user-mode part: without the kernel's share (file creation, whose
    /// cost on this machine's no-journal ext4 grows with the inodes recent
    /// runs deleted), the figure to compare skiff's own code by.
    user_cpu_per_pod: Duration,
}

pub async fn run(skiff: &Path, args: JobsArgs) -> anyhow::Result<()> {
    println!(
        "## Short wasm pods per second\n\n`skiff-bench pods jobs --pods {n} --clients {} --parallelism {} --runs {}` ({}); fresh `skiff up` per run; throughput = Succeeded pods / (first create sent → last pod seen Succeeded)\n",
        args.clients,
        args.parallelism,
        args.runs,
        args.image,
        n = args.pods,
    );
    println!(
        "| case | run | succeeded | creates/s | completed/s | p50 created → Succeeded | p99 | wall | skiff CPU per pod | of it user |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cases = [
        format!(
            "{} bare pods, restartPolicy Never, {} clients",
            args.pods, args.clients
        ),
        format!(
            "Job completions={} parallelism={}",
            args.pods, args.parallelism
        ),
        format!(
            "runtime only: {} runs, {} at a time (no API, no node)",
            args.pods, args.parallelism
        ),
    ];
    for (case, label) in cases.iter().enumerate() {
        let mut runs = Vec::new();
        for i in 0..args.runs.max(1) {
            if case == 2 {
                let r = runtime_only(&args).await?;
                print_row(label, &(i + 1).to_string(), &r);
                runs.push(r);
                continue;
            }
            let dir = temp_data_dir()?;
            let cluster = Cluster::start(skiff, dir.path()).await?;
            let result = if case == 0 {
                bare_pods(&cluster, &args).await
            } else {
                job(&cluster, &args).await
            };
            if result.is_err() {
                eprintln!("--- skiff log ---\n{}", cluster.log_tail());
            }
            cluster.stop().await?;
            let r = result?;
            print_row(label, &(i + 1).to_string(), &r);
            runs.push(r);
        }
        if runs.len() > 1 {
            let summary = Run {
                succeeded: median_of(&runs, |r| r.succeeded as f64) as usize,
                creates_per_sec: median_of(&runs, |r| r.creates_per_sec),
                completed_per_sec: median_of(&runs, |r| r.completed_per_sec),
                p50: runs[0]
                    .p50
                    .map(|_| median_duration(&runs, |r| r.p50.unwrap_or_default())),
                p99: runs[0]
                    .p99
                    .map(|_| median_duration(&runs, |r| r.p99.unwrap_or_default())),
                wall: median_duration(&runs, |r| r.wall),
                cpu_per_pod: median_duration(&runs, |r| r.cpu_per_pod),
                user_cpu_per_pod: median_duration(&runs, |r| r.user_cpu_per_pod),
            };
            print_row(label, "**median**", &summary);
        }
    }
    Ok(())
}

fn print_row(case: &str, run: &str, r: &Run) {
    println!(
        "| {case} | {run} | {} | {} | **{:.0}** | {} | {} | {} | {} | {} |",
        r.succeeded,
        if r.creates_per_sec > 0.0 {
            format!("{:.0}", r.creates_per_sec)
        } else {
            "—".into()
        },
        r.completed_per_sec,
        r.p50.map_or("—".into(), ms),
        r.p99.map_or("—".into(), ms),
        ms(r.wall),
        cpu_ms(r.cpu_per_pod),
        cpu_ms(r.user_cpu_per_pod)
    );
}

fn timeout_for(n: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(50 * n as u64)
}

async fn bare_pods(cluster: &Cluster, args: &JobsArgs) -> anyhow::Result<Run> {
    cluster.wait_node_ready(Duration::from_secs(30)).await?;
    namespace(&cluster.client, "bench").await?;
    let phases = Phases::start(&cluster.client, "bench").await?;
    let cpu_before = cluster.cpu_time();
    let user_before = cluster.user_cpu_time();
    let image = args.image.clone();
    let created = create_pods(
        &cluster.client,
        "bench",
        "hello",
        args.pods,
        Pace::Clients(args.clients),
        move |name| pod(name, &image, "Never"),
    )
    .await;
    if let Some(e) = &created.first_error {
        eprintln!("create failed ({} times), first: {e}", created.errors);
    }
    let expected = created.sent.len();
    phases
        .wait_for(timeout_for(expected), |s| {
            count(s, |p| p.succeeded) + count(s, |p| p.failed) >= expected
        })
        .await;
    let cpu = cluster.cpu_time().saturating_sub(cpu_before);
    let user = cluster.user_cpu_time().saturating_sub(user_before);
    let seen = phases.snapshot();
    let mut latencies: Vec<Duration> = created
        .sent
        .iter()
        .filter_map(|(name, sent)| {
            Some(seen.get(name)?.succeeded?.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort();
    let last = seen.values().filter_map(|s| s.succeeded).max();
    let wall = last
        .map(|t| t.saturating_duration_since(created.began))
        .unwrap_or_default();
    Ok(Run {
        succeeded: latencies.len(),
        creates_per_sec: expected as f64 / created.elapsed.as_secs_f64(),
        completed_per_sec: latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50: Some(percentile(&latencies, 0.5)),
        p99: Some(percentile(&latencies, 0.99)),
        wall,
        cpu_per_pod: cpu / latencies.len().max(1) as u32,
        user_cpu_per_pod: user / latencies.len().max(1) as u32,
    })
}

async fn job(cluster: &Cluster, args: &JobsArgs) -> anyhow::Result<Run> {
    cluster.wait_node_ready(Duration::from_secs(30)).await?;
    namespace(&cluster.client, "bench").await?;
    let phases = Phases::start(&cluster.client, "bench").await?;
    let manifest = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "hello" },
        "spec": {
            "completions": args.pods,
            "parallelism": args.parallelism,
            "backoffLimit": 1000,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "app", "image": args.image }],
            } },
        },
    });
    let cpu_before = cluster.cpu_time();
    let user_before = cluster.user_cpu_time();
    let began = Instant::now();
    send(
        &cluster.client,
        "POST",
        "/apis/batch/v1/namespaces/bench/jobs",
        &manifest,
    )
    .await?;
    let created = Instant::now();
    let n = args.pods;
    if !phases
        .wait_for(timeout_for(n), |s| count(s, |p| p.succeeded) >= n)
        .await
    {
        eprintln!(
            "only {} of {n} Job pods Succeeded in time",
            count(&phases.snapshot(), |p| p.succeeded)
        );
    }
    let cpu = cluster.cpu_time().saturating_sub(cpu_before);
    let user = cluster.user_cpu_time().saturating_sub(user_before);
    let seen = phases.snapshot();
    let succeeded = count(&seen, |p| p.succeeded);
    let wall = seen
        .values()
        .filter_map(|s| s.succeeded)
        .max()
        .map(|t| t.saturating_duration_since(began))
        .unwrap_or_default();
    // The Job's own status, as `kubectl get job` would show it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut job_succeeded = 0;
    while Instant::now() < deadline {
        let job: serde_json::Value = serde_json::from_slice(
            &super::cluster::get(
                &cluster.client,
                "/apis/batch/v1/namespaces/bench/jobs/hello",
            )
            .await?,
        )?;
        job_succeeded = job["status"]["succeeded"].as_u64().unwrap_or(0) as usize;
        if job_succeeded >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if job_succeeded < n {
        eprintln!("Job status shows {job_succeeded} of {n} succeeded");
    }
    Ok(Run {
        succeeded,
        creates_per_sec: 1.0 / created.duration_since(began).as_secs_f64().max(1e-9),
        completed_per_sec: succeeded as f64 / wall.as_secs_f64().max(1e-9),
        p50: None,
        p99: None,
        wall,
        cpu_per_pod: cpu / succeeded.max(1) as u32,
        user_cpu_per_pod: user / succeeded.max(1) as u32,
    })
}

/// `pods` runs of the image through `WasmRuntime` in this process, `parallelism` at a time.
async fn runtime_only(args: &JobsArgs) -> anyhow::Result<Run> {
    use skiff_runtime_wasm::{
        ExitReason, InstanceSpec, PullOptions, WasmRuntime, WasmRuntimeConfig,
    };
    let cache = temp_data_dir()?;
    let rt = WasmRuntime::new(WasmRuntimeConfig {
        cache_dir: cache.path().to_path_buf(),
        ..Default::default()
    })?;
    let artifact = rt.pull(&args.image, &PullOptions::default()).await?;
    let spec = |i: usize| InstanceSpec {
        name: format!("hello-{i}"),
        args: vec!["hello".into()],
        env: vec![("POD_NAME".into(), format!("hello-{i}"))],
        preopens: vec![],
        stdout: None,
        stderr: None,
        stdin: None,
        memory_limit_bytes: None,
        cpu_limit_millicores: None,
        allow_outbound_network: false,
        listen: None,
    };
    // One unmeasured run: the module is compiled and the code paged in.
    rt.run(&artifact, spec(0)).await?.wait().await;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = super::cluster::cpu_times_of(std::process::id())?;
    let began = Instant::now();
    let tasks: Vec<_> = (0..args.parallelism.max(1))
        .map(|_| {
            let (rt, artifact, next, n) = (rt.clone(), artifact.clone(), next.clone(), args.pods);
            tokio::spawn(async move {
                let mut ok = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return ok;
                    }
                    if let Ok(instance) = rt.run(&artifact, spec(i)).await
                        && instance.wait().await.reason == ExitReason::Completed
                    {
                        ok += 1;
                    }
                }
            })
        })
        .collect();
    let mut succeeded = 0;
    for t in tasks {
        succeeded += t.await.unwrap_or(0);
    }
    let wall = began.elapsed();
    let cpu_after = super::cluster::cpu_times_of(std::process::id())?;
    let user = cpu_after.user.saturating_sub(cpu_before.user);
    let cpu =
        (cpu_after.user + cpu_after.system).saturating_sub(cpu_before.user + cpu_before.system);
    Ok(Run {
        succeeded,
        creates_per_sec: 0.0,
        completed_per_sec: succeeded as f64 / wall.as_secs_f64().max(1e-9),
        p50: None,
        p99: None,
        wall,
        cpu_per_pod: cpu / succeeded.max(1) as u32,
        user_cpu_per_pod: user / succeeded.max(1) as u32,
    })
}
