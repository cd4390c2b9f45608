//! Shared informers: one watch per resource kind feeding an in-memory cache
//! (`Cache`) that every controller reads, plus a feed of changes per
//! subscriber (`feed.rs`) that controllers map to work-queue keys. A relist (after a watch expired) is
//! diffed against the cache so subscribers see precise deletes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::feed::{Fanout, Subscription};
use tokio_util::sync::CancellationToken;

use super::key::ObjectKey;
use super::queue::WorkQueue;

/// One change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or modified; `old` is the cached version before, if any.
    Upsert { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted; the last known version.
    Delete(Arc<K>),
    /// The subscriber stopped draining its feed and must treat everything as changed.
    Resync,
}

/// A read-only view of the objects of one kind, ordered by namespace/name.
pub struct Cache<K> {
    map: Arc<RwLock<BTreeMap<ObjectKey, Arc<K>>>>,
    /// The newest resourceVersion the watch has delivered into the map: the
    /// map reflects every write up to it (resourceVersions are one ordered
    /// sequence per store, as etcd's revisions).
    delivered: Arc<AtomicU64>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            delivered: self.delivered.clone(),
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            map: Arc::new(RwLock::new(BTreeMap::new())),
            delivered: Arc::default(),
        }
    }
}

/// An object's resourceVersion as a number, when it has one.
fn revision<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse::<u64>().ok())
}

impl<K> Cache<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, Arc<K>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ObjectKey, Arc<K>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached object with this key.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Every key in the cache.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().keys().cloned().collect()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.read()
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The cached objects that satisfy `pred`.
    pub fn filter(&self, pred: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.read().values().filter(|o| pred(o)).cloned().collect()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts an object (tests and informers only).
    pub fn insert(&self, key: ObjectKey, obj: Arc<K>) -> Option<Arc<K>> {
        self.write().insert(key, obj)
    }

    /// Records what a controller just wrote (the API's answer), so its next
    /// reconcile sees it before the watch event arrives. Never replaces a
    /// newer version the watch already delivered (a stale write-through would
    /// hide that change from the controller until the object changes again),
    /// and never brings back an object the watch has since seen deleted: a
    /// key that is absent although the watch is past the write's
    /// resourceVersion was removed after it (a pod deleted gracefully whose
    /// node finished it before the controller recorded the answer).
    pub fn write_through(&self, key: ObjectKey, obj: Arc<K>)
    where
        K: Resource,
    {
        let written = revision(obj.as_ref());
        let mut map = self.write();
        let stale = match map.get(&key) {
            Some(old) => revision(old.as_ref())
                .zip(written)
                .is_some_and(|(o, n)| o > n),
            None => written.is_some_and(|n| n <= self.delivered.load(Ordering::Acquire)),
        };
        if !stale {
            map.insert(key, obj);
        }
    }

    /// Notes that the watch has delivered everything up to `obj`'s resourceVersion.
    fn delivered(&self, obj: &K)
    where
        K: Resource,
    {
        if let Some(rv) = revision(obj) {
            self.delivered.fetch_max(rv, Ordering::AcqRel);
        }
    }

    /// Removes an object (tests and informers only).
    pub fn remove(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.write().remove(key)
    }
}

