//! The Raft log on disk (redb), with group commit: `append` puts entries in
//! an in-memory tail that readers see at once and queues them for a single
//! writer thread, which writes everything queued so far in ONE redb
//! transaction and fsync, then acknowledges every append of the batch. Vote,
//! truncation and purge go through the same queue, so all
//! writes reach disk in the order Raft issued them, except the committed id:
//! it is not queued but left for the writer to put into its next batch, so a
//! commit costs no transaction of its own (one per write on every member
//! before, each queued in front of the next append). A purge (thousands of
//! entries after each snapshot) is carried out a chunk per batch, so it never
//! holds up the appends queued behind it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote, decode, encode};
use super::types::StoreError;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Most operations one fsync may cover.
const MAX_BATCH: usize = 4096;
/// Purged entries deleted per batch (deleting ~9,000 at once took ~300 ms).
const PURGE_CHUNK: u64 = 64;
/// How long an idle writer waits before deleting the next chunk of a purge.
const PURGE_IDLE: std::time::Duration = std::time::Duration::from_millis(1);

enum WriteOp {
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    Truncate(u64),
    Purge(u64),
    Meta(
        &'static str,
        Vec<u8>,
        Option<oneshot::Sender<Result<(), String>>>,
    ),
}

impl WriteOp {
    /// Whether the batch holding this op must reach disk before it is acknowledged.
    fn needs_fsync(&self) -> bool {
        match self {
            WriteOp::Append(..) | WriteOp::Truncate(_) => true,
            WriteOp::Meta(_, _, done) => done.is_some(),
            WriteOp::Purge(_) => false,
        }
    }
}

#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

