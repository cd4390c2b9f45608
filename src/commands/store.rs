//! `skiff store snapshot save|restore`: backups of the state store, like
//! `etcdctl snapshot save/restore`. `save` asks a running control plane for
//! a consistent snapshot over its API (admin credentials); `restore` seeds an
//! empty data directory that a later `skiff up`/`skiff server` starts from.

use std::path::PathBuf;

use anyhow::Context;
use http_body_util::BodyExt;
use skiff_control_plane::store::Store;

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Snapshots of the store.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of a running cluster's store to FILE.
    Save {
        file: PathBuf,
        /// kubeconfig with admin credentials (default: as for the client verbs).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Prepare an empty data directory to start from the snapshot in FILE.
    Restore {
        file: PathBuf,
        /// The data directory `skiff up`/`skiff server` will use.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub async fn run(command: StoreCommand, kubeconfig: Option<PathBuf>) -> anyhow::Result<()> {
    let StoreCommand::Snapshot { command } = command;
    match command {
        SnapshotCommand::Save {
            file,
            kubeconfig: own,
        } => save(file, own.or(kubeconfig)).await,
        SnapshotCommand::Restore { file, data_dir } => {
            let revision = Store::restore_snapshot(&file, &data_dir.join("store"))
                .with_context(|| format!("cannot restore {}", file.display()))?;
            println!(
                "restored revision {revision} into {}; start skiff with --data-dir {}",
                data_dir.display(),
                data_dir.display()
            );
            Ok(())
        }
    }
}

async fn save(file: PathBuf, kubeconfig: Option<PathBuf>) -> anyhow::Result<()> {
    let client = crate::cli::connect(kubeconfig).await?;
    let request = http::Request::get("/skiff/v1/store/snapshot")
        .body(Vec::new())
        .context("building the snapshot request")?;
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .context("cannot reach the API server")?;
    let status = response.status();
    let revision = response
        .headers()
        .get("x-skiff-revision")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the snapshot")?
        .to_bytes();
    if !status.is_success() {
        anyhow::bail!(
            "the server refused the snapshot ({status}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    let tmp = file.with_extension("partial");
    std::fs::write(&tmp, &body).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "saved revision {revision} ({} bytes) to {}",
        body.len(),
        file.display()
    );
    Ok(())
}
