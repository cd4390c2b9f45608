//! `skiff-bench scheduler e2e`: pods bound per second end to end. In this
//! process: a single-member store (fsync on), the API server (TLS, admin
//! token) and the real scheduler loop (`scheduler::run` with the default
//! config). The scheduler calls the API in-process (`api::LocalApi`), as in
//! `skiff up` and `skiff server`; the creating clients and the watch are
//! kube-rs clients over HTTPS. N hollow Nodes are registered
//! (Ready, capacity, a node agent's labels; no agent runs), then M pending
//! pods are created as fast as several concurrent clients can, while a
//! watch records when each pod gets `spec.nodeName`. The clock runs from
//! the first create until every pod is bound.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::runtime::watcher;
use serde_json::json;
use skiff_control_plane::api::{ApiConfig, start};
use skiff_control_plane::controllers::runtime::SharedInformers;
use skiff_control_plane::scheduler::{self, SchedulerConfig};
use skiff_control_plane::store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

use super::{cluster, ms_or_us, percentile};

#[derive(clap::Args)]
pub struct E2eArgs {
    /// Hollow nodes to register.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pending pods to create and wait for.
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Creating clients (each its own kube::Client and connections).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Creates in flight per client.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Runs, each against a fresh store, API server and scheduler.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds to wait for every pod to be bound.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Where the store keeps its data.
    #[arg(long, default_value = "target/bench-scheduler")]
    data_dir: PathBuf,
}

/// What one run measured.
struct Run {
    created_in: Duration,
    bound_in: Duration,
    create_errors: usize,
    /// Create sent → bound seen by the watch, sorted.
    latencies: Vec<Duration>,
}

/// POSTs a pre-serialized body; errors on a non-2xx answer.
async fn post(client: &kube::Client, path: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(body)?;
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status}");
    Ok(())
}

/// A client of the API server in this process, authenticated by the admin
/// token, without a socket in between (what `skiff up` gives its components).
async fn in_process_client_of(
    kubeconfig: &str,
    local: skiff_control_plane::api::LocalApi,
) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt as _;
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let service = tower::ServiceBuilder::new()
        .option_layer(config.auth_layer()?)
        .map_err(tower::BoxError::from)
        .service(local);
    Ok(kube::Client::new(service, config.default_namespace))
}

async fn client_of(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig)?;
    Ok(kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?)
}

/// Registers hollow nodes: 32 cores, 128 GiB, 110 pods, Ready.
async fn register_nodes(client: &kube::Client, count: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for i in 0..count {
        let value = cluster::node(&format!("hollow-{i:04}"), i, 32, 128, 110);
        let node: Node = serde_json::from_value(value.clone())?;
        let name = node.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &node)
            .await
            .with_context(|| format!("creating node {name}"))?;
        let status = json!({ "status": value["status"] });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    Ok(())
}

fn pod_body(name: &str) -> Vec<u8> {
    let p = cluster::pod(
        "bench",
        name,
        "bench",
        "registry.example/apps/bench.wasm",
        "100m",
        "128Mi",
    );
    serde_json::to_vec(&p).unwrap_or_default()
}

/// Watches namespace `bench`; records when each `p-<i>` is first seen bound
/// (nanoseconds since `t0`, 0 = not yet) and returns once all are, after
/// signalling `ready` when the initial list is done.
async fn watch_bound(
    client: kube::Client,
    t0: Instant,
    bound_at: Arc<Vec<AtomicU64>>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Instant> {
    let api: Api<Pod> = Api::namespaced(client, "bench");
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut ready = Some(ready);
    let mut bound = 0;
    while let Some(ev) = stream.next().await {
        let pod = match ev? {
            watcher::Event::InitDone => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                continue;
            }
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
            _ => continue,
        };
        let on_node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let index = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("p-"))
            .and_then(|i| i.parse::<usize>().ok());
        if let (true, Some(slot)) = (on_node, index.and_then(|i| bound_at.get(i))) {
            let now = Instant::now();
            let nanos = now.duration_since(t0).as_nanos().max(1) as u64;
            if slot
                .compare_exchange(0, nanos, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                bound += 1;
                if bound == bound_at.len() {
                    return Ok(now);
                }
            }
        }
    }
    anyhow::bail!("pod watch ended after {bound} bound pods")
}

/// Creates one pod and waits until the scheduler bound it (scheduler is up).
async fn warm_up(client: &kube::Client, deadline: Duration) -> anyhow::Result<()> {
    post(client, "/api/v1/namespaces/bench/pods", pod_body("warmup")).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let wait = kube::runtime::wait::await_condition(api, "warmup", move |p: Option<&Pod>| {
        p.and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    });
    tokio::time::timeout(deadline, wait)
        .await
        .context("the scheduler did not bind the warm-up pod in time")??;
    Ok(())
}

