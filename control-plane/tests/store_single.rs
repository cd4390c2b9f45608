//! A single-member store end to end: CRUD with guards, transactions, paged
//! ranges, past reads, watches (catch-up, live, lagging, compacted, progress)
//! and restart from disk.

use std::time::Duration;

use skiff_control_plane::store::{
    Compare, RangeRequest, Store, StoreConfig, StoreError, StoreOptions, Txn, TxnOp, WatchEvent,
};

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig::new(dir, "http://127.0.0.1:1")
}

async fn next_event(
    watch: &mut skiff_control_plane::store::Watch,
) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("watch event within 10s")
        .expect("watch still open")
}

#[tokio::test]
async fn crud_guards_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.current_revision(), 0);

    let a = store
        .create("/registry/core/pods/ns/a", b"1".to_vec())
        .await
        .unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 1, 1));
    assert_eq!(
        store
            .create("/registry/core/pods/ns/a", b"x".to_vec())
            .await,
        Err(StoreError::AlreadyExists {
            key: "/registry/core/pods/ns/a".into()
        })
    );
    let a2 = store
        .update("/registry/core/pods/ns/a", b"2".to_vec(), 1)
        .await
        .unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision, a2.version), (1, 2, 2));
    assert!(matches!(
        store
            .update("/registry/core/pods/ns/a", b"3".to_vec(), 1)
            .await,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        store
            .update("/registry/core/pods/ns/none", b"3".to_vec(), 1)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .get("/registry/core/pods/ns/a")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"2"
    );
    assert_eq!(
        store
            .get_at("/registry/core/pods/ns/a", 1)
            .await
            .unwrap()
            .unwrap()
            .value,
        b"1"
    );

    assert!(matches!(
        store.delete("/registry/core/pods/ns/a", Some(1)).await,
        Err(StoreError::Conflict { .. })
    ));
    let (prev, rev) = store
        .delete("/registry/core/pods/ns/a", Some(2))
        .await
        .unwrap();
    assert_eq!((prev.value.as_slice(), rev), (&b"2"[..], 3));
    assert!(matches!(
        store.delete("/registry/core/pods/ns/a", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.current_revision(), 3);
    assert_eq!(store.get("/registry/core/pods/ns/a").await.unwrap(), None);

    let txn = Txn {
        compares: vec![Compare::ModRevision {
            key: "/t/x".into(),
            equals: 0,
        }],
        success: vec![
            TxnOp::Put {
                key: "/t/x".into(),
                value: b"x".to_vec(),
            },
            TxnOp::Put {
                key: "/t/y".into(),
                value: b"y".to_vec(),
            },
        ],
        failure: vec![],
    };
    let response = store.txn(txn.clone()).await.unwrap();
    assert!(response.succeeded);
    assert_eq!(response.revision, 4);
    let again = store.txn(txn).await.unwrap();
    assert!(!again.succeeded);
    assert_eq!(again.revision, 4);

    let page = store
        .range(RangeRequest {
            prefix: "/t/".into(),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (page.kvs.len(), page.more, page.remaining, page.revision),
        (1, true, 1, 4)
    );
    assert_eq!(page.kvs[0].mod_revision, 4);
    store.shutdown().await;
}

#[tokio::test]
async fn restart_restores_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let store = Store::open(config(dir.path())).await.unwrap();
        for i in 0..50 {
            store
                .create(&format!("/k/{i:03}"), vec![i as u8; 100])
                .await
                .unwrap();
        }
        store.update("/k/007", b"seven".to_vec(), 8).await.unwrap();
        let hash = store.state_hash();
        store.shutdown().await;
        hash
    };
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(store.current_revision(), 51);
    assert_eq!(store.state_hash(), hash);
    assert_eq!(store.get("/k/007").await.unwrap().unwrap().value, b"seven");
    // History survives too: a watch from an old revision replays it.
    let mut watch = store.watch("/k/", 49).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), 50);
    store.create("/k/new", b"n".to_vec()).await.unwrap();
    assert_eq!(store.current_revision(), 52);
    store.shutdown().await;
}

