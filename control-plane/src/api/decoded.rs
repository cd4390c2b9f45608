//! Decoded objects shared by every reader of one stored value, as
//! kube-apiserver's cacher shares one decoded object and one serialization
//! per event ("cachingObject") between its watchers. A write leaves the
//! object it stored here (it already holds it decoded), so the watchers of
//! that write, and the next read-modify-write of the object (a status patch
//! reads it back), copy it rather than decrypt, convert and parse the stored
//! bytes again; each JSON stream line is encoded once per event type,
//! however many watchers see it. A small bounded memo, not a second copy of
//! the store: entries are only useful while the readers of one write are
//! catching up with it, and a miss just decodes again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::error::ApiError;
use super::meta;
use super::objects::{self, ObjectStore};
use super::registry::ResourceInfo;
use super::render;
use crate::store::{KeyValue, Revision};

/// How many decoded objects are kept, and how many stored bytes they may
/// come from in all (a decoded pod takes a few times its ~2 KiB of JSON).
/// A few thousand entries cover every watcher of a burst of writes and the
/// status writes that follow them.
const CAPACITY: usize = 4096;
const BYTE_BUDGET: usize = 4 << 20;
/// How long an entry is kept at most: the readers it serves follow the
/// write within milliseconds, and an idle server (a lease renewal every few
/// seconds) should not hold thousands of stale versions.
const MAX_AGE: Duration = Duration::from_secs(10);

/// The event types an object is rendered under in a watch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One stored value as the API shows it, with its stream lines once encoded
/// (whole, and as PartialObjectMetadata for metadata-only watchers).
pub struct DecodedObject {
    pub object: Value,
    lines: [OnceLock<Bytes>; 3],
    metadata_lines: [OnceLock<Bytes>; 3],
}

impl DecodedObject {
    fn new(object: Value) -> DecodedObject {
        DecodedObject {
            object,
            lines: Default::default(),
            metadata_lines: Default::default(),
        }
    }

    /// `{"type":…,"object":…}\n` for this object, encoded on first use.
    pub fn line(&self, event: EventType) -> Bytes {
        self.lines[event.index()]
            .get_or_init(|| encode_line(event.as_str(), &self.object))
            .clone()
    }

    /// The same line with the object as PartialObjectMetadata.
    pub fn metadata_line(&self, event: EventType) -> Bytes {
        self.metadata_lines[event.index()]
            .get_or_init(|| encode_line(event.as_str(), &render::metadata_of(&self.object)))
            .clone()
    }
}

/// A watch stream line without copying the object into a wrapper value.
pub fn encode_line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(b"{\"type\":\"");
    bytes.extend_from_slice(kind.as_bytes());
    bytes.extend_from_slice(b"\",\"object\":");
    let start = bytes.len();
    // A Value always serializes; should that ever change, send null rather than half an object.
    if serde_json::to_writer(&mut bytes, object).is_err() {
        bytes.truncate(start);
        bytes.extend_from_slice(b"null");
    }
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct MemoKey {
    /// Which resource's view (two API versions of one kind convert differently).
    resource: &'static str,
    version: &'static str,
    group: &'static str,
    key: String,
    mod_revision: Revision,
    /// The resourceVersion stamped on it (a previous value is shown at the
    /// revision that replaced it).
    shown_at: Revision,
}

impl MemoKey {
    fn new(info: &ResourceInfo, key: &str, mod_revision: Revision, shown_at: Revision) -> MemoKey {
        MemoKey {
            resource: info.plural,
            version: info.version,
            group: info.group,
            key: key.to_string(),
            mod_revision,
            shown_at,
        }
    }

    /// The same value shown at its own revision, as a write or a current read sees it.
    fn at_own_revision(&self) -> MemoKey {
        MemoKey {
            shown_at: self.mod_revision,
            ..self.clone()
        }
    }
}

struct Entry {
    decoded: Arc<DecodedObject>,
    /// Its stored size, what the memo's byte budget counts.
    size: usize,
    /// When it was kept.
    at: Instant,
}

#[derive(Default)]
struct Memo {
    entries: HashMap<MemoKey, Entry>,
    order: VecDeque<MemoKey>,
    bytes: usize,
}

