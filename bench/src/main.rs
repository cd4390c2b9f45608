//! skiff-bench: reproducible benchmarks of skiff's parts, one clap
//! subcommand per area (each in its own file: `store.rs`, ...). Results are
//! printed as Markdown tables for BENCHMARKS.md.

mod api;
mod harness;
mod store;

use clap::{Parser, Subcommand};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args).await,
        Command::Api(args) => api::run(args).await,
    }
}
