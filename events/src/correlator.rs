//! The event correlator of client-go's `tools/record`, as pure logic: what
//! to do with the next event a component records. Three steps, in
//! client-go's order:
//!
//! 1. **Aggregation**: once one source has recorded 10 events within 10
//!    minutes that differ only in their message (same object, type and
//!    reason), further ones become a single event whose message starts with
//!    "(combined from similar events): ".
//! 2. **Deduplication**: an event identical to one already written (same
//!    object, type, reason and message) becomes a patch of the written one:
//!    `count` + 1, a new `lastTimestamp`. `kubectl describe` shows it as
//!    "x5 over 2m".
//! 3. **Spam filter**: each (source, object) pair may write 25 events at
//!    once and then one per 5 minutes; the rest are dropped.
//!
//! The caches are bounded (4,096 keys each, as client-go's LRUs); when full,
//! the least recently used key goes. No I/O here: the sink (`sink.rs`) acts
//! on the [`Outcome`].

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::rate::TokenBucket;

/// Distinct messages per (object, type, reason) before aggregation starts.
const AGGREGATE_AFTER: usize = 10;
/// The window in which similar events count towards aggregation.
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Events one (source, object) pair may write at once.
const SPAM_BURST: f64 = 25.0;
/// Events per second one (source, object) pair may write after its burst.
const SPAM_QPS: f64 = 1.0 / 300.0;
/// Keys each cache keeps.
const CACHE_KEYS: usize = 4096;
/// The message prefix of an aggregated event.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// What to write for one recorded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Create this event.
    Create(Event),
    /// An identical event exists: patch it (by name) with this merge patch.
    /// If it is gone, create `event` (which carries the new count) instead.
    Patch {
        event: Event,
        patch: serde_json::Value,
    },
    /// The spam filter dropped it.
    Drop,
}

/// The correlator's caches; one per recorder.
#[derive(Default)]
pub struct Correlator {
    similar: Lru<String, Similar>,
    written: Lru<String, Written>,
    spam: Lru<String, TokenBucket>,
}

struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

struct Written {
    name: String,
    count: i32,
    first_timestamp: Option<Time>,
}

impl Correlator {
    /// Decides what to write for `event`, recorded at `now` (monotonic) and
    /// `stamp` (wall clock, for the new event's timestamps).
    pub fn correlate(&mut self, event: Event, now: Instant, stamp: Timestamp) -> Outcome {
        let (event, key) = self.aggregate(event, now, stamp);
        let outcome = self.observe(event, key);
        let spam_key = spam_key(match &outcome {
            Outcome::Create(e) | Outcome::Patch { event: e, .. } => e,
            Outcome::Drop => return Outcome::Drop,
        });
        let bucket = self
            .spam
            .get_or_insert_with(spam_key, || TokenBucket::new(SPAM_QPS, SPAM_BURST, now));
        if bucket.try_take(now) {
            outcome
        } else {
            Outcome::Drop
        }
    }

    /// Step 1: returns the event to write and its deduplication key.
    fn aggregate(&mut self, event: Event, now: Instant, stamp: Timestamp) -> (Event, String) {
        let aggregate_key = aggregate_key(&event);
        let message = event.message.clone().unwrap_or_default();
        let record = self
            .similar
            .get_or_insert_with(aggregate_key.clone(), || Similar {
                messages: HashSet::new(),
                last: now,
            });
        if now.duration_since(record.last) > AGGREGATE_WINDOW {
            record.messages.clear();
        }
        record.last = now;
        record.messages.insert(message.clone());
        if record.messages.len() < AGGREGATE_AFTER {
            let key = event_key(&event);
            return (event, key);
        }
        // Keep the set from growing without bound, as client-go does.
        if let Some(any) = record.messages.iter().next().cloned() {
            record.messages.remove(&any);
        }
        let involved = &event.involved_object;
        let combined = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(unique_name(
                    involved.name.as_deref().unwrap_or_default(),
                    stamp,
                )),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            message: Some(format!("{COMBINED_PREFIX}{message}")),
            count: Some(1),
            first_timestamp: Some(Time(stamp)),
            last_timestamp: Some(Time(stamp)),
            ..event
        };
        (combined, aggregate_key)
    }

    /// Step 2: a create for a new key, a patch for one already written.
    fn observe(&mut self, mut event: Event, key: String) -> Outcome {
        let previous = self.written.get(&key).map(|w| {
            (
                w.name.clone(),
                w.count.saturating_add(1),
                w.first_timestamp.clone(),
            )
        });
        let outcome = match previous {
            Some((name, count, first_timestamp)) => {
                event.metadata.name = Some(name);
                event.count = Some(count);
                event.first_timestamp = first_timestamp;
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": event.last_timestamp,
                    "message": event.message,
                });
                Outcome::Patch {
                    event: event.clone(),
                    patch,
                }
            }
            None => Outcome::Create(event.clone()),
        };
        self.written.insert(
            key,
            Written {
                name: event.metadata.name.clone().unwrap_or_default(),
                count: event.count.unwrap_or(1),
                first_timestamp: event.first_timestamp.clone(),
            },
        );
        outcome
    }
}

