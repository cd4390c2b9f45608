//! `skiff-bench pods ...`: the node and wasm benchmarks, each against a real
//! `skiff up` child process (release build) driven through the Kubernetes API
//! with kube-rs: pod start-up latency (`startup.rs`), short Job pods per
//! second (`jobs.rs`), resident memory per idle wasi:http pod (`memory.rs`),
//! `skiff up`'s own time to ready and idle memory (`up.rs`), and requests/s
//! to one wasi:http pod against `wasmtime serve` (`http.rs`). The child
//! process is `cluster.rs`; the watch that timestamps phases is `phases.rs`.
//! Run from the repository root so `samples/wasm/*.wasm` image paths resolve.

mod cluster;
mod http;
mod jobs;
mod memory;
mod phases;
mod startup;
mod up;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::Mutex;

#[derive(clap::Args)]
pub struct PodsArgs {
    /// The skiff binary to start (`cargo build --release --bin skiff`).
    #[arg(long, global = true, default_value = "target/release/skiff")]
    skiff: PathBuf,
    #[command(subcommand)]
    command: PodsCommand,
}

#[derive(clap::Subcommand)]
enum PodsCommand {
    /// Create → Running latency of wasm pods, in a burst and at a paced rate.
    Startup(startup::StartupArgs),
    /// Short wasm pods (bare, restartPolicy Never, and a Job) completed per second.
    Jobs(jobs::JobsArgs),
    /// Resident memory per idle wasi:http pod on one node.
    Memory(memory::MemoryArgs),
    /// `skiff up` cold and warm time to /readyz, and its idle memory.
    Up(up::UpArgs),
    /// Requests/s to one wasi:http pod on skiff up versus `wasmtime serve`.
    Http(http::HttpArgs),
}

pub async fn run(args: PodsArgs) -> anyhow::Result<()> {
    println!(
        "<!-- nproc {}, skiff {} -->\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.skiff.display()
    );
    match args.command {
        PodsCommand::Startup(a) => startup::run(&args.skiff, a).await,
        PodsCommand::Jobs(a) => jobs::run(&args.skiff, a).await,
        PodsCommand::Memory(a) => memory::run(&args.skiff, a).await,
        PodsCommand::Up(a) => up::run(&args.skiff, a).await,
        PodsCommand::Http(a) => http::run(&args.skiff, a).await,
    }
}

/// The sample images that are wasi:http components (served on containerPort 8080).
const HTTP_SAMPLES: &[&str] = &["samples/wasm/http-echo.wasm", "samples/wasm/web.wasm"];

/// A bare pod of `image` with one container; wasi:http samples get containerPort 8080.
pub(crate) fn pod(name: &str, image: &str, restart_policy: &str) -> serde_json::Value {
    let mut container = serde_json::json!({ "name": "app", "image": image });
    if HTTP_SAMPLES.contains(&image) {
        container["ports"] = serde_json::json!([{ "containerPort": 8080 }]);
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "bench" } },
        "spec": { "restartPolicy": restart_policy, "containers": [container] },
    })
}

/// Sends one JSON request to the API; fails on a non-success status.
pub(crate) async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<Vec<u8>> {
    let req = ::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(body)?))?;
    let resp = client.send(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes().to_vec();
    anyhow::ensure!(
        status.is_success(),
        "{method} {path}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(bytes)
}

/// Creates a namespace and waits until pods can be created in it.
pub(crate) async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    send(
        client,
        "POST",
        "/api/v1/namespaces",
        &serde_json::json!({ "metadata": { "name": name } }),
    )
    .await
    .map(|_| ())
}

/// When each pod's create request was sent, and how many creates failed.
pub(crate) struct Created {
    pub sent: HashMap<String, Instant>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub began: Instant,
    pub elapsed: Duration,
}

/// How `create_pods` issues its requests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// `n` clients, each sending its next create when the last one answered.
    Clients(usize),
    /// One create every 1/rate s (open loop), each on its own task.
    Rate(u64),
}

/// Creates pods `{prefix}-0..n` from `manifest(name)` in `ns`.
pub(crate) async fn create_pods(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    n: usize,
    pace: Pace,
    manifest: impl Fn(&str) -> serde_json::Value + Send + Sync + 'static,
) -> Created {
    let manifest = Arc::new(manifest);
    let results = Arc::new(Mutex::new((HashMap::new(), 0usize, None::<String>)));
    let path = Arc::new(format!("/api/v1/namespaces/{ns}/pods"));
    let one = {
        let (client, results, path, prefix) = (
            client.clone(),
            results.clone(),
            path.clone(),
            prefix.to_string(),
        );
        move |i: usize| {
            let (client, results, path, manifest) = (
                client.clone(),
                results.clone(),
                path.clone(),
                manifest.clone(),
            );
            let name = format!("{prefix}-{i}");
            async move {
                let body = manifest(&name);
                let sent = Instant::now();
                let result = send(&client, "POST", &path, &body).await;
                let mut r = results.lock().await;
                match result {
                    Ok(_) => {
                        r.0.insert(name, sent);
                    }
                    Err(e) => {
                        r.1 += 1;
                        r.2.get_or_insert(e.to_string());
                    }
                }
            }
        }
    };
    let began = Instant::now();
    match pace {
        Pace::Clients(clients) => {
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..clients.max(1))
                .map(|_| {
                    let (next, one) = (next.clone(), one.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n {
                                return;
                            }
                            one(i).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        }
        Pace::Rate(rate) => {
            let mut ticker =
                tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                ticker.tick().await;
                tasks.push(tokio::spawn(one(i)));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    let elapsed = began.elapsed();
    let mut r = results.lock().await;
    Created {
        sent: std::mem::take(&mut r.0),
        errors: r.1,
        first_error: r.2.take(),
        began,
        elapsed,
    }
}

/// The value at fraction `p` of sorted `values` (nearest rank).
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A per-pod CPU time, to the microsecond: builds differ by tenths of a
/// millisecond there.
pub(crate) fn cpu_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The median of `f` over `runs`.
pub(crate) fn median_of<T>(runs: &[T], f: impl Fn(&T) -> f64) -> f64 {
    median(&mut runs.iter().map(f).collect::<Vec<_>>())
}

/// The median duration of `f` over `runs`.
pub(crate) fn median_duration<T>(runs: &[T], f: impl Fn(&T) -> Duration) -> Duration {
    Duration::from_secs_f64(median_of(runs, |r| f(r).as_secs_f64()))
}

/// The median of `values` (0 when empty).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
