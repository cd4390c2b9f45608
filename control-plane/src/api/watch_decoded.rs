//! Decoded watch events shared by every watcher of a resource, as
//! kube-apiserver's cacher shares one decoded object and one serialization
//! per event ("cachingObject") between its watchers. Each stored value a
//! watch delivers is decoded (decrypted, converted, parsed) once, and its
//! JSON stream line is encoded once per event type, however many watchers
//! see it. A small bounded memo, not a second copy of the store: entries are
//! only useful while the watchers of one write are all catching up with it,
//! and a miss just decodes again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use super::error::ApiError;
use super::objects::{self, ObjectStore};
use super::registry::ResourceInfo;
use crate::store::{KeyValue, Revision};

/// How many decoded objects are kept. A few hundred covers every watcher of
/// a burst of writes; each entry is one object (a few KiB for a pod).
const CAPACITY: usize = 512;

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

/// One stored value as the API shows it, with its stream lines once encoded.
pub struct DecodedObject {
    pub object: Value,
    lines: [OnceLock<Bytes>; 3],
}

impl DecodedObject {
    fn new(object: Value) -> DecodedObject {
        DecodedObject {
            object,
            lines: Default::default(),
        }
    }

    /// `{"type":…,"object":…}\n` for this object, encoded on first use.
    pub fn line(&self, event: EventType) -> Bytes {
        self.lines[event.index()]
            .get_or_init(|| encode_line(event.as_str(), &self.object))
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

#[derive(Default)]
struct Memo {
    entries: HashMap<MemoKey, Arc<DecodedObject>>,
    order: VecDeque<MemoKey>,
}

impl Memo {
    /// Keeps `decoded` under `key` (evicting the oldest entry when full), or
    /// returns the entry a racing watcher inserted first.
    fn insert(&mut self, key: MemoKey, decoded: Arc<DecodedObject>) -> Arc<DecodedObject> {
        if let Some(raced) = self.entries.get(&key) {
            return raced.clone();
        }
        if self.order.len() >= CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, decoded.clone());
        decoded
    }
}

/// The shared memo; one per API server.
#[derive(Default)]
pub struct DecodedEvents {
    memo: Mutex<Memo>,
}

impl DecodedEvents {
    /// `kv` decoded for `info`, with `shown_at` as its resourceVersion.
    pub fn decode(
        &self,
        store: &ObjectStore,
        info: &'static ResourceInfo,
        kv: &KeyValue,
        shown_at: Revision,
    ) -> Result<Arc<DecodedObject>, ApiError> {
        let key = MemoKey {
            resource: info.plural,
            version: info.version,
            group: info.group,
            key: kv.key.clone(),
            mod_revision: kv.mod_revision,
            shown_at,
        };
        if let Some(hit) = self.lock().entries.get(&key) {
            return Ok(hit.clone());
        }
        // Decode outside the lock; two watchers racing on a miss both decode
        // and the first insert wins.
        let decoded = Arc::new(DecodedObject::new(objects::decode_at(
            store, info, kv, shown_at,
        )?));
        Ok(self.lock().insert(key, decoded))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        // The memo holds no invariant a panicking holder could break.
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
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

    #[test]
    fn the_memo_stays_bounded() {
        let mut memo = Memo::default();
        for i in 0..(CAPACITY + 10) {
            let key = MemoKey {
                resource: "pods",
                version: "v1",
                group: "",
                key: format!("/k/{i}"),
                mod_revision: i as Revision,
                shown_at: i as Revision,
            };
            memo.insert(key, Arc::new(DecodedObject::new(Value::Null)));
        }
        assert_eq!(memo.entries.len(), CAPACITY);
        assert_eq!(memo.order.len(), CAPACITY);
        assert!(!memo.order.iter().any(|k| k.key == "/k/0"));
    }
}
