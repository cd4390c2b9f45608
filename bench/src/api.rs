//! `skiff-bench api`: the Kubernetes API server in this process in front of
//! a single-member store, driven over HTTPS by kube-rs: create and get at a
//! fixed rate (open loop, default 1,000 requests/s), a list of 10,000 pods,
//! and 1,000 watchers each receiving one event (delivery latency).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use http_body_util::BodyExt;
use kube::config::Kubeconfig;
use serde_json::json;
use skiff_control_plane::api::{ApiConfig, start};
use skiff_control_plane::store::{Store, StoreConfig};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct ApiArgs {
    /// Requests per second of the create and get runs.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Measured seconds of the create and get runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Pods in the list benchmark.
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// Concurrent watchers in the watch benchmark.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Where the store keeps its data.
    #[arg(long, default_value = "target/bench-api")]
    data_dir: PathBuf,
}

fn pod(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "bench" } },
        "spec": { "containers": [{ "name": "c", "image": "samples/wasm/hello.wasm" }] },
    })
}

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Vec<u8>> {
    let bytes = body
        .map(serde_json::to_vec)
        .transpose()?
        .unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(bytes)?;
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    anyhow::ensure!(status.is_success(), "{method} {path}: {status}");
    Ok(body)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Issues `op(i)` at `rate` per second for one warm-up second plus `seconds`
/// (open loop); returns the sorted latencies and errors of the measured part.
async fn open_loop<F, Fut>(rate: u64, seconds: u64, op: F) -> (Vec<Duration>, usize)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..rate * (seconds + 1) {
        ticker.tick().await;
        let (op, results) = (op.clone(), results.clone());
        let measured = i >= rate;
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let ok = op(i).await.is_ok();
            if !measured {
                return;
            }
            let mut r = results.lock().await;
            if ok {
                r.0.push(began.elapsed())
            } else {
                r.1 += 1
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut r = results.lock().await;
    r.0.sort();
    (std::mem::take(&mut r.0), r.1)
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("clearing {}", args.data_dir.display()))?;
    }
    let store = Store::open(StoreConfig::new(
        args.data_dir.join("store"),
        "https://127.0.0.1:0",
    ))
    .await?;
    let shutdown = CancellationToken::new();
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: args.data_dir.clone(),
        san_hosts: vec![],
        audit_log: None,
        shutdown: shutdown.clone(),
    };
    let handle = start(config, store.clone()).await?;
    let kubeconfig = Kubeconfig::from_yaml(&handle.admin_kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?;
    send(
        &client,
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"metadata": {"name": "bench"}})),
    )
    .await?;

    println!(
        "## API\n\n`cargo run --release -p skiff-bench -- api` (rate {}/s, {} s measured after 1 s warm-up; TLS, admin token, single-member store, fsync on)\n",
        args.rate, args.seconds
    );
    println!("| case | requests | errors | p50 | p99 |\n|---|---|---|---|---|");
    let c = client.clone();
    let (lat, errors) = open_loop(args.rate, args.seconds, move |i| {
        let c = c.clone();
        async move {
            send(
                &c,
                "POST",
                "/api/v1/namespaces/bench/pods",
                Some(&pod(&format!("p-{i}"))),
            )
            .await
            .map(|_| ())
        }
    })
    .await;
    println!(
        "| create pod @ {}/s | {} | {errors} | {} | {} |",
        args.rate,
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    let created = (args.seconds + 1) * args.rate;
    let c = client.clone();
    let (lat, errors) = open_loop(args.rate, args.seconds, move |i| {
        let c = c.clone();
        async move {
            send(
                &c,
                "GET",
                &format!("/api/v1/namespaces/bench/pods/p-{}", i % created.max(1)),
                None,
            )
            .await
            .map(|_| ())
        }
    })
    .await;
    println!(
        "| get pod @ {}/s | {} | {errors} | {} | {} |",
        args.rate,
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );

    // Fill up to list_pods with 32 concurrent creators, then list them all.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(created));
    let target = args.list_pods as u64;
    let fillers: Vec<_> = (0..32)
        .map(|_| {
            let (c, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= target {
                        return;
                    }
                    let _ = send(
                        &c,
                        "POST",
                        "/api/v1/namespaces/bench/pods",
                        Some(&pod(&format!("p-{i}"))),
                    )
                    .await;
                }
            })
        })
        .collect();
    for f in fillers {
        let _ = f.await;
    }
    let mut lists = Vec::new();
    let mut items = 0;
    for _ in 0..5 {
        let began = Instant::now();
        let body = send(&client, "GET", "/api/v1/namespaces/bench/pods", None).await?;
        lists.push(began.elapsed());
        items = serde_json::from_slice::<serde_json::Value>(&body)?["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
    }
    lists.sort();
    println!(
        "| list {items} pods (5 runs) | 5 | 0 | {} | {} |",
        ms(percentile(&lists, 0.5)),
        ms(percentile(&lists, 1.0))
    );

    // Watchers: each opens a watch on the configmaps of the namespace and reports when it sees the update.
    send(
        &client,
        "POST",
        "/api/v1/namespaces/bench/configmaps",
        Some(&json!({"metadata": {"name": "signal"}})),
    )
    .await?;
    let rv = serde_json::from_slice::<serde_json::Value>(
        &send(
            &client,
            "GET",
            "/api/v1/namespaces/bench/configmaps/signal",
            None,
        )
        .await?,
    )?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.watchers);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<Instant>(args.watchers);
    for _ in 0..args.watchers {
        let (c, rv, ready_tx, seen_tx) = (
            client.clone(),
            rv.clone(),
            ready_tx.clone(),
            seen_tx.clone(),
        );
        tokio::spawn(async move {
            let path = format!(
                "/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=120"
            );
            let Ok(req) = http::Request::builder().uri(path).body(Vec::new()) else {
                return;
            };
            let Ok(resp) = c.send(req.map(kube::client::Body::from)).await else {
                return;
            };
            let _ = ready_tx.send(()).await;
            let mut stream = resp.into_body().into_data_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                if chunk.windows(8).any(|w| w == b"MODIFIED") {
                    let _ = seen_tx.send(Instant::now()).await;
                    return;
                }
            }
        });
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < args.watchers {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            _ => break,
        }
    }
    let req = http::Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/bench/configmaps/signal")
        .header("content-type", "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"data": {"go": "1"}}))?)?;
    let sent = Instant::now();
    anyhow::ensure!(
        client
            .send(req.map(kube::client::Body::from))
            .await?
            .status()
            .is_success(),
        "signal patch failed"
    );
    drop(seen_tx);
    let mut deliveries = Vec::new();
    while deliveries.len() < ready {
        match tokio::time::timeout(Duration::from_secs(30), seen_rx.recv()).await {
            Ok(Some(at)) => deliveries.push(at.saturating_duration_since(sent)),
            _ => break,
        }
    }
    deliveries.sort();
    println!(
        "| {} watchers, one event each | {} delivered | {} | {} | {} |",
        args.watchers,
        deliveries.len(),
        ready.saturating_sub(deliveries.len()),
        ms(percentile(&deliveries, 0.5)),
        ms(percentile(&deliveries, 0.99))
    );
    shutdown.cancel();
    handle.stopped().await;
    store.shutdown().await;
    Ok(())
}
