//! The watch hub and the [`Watch`] stream. Every applied revision is offered
//! to each watcher whose prefix it touches through a bounded channel; a
//! watcher whose channel is full is cut off (it sees `WatchLagged` and can
//! resume), so a slow watcher never blocks writers or other watchers.
//! Watchers that saw nothing for a while get progress events (bookmarks).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::mvcc::{Change, RevisionRecord};
use super::types::{Revision, StoreError, WatchEvent};

enum Item {
    Record(Arc<RevisionRecord>),
    Progress(Revision),
}

struct Slot {
    prefix: String,
    tx: mpsc::Sender<Item>,
    lagged: Arc<AtomicBool>,
    /// The newest revision this watcher has been sent (event or progress).
    last_sent: Revision,
}

/// Fans applied revisions out to watchers; lives beside the MVCC map under
/// the state machine's lock, so registration and dispatch never race.
pub struct WatchHub {
    slots: Vec<Slot>,
    capacity: usize,
}

impl WatchHub {
    /// A hub whose watchers buffer up to `capacity` revisions each.
    pub fn new(capacity: usize) -> WatchHub {
        WatchHub {
            slots: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Registers a watcher that first replays `backlog` (records after
    /// `after`, already filtered) and then receives live revisions.
    pub fn register(
        &mut self,
        prefix: &str,
        after: Revision,
        current: Revision,
        backlog: Vec<Arc<RevisionRecord>>,
    ) -> Watch {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        self.slots.push(Slot {
            prefix: prefix.to_string(),
            tx,
            lagged: lagged.clone(),
            last_sent: current.max(after),
        });
        Watch {
            prefix: prefix.to_string(),
            after,
            last_revision: after,
            records: backlog.into(),
            events: VecDeque::new(),
            rx,
            lagged,
            done: false,
        }
    }

    /// Offers a newly applied revision to every watcher it concerns.
    pub fn dispatch(&mut self, record: &Arc<RevisionRecord>) {
        self.slots.retain_mut(|slot| {
            if !record
                .changes
                .iter()
                .any(|c| c.key().starts_with(&slot.prefix))
            {
                return !slot.tx.is_closed();
            }
            match slot.tx.try_send(Item::Record(record.clone())) {
                Ok(()) => {
                    slot.last_sent = record.revision;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.lagged.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Tells every watcher not yet told about `revision` that it has seen everything up to it.
    pub fn progress(&mut self, revision: Revision) {
        self.slots.retain_mut(|slot| {
            if slot.last_sent >= revision {
                return !slot.tx.is_closed();
            }
            match slot.tx.try_send(Item::Progress(revision)) {
                Ok(()) => {
                    slot.last_sent = revision;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Cuts every watcher off with WatchLagged (they missed revisions, e.g.
    /// across a snapshot install that skipped past the history they need).
    pub fn cut_off_all(&mut self) {
        for slot in self.slots.drain(..) {
            slot.lagged.store(true, Ordering::Release);
        }
    }

    /// Drops every watcher: their streams end (None) once drained.
    pub fn close_all(&mut self) {
        self.slots.clear();
    }
}

/// A stream of watch events in revision order; ends with an error the
/// watcher can resume from (Compacted, WatchLagged, Shutdown).
pub struct Watch {
    prefix: String,
    after: Revision,
    /// Newest revision fully delivered.
    last_revision: Revision,
    records: VecDeque<Arc<RevisionRecord>>,
    events: VecDeque<WatchEvent>,
    rx: mpsc::Receiver<Item>,
    lagged: Arc<AtomicBool>,
    done: bool,
}

impl Watch {
    /// The next event, or None when the store shut down cleanly.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Some(record) = self.records.pop_front() {
                self.expand(&record);
                continue;
            }
            match self.rx.recv().await {
                Some(Item::Record(record)) => self.expand(&record),
                Some(Item::Progress(revision)) => {
                    if revision > self.last_revision {
                        self.last_revision = revision;
                        return Some(Ok(WatchEvent::Progress { revision }));
                    }
                }
                None => {
                    self.done = true;
                    if self.lagged.load(Ordering::Acquire) {
                        return Some(Err(StoreError::WatchLagged {
                            resume_after: self.last_revision,
                        }));
                    }
                    return None;
                }
            }
        }
    }

    /// Queues the events of `record` under this watch's prefix.
    fn expand(&mut self, record: &RevisionRecord) {
        if record.revision <= self.last_revision || record.revision <= self.after {
            return;
        }
        self.last_revision = record.revision;
        for change in &record.changes {
            if !change.key().starts_with(&self.prefix) {
                continue;
            }
            self.events.push_back(match change {
                Change::Put { kv, prev } => WatchEvent::Put {
                    kv: (**kv).clone(),
                    prev: prev.as_deref().cloned(),
                },
                Change::Delete { prev } => WatchEvent::Delete {
                    prev: (**prev).clone(),
                    revision: record.revision,
                },
            });
        }
    }
}
