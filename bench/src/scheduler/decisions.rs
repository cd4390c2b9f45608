//! `skiff-bench scheduler decisions`: scheduling decisions per second in
//! this process. A `Snapshot` of 5,000 nodes and 50,000 pending pods (see
//! `cluster.rs`) goes through the real cycle `schedule(pod, &snapshot,
//! &profile)` with the default profile, pod after pod; each decision is
//! assumed into the snapshot as the scheduling loop does (`place_pod`), so
//! later pods see earlier placements. No API, no binding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use skiff_control_plane::scheduler::{PodInfo, ProfileConfig, Snapshot, schedule};

use super::cluster::{self, Kind};
use super::{ms_or_us, percentile};

#[derive(clap::Args)]
pub struct DecisionsArgs {
    /// Nodes in the snapshot.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pending pods to schedule, one decision each.
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    /// percentageOfNodesToScore values to run (0: the adaptive default).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    percentages: Vec<u32>,
    /// Runs per percentage (the table shows each and the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the synthetic cluster.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Plugins to leave out of the profile (to see what each costs).
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
}

/// One run: every pod scheduled once against a fresh copy of the snapshot.
struct Run {
    elapsed: Duration,
    /// Time this thread spent on a CPU (None where /proc does not say).
    on_cpu: Option<Duration>,
    scheduled: usize,
    unschedulable: usize,
    /// Per-decision latencies, sorted, with each pod's kind.
    latencies: Vec<Duration>,
    by_kind: BTreeMap<Kind, Vec<Duration>>,
    /// Per kind: unschedulable pods and the first one's message.
    failures: BTreeMap<Kind, (usize, String)>,
}

impl Run {
    fn per_second(&self) -> f64 {
        (self.scheduled + self.unschedulable) as f64 / self.elapsed.as_secs_f64()
    }

    /// Decisions per second of CPU time (robust to other load on the machine).
    fn per_cpu_second(&self) -> String {
        self.on_cpu.map_or("–".into(), |c| {
            format!(
                "{:.0}",
                (self.scheduled + self.unschedulable) as f64 / c.as_secs_f64()
            )
        })
    }
}

/// This thread's time on a CPU so far, from /proc/thread-self/schedstat.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn run_once(
    base: &Snapshot,
    pods: &[(Kind, Arc<PodInfo>)],
    percentage: u32,
    disabled: &[String],
) -> anyhow::Result<Run> {
    let profile = ProfileConfig {
        percentage_of_nodes_to_score: (percentage > 0).then_some(percentage),
        disabled: disabled.to_vec(),
        ..ProfileConfig::default()
    }
    .build();
    let mut snap = base.clone();
    let mut latencies = Vec::with_capacity(pods.len());
    let mut kinds = Vec::with_capacity(pods.len());
    let (mut scheduled, mut unschedulable) = (0, 0);
    let mut failures: BTreeMap<Kind, (usize, String)> = BTreeMap::new();
    let cpu_before = thread_cpu_time();
    let began = Instant::now();
    for (kind, pod) in pods {
        let t = Instant::now();
        match schedule(pod, &snap, &profile) {
            Ok(node) => {
                snap.place_pod(pod.clone(), &node);
                scheduled += 1;
            }
            Err(u) => {
                let elapsed = t.elapsed();
                unschedulable += 1;
                let f = failures.entry(*kind).or_insert_with(|| (0, u.to_string()));
                f.0 += 1;
                latencies.push(elapsed);
                kinds.push(*kind);
                continue;
            }
        }
        latencies.push(t.elapsed());
        kinds.push(*kind);
    }
    let elapsed = began.elapsed();
    let on_cpu = thread_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    check_no_overcommit(&snap)?;
    let mut by_kind: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
    for (k, l) in kinds.iter().zip(&latencies) {
        by_kind.entry(*k).or_default().push(*l);
    }
    for v in by_kind.values_mut() {
        v.sort();
    }
    latencies.sort();
    Ok(Run {
        elapsed,
        on_cpu,
        scheduled,
        unschedulable,
        latencies,
        by_kind,
        failures,
    })
}

