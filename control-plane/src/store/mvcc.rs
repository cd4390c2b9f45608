//! The MVCC map at the heart of the state machine: the latest key-values, one
//! global revision, and a window of past revisions (each a [`RevisionRecord`]
//! of changes) from which past reads and watches are served. Pure data and
//! logic: no Raft, no disk, no locking; the state machine wraps it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::raft_types::TxnOutcome;
use super::types::{
    Compare, KeyValue, RangeRequest, RangeResponse, Revision, StoreError, Txn, TxnOp,
};

/// One change of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        kv: Arc<KeyValue>,
        prev: Option<Arc<KeyValue>>,
    },
    Delete {
        prev: Arc<KeyValue>,
    },
}

impl Change {
    /// The key this change touched.
    pub fn key(&self) -> &str {
        match self {
            Change::Put { kv, .. } => &kv.key,
            Change::Delete { prev } => &prev.key,
        }
    }

    /// The value before the change.
    fn prev(&self) -> Option<&Arc<KeyValue>> {
        match self {
            Change::Put { prev, .. } => prev.as_ref(),
            Change::Delete { prev } => Some(prev),
        }
    }
}

/// Everything one committed write changed, at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    pub revision: Revision,
    /// Wall-clock milliseconds when this member applied it (drives compaction).
    pub at_ms: u64,
    pub changes: Vec<Change>,
}

/// The MVCC map: latest values plus the history window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mvcc {
    current: BTreeMap<String, Arc<KeyValue>>,
    revision: Revision,
    compacted: Revision,
    /// Records for revisions compacted+1 ..= revision, contiguous.
    history: VecDeque<Arc<RevisionRecord>>,
}

