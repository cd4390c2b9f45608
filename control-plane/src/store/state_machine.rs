//! The Raft state machine: applies committed transactions to the in-memory
//! MVCC map, fans each new revision out to the watch hub under the same lock,
//! and builds, persists (redb, checksummed) and installs snapshots. On start
//! the map is rebuilt from the last snapshot and openraft re-applies the
//! committed log after it.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

use super::mvcc::{Mvcc, MvccImage, MvccImageRef};
use super::raft_types::{
    Command, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TxnOutcome, TypeConfig,
    decode, encode,
};
use super::types::StoreError;
use super::watch::WatchHub;

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// What the state machine holds, behind one lock.
pub struct SmState {
    pub mvcc: Mvcc,
    pub hub: WatchHub,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// The state shared by the state machine, the store handle and background tasks.
pub struct SmShared {
    state: RwLock<SmState>,
}

impl SmShared {
    pub fn read(&self) -> RwLockReadGuard<'_, SmState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The snapshot payload: the whole MVCC map, history included.
#[derive(Serialize, Deserialize)]
pub struct SnapshotImage {
    pub mvcc: MvccImage,
}

/// [`SnapshotImage`] borrowing from the map; encodes to the same bytes.
#[derive(Serialize)]
struct SnapshotImageRef<'a> {
    mvcc: MvccImageRef<'a>,
}

/// The state machine openraft drives; clones share state.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<SmShared>,
    db: Arc<RwLock<Option<Database>>>,
    snapshot_seq: Arc<AtomicU64>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::error(e.to_string())).into()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StateMachine {
    /// Opens the snapshot database at `path` and restores the last snapshot.
    pub fn open(path: &Path, watch_capacity: usize) -> Result<StateMachine, StoreError> {
        let storage = |e: &dyn std::fmt::Display| {
            StoreError::Storage(format!("snapshot store {}: {e}", path.display()))
        };
        let db = super::open_redb(path).map_err(|e| storage(&e))?;
        let mut state = SmState {
            mvcc: Mvcc::default(),
            hub: WatchHub::new(watch_capacity),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        if let Some((meta, data)) = load_snapshot(&db).map_err(|e| storage(&e))? {
            let image: SnapshotImage = decode(&data).map_err(|e| storage(&e))?;
            state.mvcc = Mvcc::from_image(image.mvcc).map_err(|e| storage(&e))?;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership;
        }
        Ok(StateMachine {
            shared: Arc::new(SmShared {
                state: RwLock::new(state),
            }),
            db: Arc::new(RwLock::new(Some(db))),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Releases the snapshot database file.
    pub fn close(&self) {
        drop(self.db.write().unwrap_or_else(|p| p.into_inner()).take());
    }

    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    fn persist(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StoreError> {
        let storage =
            |e: &dyn std::fmt::Display| StoreError::Storage(format!("saving snapshot: {e}"));
        let meta_bytes = encode(meta)?;
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = db.as_ref().ok_or(StoreError::Shutdown)?;
        let txn = db.begin_write().map_err(|e| storage(&e))?;
        {
            let mut table = txn.open_table(SNAPSHOT).map_err(|e| storage(&e))?;
            table
                .insert("meta", meta_bytes.as_slice())
                .map_err(|e| storage(&e))?;
            table.insert("data", data).map_err(|e| storage(&e))?;
        }
        txn.commit().map_err(|e| storage(&e))
    }
}

/// Reads the stored snapshot (meta, data), verifying checksums.
fn load_snapshot(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
    let storage = |e: &dyn std::fmt::Display| StoreError::Storage(e.to_string());
    let read = db.begin_read().map_err(|e| storage(&e))?;
    let table = match read.open_table(SNAPSHOT) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(storage(&e)),
    };
    let (Some(meta), Some(data)) = (
        table.get("meta").map_err(|e| storage(&e))?,
        table.get("data").map_err(|e| storage(&e))?,
    ) else {
        return Ok(None);
    };
    let meta: SnapshotMeta = decode(meta.value())?;
    let data = data.value().to_vec();
    // Verify the payload now, so a corrupt snapshot is never served.
    decode::<SnapshotImage>(&data)?;
    Ok(Some((meta, data)))
}

/// Applies one transaction and hands its revision to the watchers.
fn apply_txn(state: &mut SmState, txn: &super::types::Txn, at_ms: u64) -> TxnOutcome {
    let (outcome, record) = state.mvcc.apply(txn, at_ms);
    if let Some(record) = record {
        state.hub.dispatch(&record);
    }
    outcome
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (mvcc, last_applied, membership) = {
            let state = self.shared.read();
            (
                state.mvcc.clone(),
                state.last_applied,
                state.membership.clone(),
            )
        };
        let data = tokio::task::spawn_blocking(move || {
            encode(&SnapshotImageRef {
                mvcc: mvcc.image_ref(),
            })
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id.term, id.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let this = self.clone();
        let (meta, data) =
            tokio::task::spawn_blocking(move || this.persist(&meta, &data).map(|()| (meta, data)))
                .await
                .map_err(snap_err)?
                .map_err(snap_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.shared.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<TxnOutcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let at_ms = now_ms();
        let mut state = self.shared.write();
        let state = &mut *state;
        let mut replies = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let unchanged = |state: &SmState| TxnOutcome {
                revision: state.mvcc.revision(),
                ..TxnOutcome::default()
            };
            match entry.payload {
                EntryPayload::Blank => replies.push(vec![unchanged(state)]),
                EntryPayload::Normal(Command::Txn(txn)) => {
                    replies.push(vec![apply_txn(state, &txn, at_ms)]);
                }
                EntryPayload::Normal(Command::Batch(txns)) => {
                    replies.push(txns.iter().map(|t| apply_txn(state, t, at_ms)).collect());
                }
                EntryPayload::Normal(Command::Restore(image)) => {
                    match Mvcc::from_image(image) {
                        Ok(mvcc) => {
                            state.mvcc = mvcc;
                            state.hub.cut_off_all();
                        }
                        // Validated before it was proposed; never expected.
                        Err(e) => {
                            tracing::error!(error = %e, "ignoring an inconsistent restore image")
                        }
                    }
                    replies.push(vec![TxnOutcome {
                        succeeded: true,
                        ..unchanged(state)
                    }])
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    replies.push(vec![unchanged(state)])
                }
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: SnapshotImage = decode(&data).map_err(sm_err)?;
        let mvcc = Mvcc::from_image(image.mvcc).map_err(sm_err)?;
        let this = self.clone();
        let meta_copy = meta.clone();
        tokio::task::spawn_blocking(move || this.persist(&meta_copy, &data))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        let mut state = self.shared.write();
        let old_revision = state.mvcc.revision();
        state.mvcc = mvcc;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let state = &mut *state;
        match state.mvcc.events_after("", old_revision) {
            Ok(records) => records.iter().for_each(|r| state.hub.dispatch(r)),
            Err(_) => state.hub.cut_off_all(),
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let db = self.db.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let db = db.read().unwrap_or_else(|p| p.into_inner());
            load_snapshot(db.as_ref().ok_or(StoreError::Shutdown)?)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
