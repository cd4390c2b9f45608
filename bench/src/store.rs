//! `skiff-bench store`: puts of fixed-size values from 1 and 64 concurrent
//! clients, fsync on, against a single-member and a 3-member skiff store
//! (in this process, members talking HTTP over loopback) and against an
//! etcd endpoint (started by `scripts/bench-store.sh`), with one harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::RngCore;
use skiff_control_plane::store::{Store, StoreConfig, StoreOptions, Txn, TxnOp};

use crate::harness::{self, Stats};

#[derive(clap::Args)]
pub struct StoreArgs {
    /// etcd client URL (e.g. http://127.0.0.1:2379); etcd is skipped without it.
    #[arg(long)]
    etcd: Option<String>,
    /// Client URLs of a 3-member etcd cluster, comma-separated (the anchor for
    /// skiff's 3-member rows); skipped without it.
    #[arg(long, value_delimiter = ',')]
    etcd3: Vec<String>,
    /// Measured seconds per case (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent client counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Distinct keys written (round-robin).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Where skiff members keep their data (use the same disk as etcd's).
    #[arg(long, default_value = "target/bench-store")]
    data_dir: PathBuf,
}

fn key(keys: u64, clients: usize, client: usize, i: u64) -> String {
    format!(
        "/registry/bench/{:06}",
        (i * clients as u64 + client as u64) % keys
    )
}

async fn open_member(dir: &Path, id: u64, join: Option<String>) -> anyhow::Result<(Store, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let config = StoreConfig {
        node_id: id,
        ..StoreConfig::new(dir.join(format!("m{id}")), url.clone())
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<axum::Router>();
    tokio::spawn(async move {
        if let Ok(router) = rx.await {
            let _ = axum::serve(listener, axum::Router::new().nest("/internal/raft", router)).await;
        }
    });
    let store = Store::open_with(
        config,
        StoreOptions {
            join,
            ..StoreOptions::default()
        },
    )
    .await?;
    let _ = tx.send(store.router());
    Ok((store, url))
}

/// Starts `members` skiff members in fresh directories; returns them, leader first.
async fn skiff_cluster(dir: &Path, members: u64) -> anyhow::Result<Vec<Store>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let (first, url) = open_member(dir, 1, None).await?;
    let mut stores = vec![first.clone()];
    for id in 2..=members {
        stores.push(open_member(dir, id, Some(url.clone())).await?.0);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.members().iter().filter(|m| m.voter).count() < members as usize {
        anyhow::ensure!(Instant::now() < deadline, "members did not join in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(stores)
}

async fn bench_skiff(store: Store, args: &StoreArgs, clients: usize, value: Arc<Vec<u8>>) -> Stats {
    let keys = args.keys;
    harness::run(
        clients,
        Duration::from_secs(1),
        Duration::from_secs(args.seconds),
        move |client, i| {
            let store = store.clone();
            let value = value.clone();
            async move {
                let put = TxnOp::Put {
                    key: key(keys, clients, client, i),
                    value: value.to_vec(),
                };
                store
                    .txn(Txn {
                        success: vec![put],
                        ..Txn::default()
                    })
                    .await?;
                Ok(())
            }
        },
    )
    .await
}

async fn bench_etcd(
    endpoints: &[String],
    args: &StoreArgs,
    clients: usize,
    value: Arc<Vec<u8>>,
) -> anyhow::Result<Stats> {
    // One connection per 8 clients, as etcd's own benchmark spreads load over --conns.
    let mut conns = Vec::new();
    for _ in 0..clients.div_ceil(8) {
        conns.push(
            etcd_client::Client::connect(endpoints, None)
                .await
                .context("connecting to etcd")?,
        );
    }
    let keys = args.keys;
    Ok(harness::run(
        clients,
        Duration::from_secs(1),
        Duration::from_secs(args.seconds),
        move |client, i| {
            let mut kv = conns[client % conns.len()].kv_client();
            let value = value.to_vec();
            async move {
                kv.put(key(keys, clients, client, i), value, None).await?;
                Ok(())
            }
        },
    )
    .await)
}

/// The client URL of the etcd member that leads the cluster of `endpoints`.
async fn etcd_leader(endpoints: &[String]) -> anyhow::Result<String> {
    for endpoint in endpoints {
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .with_context(|| format!("connecting to etcd at {endpoint}"))?;
        let status = client.status().await.context("etcd status")?;
        let member = status.header().map(|h| h.member_id());
        if member == Some(status.leader()) {
            return Ok(endpoint.clone());
        }
    }
    anyhow::bail!("no etcd member of {endpoints:?} is the leader")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let mut value = vec![0u8; args.value_size];
    rand::thread_rng().fill_bytes(&mut value);
    let value = Arc::new(value);
    let mut rows: Vec<(String, usize, Stats)> = Vec::new();
    for members in [1u64, 3] {
        let stores =
            skiff_cluster(&args.data_dir.join(format!("skiff-{members}")), members).await?;
        let leader = stores[0].clone();
        for &clients in &args.clients {
            let stats = bench_skiff(leader.clone(), &args, clients, value.clone()).await;
            eprintln!("skiff {members}-member, {clients} clients: {stats:?}");
            rows.push((
                format!(
                    "skiff, {members} member{}",
                    if members > 1 { "s" } else { "" }
                ),
                clients,
                stats,
            ));
        }
        for store in stores {
            store.shutdown().await;
        }
    }
    if let Some(endpoint) = &args.etcd {
        for &clients in &args.clients {
            let stats = bench_etcd(
                std::slice::from_ref(endpoint),
                &args,
                clients,
                value.clone(),
            )
            .await?;
            eprintln!("etcd, {clients} clients: {stats:?}");
            rows.push(("etcd 3.4, 1 member".into(), clients, stats));
        }
    }
    if !args.etcd3.is_empty() {
        // skiff's clients write to its leader; etcd's do too, as a client
        // that knows the leader would (through a follower, a put is
        // forwarded: one more round trip).
        let leader = etcd_leader(&args.etcd3).await?;
        eprintln!("etcd 3-member leader: {leader}");
        for &clients in &args.clients {
            let stats =
                bench_etcd(std::slice::from_ref(&leader), &args, clients, value.clone()).await?;
            eprintln!("etcd 3-member, {clients} clients: {stats:?}");
            rows.push(("etcd 3.4, 3 members".into(), clients, stats));
        }
    }
    println!("| target | clients | writes | writes/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (target, clients, s) in &rows {
        println!(
            "| {target} | {clients} | {} | {:.0} | {} | {} | {} |",
            s.ops,
            s.per_second,
            ms(s.p50),
            ms(s.p99),
            s.errors
        );
    }
    let find = |prefix: &str, clients: usize| {
        rows.iter()
            .find(|(t, c, _)| t.starts_with(prefix) && *c == clients)
    };
    for (skiff, etcd, label) in [
        ("skiff, 1", "etcd 3.4, 1", "1-member"),
        ("skiff, 3", "etcd 3.4, 3", "3-member"),
    ] {
        if !args.clients.iter().any(|&c| find(etcd, c).is_some()) {
            continue;
        }
        println!();
        println!("| clients | skiff / etcd writes/s, {label} | p99 skiff vs etcd, {label} |");
        println!("|---:|---:|---:|");
        for &clients in &args.clients {
            if let (Some(ours), Some(anchor)) = (find(skiff, clients), find(etcd, clients)) {
                println!(
                    "| {clients} | {:.2}× | {} vs {} |",
                    ours.2.per_second / anchor.2.per_second,
                    ms(ours.2.p99),
                    ms(anchor.2.p99),
                );
            }
        }
    }
    Ok(())
}
