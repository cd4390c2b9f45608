//! `skiff-bench store`: puts of fixed-size values from 1 and 64 concurrent
//! clients, fsync on, against a single-member and a 3-member skiff store
//! (in this process, members talking HTTP over loopback) and against an
//! etcd endpoint (started by `scripts/bench-store.sh`), with one harness.
//! With `--rounds N` every target runs once per round, skiff and etcd
//! interleaved so that a slow spell of the machine hits both, and the
//! summary compares medians over the rounds.

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
    /// skiff cluster sizes to run.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<u64>,
    /// Rounds of every case, skiff and etcd interleaved; the summary uses medians.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
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

/// One measured case: target label, clients, round, result.
struct Row {
    target: String,
    clients: usize,
    round: usize,
    stats: Stats,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let mut value = vec![0u8; args.value_size];
    rand::thread_rng().fill_bytes(&mut value);
    let value = Arc::new(value);
    let mut clusters = Vec::new();
    for &members in &args.members {
        let stores =
            skiff_cluster(&args.data_dir.join(format!("skiff-{members}")), members).await?;
        clusters.push((members, stores));
    }
    // skiff's clients write to its leader; etcd's do too, as a client that
    // knows the leader would (through a follower, a put is forwarded: one
    // more round trip).
    let etcd3_leader = if args.etcd3.is_empty() {
        None
    } else {
        let leader = etcd_leader(&args.etcd3).await?;
        eprintln!("etcd 3-member leader: {leader}");
        Some(leader)
    };
    let mut rows: Vec<Row> = Vec::new();
    for round in 0..args.rounds {
        for (members, stores) in &clusters {
            let target = format!(
                "skiff, {members} member{}",
                if *members > 1 { "s" } else { "" }
            );
            for &clients in &args.clients {
                let stats = bench_skiff(stores[0].clone(), &args, clients, value.clone()).await;
                eprintln!("round {round}: {target}, {clients} clients: {stats:?}");
                rows.push(Row {
                    target: target.clone(),
                    clients,
                    round,
                    stats,
                });
            }
        }
        for (target, endpoint) in [
            ("etcd 3.4, 1 member", args.etcd.as_ref()),
            ("etcd 3.4, 3 members", etcd3_leader.as_ref()),
        ] {
            let Some(endpoint) = endpoint else { continue };
            for &clients in &args.clients {
                let stats = bench_etcd(
                    std::slice::from_ref(endpoint),
                    &args,
                    clients,
                    value.clone(),
                )
                .await?;
                eprintln!("round {round}: {target}, {clients} clients: {stats:?}");
                rows.push(Row {
                    target: target.into(),
                    clients,
                    round,
                    stats,
                });
            }
        }
    }
    for (_, stores) in clusters {
        for store in stores {
            store.shutdown().await;
        }
    }
    print_report(&args, &rows);
    Ok(())
}

fn print_report(args: &StoreArgs, rows: &[Row]) {
    println!("| target | clients | round | writes | writes/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let s = &row.stats;
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            row.target,
            row.clients,
            row.round + 1,
            s.ops,
            s.per_second,
            ms(s.p50),
            ms(s.p99),
            s.errors
        );
    }
    // Medians over the rounds: (writes/s, p99).
    let summary = |prefix: &str, clients: usize| -> Option<(f64, Duration)> {
        let cases: Vec<&Stats> = rows
            .iter()
            .filter(|r| r.target.starts_with(prefix) && r.clients == clients)
            .map(|r| &r.stats)
            .collect();
        if cases.is_empty() {
            return None;
        }
        let per_second = median(cases.iter().map(|s| s.per_second).collect());
        let p99 = median(cases.iter().map(|s| s.p99.as_secs_f64()).collect());
        Some((per_second, Duration::from_secs_f64(p99)))
    };
    for (skiff, etcd, label) in [
        ("skiff, 1 ", "etcd 3.4, 1 ", "1 member"),
        ("skiff, 3 ", "etcd 3.4, 3 ", "3 members"),
    ] {
        if !args
            .clients
            .iter()
            .any(|&c| summary(skiff, c).is_some() && summary(etcd, c).is_some())
        {
            continue;
        }
        println!();
        println!(
            "| clients | {label}: skiff / etcd writes/s (medians of {}) | p99 skiff vs etcd (medians) |",
            args.rounds
        );
        println!("|---:|---:|---:|");
        for &clients in &args.clients {
            if let (Some(ours), Some(anchor)) = (summary(skiff, clients), summary(etcd, clients)) {
                println!(
                    "| {clients} | {:.2}× ({:.0} vs {:.0}) | {} vs {} |",
                    ours.0 / anchor.0,
                    ours.0,
                    anchor.0,
                    ms(ours.1),
                    ms(anchor.1),
                );
            }
        }
    }
}