impl Memo {
    /// Keeps `decoded` under `key` (evicting the oldest entries while over
    /// budget), or returns the entry a racing reader inserted first. The
    /// evicted objects are handed back, for the caller to drop once it has
    /// released the memo's lock (freeing a decoded pod is not free).
    fn insert(
        &mut self,
        key: MemoKey,
        decoded: Arc<DecodedObject>,
        size: usize,
        evicted: &mut Vec<Arc<DecodedObject>>,
    ) -> Arc<DecodedObject> {
        self.insert_at(key, decoded, size, Instant::now(), evicted)
    }

    fn insert_at(
        &mut self,
        key: MemoKey,
        decoded: Arc<DecodedObject>,
        size: usize,
        now: Instant,
        evicted: &mut Vec<Arc<DecodedObject>>,
    ) -> Arc<DecodedObject> {
        if let Some(raced) = self.entries.get(&key) {
            return raced.decoded.clone();
        }
        while self.order.len() >= CAPACITY
            || (self.bytes + size > BYTE_BUDGET && !self.order.is_empty())
            || self.oldest_is_older(now, MAX_AGE)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes -= gone.size;
                evicted.push(gone.decoded);
            }
        }
        self.order.push_back(key.clone());
        self.bytes += size;
        self.entries.insert(
            key,
            Entry {
                decoded: decoded.clone(),
                size,
                at: now,
            },
        );
        decoded
    }

    /// Whether the oldest entry was kept more than `age` before `now`.
    fn oldest_is_older(&self, now: Instant, age: Duration) -> bool {
        self.order
            .front()
            .and_then(|k| self.entries.get(k))
            .is_some_and(|e| now.saturating_duration_since(e.at) > age)
    }

    fn get(&self, key: &MemoKey) -> Option<Arc<DecodedObject>> {
        self.entries.get(key).map(|e| e.decoded.clone())
    }

    /// The object under `key`, or the same value at its own revision restamped.
    fn find(&self, key: &MemoKey) -> Option<Found> {
        if let Some(hit) = self.get(key) {
            return Some(Found::Exact(hit));
        }
        if key.shown_at == key.mod_revision {
            return None;
        }
        self.get(&key.at_own_revision()).map(Found::Restamp)
    }
}

enum Found {
    Exact(Arc<DecodedObject>),
    /// The value at its own revision: a copy needs `shown_at` stamped.
    Restamp(Arc<DecodedObject>),
}

/// The shared memo; one per API server (in its [`ObjectStore`]).
#[derive(Default)]
pub struct DecodedObjects {
    memo: Mutex<Memo>,
}

impl DecodedObjects {
    /// `kv` decoded for `info`, with `shown_at` as its resourceVersion, kept
    /// for the other readers of it (the watch path: every watcher of a
    /// write asks for the same value).
    pub fn decode(
        &self,
        store: &ObjectStore,
        info: &ResourceInfo,
        kv: &KeyValue,
        shown_at: Revision,
    ) -> Result<Arc<DecodedObject>, ApiError> {
        let key = MemoKey::new(info, &kv.key, kv.mod_revision, shown_at);
        // Its own statement: the guard goes before any copy or decode.
        let found = self.lock().find(&key);
        let object = match found {
            Some(Found::Exact(hit)) => return Ok(hit),
            Some(Found::Restamp(own)) => restamped(&own.object, shown_at),
            // Decode outside the lock; two watchers racing on a miss both
            // decode and the first insert wins.
            None => objects::decode_uncached(store, info, kv, shown_at)?,
        };
        let mut evicted = Vec::new();
        let kept = self.lock().insert(
            key,
            Arc::new(DecodedObject::new(object)),
            kv.value.len(),
            &mut evicted,
        );
        drop(evicted);
        Ok(kept)
    }

    /// A copy of `kv` decoded for `info` with `shown_at` as its
    /// resourceVersion, when the memo holds it. A miss is not filled: reads
    /// of many objects (lists) would only push out the entries in use.
    pub fn copy_of(&self, info: &ResourceInfo, kv: &KeyValue, shown_at: Revision) -> Option<Value> {
        let key = MemoKey::new(info, &kv.key, kv.mod_revision, shown_at);
        // Copy outside the lock.
        let found = self.lock().find(&key)?;
        match found {
            Found::Exact(hit) => Some(hit.object.clone()),
            Found::Restamp(own) => Some(restamped(&own.object, shown_at)),
        }
    }

