//! The scheduling queue: pending pods ordered by priority (then arrival);
//! pods that did not fit are parked with exponential back-off until the
//! cluster changes (a node or pod event) or a flush interval passes, as
//! kube-scheduler's activeQ / backoffQ / unschedulablePods do.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    priority: i32,
    seq: u64,
    key: String,
}

impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Debug)]
struct Parked {
    ready_at: Instant,
    parked_at: Instant,
    awaiting_change: bool,
}

/// Timings of the queue.
#[derive(Clone, Debug)]
pub struct QueueTimings {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Unschedulable pods are retried at least this often.
    pub flush_interval: Duration,
}

impl Default for QueueTimings {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            flush_interval: Duration::from_secs(60),
        }
    }
}

/// Pending pods waiting for a scheduling attempt.
#[derive(Default)]
pub struct SchedulingQueue {
    timings: QueueTimings,
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// key → latest object; present for every pod the queue knows.
    pods: HashMap<String, Arc<Pod>>,
    /// key → whether it currently sits in the heap.
    active: HashMap<String, bool>,
    parked: HashMap<String, Parked>,
    attempts: HashMap<String, u32>,
}

impl SchedulingQueue {
    /// An empty queue with these timings.
    pub fn new(timings: QueueTimings) -> Self {
        Self {
            timings,
            ..Default::default()
        }
    }

    fn push(&mut self, key: String, priority: i32) {
        if self.active.get(&key).copied().unwrap_or(false) {
            return;
        }
        self.seq += 1;
        self.active.insert(key.clone(), true);
        self.heap.push(Entry {
            priority,
            seq: self.seq,
            key,
        });
    }

    fn priority(pod: &Pod) -> i32 {
        pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }

    /// Adds or refreshes a pending pod. A parked pod whose spec changed is
    /// retried at once.
    pub fn upsert(&mut self, key: String, pod: Arc<Pod>) {
        let spec_changed = self.pods.get(&key).is_some_and(|old| {
            old.metadata.generation != pod.metadata.generation || old.spec != pod.spec
        });
        let prio = Self::priority(&pod);
        self.pods.insert(key.clone(), pod);
        if self.parked.contains_key(&key) && !spec_changed {
            return;
        }
        self.parked.remove(&key);
        self.push(key, prio);
    }

    /// Forgets a pod (bound elsewhere, deleted, or no longer ours).
    pub fn remove(&mut self, key: &str) {
        self.pods.remove(key);
        self.parked.remove(key);
        self.attempts.remove(key);
        // Heap entries of removed keys are skipped lazily in `pop`.
        self.active.remove(key);
    }

    /// The highest-priority pod ready for an attempt.
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        while let Some(e) = self.heap.pop() {
            if self.active.remove(&e.key) != Some(true) {
                continue;
            }
            if let Some(p) = self.pods.get(&e.key) {
                return Some((e.key, p.clone()));
            }
        }
        None
    }

    /// Parks a pod after a failed attempt; `awaiting_change` keeps it parked
    /// until `cluster_changed` (or the flush interval), beyond its back-off.
    pub fn park(&mut self, key: String, awaiting_change: bool) {
        if !self.pods.contains_key(&key) {
            return;
        }
        let n = self.attempts.entry(key.clone()).or_insert(0);
        let backoff = self
            .timings
            .initial_backoff
            .saturating_mul(1u32 << (*n).min(16))
            .min(self.timings.max_backoff);
        *n += 1;
        let now = Instant::now();
        self.parked.insert(
            key,
            Parked {
                ready_at: now + backoff,
                parked_at: now,
                awaiting_change,
            },
        );
    }

    /// Something changed in the cluster: parked pods may fit now.
    pub fn cluster_changed(&mut self) {
        for p in self.parked.values_mut() {
            p.awaiting_change = false;
        }
    }

    /// Moves parked pods whose back-off expired into the active heap.
    pub fn tick(&mut self, now: Instant) {
        let flush = self.timings.flush_interval;
        let ready: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| {
                (!p.awaiting_change && now >= p.ready_at)
                    || now.duration_since(p.parked_at) >= flush
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in ready {
            self.parked.remove(&k);
            if let Some(prio) = self.pods.get(&k).map(|p| Self::priority(p)) {
                self.push(k, prio);
            }
        }
    }

    /// A successful attempt: reset the back-off.
    pub fn succeeded(&mut self, key: &str) {
        self.attempts.remove(key);
    }

    /// Pods waiting in the active heap.
    pub fn active_len(&self) -> usize {
        self.active.values().filter(|a| **a).count()
    }

    /// Pods parked after failed attempts.
    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(prio: i32) -> Arc<Pod> {
        Arc::new(Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                priority: Some(prio),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut q = SchedulingQueue::default();
        q.upsert("a".into(), pod(0));
        q.upsert("b".into(), pod(10));
        q.upsert("c".into(), pod(0));
        q.upsert("a".into(), pod(0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn parked_pods_wait_for_a_change_and_their_backoff() {
        let mut q = SchedulingQueue::new(QueueTimings {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            flush_interval: Duration::from_secs(60),
        });
        q.upsert("a".into(), pod(0));
        let (k, _) = q.pop().unwrap();
        q.park(k, true);
        let later = Instant::now() + Duration::from_secs(1);
        q.tick(later);
        assert!(q.pop().is_none(), "still waiting for a cluster change");
        q.cluster_changed();
        q.tick(later);
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("a"));
        q.remove("a");
        assert!(q.pop().is_none());
        assert_eq!(q.parked_len(), 0);
    }
}
