//! skiff-bench: reproducible benchmarks of skiff's parts, one clap
//! subcommand per area (each in its own file: `store.rs`, `api.rs`,
//! `scheduler.rs`, `pods/`). Results are printed as Markdown tables for
//! BENCHMARKS.md.

mod api;
mod harness;
mod pods;
mod scheduler;
mod store;

use clap::{Parser, Subcommand};

/// The same allocator as the `skiff` binary, so in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "skiff-bench", about = "Benchmarks of skiff's components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Put throughput and latency of the store (1- and 3-member) against etcd.
    Store(store::StoreArgs),
    /// Kubernetes API latency: create/get at a fixed rate, list 10,000 pods, 1,000 watchers.
    Api(api::ApiArgs),
    /// Scheduler throughput: decisions/s in-process (5,000 nodes) and pods bound/s end to end.
    Scheduler(scheduler::SchedulerArgs),
    /// Node and wasm benchmarks on a real `skiff up`: pod start-up, Job pods/s, memory per pod, ready time, HTTP.
    Pods(pods::PodsArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args).await,
        Command::Api(args) => api::run(args).await,
        Command::Scheduler(args) => scheduler::run(args).await,
        Command::Pods(args) => pods::run(args).await,
    }
}