/// An Event name for an object: `<object>.<hex nanoseconds>`, as client-go
/// makes them (with a random part, so two recorders in one nanosecond differ).
pub fn unique_name(object: &str, stamp: Timestamp) -> String {
    let nanos = stamp.as_nanosecond() as u64 ^ u64::from(rand::random::<u16>());
    format!("{object}.{nanos:x}")
}

fn source_and_object(event: &Event) -> [&str; 7] {
    let source = event.source.as_ref();
    let o = &event.involved_object;
    [
        source
            .and_then(|s| s.component.as_deref())
            .unwrap_or_default(),
        source.and_then(|s| s.host.as_deref()).unwrap_or_default(),
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        o.uid.as_deref().unwrap_or_default(),
        o.api_version.as_deref().unwrap_or_default(),
    ]
}

/// Fields joined with a separator no Kubernetes name contains.
fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts.into_iter().collect::<Vec<_>>().join("\u{1f}")
}

fn spam_key(event: &Event) -> String {
    let mut parts = source_and_object(event).to_vec();
    parts.push(event.type_.as_deref().unwrap_or_default());
    join(parts)
}

fn aggregate_key(event: &Event) -> String {
    let mut parts = source_and_object(event).to_vec();
    parts.extend([
        event.type_.as_deref().unwrap_or_default(),
        event.reason.as_deref().unwrap_or_default(),
        event.reporting_component.as_deref().unwrap_or_default(),
        event.reporting_instance.as_deref().unwrap_or_default(),
    ]);
    join(parts)
}

fn event_key(event: &Event) -> String {
    let mut parts = source_and_object(event).to_vec();
    parts.extend([
        event
            .involved_object
            .field_path
            .as_deref()
            .unwrap_or_default(),
        event.type_.as_deref().unwrap_or_default(),
        event.reason.as_deref().unwrap_or_default(),
        event.message.as_deref().unwrap_or_default(),
    ]);
    join(parts)
}

/// A small least-recently-used map: a use stamps the entry; inserting into
/// a full map removes the oldest stamp (a scan, so it costs O(n) only on
/// the inserts that evict).
struct Lru<K, V> {
    entries: HashMap<K, (u64, V)>,
    clock: u64,
}

impl<K, V> Default for Lru<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            clock: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn get(&mut self, key: &K) -> Option<&V> {
        let t = self.tick();
        self.entries.get_mut(key).map(|(used, v)| {
            *used = t;
            &*v
        })
    }

    fn insert(&mut self, key: K, value: V) {
        let t = self.tick();
        if !self.entries.contains_key(&key) {
            self.make_room();
        }
        self.entries.insert(key, (t, value));
    }

    fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let t = self.tick();
        if !self.entries.contains_key(&key) {
            self.make_room();
        }
        let entry = self.entries.entry(key).or_insert_with(|| (t, make()));
        entry.0 = t;
        &mut entry.1
    }

    fn make_room(&mut self) {
        if self.entries.len() < CACHE_KEYS {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, (used, _))| *used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
#[path = "correlator_tests.rs"]
mod tests;
