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
//!
//! The store tells its watchers of a write before the writer's own call
//! returns, so a writer that kept its object only after the commit would
//! lose the race to every watcher (each would decode the stored bytes). A
//! writer therefore announces its object before it commits
//! ([`DecodedObjects::announce`]); a watcher that misses the memo takes the
//! announced object when the value it was sent is byte for byte the one
//! announced, and stamps its revision on it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub(super) fn new(object: Value) -> DecodedObject {
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

    /// Where a write to this key announces its object.
    fn pending_slot(&self) -> MemoKey {
        MemoKey {
            mod_revision: 0,
            shown_at: 0,
            ..self.clone()
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
    /// Objects announced by writes not yet committed, by their key with
    /// both revisions 0 (at most one per key; a second writer of the same
    /// key while one is in flight just does without).
    pending: HashMap<MemoKey, Pending>,
}

/// An announced object: the exact bytes it will be stored as, and the
/// object a decode of them would give, still without a resourceVersion.
struct Pending {
    stored: Vec<u8>,
    object: Value,
    /// Which announcement this is, so a finished write removes only its own.
    ticket: u64,
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

    /// The object announced for `kv` (same key, same stored bytes), taken
    /// out of the announcements.
    fn take_pending(&mut self, key: &MemoKey, kv: &KeyValue) -> Option<Value> {
        let slot = key.pending_slot();
        if self.pending.get(&slot)?.stored != kv.value {
            return None;
        }
        self.pending.remove(&slot).map(|p| p.object)
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
    tickets: AtomicU64,
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
        let (found, announced) = {
            let mut memo = self.lock();
            let found = memo.find(&key);
            let announced = match found {
                None if shown_at == kv.mod_revision => memo.take_pending(&key, kv),
                _ => None,
            };
            (found, announced)
        };
        let object = match (found, announced) {
            (Some(Found::Exact(hit)), _) => return Ok(hit),
            (Some(Found::Restamp(own)), _) => restamped(&own.object, shown_at),
            (None, Some(mut object)) => {
                meta::set_resource_version(&mut object, shown_at);
                object
            }
            // Decode outside the lock; two watchers racing on a miss both
            // decode and the first insert wins.
            (None, None) => objects::decode_uncached(store, info, kv, shown_at)?,
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
    /// bytes), for the readers that follow the write; returns what the memo
    /// holds for it (a racing reader's copy, if it came first).
    pub fn remember(
        &self,
        info: &ResourceInfo,
        key: &str,
        revision: Revision,
        object: Value,
        size: usize,
    ) -> Arc<DecodedObject> {
        let key = MemoKey::new(info, key, revision, revision);
        let mut evicted = Vec::new();
        let kept = self.lock().insert(
            key,
            Arc::new(DecodedObject::new(object)),
            size,
            &mut evicted,
        );
        drop(evicted);
        kept
    }

    /// Announces `object`, about to be committed at `key` as the bytes
    /// `stored`, to the watchers that may see the commit before the writer
    /// does. `object` is what decoding `stored` gives, but for its
    /// resourceVersion. The announcement ends with the returned guard:
    /// [`Announced::committed`] keeps the object in the memo unless a
    /// watcher already did; dropping the guard (the write failed) withdraws it.
    pub fn announce(
        &self,
        info: &ResourceInfo,
        key: &str,
        stored: Vec<u8>,
        object: Value,
    ) -> Announced<'_> {
        let slot = MemoKey::new(info, key, 0, 0);
        let mut memo = self.lock();
        let (ticket, unannounced) = if memo.pending.contains_key(&slot) {
            (None, Some((object, stored.len())))
        } else {
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
            let pending = Pending {
                stored,
                object,
                ticket,
            };
            memo.pending.insert(slot.clone(), pending);
            (Some(ticket), None)
        };
        Announced {
            memo: self,
            slot,
            ticket,
            unannounced,
        }
    }

    fn withdraw(&self, slot: &MemoKey, ticket: u64) -> Option<Pending> {
        let mut memo = self.lock();
        if memo.pending.get(slot)?.ticket != ticket {
            return None;
        }
        memo.pending.remove(slot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        // The memo holds no invariant a panicking holder could break.
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An object announced by a write in flight; see [`DecodedObjects::announce`].
pub struct Announced<'a> {
    memo: &'a DecodedObjects,
    slot: MemoKey,
    /// None when another write of the key was in flight: nothing to withdraw.
    ticket: Option<u64>,
    /// The object and its stored size when it could not be announced (that
    /// other write held the key's slot).
    unannounced: Option<(Value, usize)>,
}

impl Announced<'_> {
    /// The write committed at `revision`: keeps the object in the memo, if
    /// no watcher took it first (it then is there already), and returns the
    /// memo's object. None only when a watcher took it and the memo has
    /// already let it go again (the caller decodes the stored bytes).
    pub fn committed(mut self, revision: Revision) -> Option<Arc<DecodedObject>> {
        let key = MemoKey {
            mod_revision: revision,
            shown_at: revision,
            ..self.slot.clone()
        };
        let withdrawn = match (self.ticket.take(), self.unannounced.take()) {
            (Some(ticket), _) => self
                .memo
                .withdraw(&self.slot, ticket)
                .map(|p| (p.object, p.stored.len())),
            (None, unannounced) => unannounced,
        };
        let Some((mut object, size)) = withdrawn else {
            // A watcher took the announcement and kept the object.
            return self.memo.lock().get(&key);
        };
        meta::set_resource_version(&mut object, revision);
        let mut evicted = Vec::new();
        let kept = self.memo.lock().insert(
            key,
            Arc::new(DecodedObject::new(object)),
            size,
            &mut evicted,
        );
        drop(evicted);
        Some(kept)
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            // Dropped outside the memo's lock.
            drop(self.memo.withdraw(&self.slot, ticket));
        }
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

    fn pods() -> &'static ResourceInfo {
        crate::api::registry::lookup("", "v1", "pods").unwrap()
    }

    fn stored_kv(key: &str, value: &[u8], revision: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        }
    }

    const POD_KEY: &str = "/registry/core/pods/default/p";

    fn pod() -> Value {
        serde_json::json!({"kind": "Pod", "metadata": {"name": "p"}})
    }

    #[test]
    fn a_committed_announcement_is_kept_at_its_revision() {
        let memo = DecodedObjects::default();
        let written = memo
            .announce(pods(), POD_KEY, b"stored".to_vec(), pod())
            .committed(7)
            .expect("the writer gets the memo's object");
        let kept = memo.lock().get(&MemoKey::new(pods(), POD_KEY, 7, 7));
        let kept = kept.expect("kept at 7");
        assert!(Arc::ptr_eq(&written, &kept), "shared, not copied");
        assert_eq!(kept.object["metadata"]["resourceVersion"], "7");
        assert!(memo.lock().pending.is_empty());
    }

    #[test]
    fn a_writer_whose_announcement_a_watcher_took_gets_the_watchers_object() {
        let memo = DecodedObjects::default();
        let announced = memo.announce(pods(), POD_KEY, b"stored".to_vec(), pod());
        // What a watcher's `decode` does on a miss: take the announced
        // object, stamp its revision, keep it.
        let key = MemoKey::new(pods(), POD_KEY, 7, 7);
        let taken = memo
            .lock()
            .take_pending(&key, &stored_kv(POD_KEY, b"stored", 7));
        let mut taken = taken.expect("announced");
        meta::set_resource_version(&mut taken, 7);
        let watched = Arc::new(DecodedObject::new(taken));
        memo.lock().insert(key, watched.clone(), 6, &mut Vec::new());
        let written = announced.committed(7).expect("the watcher kept it");
        assert!(Arc::ptr_eq(&watched, &written));
    }

    #[test]
    fn a_write_that_could_not_announce_still_gets_its_object_kept() {
        let memo = DecodedObjects::default();
        let first = memo.announce(pods(), POD_KEY, b"one".to_vec(), pod());
        let second = memo.announce(pods(), POD_KEY, b"two".to_vec(), pod());
        drop(first);
        let written = second.committed(8).expect("kept");
        assert_eq!(written.object["metadata"]["resourceVersion"], "8");
        assert!(
            memo.lock()
                .get(&MemoKey::new(pods(), POD_KEY, 8, 8))
                .is_some()
        );
    }

    #[test]
    fn a_watcher_ahead_of_the_writer_takes_the_announced_object() {
        let memo = DecodedObjects::default();
        let announced = memo.announce(pods(), POD_KEY, b"stored".to_vec(), pod());
        let key = MemoKey::new(pods(), POD_KEY, 7, 7);
        let other_bytes = stored_kv(POD_KEY, b"other", 7);
        assert!(memo.lock().take_pending(&key, &other_bytes).is_none());
        let same_bytes = stored_kv(POD_KEY, b"stored", 7);
        assert_eq!(memo.lock().take_pending(&key, &same_bytes), Some(pod()));
        // The writer finds it taken, keeps nothing of its own, and (the
        // taker having kept nothing either) has nothing to hand back.
        assert!(announced.committed(7).is_none());
        assert!(memo.lock().entries.is_empty());
    }

    #[test]
    fn a_failed_write_withdraws_only_its_own_announcement() {
        let memo = DecodedObjects::default();
        let first = memo.announce(pods(), POD_KEY, b"one".to_vec(), pod());
        // A second writer of the key while the first is in flight announces nothing.
        drop(memo.announce(pods(), POD_KEY, b"two".to_vec(), pod()));
        assert_eq!(memo.lock().pending.len(), 1);
        drop(first);
        assert!(memo.lock().pending.is_empty());
    }
}