/// A watch of one kind: its cache, its change feed and its readiness.
pub struct Informer<K> {
    cache: Cache<K>,
    feed: Arc<Fanout<K>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            feed: self.feed.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` until `shutdown`.
    pub fn spawn(api: Api<K>, config: watcher::Config, shutdown: CancellationToken) -> Self {
        let (ready_tx, ready) = watch::channel(false);
        let informer = Self {
            cache: Cache::default(),
            feed: Arc::default(),
            ready,
        };
        let cache = informer.cache.clone();
        let feed = informer.feed.clone();
        let kind = std::any::type_name::<K>();
        tokio::spawn(async move {
            let mut stream = watcher(api, config).default_backoff().boxed();
            let mut relist: Option<HashMap<ObjectKey, Arc<K>>> = None;
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = stream.next() => ev,
                };
                match ev {
                    None => return,
                    Some(Err(e)) => {
                        tracing::warn!(kind, error = %e, "watch failed; retrying with back-off")
                    }
                    Some(Ok(ev)) => {
                        apply_event(&cache, &feed, &mut relist, ev, &ready_tx);
                    }
                }
            }
        });
        informer
    }
}

fn apply_event<K: Resource>(
    cache: &Cache<K>,
    feed: &Fanout<K>,
    relist: &mut Option<HashMap<ObjectKey, Arc<K>>>,
    ev: watcher::Event<K>,
    ready: &watch::Sender<bool>,
) {
    let send = |c: Change<K>| feed.send(Arc::new(c));
    match ev {
        watcher::Event::Apply(obj) => {
            let new = Arc::new(obj);
            let old = cache.insert(ObjectKey::of(new.as_ref()), new.clone());
            cache.delivered(new.as_ref());
            send(Change::Upsert { old, new });
        }
        watcher::Event::Delete(obj) => {
            let key = ObjectKey::of(&obj);
            let last = {
                let mut map = cache.write();
                cache.delivered(&obj);
                map.remove(&key).unwrap_or_else(|| Arc::new(obj))
            };
            send(Change::Delete(last));
        }
        watcher::Event::Init => *relist = Some(HashMap::new()),
        watcher::Event::InitApply(obj) => {
            if let Some(buf) = relist.as_mut() {
                buf.insert(ObjectKey::of(&obj), Arc::new(obj));
            }
        }
        watcher::Event::InitDone => {
            let Some(buf) = relist.take() else { return };
            feed.mark_listed();
            // The list is as new as its newest object: mark it delivered
            // before dropping what the list no longer holds, so no
            // write-through in between brings a dropped object back.
            for obj in buf.values() {
                cache.delivered(obj.as_ref());
            }
            let stale: Vec<ObjectKey> = cache
                .keys()
                .into_iter()
                .filter(|k| !buf.contains_key(k))
                .collect();
            for key in stale {
                if let Some(last) = cache.remove(&key) {
                    send(Change::Delete(last));
                }
            }
            for (key, new) in buf {
                let same = cache
                    .get(&key)
                    .is_some_and(|old| old.meta().resource_version == new.meta().resource_version);
                if same {
                    continue;
                }
                let old = cache.insert(key, new.clone());
                send(Change::Upsert { old, new });
            }
            let _ = ready.send(true);
        }
    }
}

impl<K> Informer<K> {
    /// The cache this informer fills.
    pub fn cache(&self) -> &Cache<K> {
        &self.cache
    }

    /// A feed of the changes from now on; one that joins an informer that
    /// has already listed (it is shared, `shared.rs`) begins with a Resync.
    pub fn subscribe(&self) -> Subscription<K> {
        self.feed.subscribe()
    }

    /// Waits until the first full list has been cached (or `shutdown`).
    pub async fn wait_ready(&self, shutdown: &CancellationToken) {
        let mut ready = self.ready.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = ready.wait_for(|r| *r) => {}
        }
    }

    /// Maps every change to keys and adds them to `queue` until `shutdown`.
    /// A subscriber that stopped draining gets `Change::Resync` (`feed.rs`).
    pub fn feed<T, F>(&self, queue: WorkQueue<T>, shutdown: CancellationToken, map: F)
    where
        K: Send + Sync + 'static,
        T: Clone + Eq + std::hash::Hash + Send + 'static,
        F: Fn(&Change<K>) -> Vec<T> + Send + 'static,
    {
        let mut rx = self.subscribe();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    c = rx.recv() => c,
                };
                let Some(change) = change else { return };
                let keys = map(&change);
                for k in keys {
                    queue.add(k);
                }
            }
        });
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Send + Sync + 'static,
{
    /// Feeds `queue` the keys of the objects that change (every cached key
    /// on a resync): what a controller of this kind queues for its own objects.
    pub fn feed_keys(&self, queue: WorkQueue<ObjectKey>, shutdown: CancellationToken) {
        let cache = self.cache().clone();
        self.feed(queue, shutdown, move |c| changed_keys(c, &cache));
    }
}

/// Default watcher configuration used by skiff's components.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(290)
}

/// How long a component waits between polls of a cache it depends on.
pub const CACHE_POLL: Duration = Duration::from_millis(50);

/// Keys touched by a change of the objects themselves (Resync: every key of `cache`).
pub fn changed_keys<K: Resource>(c: &Change<K>, cache: &Cache<K>) -> Vec<ObjectKey> {
    match c {
        Change::Upsert { new, .. } => vec![ObjectKey::of(new.as_ref())],
        Change::Delete(o) => vec![ObjectKey::of(o.as_ref())],
        Change::Resync => cache.keys(),
    }
}

/// Keys of the controllers (of `kind`) of the objects in a change; on
/// Resync, every key of `owners`.
pub fn owner_keys<K: Resource, O>(c: &Change<K>, kind: &str, owners: &Cache<O>) -> Vec<ObjectKey> {
    let of = |o: &K| {
        let ns = o.meta().namespace.clone().unwrap_or_default();
        o.meta()
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.controller == Some(true) && r.kind == kind)
            .map(|r| ObjectKey::new(ns.clone(), r.name.clone()))
            .collect::<Vec<_>>()
    };
    match c {
        Change::Upsert { old, new } => {
            let mut keys = of(new);
            if let Some(old) = old {
                keys.extend(of(old));
                keys.dedup();
            }
            keys
        }
        Change::Delete(o) => of(o),
        Change::Resync => owners.keys(),
    }
}

#[cfg(test)]
#[path = "informer_tests.rs"]
mod tests;