struct Shared {
    tail: Mutex<Tail>,
    /// The committed id (encoded) not yet written; see [`PendingCommitted`].
    committed: PendingCommitted,
    writer: Mutex<Option<std_mpsc::Sender<WriteOp>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The latest committed id `save_committed` was given, waiting for the
/// writer's next transaction. It needs no fsync of its own: openraft
/// re-derives the committed id after a crash, and an older one only means
/// re-applying entries that are in the log anyway.
type PendingCommitted = Arc<Mutex<Option<Vec<u8>>>>;

fn take_pending(pending: &PendingCommitted) -> Option<Vec<u8>> {
    pending.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The redb-backed Raft log; clones share the same log.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

fn io_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Opens (or creates) the log in `path`, loading and verifying every record.
    pub fn open(path: &Path) -> Result<LogStore, StoreError> {
        let storage = |e: &dyn std::fmt::Display| {
            StoreError::Storage(format!("raft log {}: {e}", path.display()))
        };
        let db = super::open_redb(path).map_err(|e| storage(&e))?;
        let mut tail = Tail::default();
        {
            let txn = db.begin_write().map_err(|e| storage(&e))?;
            txn.open_table(LOG).map_err(|e| storage(&e))?;
            txn.open_table(META).map_err(|e| storage(&e))?;
            txn.commit().map_err(|e| storage(&e))?;
            let read = db.begin_read().map_err(|e| storage(&e))?;
            let log = read.open_table(LOG).map_err(|e| storage(&e))?;
            for row in log.iter().map_err(|e| storage(&e))? {
                let (index, bytes) = row.map_err(|e| storage(&e))?;
                let entry: Entry = decode(bytes.value()).map_err(|e| storage(&e))?;
                tail.entries.insert(index.value(), entry);
            }
            let meta = read.open_table(META).map_err(|e| storage(&e))?;
            let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| storage(&e))?
                    .map(|v| v.value().to_vec()))
            };
            if let Some(bytes) = get("vote")? {
                tail.vote = decode(&bytes).map_err(|e| storage(&e))?;
            }
            if let Some(bytes) = get("committed")? {
                tail.committed = decode(&bytes).map_err(|e| storage(&e))?;
            }
            if let Some(bytes) = get("purged")? {
                tail.last_purged = decode(&bytes).map_err(|e| storage(&e))?;
            }
        }
        let purge = PurgeProgress {
            next: tail.entries.keys().next().copied().unwrap_or(0),
            target: tail.last_purged.map(|id| id.index),
        };
        if let Some(purged) = tail.last_purged {
            // Entries a purge had not deleted yet when the member stopped.
            tail.entries = tail.entries.split_off(&(purged.index + 1));
        }
        let (tx, rx) = std_mpsc::channel();
        let committed = PendingCommitted::default();
        let pending = committed.clone();
        let thread = std::thread::Builder::new()
            .name("store-log-writer".into())
            .spawn(move || writer_loop(db, rx, purge, pending))
            .map_err(|e| storage(&e))?;
        Ok(LogStore {
            shared: Arc::new(Shared {
                tail: Mutex::new(tail),
                committed,
                writer: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.shared.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    // openraft's StorageError is large; it is what the storage traits return.
    #[allow(clippy::result_large_err)]
    fn send(&self, op: WriteOp) -> Result<(), StorageError> {
        let writer = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(writer) = writer.as_ref() else {
            return Err(io_err("the raft log is closed"));
        };
        writer
            .send(op)
            .map_err(|_| io_err("the log writer stopped after a storage failure"))
    }

    /// Flushes what is queued, stops the writer and releases the file.
    pub fn close(&self) {
        drop(
            self.shared
                .writer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    async fn write_meta(&self, key: &'static str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(WriteOp::Meta(key, bytes, Some(tx)))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_err(e)),
            Err(_) => Err(io_err("the log writer stopped")),
        }
    }
}

/// The part of a purge not yet deleted from disk.
struct PurgeProgress {
    /// The lowest index that may still be on disk.
    next: u64,
    /// Delete through this index.
    target: Option<u64>,
}

impl PurgeProgress {
    fn pending(&self) -> bool {
        self.target.is_some_and(|t| t >= self.next)
    }

    /// What the next batch deletes.
    fn next_chunk(&self) -> Option<PurgeChunk> {
        let target = self.target.filter(|t| *t >= self.next)?;
        Some(PurgeChunk {
            first: self.next,
            last: target.min(self.next + PURGE_CHUNK - 1),
            target,
        })
    }
}

/// Entries `first..=last` to delete now, on the way to `target`.
#[derive(Clone, Copy)]
struct PurgeChunk {
    first: u64,
    last: u64,
    target: u64,
}

/// Writes queued operations in batches: one transaction, one fsync per batch.
fn writer_loop(
    db: Database,
    rx: std_mpsc::Receiver<WriteOp>,
    mut purge: PurgeProgress,
    pending: PendingCommitted,
) {
    loop {
        let first = if purge.pending() {
            match rx.recv_timeout(PURGE_IDLE) {
                Ok(op) => Some(op),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            }
        };
        // Taken before the queue is drained: every entry this id covers was
        // queued before it was set, so it is in this batch or an earlier one.
        let mut committed = take_pending(&pending);
        let mut batch: Vec<WriteOp> = first.into_iter().collect();
        while !batch.is_empty() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch.len() >= MAX_BATCH
            && let Some(bytes) = committed.take()
        {
            // The queue was not drained: leave the id for the next batch.
            let mut slot = pending.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(bytes);
        }
        for op in &batch {
            if let WriteOp::Purge(upto) = op {
                purge.target = purge.target.max(Some(*upto));
            }
        }
        let result = write_batch(&db, &batch, committed.as_deref(), purge.next_chunk())
            .map_err(|e| e.to_string());
        let result = match result {
            Ok(next) => {
                purge.next = next.unwrap_or(purge.next);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "raft log write failed; this member stops serving");
                Err(e)
            }
        };
        for op in batch {
            match op {
                WriteOp::Append(_, callback) => {
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                WriteOp::Meta(_, _, Some(done)) => {
                    let _ = done.send(result.clone());
                }
                _ => {}
            }
        }
        if result.is_err() {
            return;
        }
    }
    // Closed: keep the last committed id for the next start.
    if let Some(bytes) = take_pending(&pending)
        && let Err(e) = write_committed(&db, &bytes)
    {
        tracing::warn!(error = %e, "cannot record the committed id at close");
    }
}

// redb::Error is large; it is returned once, at close.
#[allow(clippy::result_large_err)]
fn write_committed(db: &Database, bytes: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert("committed", bytes)?;
    txn.commit()?;
    Ok(())
}

// redb::Error is large; batches fail rarely and are not on a hot error path.
#[allow(clippy::result_large_err)]
fn write_batch(
    db: &Database,
    batch: &[WriteOp],
    committed: Option<&[u8]>,
    purge: Option<PurgeChunk>,
) -> Result<Option<u64>, redb::Error> {
    let mut txn = db.begin_write()?;
    if !batch.iter().any(WriteOp::needs_fsync) {
        // Only the committed id, a purge or purged id: none needs to survive a crash
        // (openraft re-derives the committed id; a purge lost is a longer log),
        // so no fsync. The next durable commit persists these too, in order.
        txn.set_durability(redb::Durability::None);
    }
    let mut purged_to = None;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        if let Some(chunk) = purge {
            log.retain_in(chunk.first..=chunk.last, |_, _| false)?;
            // Resume at the lowest entry left, skipping gaps (e.g. after a
            // snapshot install); with none left, nothing at or below the
            // target can appear any more.
            let lowest = log.first()?.map(|(index, _)| index.value());
            purged_to = Some(lowest.map_or(chunk.target + 1, |i| i.max(chunk.last + 1)));
        }
        if let Some(bytes) = committed {
            meta.insert("committed", bytes)?;
        }
        for op in batch {
            match op {
                WriteOp::Append(entries, _) => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                WriteOp::Truncate(since) => log.retain_in(*since.., |_, _| false)?,
                // Carried out a chunk at a time (see `PurgeProgress`).
                WriteOp::Purge(_) => {}
                WriteOp::Meta(key, bytes, _) => {
                    meta.insert(*key, bytes.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(purged_to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .tail()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let tail = self.tail();
        let last = tail
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(tail.last_purged);
        Ok(LogState {
            last_purged_log_id: tail.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(&Some(*vote)).map_err(io_err)?;
        self.tail().vote = Some(*vote);
        self.write_meta("vote", bytes).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.tail().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = encode(&committed).map_err(io_err)?;
        self.tail().committed = committed;
        *self
            .shared
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.tail().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut tail = self.tail();
            for entry in entries {
                encoded.push((entry.log_id.index, encode(&entry).map_err(io_err)?));
                tail.entries.insert(entry.log_id.index, entry);
            }
            // Enqueue under the tail lock so the queue order is the append order.
            self.send(WriteOp::Append(encoded, callback))?;
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut tail = self.tail();
        tail.entries.split_off(&log_id.index);
        self.send(WriteOp::Truncate(log_id.index))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&Some(log_id)).map_err(io_err)?;
        let mut tail = self.tail();
        tail.entries = tail.entries.split_off(&(log_id.index + 1));
        tail.last_purged = Some(log_id);
        self.send(WriteOp::Meta("purged", bytes, None))?;
        self.send(WriteOp::Purge(log_id.index))
    }
}
