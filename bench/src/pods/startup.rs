//! `skiff-bench pods startup`: for each image, N wasm pods created through
//! the API (scheduled by skiff's scheduler onto its one node), each timed
//! from its create request being sent to the watch first showing it
//! `Running`. Two modes on a fresh `skiff up` each: a burst from a few
//! concurrent clients (pods queue up behind the node; the wall time is the
//! figure) and a paced open loop (per-pod latency is meaningful). As in
//! Kubernetes' pod start-up SLO, which excludes image pulls, one pod of the
//! image runs before the clock starts, so the image is fetched and compiled
//! (the node's compiled-artifact cache) once, untimed; `--cold` times the
//! first pods too.

use std::path::Path;
use std::time::Duration;

use super::cluster::{Cluster, temp_data_dir};
use super::phases::{Phases, count};
use super::{Pace, create_pods, median_duration, median_of, ms, namespace, percentile, pod};

#[derive(clap::Args)]
pub struct StartupArgs {
    /// Pods per run.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Concurrent clients of the burst mode.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Creates per second of the paced mode.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Images to measure (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "samples/wasm/http-echo.wasm,samples/wasm/worker.wasm"
    )]
    images: Vec<String>,
    /// Runs of each case (each on a fresh `skiff up`); the median row summarises them.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Do not run a pod of the image before the clock: the first pods wait
    /// for its fetch and compilation.
    #[arg(long)]
    cold: bool,
}

/// One run's figures.
struct Run {
    running: usize,
    errors: usize,
    created_per_sec: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    /// Medians of the two legs: create sent → bound (scheduler), bound → Running (node).
    to_bound: Duration,
    bound_to_running: Duration,
    wall: Duration,
    /// CPU time of the skiff process per Running pod.
    cpu_per_pod: Duration,
}

pub async fn run(skiff: &Path, args: StartupArgs) -> anyhow::Result<()> {
    println!(
        "## Pod start-up\n\n`skiff-bench pods startup --pods {} --clients {} --rate {} --runs {}{}`: create request sent → first seen `Running` in a watch; bare pods, scheduled by skiff's scheduler, one node, fresh `skiff up` per run, {}\n",
        args.pods,
        args.clients,
        args.rate,
        args.runs,
        if args.cold { " --cold" } else { "" },
        if args.cold {
            "the image fetched and compiled by the first pods (timed)"
        } else {
            "the image fetched and compiled by one untimed pod first"
        }
    );
    println!(
        "| image | mode | run | running/pods | create errors | creates/s | p50 | p90 | p99 | max | p50 sent → bound | p50 bound → Running | wall (first create → last Running) | skiff CPU per pod |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for image in &args.images {
        let short = image.rsplit('/').next().unwrap_or(image);
        for pace in [Pace::Clients(args.clients), Pace::Rate(args.rate)] {
            let mode = match pace {
                Pace::Clients(c) => format!("burst, {c} clients"),
                Pace::Rate(r) => format!("paced {r}/s"),
            };
            let mut runs = Vec::new();
            for i in 0..args.runs.max(1) {
                let r = one_run(skiff, image, args.pods, pace, args.cold).await?;
                print_row(short, &mode, &(i + 1).to_string(), args.pods, &r);
                runs.push(r);
            }
            if runs.len() > 1 {
                let summary = Run {
                    running: median_of(&runs, |r| r.running as f64) as usize,
                    errors: median_of(&runs, |r| r.errors as f64) as usize,
                    created_per_sec: median_of(&runs, |r| r.created_per_sec),
                    p50: median_duration(&runs, |r| r.p50),
                    p90: median_duration(&runs, |r| r.p90),
                    p99: median_duration(&runs, |r| r.p99),
                    max: median_duration(&runs, |r| r.max),
                    to_bound: median_duration(&runs, |r| r.to_bound),
                    bound_to_running: median_duration(&runs, |r| r.bound_to_running),
                    wall: median_duration(&runs, |r| r.wall),
                    cpu_per_pod: median_duration(&runs, |r| r.cpu_per_pod),
                };
                print_row(short, &mode, "**median**", args.pods, &summary);
            }
        }
    }
    Ok(())
}

