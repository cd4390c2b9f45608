//! `skiff-bench scheduler`: the scheduler's throughput, in two parts.
//! `decisions` runs the pure cycle in this process over a synthetic
//! 5,000-node cluster (`scheduler/decisions.rs`); `e2e` measures pods bound
//! per second through the API with hollow nodes and the real scheduler loop
//! (`scheduler/e2e.rs`). Both build their objects with `scheduler/cluster.rs`.

mod cluster;
mod decisions;
mod e2e;

use std::time::Duration;

#[derive(clap::Args)]
pub struct SchedulerArgs {
    #[command(subcommand)]
    command: SchedulerCommand,
}

#[derive(clap::Subcommand)]
enum SchedulerCommand {
    /// Decisions per second of `schedule()` in-process: 5,000 nodes, 50,000 pending pods.
    Decisions(decisions::DecisionsArgs),
    /// Pods bound per second through the API server with hollow nodes.
    E2e(e2e::E2eArgs),
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    match args.command {
        SchedulerCommand::Decisions(a) => {
            tokio::task::spawn_blocking(move || decisions::run(a)).await?
        }
        SchedulerCommand::E2e(a) => e2e::run(a).await,
    }
}

/// The `p`-quantile of sorted latencies (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A latency in µs below a millisecond, in ms above.
fn ms_or_us(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}
