//! The change feeds of one informer: every subscriber gets its own queue,
//! as client-go's shared informer gives each listener a growing buffer.
//! A queue costs nothing until changes wait in it (a fixed-size broadcast
//! ring of 4,096 slots per informer held ~5 MB of an idle `skiff up`), and
//! a subscriber that falls behind is never cut off for a short burst. Only
//! a subscriber that stops draining (`MAX_BACKLOG` changes waiting) stops
//! receiving changes and gets one `Change::Resync` instead, which tells it
//! to reconsider every object; its feed resumes once it has read that. A
//! subscriber that joins after the informer's first list (a second
//! component sharing the informer) starts with a Resync too: it missed
//! the objects' first Upserts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::informer::Change;

/// Changes a subscriber may leave unread before it is resynced instead.
const MAX_BACKLOG: usize = 65_536;

struct Shared {
    /// Changes sent and not yet received.
    backlog: AtomicUsize,
    /// Set when a Resync replaced the changes that would have overflowed.
    resync_pending: AtomicBool,
}

struct Subscriber<K> {
    tx: mpsc::UnboundedSender<Arc<Change<K>>>,
    shared: Arc<Shared>,
}

/// The subscribers of one informer.
pub struct Fanout<K> {
    subscribers: Mutex<Vec<Subscriber<K>>>,
    /// Set (under the subscribers' lock) when the first list begins to be
    /// sent: from then on a new subscriber has missed changes.
    listed: AtomicBool,
}

impl<K> Default for Fanout<K> {
    fn default() -> Self {
        Self {
            subscribers: Mutex::new(Vec::new()),
            listed: AtomicBool::new(false),
        }
    }
}

/// One subscriber's end of the feed.
pub struct Subscription<K> {
    rx: mpsc::UnboundedReceiver<Arc<Change<K>>>,
    shared: Arc<Shared>,
}

impl<K> Fanout<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber<K>>> {
        // A list of senders: nothing a panicking holder leaves half done.
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new feed of the changes sent from now on, beginning with a Resync
    /// when the first list has already begun to be sent.
    pub fn subscribe(&self) -> Subscription<K> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            backlog: AtomicUsize::new(0),
            resync_pending: AtomicBool::new(false),
        });
        let mut subscribers = self.lock();
        if self.listed.load(Ordering::Acquire) {
            shared.backlog.fetch_add(1, Ordering::AcqRel);
            // The receiver is in hand: this send cannot fail.
            let _ = tx.send(Arc::new(Change::Resync));
        }
        subscribers.push(Subscriber {
            tx,
            shared: shared.clone(),
        });
        Subscription { rx, shared }
    }

    /// The informer is about to send its first list. Called before those
    /// changes are sent, so a subscriber either joined earlier and gets
    /// them, or joins later and gets a Resync (and perhaps some of them too,
    /// which a level-triggered subscriber takes in its stride).
    pub fn mark_listed(&self) {
        let _subscribers = self.lock();
        self.listed.store(true, Ordering::Release);
    }

    /// Hands `change` to every subscriber; forgets those that went away.
    pub fn send(&self, change: Arc<Change<K>>) {
        self.lock().retain(|s| {
            if s.shared.resync_pending.load(Ordering::Acquire) {
                return !s.tx.is_closed();
            }
            let item = if s.shared.backlog.load(Ordering::Acquire) >= MAX_BACKLOG {
                s.shared.resync_pending.store(true, Ordering::Release);
                Arc::new(Change::Resync)
            } else {
                change.clone()
            };
            s.shared.backlog.fetch_add(1, Ordering::AcqRel);
            s.tx.send(item).is_ok()
        });
    }
}

impl<K> Subscription<K> {
    fn received(&self, change: &Arc<Change<K>>) {
        self.shared.backlog.fetch_sub(1, Ordering::AcqRel);
        if matches!(change.as_ref(), Change::Resync) {
            self.shared.resync_pending.store(false, Ordering::Release);
        }
    }

    /// The next change; None once the informer is gone.
    pub async fn recv(&mut self) -> Option<Arc<Change<K>>> {
        let change = self.rx.recv().await?;
        self.received(&change);
        Some(change)
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Change<K>>> {
        let change = self.rx.try_recv().ok()?;
        self.received(&change);
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(n: u32) -> Arc<Change<u32>> {
        Arc::new(Change::Upsert {
            old: None,
            new: Arc::new(n),
        })
    }

    #[tokio::test]
    async fn each_subscriber_gets_every_change_in_order() {
        let fanout = Fanout::default();
        let (mut a, mut b) = (fanout.subscribe(), fanout.subscribe());
        for n in 0..10_000 {
            fanout.send(upsert(n));
        }
        for sub in [&mut a, &mut b] {
            for n in 0..10_000 {
                match sub.recv().await.as_deref() {
                    Some(Change::Upsert { new, .. }) => assert_eq!(**new, n),
                    _ => panic!("expected upsert {n}"),
                }
            }
            assert!(sub.try_recv().is_none());
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_stops_reading_is_resynced_then_fed_again() {
        let fanout = Fanout::default();
        let mut slow = fanout.subscribe();
        for n in 0..(MAX_BACKLOG as u32 + 100) {
            fanout.send(upsert(n));
        }
        let mut got = Vec::new();
        while let Some(c) = slow.try_recv() {
            got.push(c);
        }
        assert_eq!(got.len(), MAX_BACKLOG + 1, "the backlog, then one Resync");
        assert!(matches!(
            got.last().map(|c| c.as_ref()),
            Some(Change::Resync)
        ));
        fanout.send(upsert(7));
        assert!(matches!(
            slow.recv().await.as_deref(),
            Some(Change::Upsert { new, .. }) if **new == 7
        ));
    }

    #[tokio::test]
    async fn a_subscriber_joining_after_the_first_list_starts_with_a_resync() {
        let fanout = Fanout::default();
        let mut early = fanout.subscribe();
        fanout.mark_listed();
        fanout.send(upsert(1));
        let mut late = fanout.subscribe();
        fanout.send(upsert(2));
        assert!(matches!(
            early.recv().await.as_deref(),
            Some(Change::Upsert { new, .. }) if **new == 1
        ));
        assert!(matches!(late.recv().await.as_deref(), Some(Change::Resync)));
        for sub in [&mut early, &mut late] {
            assert!(matches!(
                sub.recv().await.as_deref(),
                Some(Change::Upsert { new, .. }) if **new == 2
            ));
            assert!(sub.try_recv().is_none());
        }
    }

    #[test]
    fn dropped_subscribers_are_forgotten() {
        let fanout = Fanout::default();
        drop(fanout.subscribe());
        let _kept = fanout.subscribe();
        fanout.send(upsert(1));
        assert_eq!(fanout.lock().len(), 1);
    }
}
