//! Property tests: random operation sequences on the MVCC map and the watch
//! hub, checked against a plain model that keeps a full copy of the map at
//! every revision.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::mvcc::{Mvcc, RevisionRecord};
use super::types::{Compare, KeyValue, RangeRequest, Txn, TxnOp, WatchEvent};
use super::watch::WatchHub;

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u8),
    Delete(u8),
    /// Put guarded on the current mod_revision (`true`) or a wrong one.
    Guarded(u8, u8, bool),
    Pair(u8, u8, u8),
}

fn key(k: u8) -> String {
    format!(
        "/{}/{}",
        if k.is_multiple_of(2) { "even" } else { "odd" },
        k
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        (0u8..6).prop_map(Step::Delete),
        (0u8..6, any::<u8>(), any::<bool>()).prop_map(|(k, v, ok)| Step::Guarded(k, v, ok)),
        (0u8..6, 0u8..6, any::<u8>()).prop_map(|(a, b, v)| Step::Pair(a, b, v)),
    ]
}

type Model = BTreeMap<String, KeyValue>;

/// Applies `txn` to the model, ops in order; returns whether the compares
/// held and the events it produced (a txn touching one key twice yields both).
fn model_apply(model: &mut Model, txn: &Txn, revision: i64) -> (bool, Vec<WatchEvent>) {
    let ok = txn
        .compares
        .iter()
        .all(|Compare::ModRevision { key, equals }| {
            model.get(key).map_or(0, |kv| kv.mod_revision) == *equals
        });
    let ops = if ok { &txn.success } else { &txn.failure };
    let mut events = Vec::new();
    for op in ops {
        match op {
            TxnOp::Put { key, value } => {
                let prev = model.get(key).cloned();
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                model.insert(key.clone(), kv.clone());
                events.push(WatchEvent::Put { kv, prev });
            }
            TxnOp::Delete { key } => {
                if let Some(prev) = model.remove(key) {
                    events.push(WatchEvent::Delete { prev, revision });
                }
            }
        }
    }
    (ok, events)
}

fn event_key(e: &WatchEvent) -> &str {
    match e {
        WatchEvent::Put { kv, .. } => &kv.key,
        WatchEvent::Delete { prev, .. } => &prev.key,
        WatchEvent::Progress { .. } => "",
    }
}

fn to_txn(step: &Step, model: &Model) -> Txn {
    let put = |k: u8, v: u8| TxnOp::Put {
        key: key(k),
        value: vec![v],
    };
    match *step {
        Step::Put(k, v) => Txn {
            success: vec![put(k, v)],
            ..Txn::default()
        },
        Step::Delete(k) => Txn {
            success: vec![TxnOp::Delete { key: key(k) }],
            ..Txn::default()
        },
        Step::Guarded(k, v, right) => {
            let actual = model.get(&key(k)).map_or(0, |kv| kv.mod_revision);
            let equals = if right { actual } else { actual + 1 };
            Txn {
                compares: vec![Compare::ModRevision {
                    key: key(k),
                    equals,
                }],
                success: vec![put(k, v)],
                failure: vec![TxnOp::Delete { key: key(5) }],
            }
        }
        Step::Pair(a, b, v) => Txn {
            success: vec![put(a, v), TxnOp::Delete { key: key(b) }],
            ..Txn::default()
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mvcc_and_watch_match_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        let mut mvcc = Mvcc::default();
        let mut hub = WatchHub::new(1024);
        let mut watch = hub.register("/even/", 0, 0, Vec::new());
        let mut model = Model::new();
        let mut snapshots = vec![model.clone()];
        let mut expected_events = Vec::new();
        for step in &steps {
            let txn = to_txn(step, &model);
            let before = model.clone();
            let next = mvcc.revision() + 1;
            let (ok, events) = model_apply(&mut model, &txn, next);
            let changed = !events.is_empty();
            let (outcome, record): (_, Option<Arc<RevisionRecord>>) = mvcc.apply(&txn, 0);
            prop_assert_eq!(outcome.succeeded, ok);
            prop_assert_eq!(record.is_some(), changed);
            if let Some(record) = record {
                hub.dispatch(&record);
                snapshots.push(model.clone());
                expected_events.extend(events.into_iter().filter(|e| event_key(e).starts_with("/even/")));
            } else {
                model = before;
            }
            prop_assert_eq!(mvcc.revision() as usize, snapshots.len() - 1);
            for k in 0..6 {
                prop_assert_eq!(mvcc.get(&key(k)), model.get(&key(k)).cloned());
            }
        }
        // Every past revision reads exactly as the model had it.
        for (revision, snapshot) in snapshots.iter().enumerate() {
            let request = RangeRequest { prefix: "/".into(), revision: Some(revision as i64), ..Default::default() };
            let got = mvcc.range(&request).unwrap();
            let want: Vec<KeyValue> = snapshot.values().cloned().collect();
            prop_assert_eq!(got.kvs, want);
            for k in 0..6 {
                prop_assert_eq!(mvcc.get_at(&key(k), revision as i64).unwrap(), snapshot.get(&key(k)).cloned());
            }
        }
        // The watch saw every event under its prefix, in order, once.
        hub.close_all();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut seen = Vec::new();
        runtime.block_on(async {
            while let Some(event) = watch.next().await {
                seen.push(event.unwrap());
            }
        });
        prop_assert_eq!(seen, expected_events);
    }
}
