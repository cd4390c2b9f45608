//! `skiff-bench pods http`: requests/s to one wasi:http pod running on
//! `skiff up`, measured with wrk, against `wasmtime serve` on the same
//! component in the same run (alternating rounds). The pod is reached three
//! ways: at the host address the node serves its containerPort on (found
//! from the skiff process's listening sockets in /proc: the node maps
//! containerPort → 127.0.0.1:<ephemeral>), through the node server's
//! `/proxy/` (one HTTP hop), and through the API server's pods/proxy (TLS,
//! two hops).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use super::cluster::{Cluster, http_get, temp_data_dir};
use super::phases::{Phases, count};
use super::{median, median_of, namespace, pod, send};

#[derive(clap::Args)]
pub struct HttpArgs {
    /// Measured rounds (each target once per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// wrk duration per target and round, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Request path.
    #[arg(long, default_value = "/healthz")]
    path: String,
    /// The wasi:http component.
    #[arg(long, default_value = "samples/wasm/http-echo.wasm")]
    image: String,
    /// The `wasmtime` CLI of the baseline (skipped when not found).
    #[arg(long, default_value = "wasmtime")]
    wasmtime: String,
    /// Skip the API server's pods/proxy target.
    #[arg(long)]
    no_api_proxy: bool,
}

struct Target {
    label: &'static str,
    url: String,
    header: Option<String>,
}

/// One wrk run.
#[derive(Default, Clone, Copy)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

pub async fn run(skiff: &Path, args: HttpArgs) -> anyhow::Result<()> {
    which("wrk").context("wrk is required (apt-get install -y wrk)")?;
    let dir = temp_data_dir()?;
    let cluster = Cluster::start(skiff, dir.path()).await?;
    let mut wasmtime = None;
    let result = measure(&cluster, &args, &mut wasmtime).await;
    if let Some(mut child) = wasmtime {
        let _ = child.kill().await;
    }
    if result.is_err() {
        eprintln!("--- skiff log ---\n{}", cluster.log_tail());
    }
    cluster.stop().await?;
    result
}

async fn measure(
    cluster: &Cluster,
    args: &HttpArgs,
    wasmtime: &mut Option<tokio::process::Child>,
) -> anyhow::Result<()> {
    let node = cluster.wait_node_ready(Duration::from_secs(30)).await?;
    namespace(&cluster.client, "bench").await?;
    let phases = Phases::start(&cluster.client, "bench").await?;
    send(
        &cluster.client,
        "POST",
        "/api/v1/namespaces/bench/pods",
        &pod("echo", &args.image, "Always"),
    )
    .await?;
    anyhow::ensure!(
        phases
            .wait_for(Duration::from_secs(30), |s| count(s, |p| p.running) >= 1)
            .await,
        "the pod did not start"
    );
    let node_addr = node.server_url.trim_start_matches("http://").to_string();
    let direct = served_address(cluster, &node_addr, &args.path).await?;

    let mut targets = vec![
        Target {
            label: "skiff pod, served address (direct)",
            url: format!("http://{direct}{}", args.path),
            header: None,
        },
        Target {
            label: "skiff pod, node server /proxy/",
            url: format!("{}/proxy/bench/echo/8080{}", node.server_url, args.path),
            header: None,
        },
    ];
    if !args.no_api_proxy {
        targets.push(Target {
            label: "skiff pod, API pods/proxy (TLS)",
            url: format!(
                "{}/api/v1/namespaces/bench/pods/echo:8080/proxy{}",
                cluster.api_url, args.path
            ),
            header: Some(format!("Authorization: Bearer {}", cluster.token)),
        });
    }
    match which(&args.wasmtime) {
        Ok(bin) => {
            let version = std::process::Command::new(&bin).arg("--version").output()?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            *wasmtime = Some(
                tokio::process::Command::new(&bin)
                    .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
                    .arg(&args.image)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()?,
            );
            let addr = format!("127.0.0.1:{port}");
            let mut up = false;
            for _ in 0..400 {
                if http_get(&addr, &args.path).await.is_ok() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            anyhow::ensure!(up, "wasmtime serve did not come up");
            eprintln!(
                "baseline: {}",
                String::from_utf8_lossy(&version.stdout).trim()
            );
            targets.push(Target {
                label: "wasmtime serve -Scli",
                url: format!("http://{addr}{}", args.path),
                header: None,
            });
        }
        Err(_) => eprintln!("{} not found: no wasmtime serve baseline", args.wasmtime),
    }

    println!(
        "## Requests/s to one wasi:http pod\n\n`skiff-bench pods http --rounds {} --seconds {} --conns {} --threads {}` ({} {}; wrk, 2 s warm-up per target and round, targets alternating in each round)\n",
        args.rounds, args.seconds, args.conns, args.threads, args.image, args.path
    );
    println!("| target | round | requests/s | p50 | p99 | non-2xx |\n|---|---|---|---|---|---|");
    let mut results: Vec<Vec<Wrk>> = vec![Vec::new(); targets.len()];
    for round in 1..=args.rounds.max(1) {
        for (i, t) in targets.iter().enumerate() {
            let w = wrk(args, t).await?;
            println!(
                "| {} | {round} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                t.label, w.rps, w.p50_ms, w.p99_ms, w.non_2xx
            );
            results[i].push(w);
        }
    }
    println!(
        "\n| target | median requests/s | median p50 | median p99 | vs wasmtime serve (median of per-round ratios) |\n|---|---|---|---|---|"
    );
    let baseline = targets
        .iter()
        .position(|t| t.label.starts_with("wasmtime"))
        .map(|i| results[i].clone());
    for (t, runs) in targets.iter().zip(&results) {
        let ratio = baseline.as_ref().map_or("—".to_string(), |b| {
            let mut r: Vec<f64> = runs.iter().zip(b).map(|(a, b)| a.rps / b.rps).collect();
            format!("**{:.2}×**", median(&mut r))
        });
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {ratio} |",
            t.label,
            median_of(runs, |w| w.rps),
            median_of(runs, |w| w.p50_ms),
            median_of(runs, |w| w.p99_ms)
        );
    }
    Ok(())
}