#[tokio::test]
async fn watch_catches_up_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    store.create("/w/a", b"1".to_vec()).await.unwrap();
    store.create("/other/a", b"1".to_vec()).await.unwrap();
    store.update("/w/a", b"2".to_vec(), 1).await.unwrap();

    let mut watch = store.watch("/w/", 0).await.unwrap();
    let first = next_event(&mut watch).await.unwrap();
    assert!(matches!(&first, WatchEvent::Put { kv, prev: None } if kv.mod_revision == 1));
    let second = next_event(&mut watch).await.unwrap();
    assert!(
        matches!(&second, WatchEvent::Put { kv, prev: Some(p) } if kv.mod_revision == 3 && p.value == b"1")
    );

    store.delete("/w/a", None).await.unwrap();
    let third = next_event(&mut watch).await.unwrap();
    assert!(matches!(&third, WatchEvent::Delete { prev, revision: 4 } if prev.value == b"2"));

    // A write elsewhere produces a progress bookmark for this watcher.
    store.create("/other/b", b"1".to_vec()).await.unwrap();
    let progress = next_event(&mut watch).await.unwrap();
    assert_eq!(progress, WatchEvent::Progress { revision: 5 });
    store.shutdown().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn lagging_watcher_is_cut_off_and_can_resume() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        watch_buffer: 4,
        ..StoreOptions::default()
    };
    let store = Store::open_with(config(dir.path()), options).await.unwrap();
    let mut slow = store.watch("/l/", 0).await.unwrap();
    for i in 0..10 {
        store
            .create(&format!("/l/{i}"), b"v".to_vec())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let resume_after = loop {
        match next_event(&mut slow).await {
            Ok(event) => seen.push(event.revision()),
            Err(StoreError::WatchLagged { resume_after }) => break resume_after,
            Err(e) => panic!("unexpected {e}"),
        }
    };
    assert_eq!(seen, (1..=resume_after).collect::<Vec<_>>());
    let mut resumed = store.watch("/l/", resume_after).await.unwrap();
    for expected in resume_after + 1..=10 {
        assert_eq!(next_event(&mut resumed).await.unwrap().revision(), expected);
    }
    store.shutdown().await;
}

#[tokio::test]
async fn compacted_history_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.history_window = Duration::from_millis(1);
    let options = StoreOptions {
        progress_interval: Duration::from_millis(20),
        ..StoreOptions::default()
    };
    let store = Store::open_with(cfg, options).await.unwrap();
    for i in 0..3 {
        store
            .create(&format!("/c/{i}"), b"v".to_vec())
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.compacted_revision() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "compaction did not run"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        store.watch("/c/", 1).await,
        Err(StoreError::Compacted { compacted: 3, .. })
    ));
    assert!(matches!(
        store.get_at("/c/0", 2).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(store.get_at("/c/0", 3).await.unwrap().unwrap().value, b"v");
    store.shutdown().await;
}

#[tokio::test]
async fn snapshot_save_and_restore_serve_the_saved_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(&dir.path().join("a"))).await.unwrap();
    for i in 0..20 {
        store
            .create(&format!("/b/{i:02}"), vec![i; 10])
            .await
            .unwrap();
    }
    store.delete("/b/03", None).await.unwrap();
    let file = dir.path().join("backup.snap");
    let revision = store.save_snapshot(&file).await.unwrap();
    assert_eq!(revision, 21);
    let hash = store.state_hash();
    store
        .create("/b/after", b"not in the backup".to_vec())
        .await
        .unwrap();
    store.shutdown().await;

    let restored_dir = dir.path().join("restored");
    assert_eq!(Store::restore_snapshot(&file, &restored_dir).unwrap(), 21);
    let restored = Store::open(config(&restored_dir)).await.unwrap();
    assert_eq!(restored.current_revision(), 21);
    assert_eq!(restored.state_hash(), hash);
    assert_eq!(restored.get("/b/after").await.unwrap(), None);
    assert_eq!(
        restored.get("/b/05").await.unwrap().unwrap().value,
        vec![5; 10]
    );
    let kv = restored.create("/b/new", b"n".to_vec()).await.unwrap();
    assert_eq!(kv.mod_revision, 22);
    restored.shutdown().await;
    // Restarting the restored member keeps its data (the seed is not applied twice).
    let again = Store::open(config(&restored_dir)).await.unwrap();
    assert_eq!(again.current_revision(), 22);
    again.shutdown().await;

    // A damaged file or a non-empty target is refused.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    assert!(matches!(
        Store::restore_snapshot(&file, &dir.path().join("x")),
        Err(StoreError::Storage(_))
    ));
    assert!(matches!(
        Store::restore_snapshot(&file, &restored_dir),
        Err(StoreError::Storage(_))
    ));
}

