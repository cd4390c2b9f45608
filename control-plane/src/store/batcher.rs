//! Proposal batching. Every Raft entry costs an fsync on a quorum, a
//! replication round and a pass through openraft's core, so one Raft entry
//! per write caps throughput near one write per fsync round whatever the
//! number of clients. Writes are therefore queued here and every write that arrives while earlier
//! proposals are in flight goes into the next Raft entry as one
//! `Command::Batch`: one append, one fsync, one replication round for all
//! of them. Each transaction of a batch still gets its own revision and its
//! own outcome, exactly as if it had been proposed alone. A write that finds
//! nothing queued and an entry slot free is proposed from its own task (a
//! lone client's writes skip the hand-offs to the batching task and back).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::raft_types::Command;
use super::types::{Txn, TxnOp};
use super::{Inner, Store, StoreError, TxnOutcome};

/// Raft entries proposed at once: one being written while the next fills.
const IN_FLIGHT: usize = 2;
/// Most transactions one entry carries.
const MAX_TXNS: usize = 1024;
/// Payload bytes after which an entry takes no more transactions (a single
/// larger transaction still goes, alone).
const MAX_BYTES: usize = 1 << 20;

/// A write waiting for its batch.
pub(super) struct Pending {
    pub txn: Txn,
    pub reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
}

/// Where a store's writes go to be proposed.
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
    /// Writes sent to `queue` and not yet taken by the batching task.
    queued: Arc<AtomicUsize>,
    /// Raft entries in flight, shared by the batching task and the fast path.
    slots: Arc<Semaphore>,
}

/// What the batching task reads: [`spawn`] takes it.
pub(super) struct BatchQueue {
    queue: mpsc::UnboundedReceiver<Pending>,
    queued: Arc<AtomicUsize>,
    slots: Arc<Semaphore>,
}

/// A batcher and the queue its task drains.
pub(super) fn channel() -> (Batcher, BatchQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let batcher = Batcher {
        queue: tx,
        queued: queued.clone(),
        slots: slots.clone(),
    };
    (
        batcher,
        BatchQueue {
            queue: rx,
            queued,
            slots,
        },
    )
}

impl Batcher {
    /// Commits `txn`: at once when nothing waits and an entry slot is free,
    /// else in the next batch.
    pub(super) async fn write(&self, store: &Store, txn: Txn) -> Result<TxnOutcome, StoreError> {
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            let result = store
                .propose(Command::Txn(txn))
                .await
                .and_then(|outcomes| single(outcomes, 1));
            drop(slot);
            return result;
        }
        let (reply, answer) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(Pending { txn, reply }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Shutdown);
        }
        answer.await.map_err(|_| StoreError::Shutdown)?
    }
}

/// Starts the batching task of the store behind `inner`; it ends when the
/// store is dropped (the queue closes).
pub(super) fn spawn(inner: Weak<Inner>, queue: BatchQueue) {
    let BatchQueue {
        mut queue,
        queued,
        slots,
    } = queue;
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            queued.fetch_sub(1, Ordering::AcqRel);
            // Wait for a free slot before gathering, so the batch grows while
            // the previous entries are being written.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut bytes = payload_bytes(&first.txn);
            let mut batch = vec![first];
            while batch.len() < MAX_TXNS && bytes < MAX_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        queued.fetch_sub(1, Ordering::AcqRel);
                        bytes += payload_bytes(&next.txn);
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let Some(inner) = inner.upgrade() else {
                answer_all(batch, &Err(StoreError::Shutdown));
                return;
            };
            let store = Store { inner };
            tokio::spawn(async move {
                propose(&store, batch).await;
                drop(slot);
            });
        }
    });
}

/// Proposes `batch` as one entry and answers each write with its outcome.
async fn propose(store: &Store, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let Some(one) = batch.pop() else { return };
        let result = store
            .propose(Command::Txn(one.txn))
            .await
            .and_then(|outcomes| single(outcomes, 1));
        let _ = one.reply.send(result);
        return;
    }
    let (txns, replies): (Vec<Txn>, Vec<_>) = batch.into_iter().map(|p| (p.txn, p.reply)).unzip();
    let expected = txns.len();
    match store.propose(Command::Batch(txns)).await {
        Ok(outcomes) if outcomes.len() == expected => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(outcomes) => {
            let e = lost(outcomes.len(), expected);
            replies
                .into_iter()
                .for_each(|r| drop(r.send(Err(e.clone()))));
        }
        Err(e) => replies
            .into_iter()
            .for_each(|r| drop(r.send(Err(e.clone())))),
    }
}

/// The one outcome of a single-transaction entry.
pub(super) fn single(
    mut outcomes: Vec<TxnOutcome>,
    expected: usize,
) -> Result<TxnOutcome, StoreError> {
    match outcomes.pop() {
        Some(outcome) if outcomes.is_empty() => Ok(outcome),
        _ => Err(lost(outcomes.len() + 1, expected)),
    }
}

fn lost(got: usize, expected: usize) -> StoreError {
    StoreError::Storage(format!(
        "the state machine answered {got} outcomes for {expected} transactions"
    ))
}

fn answer_all(batch: Vec<Pending>, result: &Result<TxnOutcome, StoreError>) {
    for pending in batch {
        let _ = pending.reply.send(result.clone());
    }
}

/// Roughly the bytes `txn` adds to a log entry.
fn payload_bytes(txn: &Txn) -> usize {
    let op_bytes = |op: &TxnOp| match op {
        TxnOp::Put { key, value } => key.len() + value.len(),
        TxnOp::Delete { key } => key.len(),
    };
    txn.success
        .iter()
        .chain(&txn.failure)
        .map(op_bytes)
        .sum::<usize>()
        + txn.compares.len() * 64
}
