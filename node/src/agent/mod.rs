//! The node agent's top level: `run` registers the node, then runs the
//! lease, node status, pod manager and node server until shutdown.

pub mod lease;
pub mod registration;

use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::error::NodeError;

/// Runs the node agent until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    config: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    config.validate()?;
    let status = registration::register(&client, &config, config.listen.port()).await?;
    let lease = tokio::spawn(lease::lease_loop(
        client.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let node_status = tokio::spawn(registration::status_loop(
        client.clone(),
        config.clone(),
        config.listen.port(),
        status,
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    let _ = lease.await;
    let _ = node_status.await;
    Ok(())
}
