//! Unit tests of the correlator: dedup, aggregation, spam filter.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::{Source, new_event};

fn pod(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("ns".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

fn kubelet() -> Source {
    Source {
        component: "kubelet".into(),
        host: Some("n1".into()),
    }
}

fn event(object: &str, reason: &str, message: &str) -> Event {
    new_event(&kubelet(), pod(object), "Normal", reason, message.into())
}

#[test]
fn identical_events_become_a_patch_with_a_count() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let first = match c.correlate(event("a", "BackOff", "Back-off"), t, Timestamp::now()) {
        Outcome::Create(e) => e,
        other => panic!("first should be created, got {other:?}"),
    };
    for n in 2..=4 {
        match c.correlate(event("a", "BackOff", "Back-off"), t, Timestamp::now()) {
            Outcome::Patch { event, patch } => {
                assert_eq!(event.metadata.name, first.metadata.name);
                assert_eq!(event.count, Some(n));
                assert_eq!(event.first_timestamp, first.first_timestamp);
                assert_eq!(patch["count"], n);
                assert_eq!(patch["message"], "Back-off");
            }
            other => panic!("repeat should be a patch, got {other:?}"),
        }
    }
    // Another message, or another object, is an event of its own.
    assert!(matches!(
        c.correlate(event("a", "BackOff", "other"), t, Timestamp::now()),
        Outcome::Create(_)
    ));
    assert!(matches!(
        c.correlate(event("b", "BackOff", "Back-off"), t, Timestamp::now()),
        Outcome::Create(_)
    ));
}

#[test]
fn similar_events_are_combined_after_ten() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let job = |n: u32| {
        let mut e = event("job", "SuccessfulCreate", &format!("Created pod: p{n}"));
        e.source = Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("job-controller".into()),
            host: None,
        });
        e
    };
    for n in 0..9 {
        assert!(matches!(
            c.correlate(job(n), t, Timestamp::now()),
            Outcome::Create(e) if e.message.as_deref() == Some(&*format!("Created pod: p{n}"))
        ));
    }
    let combined = match c.correlate(job(9), t, Timestamp::now()) {
        Outcome::Create(e) => e,
        other => panic!("the tenth should create the combined event, got {other:?}"),
    };
    assert_eq!(
        combined.message.as_deref(),
        Some("(combined from similar events): Created pod: p9")
    );
    match c.correlate(job(10), t, Timestamp::now()) {
        Outcome::Patch { event, .. } => {
            assert_eq!(event.metadata.name, combined.metadata.name);
            assert_eq!(event.count, Some(2));
            assert_eq!(
                event.message.as_deref(),
                Some("(combined from similar events): Created pod: p10")
            );
        }
        other => panic!("later ones patch the combined event, got {other:?}"),
    }
    // Outside the window the count starts over.
    let later = t + AGGREGATE_WINDOW + Duration::from_secs(1);
    assert!(matches!(
        c.correlate(job(11), later, Timestamp::now()),
        Outcome::Create(e) if e.message.as_deref() == Some("Created pod: p11")
    ));
}

#[test]
fn one_object_may_write_25_then_one_per_five_minutes() {
    let mut c = Correlator::default();
    let t = Instant::now();
    let written = (0..40)
        .filter(|n| {
            let e = event("a", &format!("Reason{n}"), "m");
            c.correlate(e, t, Timestamp::now()) != Outcome::Drop
        })
        .count();
    assert_eq!(written, 25);
    // Another object has its own allowance.
    assert_ne!(
        c.correlate(event("b", "R", "m"), t, Timestamp::now()),
        Outcome::Drop
    );
    let refilled = t + Duration::from_secs(300);
    assert_ne!(
        c.correlate(event("a", "Again", "m"), refilled, Timestamp::now()),
        Outcome::Drop
    );
    assert_eq!(
        c.correlate(event("a", "Again2", "m"), refilled, Timestamp::now()),
        Outcome::Drop
    );
}

#[test]
fn caches_stay_bounded() {
    let mut c = Correlator::default();
    let t = Instant::now();
    for n in 0..(CACHE_KEYS + 100) {
        c.correlate(event(&format!("p{n}"), "Started", "m"), t, Timestamp::now());
    }
    assert!(c.written.entries.len() <= CACHE_KEYS);
    assert!(c.similar.entries.len() <= CACHE_KEYS);
    assert!(c.spam.entries.len() <= CACHE_KEYS);
}
