//! Backups, like `etcdctl snapshot save/restore`: [`Store::save_snapshot`]
//! writes the live key-values at one revision to a checksummed file;
//! [`Store::restore_snapshot`] seeds a fresh data directory with it, and the
//! next `open` of that directory commits the seed through Raft (one
//! `Restore` entry), so the restored cluster serves exactly the saved data at
//! the saved revision.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::mvcc::{Mvcc, MvccImage};
use super::raft_types::{Command, decode, encode};
use super::{Revision, Store, StoreError};

const MAGIC: &[u8] = b"SKIFF-STORE-SNAPSHOT-1\n";
/// The file a restored data directory holds until its first open commits it.
pub(super) const SEED_FILE: &str = "restore.seed";

#[derive(Serialize, Deserialize)]
struct BackupFile {
    revision: Revision,
    image: MvccImage,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Storage(format!("{what} {}: {e}", path.display()))
}

/// Reads and verifies a backup file.
fn read_backup(path: &Path) -> Result<BackupFile, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| io("reading", path, e))?;
    let body = bytes.strip_prefix(MAGIC).ok_or_else(|| {
        StoreError::Storage(format!("{} is not a skiff store snapshot", path.display()))
    })?;
    let backup: BackupFile = decode(body)
        .map_err(|e| StoreError::Storage(format!("snapshot {} is damaged: {e}", path.display())))?;
    // Make sure the image is consistent before anyone relies on it.
    Mvcc::from_image(backup.image.clone())?;
    Ok(backup)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("partial");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    file.write_all(bytes).map_err(|e| io("writing", &tmp, e))?;
    file.sync_all().map_err(|e| io("syncing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", &tmp, e))
}

impl Store {
    /// Saves the latest committed key-values (a linearizable read) to `path`; returns their revision.
    pub async fn save_snapshot(&self, path: &Path) -> Result<Revision, StoreError> {
        self.read_barrier().await?;
        let mut mvcc = self.inner.sm.read().mvcc.clone();
        mvcc.compact_all();
        let revision = mvcc.revision();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(encode(&BackupFile {
                revision,
                image: mvcc.to_image(),
            })?);
            write_atomically(&path, &bytes)
        })
        .await
        .map_err(|e| StoreError::Storage(format!("saving snapshot: {e}")))??;
        Ok(revision)
    }

    /// Prepares `data_dir` (which must hold no store yet) to start as a new
    /// single-member cluster serving exactly the snapshot in `file`; returns its revision.
    pub fn restore_snapshot(file: &Path, data_dir: &Path) -> Result<Revision, StoreError> {
        let backup = read_backup(file)?;
        if data_dir.join("raft-log.redb").exists() {
            return Err(StoreError::Storage(format!(
                "{} already holds a store; restore into an empty directory",
                data_dir.display()
            )));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| io("creating", data_dir, e))?;
        let bytes = std::fs::read(file).map_err(|e| io("reading", file, e))?;
        write_atomically(&data_dir.join(SEED_FILE), &bytes)?;
        Ok(backup.revision)
    }

    /// Commits a pending restore seed (left by [`Store::restore_snapshot`]) through Raft.
    pub(super) async fn apply_restore_seed(&self) -> Result<(), StoreError> {
        let seed = self.inner.config.data_dir.join(SEED_FILE);
        if !seed.exists() {
            return Ok(());
        }
        let backup = read_backup(&seed)?;
        tracing::info!(
            revision = backup.revision,
            "restoring the store from a snapshot"
        );
        self.propose(Command::Restore(backup.image)).await?;
        std::fs::remove_file(&seed).map_err(|e| io("removing", &seed, e))
    }
}
