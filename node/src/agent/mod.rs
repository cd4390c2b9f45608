//! The node agent's top level: `run` binds the node server, registers the
//! node, then runs the lease, node status, the pod manager (one worker per
//! pod) and the node server until shutdown.

pub mod lease;
pub mod registration;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::host::HostReading;
use crate::logs::LogRegistry;
use crate::pods::context::NodeContext;
use crate::pods::events::EventRecorder;
use crate::pods::ipam::{Ipam, PodCidr};
use crate::pods::manager::{run_pod_manager, start_object_caches};
use crate::pods::source::ObjectSource;
use crate::pods::status_writer::StatusWriter;
use crate::pods::table::PodTable;
use crate::runtime_wasm::WasmContainerRuntime;

/// Runs the node agent until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    mut config: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    config.validate()?;
    let span = tracing::info_span!("node", node = %config.name);
    async move {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| NodeError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
        if let Ok(addr) = listener.local_addr() {
            config.listen = addr;
        }
        let port = config.listen.port();
        let (changed_tx, changed_rx) = mpsc::channel(64);
        let objects = start_object_caches(&client, changed_tx, shutdown.clone()).await;
        let ctx =
            Arc::new(build_context(client.clone(), &config, Arc::new(objects), &shutdown).await?);

        let status = registration::register(&client, &config, port).await?;
        let lease = tokio::spawn(lease::lease_loop(
            client.clone(),
            config.clone(),
            shutdown.clone(),
        ));
        let node_status = tokio::spawn(registration::status_loop(
            client.clone(),
            config.clone(),
            port,
            status,
            shutdown.clone(),
        ));
        let server = tokio::spawn(crate::server::serve(
            ctx.clone(),
            listener,
            shutdown.clone(),
        ));
        let static_pods = config.static_pod_dir.clone().map(|dir| {
            tokio::spawn(crate::pods::static_pods::run(
                client.clone(),
                config.name.clone(),
                dir,
                shutdown.clone(),
            ))
        });
        tracing::info!(listen = %config.listen, "node agent running");
        let memory_root = ctx.memory_root.clone();
        run_pod_manager(ctx, changed_rx, shutdown.clone()).await;
        // Every pod has stopped: nothing of theirs stays in memory.
        if let Some(root) = memory_root {
            sweep_memory_volumes(root).await;
        }
        if let Some(static_pods) = static_pods {
            let _ = static_pods.await;
        }
        let _ = lease.await;
        let _ = node_status.await;
        let _ = server.await;
        tracing::info!("node agent stopped");
        Ok(())
    }
    .instrument(span)
    .await
}

/// The shared state every pod worker and the node server use.
async fn build_context(
    client: kube::Client,
    config: &NodeConfig,
    objects: Arc<dyn ObjectSource>,
    shutdown: &CancellationToken,
) -> Result<NodeContext, NodeError> {
    let wasm = skiff_runtime_wasm::WasmRuntime::new(skiff_runtime_wasm::WasmRuntimeConfig {
        cache_dir: config.data_dir.join("images"),
        // Concurrent instances (running command containers plus in-flight
        // HTTP requests), not pods: an idle wasi:http pod holds none.
        max_instances: 1024,
        max_memory_bytes: 1 << 30,
        ..Default::default()
    })
    .map_err(|e| NodeError::Config(format!("cannot start the wasm runtime: {e}")))?;
    let runtime = Arc::new(WasmContainerRuntime::new(
        wasm,
        config.image_base_dir.clone(),
    ));
    // Pods do not outlive the agent: what a previous run left in memory
    // (it was killed before its pods were cleaned up) is stale.
    let memory_root = crate::pods::volumes::memory_volume_root(&config.data_dir);
    if let Some(root) = &memory_root {
        sweep_memory_volumes(root.clone()).await;
    }
    let data_dir = config.data_dir.clone();
    let reading = tokio::task::spawn_blocking(move || HostReading::read(&data_dir))
        .await
        .map_err(|e| NodeError::Config(format!("reading the host: {e}")))?;
    Ok(NodeContext {
        config: config.clone(),
        runtime,
        ipam: Ipam::new(PodCidr::parse(&config.pod_cidr)?),
        logs: Arc::new(LogRegistry::default()),
        objects,
        table: Arc::new(PodTable::default()),
        events: EventRecorder::start(
            client.clone(),
            config.name.clone(),
            skiff_events::Limits {
                qps: config.event_qps,
                burst: config.event_burst,
                ..Default::default()
            },
        ),
        status: StatusWriter::start(client.clone(), shutdown.clone()),
        host_ip: config.internal_ip().to_string(),
        node_cpu: f64::from(reading.cpus),
        node_memory: reading.memory_total as f64,
        memory_root,
        client,
    })
}

/// Removes this node's in-memory volume directory and everything in it.
async fn sweep_memory_volumes(root: std::path::PathBuf) {
    let swept = tokio::task::spawn_blocking(move || crate::pods::volumes::remove_tree(&root));
    let _ = swept.await;
}