    /// Keeps `object`, just written at `key` as `revision` (`size` stored
    /// bytes), for the readers that follow the write.
    pub fn remember(
        &self,
        info: &ResourceInfo,
        key: &str,
        revision: Revision,
        object: Value,
        size: usize,
    ) {
        let key = MemoKey::new(info, key, revision, revision);
        let mut evicted = Vec::new();
        self.lock().insert(
            key,
            Arc::new(DecodedObject::new(object)),
            size,
            &mut evicted,
        );
        drop(evicted);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        // The memo holds no invariant a panicking holder could break.
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn restamped(object: &Value, shown_at: Revision) -> Value {
    let mut copy = object.clone();
    meta::set_resource_version(&mut copy, shown_at);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_event_envelope_around_the_object() {
        let obj = serde_json::json!({"kind": "Pod", "metadata": {"name": "a\"b"}});
        let line = encode_line("MODIFIED", &obj);
        assert!(line.ends_with(b"\n"));
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "MODIFIED");
        assert_eq!(parsed["object"], obj);
    }

    #[test]
    fn lines_are_encoded_once_per_event_type() {
        let d = DecodedObject::new(serde_json::json!({"a": 1}));
        let first = d.line(EventType::Added);
        let again = d.line(EventType::Added);
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert_ne!(d.line(EventType::Deleted), first);
    }

    fn key(i: usize, shown_at: Revision) -> MemoKey {
        MemoKey {
            resource: "pods",
            version: "v1",
            group: "",
            key: format!("/k/{i}"),
            mod_revision: i as Revision,
            shown_at,
        }
    }

    #[test]
    fn the_memo_stays_bounded_in_entries() {
        let mut memo = Memo::default();
        for i in 0..(CAPACITY + 10) {
            memo.insert(
                key(i, i as Revision),
                Arc::new(DecodedObject::new(Value::Null)),
                1,
                &mut Vec::new(),
            );
        }
        assert_eq!(memo.entries.len(), CAPACITY);
        assert_eq!(memo.order.len(), CAPACITY);
        assert!(!memo.order.iter().any(|k| k.key == "/k/0"));
    }

    #[test]
    fn the_memo_stays_bounded_in_bytes() {
        let mut memo = Memo::default();
        let size = BYTE_BUDGET / 4 + 1;
        for i in 0..8 {
            memo.insert(
                key(i, i as Revision),
                Arc::new(DecodedObject::new(Value::Null)),
                size,
                &mut Vec::new(),
            );
        }
        assert_eq!(memo.entries.len(), 3);
        assert!(memo.bytes <= BYTE_BUDGET);
        // One entry over the whole budget is still kept (alone).
        memo.insert(
            key(9, 9),
            Arc::new(DecodedObject::new(Value::Null)),
            BYTE_BUDGET * 2,
            &mut Vec::new(),
        );
        assert_eq!(memo.entries.len(), 1);
    }

    #[test]
    fn old_entries_go_at_the_next_insert() {
        let mut memo = Memo::default();
        let t0 = Instant::now();
        for i in 0..3 {
            memo.insert_at(
                key(i, i as Revision),
                Arc::new(DecodedObject::new(Value::Null)),
                1,
                t0,
                &mut Vec::new(),
            );
        }
        memo.insert_at(
            key(3, 3),
            Arc::new(DecodedObject::new(Value::Null)),
            1,
            t0 + MAX_AGE,
            &mut Vec::new(),
        );
        assert_eq!(memo.entries.len(), 4, "not older than MAX_AGE yet");
        let later = t0 + MAX_AGE + Duration::from_millis(1);
        memo.insert_at(
            key(4, 4),
            Arc::new(DecodedObject::new(Value::Null)),
            1,
            later,
            &mut Vec::new(),
        );
        let mut left: Vec<&str> = memo.order.iter().map(|k| k.key.as_str()).collect();
        left.sort();
        assert_eq!(left, ["/k/3", "/k/4"]);
        assert_eq!(memo.bytes, 2);
    }

    #[test]
    fn a_value_shown_at_a_later_revision_is_restamped_from_its_own() {
        let mut memo = Memo::default();
        let own = serde_json::json!({"metadata": {"name": "p", "resourceVersion": "5"}});
        memo.insert(
            key(5, 5),
            Arc::new(DecodedObject::new(own)),
            10,
            &mut Vec::new(),
        );
        let Some(Found::Restamp(found)) = memo.find(&key(5, 9)) else {
            panic!("expected the value at its own revision");
        };
        assert_eq!(
            restamped(&found.object, 9)["metadata"]["resourceVersion"],
            "9"
        );
        assert!(memo.find(&key(6, 6)).is_none());
    }
}