async fn run_once(args: &E2eArgs, dir: PathBuf) -> anyhow::Result<Run> {
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let store = Store::open(StoreConfig::new(dir.join("store"), "https://127.0.0.1:0")).await?;
    let shutdown = CancellationToken::new();
    let handle = start(
        ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.clone(),
            san_hosts: vec![],
            audit_log: None,
            shutdown: shutdown.clone(),
        },
        store.clone(),
    )
    .await?;
    let client = client_of(&handle.admin_kubeconfig).await?;
    post(
        &client,
        "/api/v1/namespaces",
        serde_json::to_vec(&json!({"metadata": {"name": "bench"}}))?,
    )
    .await?;
    register_nodes(&client, args.nodes).await?;
    let sched_client = in_process_client_of(&handle.admin_kubeconfig, handle.local.clone()).await?;
    let sched = tokio::spawn(scheduler::run(
        sched_client.clone(),
        SchedulerConfig::default(),
        SharedInformers::new(sched_client, shutdown.child_token()),
        shutdown.child_token(),
    ));
    warm_up(&client, Duration::from_secs(60)).await?;

    let t0 = Instant::now();
    let bound_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.pods).map(|_| AtomicU64::new(0)).collect());
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.pods).map(|_| AtomicU64::new(0)).collect());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(watch_bound(
        client_of(&handle.admin_kubeconfig).await?,
        t0,
        bound_at.clone(),
        ready_tx,
    ));
    ready_rx.await.context("pod watch did not start")?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.pods)
            .map(|i| pod_body(&format!("p-{i}")))
            .collect(),
    );
    let mut creators = Vec::new();
    for _ in 0..args.clients.max(1) {
        creators.push(client_of(&handle.admin_kubeconfig).await?);
    }

    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let first = Instant::now();
    let mut tasks = Vec::new();
    for c in &creators {
        for _ in 0..args.in_flight.max(1) {
            let (c, next, errors) = (c.clone(), next.clone(), errors.clone());
            let (bodies, sent_at) = (bodies.clone(), sent_at.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    sent_at[i].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    if post(&c, "/api/v1/namespaces/bench/pods", body.clone())
                        .await
                        .is_err()
                    {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await?;
    }
    let created_in = first.elapsed();
    let create_errors = errors.load(Ordering::Relaxed);
    anyhow::ensure!(create_errors == 0, "{create_errors} creates failed");
    let last = tokio::time::timeout(Duration::from_secs(args.timeout), watch)
        .await
        .map_err(|_| {
            let bound = bound_at
                .iter()
                .filter(|b| b.load(Ordering::Relaxed) > 0)
                .count();
            anyhow::anyhow!(
                "only {bound} of {} pods bound in {} s",
                args.pods,
                args.timeout
            )
        })???;
    let bound_in = last.duration_since(first);
    let mut latencies: Vec<Duration> = sent_at
        .iter()
        .zip(bound_at.iter())
        .map(|(s, b)| {
            Duration::from_nanos(
                b.load(Ordering::Relaxed)
                    .saturating_sub(s.load(Ordering::Relaxed)),
            )
        })
        .collect();
    latencies.sort();

    shutdown.cancel();
    let _ = sched.await;
    handle.stopped().await;
    store.shutdown().await;
    Ok(Run {
        created_in,
        bound_in,
        create_errors,
        latencies,
    })
}

impl Run {
    fn bound_per_second(&self, pods: usize) -> f64 {
        pods as f64 / self.bound_in.as_secs_f64()
    }

    fn row(&self, label: &str, pods: usize) -> String {
        format!(
            "| {label} | {pods} | {:.0} | {:.0} | {:.2} s | {} | {} | {} |",
            pods as f64 / self.created_in.as_secs_f64(),
            self.bound_per_second(pods),
            self.bound_in.as_secs_f64(),
            ms_or_us(percentile(&self.latencies, 0.5)),
            ms_or_us(percentile(&self.latencies, 0.99)),
            self.create_errors,
        )
    }
}

pub async fn run(args: E2eArgs) -> anyhow::Result<()> {
    println!(
        "## Scheduler end to end\n\n`cargo run --release -p skiff-bench -- scheduler e2e` ({} hollow nodes, {} pods created by {} clients × {} in flight; API server over TLS, single-member store with fsync, real scheduler loop, all in one process on {} cores)\n",
        args.nodes,
        args.pods,
        args.clients,
        args.in_flight,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| run | pods | creates/s | pods bound/s | all bound after | create → bound p50 | p99 | create errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut runs = Vec::new();
    for i in 0..args.runs.max(1) {
        let r = run_once(&args, args.data_dir.join(format!("run-{i}"))).await?;
        eprintln!("{}", r.row(&format!("run {}", i + 1), args.pods));
        println!("{}", r.row(&(i + 1).to_string(), args.pods));
        runs.push(r);
    }
    runs.sort_by(|a, b| {
        a.bound_per_second(args.pods)
            .total_cmp(&b.bound_per_second(args.pods))
    });
    let median = &runs[runs.len() / 2];
    println!("{}", median.row("**median**", args.pods));
    Ok(())
}
