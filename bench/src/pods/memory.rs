//! `skiff-bench pods memory`: resident memory per idle wasi:http pod on one
//! node, as users run it: the VmRSS of the whole `skiff up` process (store,
//! API server, scheduler, controllers and node agent included) with no pods,
//! then with N `http-echo` pods Running and idle, then after every pod has
//! answered one request through the node server's proxy.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, http_get, temp_data_dir};
use super::phases::{Phases, count};
use super::{Pace, create_pods, mib, ms, namespace, pod};

#[derive(clap::Args)]
pub struct MemoryArgs {
    /// Pod counts to measure (comma-separated), each on a fresh `skiff up`.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pods: Vec<usize>,
    /// Concurrent clients creating the pods.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds to let the process settle before each reading.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
    /// The wasi:http component.
    #[arg(long, default_value = "samples/wasm/http-echo.wasm")]
    image: String,
}

pub async fn run(skiff: &Path, args: MemoryArgs) -> anyhow::Result<()> {
    println!(
        "## Memory per idle wasi:http pod\n\n`skiff-bench pods memory --pods {}` ({}): VmRSS of the `skiff up` process (everything in one process), {} s settle before each reading; per pod = (idle − empty) / pods\n",
        args.pods
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        args.image,
        args.settle_seconds
    );
    println!(
        "| pods | Running | start wall | RSS empty | RSS idle | **per idle pod** | answered | RSS after one request each | per pod |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &args.pods {
        let dir = temp_data_dir()?;
        let cluster = Cluster::start(skiff, dir.path()).await?;
        let result = measure(&cluster, &args, n).await;
        if result.is_err() {
            eprintln!("--- skiff log ---\n{}", cluster.log_tail());
        }
        cluster.stop().await?;
        result?;
    }
    Ok(())
}

async fn measure(cluster: &Cluster, args: &MemoryArgs, n: usize) -> anyhow::Result<()> {
    let node = cluster.wait_node_ready(Duration::from_secs(30)).await?;
    namespace(&cluster.client, "bench").await?;
    let settle = Duration::from_secs(args.settle_seconds);
    tokio::time::sleep(settle).await;
    let empty = cluster.rss_bytes()?;
    let phases = Phases::start(&cluster.client, "bench").await?;
    let image = args.image.clone();
    let created = create_pods(
        &cluster.client,
        "bench",
        "idle",
        n,
        Pace::Clients(args.clients),
        move |name| pod(name, &image, "Always"),
    )
    .await;
    if let Some(e) = &created.first_error {
        eprintln!("create failed ({} times), first: {e}", created.errors);
    }
    let expected = created.sent.len();
    let timeout = Duration::from_secs(120) + Duration::from_millis(50 * n as u64);
    phases
        .wait_for(timeout, |s| count(s, |p| p.running) >= expected)
        .await;
    let seen = phases.snapshot();
    let running = count(&seen, |p| p.running);
    let wall = seen
        .values()
        .filter_map(|s| s.running)
        .max()
        .map(|t| t.saturating_duration_since(created.began))
        .unwrap_or_default();
    drop(phases);
    tokio::time::sleep(settle).await;
    let idle = cluster.rss_bytes()?;

    let answered = answer_all(
        &node.server_url,
        &created.sent.into_keys().collect::<Vec<_>>(),
    )
    .await;
    tokio::time::sleep(settle).await;
    let after = cluster.rss_bytes()?;
    println!(
        "| {n} | {running} | {} | {} | {} | **{:.0} KiB** | {answered} | {} | {:.0} KiB |",
        ms(wall),
        mib(empty),
        mib(idle),
        idle.saturating_sub(empty) as f64 / running.max(1) as f64 / 1024.0,
        mib(after),
        after.saturating_sub(empty) as f64 / running.max(1) as f64 / 1024.0,
    );
    Ok(())
}

/// GET /healthz of every pod through the node server's proxy, 16 at a time; how many answered 200.
async fn answer_all(node_url: &str, pods: &[String]) -> usize {
    let addr = node_url.trim_start_matches("http://").to_string();
    let pods = Arc::new(pods.to_vec());
    let (next, ok) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let began = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (addr, pods, next, ok) = (addr.clone(), pods.clone(), next.clone(), ok.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = pods.get(i) else { return };
                    let path = format!("/proxy/bench/{name}/8080/healthz");
                    if http_get(&addr, &path).await.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    eprintln!(
        "{} pods answered in {:?}",
        ok.load(Ordering::Relaxed),
        began.elapsed()
    );
    ok.load(Ordering::Relaxed)
}