impl Mvcc {
    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Applies a transaction; returns its outcome and, if it changed anything,
    /// the record of the new revision.
    pub fn apply(&mut self, txn: &Txn, at_ms: u64) -> (TxnOutcome, Option<Arc<RevisionRecord>>) {
        let compare_actual: Vec<Revision> = txn
            .compares
            .iter()
            .map(|Compare::ModRevision { key, .. }| {
                self.current.get(key).map_or(0, |kv| kv.mod_revision)
            })
            .collect();
        let succeeded = txn
            .compares
            .iter()
            .zip(&compare_actual)
            .all(|(Compare::ModRevision { equals, .. }, actual)| equals == actual);
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let next = self.revision + 1;
        let mut changes = Vec::with_capacity(ops.len());
        let mut outcome = TxnOutcome {
            succeeded,
            compare_actual,
            ..TxnOutcome::default()
        };
        for op in ops {
            match op {
                TxnOp::Put { key, value } => {
                    let prev = self.current.get(key).cloned();
                    let kv = Arc::new(KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(next, |p| p.create_revision),
                        mod_revision: next,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                    });
                    self.current.insert(key.clone(), kv.clone());
                    outcome.prev.push(prev.as_deref().cloned());
                    outcome.after.push(Some((*kv).clone()));
                    changes.push(Change::Put { kv, prev });
                }
                TxnOp::Delete { key } => {
                    let prev = self.current.remove(key);
                    outcome.prev.push(prev.as_deref().cloned());
                    outcome.after.push(None);
                    if let Some(prev) = prev {
                        changes.push(Change::Delete { prev });
                    }
                }
            }
        }
        if changes.is_empty() {
            outcome.revision = self.revision;
            return (outcome, None);
        }
        self.revision = next;
        outcome.revision = next;
        let record = Arc::new(RevisionRecord {
            revision: next,
            at_ms,
            changes,
        });
        self.history.push_back(record.clone());
        (outcome, Some(record))
    }

    fn check_readable(&self, revision: Revision) -> Result<(), StoreError> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision < self.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        Ok(())
    }

    /// Records with revision > `after`, newest last.
    fn records_after(
        &self,
        after: Revision,
    ) -> impl DoubleEndedIterator<Item = &Arc<RevisionRecord>> {
        let skip = usize::try_from(after.saturating_sub(self.compacted)).unwrap_or(usize::MAX);
        self.history.iter().skip(skip)
    }

    /// The latest value of `key`.
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.current.get(key).map(|kv| (**kv).clone())
    }

    /// The value of `key` as of `revision`.
    pub fn get_at(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        self.check_readable(revision)?;
        let mut value = self.current.get(key);
        for record in self.records_after(revision).rev() {
            for change in record.changes.iter().rev() {
                if change.key() == key {
                    value = change.prev();
                }
            }
        }
        Ok(value.map(|kv| (**kv).clone()))
    }

    /// Keys under a prefix, paged, at the latest or a past revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let start = match &request.start_after {
            Some(after) if after.as_str() >= request.prefix.as_str() => {
                Bound::Excluded(after.clone())
            }
            _ => Bound::Included(request.prefix.clone()),
        };
        let prefix = request.prefix.as_str();
        let at = request.revision.unwrap_or(self.revision);
        if at == self.revision {
            let iter = self
                .current
                .range::<String, _>((start, Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, kv)| kv);
            return Ok(page(iter, request.limit, at));
        }
        self.check_readable(at)?;
        // Undo, newest first, every change after `at` under the prefix.
        let mut view: BTreeMap<&str, &Arc<KeyValue>> = self
            .current
            .range::<String, _>((start.clone(), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, kv)| (k.as_str(), kv))
            .collect();
        let in_range = |key: &str| {
            key.starts_with(prefix)
                && match &start {
                    Bound::Excluded(after) => key > after.as_str(),
                    _ => true,
                }
        };
        for record in self.records_after(at).rev() {
            for change in record.changes.iter().rev() {
                let key = change.key();
                if in_range(key) {
                    match change.prev() {
                        Some(prev) => view.insert(prev.key.as_str(), prev),
                        None => view.remove(key),
                    };
                }
            }
        }
        Ok(page(view.into_values(), request.limit, at))
    }

    /// Every record with revision > `after` that touches `prefix`; Compacted if
    /// some of them are gone.
    pub fn events_after(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<Vec<Arc<RevisionRecord>>, StoreError> {
        if after < self.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        Ok(self
            .records_after(after)
            .filter(|r| r.changes.iter().any(|c| c.key().starts_with(prefix)))
            .cloned()
            .collect())
    }

    /// Drops history records applied before `cutoff_ms` and any beyond the
    /// newest `max_records`.
    pub fn compact(&mut self, cutoff_ms: u64, max_records: usize) {
        while let Some(front) = self.history.front() {
            if front.at_ms >= cutoff_ms && self.history.len() <= max_records {
                break;
            }
            self.compacted = front.revision;
            self.history.pop_front();
        }
    }

    /// Drops all history (e.g. after restoring a backup); the current revision stays readable.
    pub fn compact_all(&mut self) {
        self.history.clear();
        self.compacted = self.revision;
    }

    /// A digest of the live keys and the revision (history excluded).
    pub fn state_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.revision.to_le_bytes());
        for kv in self.current.values() {
            for field in [kv.create_revision, kv.mod_revision, kv.version] {
                hasher.update(field.to_le_bytes());
            }
            hasher.update((kv.key.len() as u64).to_le_bytes());
            hasher.update(kv.key.as_bytes());
            hasher.update((kv.value.len() as u64).to_le_bytes());
            hasher.update(&kv.value);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The serialized form of an [`Mvcc`] map, as snapshots and backups hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvccImage {
    revision: Revision,
    compacted: Revision,
    kvs: Vec<KeyValue>,
    history: Vec<HistoryEntry>,
}

/// One revision of the history window: its revision, its time, and each
/// changed key's (previous, new) value.
type HistoryEntry = (Revision, u64, Vec<(Option<KeyValue>, Option<KeyValue>)>);

/// An [`MvccImage`] borrowing from the map: it serializes to the same bytes
/// without copying a value (a snapshot of a large map copied every value twice).
#[derive(Serialize)]
pub struct MvccImageRef<'a> {
    revision: Revision,
    compacted: Revision,
    kvs: Vec<&'a KeyValue>,
    history: Vec<HistoryEntryRef<'a>>,
}

