//! `skiff node`: a node agent that joins a cluster over its API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;

use super::control_plane::client_from_kubeconfig;
use super::data_dir::default_data_dir;
use super::node_args::NodeAgentArgs;
use super::shutdown;

#[derive(clap::Args)]
pub struct NodeArgs {
    /// URL of the API server, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// Bearer token the node authenticates with.
    #[arg(long, env = "SKIFF_TOKEN")]
    token: String,
    /// PEM file of the cluster CA (DATA_DIR/pki/ca.crt on the server).
    #[arg(long)]
    ca_file: PathBuf,
    /// Where images, volumes and logs live (default: a per-user directory).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the node agent's server (logs, exec, port-forward).
    #[arg(long, default_value = "127.0.0.1:10250")]
    listen: SocketAddr,
    /// Name of the node (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    #[command(flatten)]
    node_agent: NodeAgentArgs,
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.ca_file)
        .with_context(|| format!("cannot read {}", args.ca_file.display()))?;
    let kubeconfig = node_kubeconfig(&args.server, &args.token, &ca);
    let client = client_from_kubeconfig(&kubeconfig).await?;
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = skiff_node::NodeConfig {
        data_dir: data_dir.join("node"),
        listen: args.listen,
        image_base_dir: std::env::current_dir().context("cannot read the working directory")?,
        ..skiff_node::NodeConfig::default()
    };
    if let Some(name) = args.node_name {
        config.name = name;
    }
    args.node_agent.apply(&mut config)?;
    skiff_node::run(client, config, shutdown::on_signal())
        .await
        .context("node agent failed")
}

/// A kubeconfig (as YAML) for a node that has a server URL, a token and the CA.
fn node_kubeconfig(server: &str, token: &str, ca_pem: &[u8]) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "node", "user": {"token": token}}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "node"}}],
        "current-context": "skiff",
    })
    .to_string()
}
