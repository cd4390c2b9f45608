//! Unit tests of the MVCC map: revisions, guards, past reads, paging, compaction.

use super::*;

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn txn(ops: Vec<TxnOp>) -> Txn {
    Txn {
        compares: vec![],
        success: ops,
        failure: vec![],
    }
}

#[test]
fn revisions_versions_and_create_revision() {
    let mut m = Mvcc::default();
    let (o, r) = m.apply(&txn(vec![put("/a", "1")]), 0);
    assert!(o.succeeded && r.is_some());
    assert_eq!(o.revision, 1);
    m.apply(&txn(vec![put("/b", "1")]), 0);
    let (o, _) = m.apply(&txn(vec![put("/a", "2")]), 0);
    assert_eq!(o.revision, 3);
    let a = m.get("/a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 3, 2));
    assert_eq!(o.prev[0].as_ref().unwrap().value, b"1");
}

#[test]
fn failed_guard_and_noop_delete_keep_the_revision() {
    let mut m = Mvcc::default();
    m.apply(&txn(vec![put("/a", "1")]), 0);
    let guarded = Txn {
        compares: vec![Compare::ModRevision {
            key: "/a".into(),
            equals: 7,
        }],
        success: vec![put("/a", "x")],
        failure: vec![],
    };
    let (o, r) = m.apply(&guarded, 0);
    assert!(!o.succeeded && r.is_none());
    assert_eq!((o.revision, o.compare_actual.clone()), (1, vec![1]));
    let (o, r) = m.apply(&txn(vec![TxnOp::Delete { key: "/zz".into() }]), 0);
    assert!(r.is_none());
    assert_eq!(o.revision, 1);
}

#[test]
fn past_reads_undo_later_changes() {
    let mut m = Mvcc::default();
    m.apply(&txn(vec![put("/p/a", "1"), put("/p/b", "1")]), 0); // rev 1
    m.apply(&txn(vec![put("/p/a", "2")]), 0); // rev 2
    m.apply(&txn(vec![TxnOp::Delete { key: "/p/b".into() }]), 0); // rev 3
    m.apply(&txn(vec![put("/p/c", "1")]), 0); // rev 4
    assert_eq!(m.get_at("/p/a", 1).unwrap().unwrap().value, b"1");
    assert_eq!(m.get_at("/p/b", 2).unwrap().unwrap().value, b"1");
    assert_eq!(m.get_at("/p/b", 3).unwrap(), None);
    assert_eq!(m.get_at("/p/c", 3).unwrap(), None);
    let at2 = m
        .range(&RangeRequest {
            prefix: "/p/".into(),
            revision: Some(2),
            ..Default::default()
        })
        .unwrap();
    let keys: Vec<_> = at2.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a", "/p/b"]);
    assert_eq!(at2.revision, 2);
    assert!(matches!(
        m.get_at("/p/a", 9),
        Err(StoreError::FutureRevision { .. })
    ));
}

#[test]
fn range_pages_with_limit_and_continue() {
    let mut m = Mvcc::default();
    for k in ["/r/a", "/r/b", "/r/c", "/s/a"] {
        m.apply(&txn(vec![put(k, "v")]), 0);
    }
    let first = m
        .range(&RangeRequest {
            prefix: "/r/".into(),
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first.kvs.len(), 2);
    assert!(first.more);
    assert_eq!(first.remaining, 1);
    let next = m
        .range(&RangeRequest {
            prefix: "/r/".into(),
            limit: 2,
            start_after: Some(first.kvs[1].key.clone()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        next.kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/r/c"]
    );
    assert!(!next.more);
}

#[test]
fn compaction_drops_old_history_and_rejects_old_reads() {
    let mut m = Mvcc::default();
    for (i, at) in [10u64, 20, 30].iter().enumerate() {
        m.apply(&txn(vec![put("/k", &i.to_string())]), *at);
    }
    m.compact(25, 100);
    assert_eq!(m.compacted(), 2);
    assert!(matches!(
        m.get_at("/k", 1),
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(m.get_at("/k", 2).unwrap().unwrap().value, b"1");
    assert!(matches!(
        m.events_after("/", 1),
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(m.events_after("/", 2).unwrap().len(), 1);
    m.compact(0, 0);
    assert_eq!(m.compacted(), 3);
}

#[test]
fn image_round_trip_preserves_state_and_history() {
    let mut m = Mvcc::default();
    m.apply(&txn(vec![put("/a", "1")]), 1);
    m.apply(&txn(vec![put("/a", "2"), put("/b", "1")]), 2);
    m.apply(&txn(vec![TxnOp::Delete { key: "/a".into() }]), 3);
    let restored = Mvcc::from_image(m.to_image()).unwrap();
    assert_eq!(restored, m);
    assert_eq!(restored.state_hash(), m.state_hash());
}

#[test]
fn borrowed_image_encodes_like_the_owned_one() {
    use super::super::raft_types::{decode, encode};
    let mut m = Mvcc::default();
    m.apply(&txn(vec![put("/a", "1"), put("/b", "1")]), 1);
    m.apply(&txn(vec![put("/a", "2")]), 2);
    m.apply(&txn(vec![TxnOp::Delete { key: "/b".into() }]), 3);
    m.compact(2, usize::MAX);
    let owned = encode(&m.to_image()).unwrap();
    assert_eq!(encode(&m.image_ref()).unwrap(), owned);
    let back = Mvcc::from_image(decode(&owned).unwrap()).unwrap();
    assert_eq!(back, m);
}