/// The 127.0.0.1 address the node serves the pod's port on: the skiff
/// process's listening sockets, minus the API and node server, that answer
/// `path` with 200.
async fn served_address(cluster: &Cluster, node_addr: &str, path: &str) -> anyhow::Result<String> {
    let pid = cluster.pid();
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        if let Ok(link) = std::fs::read_link(entry?.path())
            && let Some(inode) = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let api_addr = cluster.api_url.trim_start_matches("https://");
    let mut found = Vec::new();
    for line in std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))?
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local_address, st (0A = LISTEN), inode
        if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
            continue;
        }
        let Some((ip, port)) = f[1].split_once(':') else {
            continue;
        };
        if ip != "0100007F" {
            continue;
        }
        let addr = format!("127.0.0.1:{}", u16::from_str_radix(port, 16)?);
        if addr == api_addr || addr == node_addr {
            continue;
        }
        if http_get(&addr, path).await.is_ok() {
            found.push(addr);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no listening socket of skiff answers {path}"),
        many => bail!("several sockets answer {path}: {many:?}"),
    }
}

async fn wrk(args: &HttpArgs, target: &Target) -> anyhow::Result<Wrk> {
    let run = |seconds: u64, threads: usize| {
        let mut cmd = tokio::process::Command::new("wrk");
        cmd.args([
            "--latency",
            &format!("-t{threads}"),
            &format!("-c{}", args.conns),
            &format!("-d{seconds}s"),
        ]);
        if let Some(h) = &target.header {
            cmd.args(["-H", h]);
        }
        cmd.arg(&target.url).stderr(Stdio::null());
        cmd.output()
    };
    run(2, 1).await?; // warm-up
    let out = run(args.seconds, args.threads).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = Wrk::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Requests/sec:", v, ..] => w.rps = v.parse().unwrap_or(0.0),
            ["50%", v, ..] => w.p50_ms = wrk_ms(v),
            ["99%", v, ..] => w.p99_ms = wrk_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", v, ..] => w.non_2xx = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    anyhow::ensure!(w.rps > 0.0, "wrk {} gave no result:\n{text}", target.url);
    Ok(w)
}

/// wrk's latency figure ("512.00us", "1.20ms", "2.00s") in milliseconds.
fn wrk_ms(v: &str) -> f64 {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap_or(0.0) * scale
}

/// The path of `bin` (as given when it has a slash, else searched on PATH).
fn which(bin: &str) -> anyhow::Result<std::path::PathBuf> {
    if bin.contains('/') {
        let p = std::path::PathBuf::from(bin);
        return if p.is_file() {
            Ok(p)
        } else {
            bail!("{bin} not found")
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .with_context(|| format!("{bin} not found on PATH"))
}
