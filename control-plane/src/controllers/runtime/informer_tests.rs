//! The informer cache against the order of its two writers: the watch
//! (`apply_event`) and controllers recording their own writes
//! (`Cache::write_through`).

use super::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

fn pod(name: &str, rv: u64, dying: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            resource_version: Some(rv.to_string()),
            deletion_timestamp: dying.then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

struct Watch {
    cache: Cache<Pod>,
    feed: Fanout<Pod>,
    relist: Option<HashMap<ObjectKey, Arc<Pod>>>,
    ready: watch::Sender<bool>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            cache: Cache::default(),
            feed: Fanout::default(),
            relist: None,
            ready: watch::channel(false).0,
        }
    }

    fn deliver(&mut self, ev: watcher::Event<Pod>) {
        apply_event(&self.cache, &self.feed, &mut self.relist, ev, &self.ready);
    }

    fn cached_rv(&self, name: &str) -> Option<String> {
        self.cache
            .get(&ObjectKey::new("default", name))
            .and_then(|p| p.metadata.resource_version.clone())
    }
}

#[test]
fn a_write_through_after_the_watch_saw_the_delete_does_not_bring_the_object_back() {
    let mut w = Watch::new();
    w.deliver(watcher::Event::Apply(pod("web-2", 10, false)));
    // The controller's graceful delete answered rv 11 (deletionTimestamp set);
    // the node finished the pod and the watch delivered both before the
    // controller recorded its answer.
    w.deliver(watcher::Event::Apply(pod("web-2", 11, true)));
    w.deliver(watcher::Event::Delete(pod("web-2", 12, true)));
    let key = ObjectKey::new("default", "web-2");
    w.cache
        .write_through(key.clone(), Arc::new(pod("web-2", 11, true)));
    assert_eq!(w.cached_rv("web-2"), None, "a deleted pod came back");
}

#[test]
fn a_write_through_ahead_of_the_watch_is_cached_until_the_watch_catches_up() {
    let mut w = Watch::new();
    w.deliver(watcher::Event::Apply(pod("other", 5, false)));
    let key = ObjectKey::new("default", "web-0");
    w.cache
        .write_through(key.clone(), Arc::new(pod("web-0", 6, false)));
    assert_eq!(w.cached_rv("web-0").as_deref(), Some("6"));
    w.deliver(watcher::Event::Apply(pod("web-0", 6, false)));
    w.deliver(watcher::Event::Apply(pod("web-0", 7, false)));
    // An answer older than what the watch delivered never replaces it.
    w.cache
        .write_through(key.clone(), Arc::new(pod("web-0", 6, false)));
    assert_eq!(w.cached_rv("web-0").as_deref(), Some("7"));
    // A delete written through first is then removed by the watch.
    w.cache.write_through(key, Arc::new(pod("web-0", 8, true)));
    w.deliver(watcher::Event::Delete(pod("web-0", 9, true)));
    assert_eq!(w.cached_rv("web-0"), None);
}

#[test]
fn a_relist_that_dropped_an_object_keeps_it_dropped() {
    let mut w = Watch::new();
    w.deliver(watcher::Event::Apply(pod("web-1", 3, false)));
    w.deliver(watcher::Event::Init);
    w.deliver(watcher::Event::InitApply(pod("web-0", 20, false)));
    w.deliver(watcher::Event::InitDone);
    assert_eq!(w.cached_rv("web-1"), None);
    let key = ObjectKey::new("default", "web-1");
    w.cache.write_through(key, Arc::new(pod("web-1", 4, true)));
    assert_eq!(
        w.cached_rv("web-1"),
        None,
        "a write older than the list came back"
    );
}