/// Fails when an assumed placement pushed a node past its allocatable.
fn check_no_overcommit(snap: &Snapshot) -> anyhow::Result<()> {
    for n in snap.nodes() {
        let (a, r) = (&n.allocatable, &n.requested);
        anyhow::ensure!(
            r.milli_cpu <= a.milli_cpu && r.memory <= a.memory && r.pods <= a.pods,
            "node {} is overcommitted: requested {r:?} of {a:?}",
            n.name
        );
    }
    Ok(())
}

pub fn run(args: DecisionsArgs) -> anyhow::Result<()> {
    let built = Instant::now();
    let nodes: Vec<Node> = cluster::nodes(args.nodes, args.seed)
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?;
    let pods: Vec<(Kind, Pod)> = cluster::pods(args.pods, args.seed)
        .into_iter()
        .map(|(k, p)| Ok((k, serde_json::from_value(p)?)))
        .collect::<anyhow::Result<_>>()?;
    let base = Snapshot::new(&nodes, &[]);
    let converting = Instant::now();
    let infos: Vec<(Kind, Arc<PodInfo>)> = pods
        .iter()
        .map(|(k, p)| (*k, Arc::new(PodInfo::from_pod(p))))
        .collect();
    let from_pod = converting.elapsed() / pods.len().max(1) as u32;
    eprintln!(
        "built {} nodes and {} pods in {:.1} s",
        nodes.len(),
        pods.len(),
        built.elapsed().as_secs_f64()
    );

    println!(
        "## Scheduler decisions (in-process)\n\n`cargo run --release -p skiff-bench -- scheduler decisions` ({} nodes, {} pending pods, default profile, each decision assumed into the snapshot; {} cores)\n",
        args.nodes,
        args.pods,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| percentageOfNodesToScore | run | scheduled | unschedulable | decisions/s | per CPU-second | p50 | p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for &pct in &args.percentages {
        let label = if pct == 0 {
            format!("adaptive ({}%)", adaptive_percentage(args.nodes))
        } else {
            format!("{pct}%")
        };
        let mut runs = Vec::new();
        for i in 0..args.runs.max(1) {
            let r = run_once(&base, &infos, pct, &args.disable)?;
            eprintln!("{label} run {}: {:.0} decisions/s", i + 1, r.per_second());
            println!(
                "| {label} | {} | {} | {} | {:.0} | {} | {} | {} |",
                i + 1,
                r.scheduled,
                r.unschedulable,
                r.per_second(),
                r.per_cpu_second(),
                ms_or_us(percentile(&r.latencies, 0.5)),
                ms_or_us(percentile(&r.latencies, 0.99)),
            );
            runs.push(r);
        }
        runs.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        let median = runs.swap_remove(runs.len() / 2);
        println!(
            "| **{label}** | median | {} | {} | **{:.0}** | {} | {} | {} |",
            median.scheduled,
            median.unschedulable,
            median.per_second(),
            median.per_cpu_second(),
            ms_or_us(percentile(&median.latencies, 0.5)),
            ms_or_us(percentile(&median.latencies, 0.99)),
        );
        medians.push((label, median));
    }
    println!("\nPer pod kind (median run):\n");
    println!("| percentageOfNodesToScore | pods | share | unschedulable | p50 | p99 | mean |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (label, run) in &medians {
        for (kind, lat) in &run.by_kind {
            let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
            println!(
                "| {label} | {} | {:.0}% | {} | {} | {} | {} |",
                kind.label(),
                100.0 * lat.len() as f64 / args.pods.max(1) as f64,
                run.failures.get(kind).map_or(0, |f| f.0),
                ms_or_us(percentile(lat, 0.5)),
                ms_or_us(percentile(lat, 0.99)),
                ms_or_us(mean),
            );
        }
    }
    for (label, run) in &medians {
        for (kind, (n, message)) in &run.failures {
            println!(
                "\n{label}, {}: {n} unschedulable, e.g. \"{message}\"",
                kind.label()
            );
        }
    }
    println!(
        "\nPodInfo::from_pod (done by the loop before each cycle, not timed above): {} per pod.",
        ms_or_us(from_pod)
    );
    Ok(())
}

/// kube-scheduler's adaptive share of nodes to score.
fn adaptive_percentage(nodes: usize) -> usize {
    50usize.saturating_sub(nodes / 125).max(5)
}