type HistoryEntryRef<'a> = (
    Revision,
    u64,
    Vec<(Option<&'a KeyValue>, Option<&'a KeyValue>)>,
);

impl Mvcc {
    /// The image of the whole map, history included, borrowed (see [`MvccImageRef`]).
    pub fn image_ref(&self) -> MvccImageRef<'_> {
        let history = self
            .history
            .iter()
            .map(|r| {
                let changes = r
                    .changes
                    .iter()
                    .map(|c| match c {
                        Change::Put { kv, prev } => (Some(&**kv), prev.as_deref()),
                        Change::Delete { prev } => (None, Some(&**prev)),
                    })
                    .collect();
                (r.revision, r.at_ms, changes)
            })
            .collect();
        MvccImageRef {
            revision: self.revision,
            compacted: self.compacted,
            kvs: self.current.values().map(|kv| &**kv).collect(),
            history,
        }
    }

    /// A serializable copy of the whole map, history included.
    pub fn to_image(&self) -> MvccImage {
        let image = self.image_ref();
        let owned = |kv: Option<&KeyValue>| kv.cloned();
        MvccImage {
            revision: image.revision,
            compacted: image.compacted,
            kvs: image.kvs.into_iter().cloned().collect(),
            history: image
                .history
                .into_iter()
                .map(|(revision, at_ms, changes)| {
                    let changes = changes
                        .into_iter()
                        .map(|(after, prev)| (owned(after), owned(prev)))
                        .collect();
                    (revision, at_ms, changes)
                })
                .collect(),
        }
    }

    /// Rebuilds the map from an image; Storage error if the image is inconsistent.
    pub fn from_image(image: MvccImage) -> Result<Mvcc, StoreError> {
        let bad =
            |what: &str| StoreError::Storage(format!("snapshot image is inconsistent: {what}"));
        let current = image
            .kvs
            .into_iter()
            .map(|kv| (kv.key.clone(), Arc::new(kv)))
            .collect();
        let mut history = VecDeque::with_capacity(image.history.len());
        for (i, (revision, at_ms, changes)) in image.history.into_iter().enumerate() {
            if revision != image.compacted + 1 + i as Revision {
                return Err(bad("history is not contiguous"));
            }
            let changes = changes
                .into_iter()
                .map(|(after, prev)| match (after, prev) {
                    (Some(kv), prev) => Ok(Change::Put {
                        kv: Arc::new(kv),
                        prev: prev.map(Arc::new),
                    }),
                    (None, Some(prev)) => Ok(Change::Delete {
                        prev: Arc::new(prev),
                    }),
                    (None, None) => Err(bad("empty change")),
                })
                .collect::<Result<_, _>>()?;
            history.push_back(Arc::new(RevisionRecord {
                revision,
                at_ms,
                changes,
            }));
        }
        if image.compacted + history.len() as Revision != image.revision {
            return Err(bad("history does not end at the revision"));
        }
        Ok(Mvcc {
            current,
            revision: image.revision,
            compacted: image.compacted,
            history,
        })
    }
}

fn page<'a>(
    mut iter: impl Iterator<Item = &'a Arc<KeyValue>>,
    limit: usize,
    revision: Revision,
) -> RangeResponse {
    let mut kvs = Vec::new();
    for kv in iter.by_ref() {
        kvs.push((**kv).clone());
        if limit != 0 && kvs.len() == limit {
            break;
        }
    }
    let remaining = iter.count() as u64;
    RangeResponse {
        kvs,
        revision,
        more: remaining > 0,
        remaining,
    }
}

#[cfg(test)]
#[path = "mvcc_tests.rs"]
mod tests;
