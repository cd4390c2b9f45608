//! `skiff server`: a control-plane member without a node agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::components::ComponentArgs;
use super::control_plane::{self, ControlPlaneOptions};
use super::data_dir::default_data_dir;
use super::shutdown;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the store and credentials live (default: a per-user directory).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API server.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Extra host names or addresses for the API certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// The audit log, JSON lines at level Metadata (default: DATA_DIR/audit.log).
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// How long past revisions stay readable and watchable.
    #[arg(long, default_value = "300", value_name = "SECONDS")]
    history_window_seconds: u64,
    /// Join the cluster of this member (e.g. https://10.0.0.1:6443) as a new replica.
    #[arg(long, value_name = "URL")]
    join: Option<String>,
    /// The join token the first member printed (`skiff1:...`).
    #[arg(long, env = "SKIFF_JOIN_TOKEN", requires = "join")]
    token: Option<String>,
    /// The URL other members reach this one at (default: https://LISTEN).
    #[arg(long, value_name = "URL")]
    advertise_url: Option<String>,
    #[command(flatten)]
    components: ComponentArgs,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let scheduler = args.components.scheduler()?;
    let controllers = args.components.controllers();
    let shutdown = shutdown::on_signal();
    let control_plane = control_plane::start(
        ControlPlaneOptions {
            data_dir: args.data_dir.unwrap_or_else(default_data_dir),
            listen: args.listen,
            san_hosts: args.tls_san,
            history_window: Duration::from_secs(args.history_window_seconds),
            join: args.join,
            join_token: args.token,
            advertise_url: args.advertise_url,
            audit_log: args.audit_log_path,
            scheduler,
            controllers,
        },
        shutdown.clone(),
    )
    .await?;
    println!(
        "skiff control plane at {}; kubeconfig: {}",
        control_plane.api.url,
        control_plane.kubeconfig_path.display()
    );
    println!(
        "  add control-plane members: skiff server --join {} --token {}",
        control_plane.api.url,
        control_plane::join_token(&control_plane)
    );
    control_plane.wait(shutdown).await
}