#[tokio::test]
async fn a_corrupt_log_record_stops_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    store
        .create("/x/k", b"CORRUPT-ME-PLEASE-0123456789".to_vec())
        .await
        .unwrap();
    store.shutdown().await;
    let log = dir.path().join("raft-log.redb");
    let mut bytes = std::fs::read(&log).unwrap();
    let needle = b"CORRUPT-ME-PLEASE";
    let mut hits = 0;
    for i in 0..bytes.len() - needle.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i] ^= 0x20;
            hits += 1;
        }
    }
    assert!(hits > 0, "the value is stored verbatim in the log");
    std::fs::write(&log, bytes).unwrap();
    match Store::open(config(dir.path())).await {
        Err(StoreError::Storage(message)) => assert!(message.contains("raft log"), "{message}"),
        Err(other) => panic!("expected a storage error, got {other}"),
        Ok(_) => panic!("a corrupt log must not be served"),
    }
}

#[tokio::test]
async fn snapshots_and_log_purge_keep_state_and_history_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = || StoreOptions {
        snapshot_every: 20,
        log_keep: 5,
        ..StoreOptions::default()
    };
    let hash = {
        let store = Store::open_with(config(dir.path()), options())
            .await
            .unwrap();
        for i in 0..150 {
            store
                .create(&format!("/s/{i:03}"), vec![1; 64])
                .await
                .unwrap();
        }
        let hash = store.state_hash();
        store.shutdown().await;
        hash
    };
    let store = Store::open_with(config(dir.path()), options())
        .await
        .unwrap();
    assert_eq!(store.state_hash(), hash);
    assert_eq!(store.current_revision(), 150);
    // History from before the last snapshot is still watchable.
    let mut watch = store.watch("/s/", 10).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), 11);
    store.shutdown().await;
}

/// Concurrent writers share Raft entries (see the store's batcher), yet each
/// write keeps its own revision and outcome: creates of one key race, exactly
/// one wins, and the watch sees every revision once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_keep_one_revision_and_outcome_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut watch = store.watch("/registry/", 0).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let store = store.clone();
        writers.spawn(async move {
            let mine = store
                .create(&format!("/registry/k/{i}"), i.to_le_bytes().to_vec())
                .await
                .unwrap();
            let race = store
                .create("/registry/race", i.to_le_bytes().to_vec())
                .await;
            (mine.mod_revision, race)
        });
    }
    let mut revisions = Vec::new();
    let mut winners = 0;
    while let Some(done) = writers.join_next().await {
        let (revision, race) = done.unwrap();
        revisions.push(revision);
        match race {
            Ok(kv) => {
                winners += 1;
                revisions.push(kv.mod_revision);
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected outcome of a racing create: {e}"),
        }
    }
    assert_eq!(winners, 1);
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=201).collect::<Vec<_>>());
    assert_eq!(store.current_revision(), 201);
    let mut expected = 1;
    while expected <= 201 {
        match next_event(&mut watch).await.unwrap() {
            WatchEvent::Progress { .. } => {}
            event => {
                assert_eq!(event.revision(), expected);
                expected += 1;
            }
        }
    }
}
