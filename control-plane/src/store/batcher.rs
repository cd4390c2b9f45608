//! Proposal batching. openraft 0.9 writes one log append at a time and waits
//! for its fsync before taking the next, so one Raft entry per write caps
//! throughput at one write per fsync whatever the number of clients. Writes
//! are therefore queued here and every write that arrives while earlier
//! proposals are in flight goes into the next Raft entry as one
//! `Command::Batch`: one append, one fsync, one replication round for all
//! of them. Each transaction of a batch still gets its own revision and its
//! own outcome, exactly as if it had been proposed alone.

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

pub(super) type BatchQueue = mpsc::UnboundedSender<Pending>;

/// Starts the batching task of the store behind `inner`; it ends when the
/// store is dropped (the queue closes).
pub(super) fn spawn(inner: Weak<Inner>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(first) = queue.recv().await {
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
