//! `skiff-bench pods up`: how fast an empty `skiff up` is ready and how much
//! memory it holds. Cold = a fresh data directory (CA and keys generated,
//! store created); warm = a restart on the data directory of the previous
//! run. Ready = the first 200 from `/readyz`; also the Node's Ready
//! condition. Memory = VmRSS after a settle time with nothing running.

use std::path::Path;
use std::time::Duration;

use super::cluster::{Cluster, temp_data_dir};
use super::{median_duration, median_of, mib, ms};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Cold starts and warm restarts to measure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds after the node is Ready before reading the idle RSS.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
}

struct Run {
    readyz: Duration,
    node_ready: Duration,
    rss: u64,
}

pub async fn run(skiff: &Path, args: UpArgs) -> anyhow::Result<()> {
    println!(
        "## `skiff up` start-up and idle memory\n\n`skiff-bench pods up --runs {}`: spawn → first 200 from /readyz, spawn → Node Ready, VmRSS {} s after the node is Ready with no pods\n",
        args.runs, args.settle_seconds
    );
    println!("| start | run | /readyz | node Ready | idle RSS |\n|---|---|---|---|---|");
    let settle = Duration::from_secs(args.settle_seconds);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let warm_dir = temp_data_dir()?;
    for i in 0..args.runs.max(1) {
        let dir = temp_data_dir()?;
        let r = one(skiff, dir.path(), settle).await?;
        print_row("cold", &(i + 1).to_string(), &r);
        cold.push(r);
    }
    // The warm runs restart on one data directory, created by an unmeasured first start.
    one(skiff, warm_dir.path(), Duration::ZERO).await?;
    for i in 0..args.runs.max(1) {
        let r = one(skiff, warm_dir.path(), settle).await?;
        print_row("warm", &(i + 1).to_string(), &r);
        warm.push(r);
    }
    for (label, runs) in [("cold", &cold), ("warm", &warm)] {
        print_row(
            label,
            "**median**",
            &Run {
                readyz: median_duration(runs, |r| r.readyz),
                node_ready: median_duration(runs, |r| r.node_ready),
                rss: median_of(runs, |r| r.rss as f64) as u64,
            },
        );
    }
    Ok(())
}

fn print_row(start: &str, run: &str, r: &Run) {
    println!(
        "| {start} | {run} | {} | {} | {} |",
        ms(r.readyz),
        ms(r.node_ready),
        mib(r.rss)
    );
}

async fn one(skiff: &Path, dir: &Path, settle: Duration) -> anyhow::Result<Run> {
    let cluster = Cluster::start(skiff, dir).await?;
    let node = cluster.wait_node_ready(Duration::from_secs(30)).await;
    let run = match node {
        Ok(node) => {
            tokio::time::sleep(settle).await;
            Ok(Run {
                readyz: cluster.ready_after,
                node_ready: node.ready_after,
                rss: cluster.rss_bytes()?,
            })
        }
        Err(e) => Err(e),
    };
    cluster.stop().await?;
    run
}
