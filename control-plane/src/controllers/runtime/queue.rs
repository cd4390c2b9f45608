//! The work queue every controller drains: de-duplicating (a key waiting in
//! the queue is queued once), never hands the same key to two workers at
//! once (a key re-added while being processed is queued again when the
//! worker calls `done`), and rate-limits retries with per-key exponential
//! back-off. Modelled on client-go's `workqueue`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// A de-duplicating, rate-limited queue of keys.
pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(60))
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    /// A queue whose retries back off from `base_delay` doubling up to `max_delay`.
    pub fn new(base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    failures: HashMap::new(),
                    shut_down: false,
                }),
                notify: Notify::new(),
                base_delay,
                max_delay,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned lock only means a worker panicked mid-update of plain
        // collections; the data is still consistent enough to continue.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let mut st = self.lock();
        if st.shut_down || !st.dirty.insert(item.clone()) {
            return;
        }
        if !st.processing.contains(&item) {
            st.queue.push_back(item);
            drop(st);
            self.inner.notify.notify_one();
        }
    }

    /// Queues `item` after `delay`.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// Queues `item` after its next back-off delay (exponential per key).
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut st = self.lock();
            let n = st.failures.entry(item.clone()).or_insert(0);
            let exp = (*n).min(20);
            *n += 1;
            self.inner
                .base_delay
                .saturating_mul(1u32 << exp)
                .min(self.inner.max_delay)
        };
        self.add_after(item, delay);
    }

    /// Resets the back-off of `item` (call after a successful reconcile).
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How many times `item` has failed since it was last forgotten.
    pub fn failures(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// Waits for the next key; `None` once the queue is shut down.
    pub async fn next(&self) -> Option<T> {
        loop {
            {
                let mut st = self.lock();
                if st.shut_down {
                    drop(st);
                    // Chain the wake-up so every waiting worker sees the shutdown.
                    self.inner.notify.notify_one();
                    return None;
                }
                if let Some(item) = st.queue.pop_front() {
                    st.dirty.remove(&item);
                    st.processing.insert(item.clone());
                    let more = !st.queue.is_empty();
                    drop(st);
                    if more {
                        self.inner.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            self.inner.notify.notified().await;
        }
    }

    /// Marks `item` as processed; re-queues it if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut st = self.lock();
        st.processing.remove(item);
        if st.dirty.contains(item) && !st.shut_down {
            st.queue.push_back(item.clone());
            drop(st);
            self.inner.notify.notify_one();
        }
    }

    /// Number of keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; waiting `next()` calls return `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.inner.notify.notify_waiters();
        self.inner.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_waiting_keys() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn key_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::default();
        q.add("a");
        let k = q.next().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "not handed out twice concurrently");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
    }

    #[tokio::test]
    async fn rate_limited_keys_back_off_exponentially() {
        let q = WorkQueue::new(Duration::from_millis(10), Duration::from_secs(1));
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        assert_eq!(q.failures(&"a"), 2);
        let got = tokio::time::timeout(Duration::from_secs(2), q.next()).await;
        assert_eq!(got.unwrap(), Some("a"));
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
    }

    #[tokio::test]
    async fn shut_down_wakes_waiters() {
        let q: WorkQueue<&str> = WorkQueue::default();
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.shut_down();
        let got = tokio::time::timeout(Duration::from_secs(2), h).await;
        assert_eq!(got.unwrap().unwrap(), None);
    }
}