fn print_row(image: &str, mode: &str, run: &str, pods: usize, r: &Run) {
    println!(
        "| {image} | {mode} | {run} | {}/{pods} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.running,
        r.errors,
        r.created_per_sec,
        ms(r.p50),
        ms(r.p90),
        ms(r.p99),
        ms(r.max),
        ms(r.to_bound),
        ms(r.bound_to_running),
        ms(r.wall),
        ms(r.cpu_per_pod)
    );
}

async fn one_run(
    skiff: &Path,
    image: &str,
    n: usize,
    pace: Pace,
    cold: bool,
) -> anyhow::Result<Run> {
    let dir = temp_data_dir()?;
    let cluster = Cluster::start(skiff, dir.path()).await?;
    let result = measure(&cluster, image, n, pace, cold).await;
    if result.is_err() {
        eprintln!("--- skiff log ---\n{}", cluster.log_tail());
    }
    cluster.stop().await?;
    result
}

async fn measure(
    cluster: &Cluster,
    image: &str,
    n: usize,
    pace: Pace,
    cold: bool,
) -> anyhow::Result<Run> {
    cluster.wait_node_ready(Duration::from_secs(30)).await?;
    if !cold {
        warm_up(cluster, image).await?;
    }
    namespace(&cluster.client, "bench").await?;
    let phases = Phases::start(&cluster.client, "bench").await?;
    let cpu_before = cluster.cpu_time();
    let image_owned = image.to_string();
    let created = create_pods(&cluster.client, "bench", "p", n, pace, move |name| {
        pod(name, &image_owned, "Always")
    })
    .await;
    if let Some(e) = &created.first_error {
        eprintln!("create failed ({} times), first: {e}", created.errors);
    }
    let expected = created.sent.len();
    let timeout = Duration::from_secs(60) + Duration::from_millis(100 * n as u64);
    if !phases
        .wait_for(timeout, |s| count(s, |p| p.running) >= expected)
        .await
    {
        eprintln!(
            "only {} of {expected} pods Running after {timeout:?}",
            count(&phases.snapshot(), |p| p.running)
        );
    }
    let cpu = cluster.cpu_time().saturating_sub(cpu_before);
    let seen = phases.snapshot();
    let mut latencies: Vec<Duration> = created
        .sent
        .iter()
        .filter_map(|(name, sent)| Some(seen.get(name)?.running?.saturating_duration_since(*sent)))
        .collect();
    latencies.sort();
    let mut to_bound = Vec::new();
    let mut bound_to_running = Vec::new();
    for (name, sent) in &created.sent {
        if let Some(s) = seen.get(name)
            && let (Some(bound), Some(running)) = (s.scheduled, s.running)
        {
            to_bound.push(bound.saturating_duration_since(*sent));
            bound_to_running.push(running.saturating_duration_since(bound));
        }
    }
    to_bound.sort();
    bound_to_running.sort();
    let last_running = seen.values().filter_map(|s| s.running).max();
    Ok(Run {
        running: latencies.len(),
        errors: created.errors,
        created_per_sec: expected as f64 / created.elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p90: percentile(&latencies, 0.90),
        p99: percentile(&latencies, 0.99),
        max: percentile(&latencies, 1.0),
        to_bound: percentile(&to_bound, 0.5),
        bound_to_running: percentile(&bound_to_running, 0.5),
        wall: last_running
            .map(|t| t.saturating_duration_since(created.began))
            .unwrap_or_default(),
        cpu_per_pod: cpu / latencies.len().max(1) as u32,
    })
}

/// Runs one pod of `image` in namespace `warm-up` until it is Running, so
/// the node has fetched and compiled the image before the clock starts.
async fn warm_up(cluster: &Cluster, image: &str) -> anyhow::Result<()> {
    namespace(&cluster.client, "warm-up").await?;
    let phases = Phases::start(&cluster.client, "warm-up").await?;
    let image_owned = image.to_string();
    create_pods(
        &cluster.client,
        "warm-up",
        "w",
        1,
        Pace::Clients(1),
        move |name| pod(name, &image_owned, "Always"),
    )
    .await;
    anyhow::ensure!(
        phases
            .wait_for(Duration::from_secs(60), |s| count(s, |p| p.running) >= 1)
            .await,
        "the warm-up pod of {image} was not Running within 60 s"
    );
    Ok(())
}
