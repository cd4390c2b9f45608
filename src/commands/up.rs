//! `skiff up`: the all-in-one cluster — a control-plane member and a node
//! agent in one process, with the store in a local data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::components::ComponentArgs;
use super::control_plane::{self, ControlPlaneOptions};
use super::data_dir::default_data_dir;
use super::node_args::NodeAgentArgs;
use super::shutdown;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the store, credentials, images and logs live (default: a per-user directory).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API server (port 0 picks a free port; kubeconfig.yaml tells which).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Address of the node agent's server (logs, exec, port-forward); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    node_listen: SocketAddr,
    /// Name of the node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Manifest files or directories to apply once the cluster is ready.
    #[arg(long, short = 'f')]
    apply: Vec<PathBuf>,
    /// The audit log, JSON lines at level Metadata (default: DATA_DIR/audit.log).
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// How long past revisions stay readable and watchable.
    #[arg(long, default_value = "300", value_name = "SECONDS")]
    history_window_seconds: u64,
    #[command(flatten)]
    components: ComponentArgs,
    #[command(flatten)]
    node_agent: NodeAgentArgs,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let scheduler = args.components.scheduler()?;
    let controllers = args.components.controllers();
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let shutdown = shutdown::on_signal();
    let mut control_plane = control_plane::start(
        ControlPlaneOptions {
            data_dir: data_dir.clone(),
            listen: args.listen,
            san_hosts: vec!["localhost".into()],
            history_window: Duration::from_secs(args.history_window_seconds),
            join: None,
            join_token: None,
            advertise_url: None,
            audit_log: args.audit_log_path,
            scheduler,
            controllers,
        },
        shutdown.clone(),
    )
    .await?;

    let mut node_config = skiff_node::NodeConfig {
        data_dir: data_dir.join("node"),
        listen: args.node_listen,
        image_base_dir: std::env::current_dir().context("cannot read the working directory")?,
        ..skiff_node::NodeConfig::default()
    };
    if let Some(name) = args.node_name {
        node_config.name = name;
    }
    args.node_agent.apply(&mut node_config)?;
    {
        let (client, shutdown) = (control_plane.client.clone(), shutdown.clone());
        control_plane.spawn(async move {
            skiff_node::run(client, node_config, shutdown)
                .await
                .context("node agent failed")
        });
    }

    let kubeconfig = control_plane.kubeconfig_path.display().to_string();
    println!(
        "skiff is up at {} (ready in {} ms)",
        control_plane.api.url,
        started.elapsed().as_millis()
    );
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  kubectl get nodes");

    if !args.apply.is_empty() {
        let kubeconfig = control_plane.kubeconfig_path.clone();
        let paths = args.apply.clone();
        control_plane.spawn(async move {
            for path in paths {
                if let Err(err) = apply_manifests(&kubeconfig, &path).await {
                    tracing::error!(path = %path.display(), "cannot apply manifests: {err:#}");
                }
            }
            Ok(())
        });
    }
    control_plane.wait(shutdown).await
}

/// Applies a manifest file or directory with the same code as `skiff apply -f`.
async fn apply_manifests(
    kubeconfig: &std::path::Path,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    #[derive(clap::Parser)]
    struct Apply {
        #[command(subcommand)]
        command: crate::cli::ClientCommand,
    }
    let path = path.to_str().context("manifest path is not UTF-8")?;
    let apply = <Apply as clap::Parser>::try_parse_from(["skiff", "apply", "-f", path])?;
    crate::cli::run(apply.command, Some(kubeconfig.to_path_buf())).await
}
