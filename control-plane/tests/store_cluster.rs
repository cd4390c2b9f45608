//! A 3-member store cluster on loopback with a fault-injecting transport:
//! continuous writes and reads from several clients while the leader is
//! killed and restarted, a minority is cut off and the leader is cut off.
//! Checks: no acknowledged write lost, the history is linearizable (see
//! `store_checker`), a cut-off minority acknowledges nothing, a watch resumed
//! across faults sees every event exactly once in order, all members
//! converge (the isolated one by snapshot) and a full restart restores
//! identical state.

mod store_checker;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_control_plane::store::{
    HttpTransport, RangeRequest, Store, StoreConfig, StoreError, StoreOptions, Transport,
    TransportError, Txn, TxnOp, WatchEvent,
};
use store_checker::{Op, Outcome, Record};
use tokio::task::JoinHandle;

/// The network between members; a cut member sends and receives nothing.
struct Net {
    addrs: Mutex<HashMap<u64, SocketAddr>>,
    cut: Mutex<HashSet<u64>>,
    /// Operations that started and ended on a member while it was cut off.
    tried_while_cut: AtomicU64,
    http: HttpTransport,
}

impl Net {
    fn is_cut(&self, id: u64) -> bool {
        self.cut.lock().unwrap().contains(&id)
    }
}

struct Faulty {
    me: u64,
    net: Arc<Net>,
}

#[async_trait::async_trait]
impl Transport for Faulty {
    async fn call(
        &self,
        target: u64,
        url: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        if self.net.is_cut(self.me) || self.net.is_cut(target) {
            return Err(TransportError::Unreachable("cut off by the test".into()));
        }
        let addr = self.net.addrs.lock().unwrap().get(&target).copied();
        let url = addr.map_or_else(|| url.to_string(), |a| format!("http://{a}"));
        self.net.http.call(target, &url, path, body, timeout).await
    }
}

struct Member {
    id: u64,
    dir: PathBuf,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

type Live = Arc<Mutex<HashMap<u64, Store>>>;

fn options(id: u64, net: &Arc<Net>, join: Option<String>) -> StoreOptions {
    StoreOptions {
        transport: Some(Arc::new(Faulty {
            me: id,
            net: net.clone(),
        })),
        join,
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(700),
        snapshot_every: 50,
        log_keep: 10,
        ..StoreOptions::default()
    }
}

async fn start(member: &mut Member, net: &Arc<Net>, live: &Live, join: Option<String>) {
    let listener = tokio::net::TcpListener::bind(member.addr).await.unwrap();
    member.addr = listener.local_addr().unwrap();
    net.addrs.lock().unwrap().insert(member.id, member.addr);
    let config = StoreConfig {
        data_dir: member.dir.clone(),
        node_id: member.id,
        advertise_url: format!("http://{}", member.addr),
        history_window: Duration::from_secs(300),
    };
    // Serve first (a joining member must be reachable before it is admitted).
    let (router_tx, router_rx) = tokio::sync::oneshot::channel::<axum::Router>();
    member.server = Some(tokio::spawn(async move {
        let Ok(router) = router_rx.await else { return };
        let app = axum::Router::new().nest("/internal/raft", router);
        let _ = axum::serve(listener, app).await;
    }));
    let store = Store::open_with(config, options(member.id, net, join))
        .await
        .unwrap();
    router_tx.send(store.router()).unwrap();
    live.lock().unwrap().insert(member.id, store);
}

async fn kill(member: &mut Member, live: &Live) {
    let store = live.lock().unwrap().remove(&member.id);
    if let Some(store) = store {
        store.shutdown().await;
    }
    if let Some(server) = member.server.take() {
        server.abort();
        let _ = server.await;
    }
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until an operation has started and ended on a cut-off member since
/// `tried_before` was read. Such operations end only when they time out, so
/// a cut window must last until one has (the probe clients pick the cut member).
async fn wait_for_try_while_cut(net: &Net, tried_before: u64, member: &str) {
    wait_until(
        &format!("an operation tried on {member}"),
        Duration::from_secs(10),
        || net.tried_while_cut.load(Ordering::Relaxed) > tried_before,
    )
    .await;
}

fn leader(live: &Live) -> Option<u64> {
    let live = live.lock().unwrap();
    live.values()
        .filter_map(|s| s.leader())
        .find(|id| live.contains_key(id))
}

/// A live member: round-robin over the reachable ones, or (for the probe
/// client) a cut-off one whenever there is one.
fn pick(live: &Live, net: &Net, n: u64, probe: bool) -> Option<(u64, Store)> {
    let live = live.lock().unwrap();
    let cut = net.cut.lock().unwrap().clone();
    if probe && let Some(id) = cut.iter().find(|id| live.contains_key(id)) {
        return Some((*id, live[id].clone()));
    }
    let mut ids: Vec<u64> = live
        .keys()
        .copied()
        .filter(|id| !cut.contains(id))
        .collect();
    ids.sort();
    let id = *ids.get((n as usize) % ids.len().max(1))?;
    Some((id, live[&id].clone()))
}

static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn note_error(member: u64, at: Duration, e: &StoreError) {
    let mut errors = ERRORS.lock().unwrap();
    let text = format!("member {member}: {e}");
    if errors.len() < 30 && !errors.iter().any(|x| x.ends_with(&text)) {
        errors.push(format!("{at:?} {text}"));
    }
}

/// One client: alternating puts and linearizable reads on a few keys.
async fn client(
    n: u64,
    live: Live,
    net: Arc<Net>,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    t0: Instant,
) -> Vec<Record> {
    let mut records = Vec::new();
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Some((member, store)) = pick(&live, &net, i * 7 + n, n < 2) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let key = format!("/lin/k{}", i % 4);
        let cut_at_invoke = net.is_cut(member);
        let invoke = t0.elapsed();
        let (op, outcome) = if i.is_multiple_of(2) {
            let value = seq.fetch_add(1, Ordering::Relaxed);
            let txn = Txn {
                compares: vec![],
                success: vec![TxnOp::Put {
                    key: key.clone(),
                    value: value.to_string().into_bytes(),
                }],
                failure: vec![],
            };
            let outcome = match store.txn(txn).await {
                Ok(r) => Outcome::Put {
                    revision: r.revision,
                },
                Err(e) => {
                    note_error(member, t0.elapsed(), &e);
                    Outcome::Failed
                }
            };
            (Op::Put { key, value }, outcome)
        } else {
            let request = RangeRequest {
                prefix: key.clone(),
                ..Default::default()
            };
            let outcome = match store.range(request).await {
                Ok(r) => Outcome::Get {
                    served_at: r.revision,
                    value: r.kvs.first().map(|kv| {
                        let v = String::from_utf8_lossy(&kv.value).parse::<u64>().unwrap();
                        (v, kv.mod_revision)
                    }),
                },
                Err(e) => {
                    note_error(member, t0.elapsed(), &e);
                    Outcome::Failed
                }
            };
            (Op::Get { key }, outcome)
        };
        let complete = t0.elapsed();
        if cut_at_invoke && net.is_cut(member) {
            net.tried_while_cut.fetch_add(1, Ordering::Relaxed);
        }
        records.push(Record {
            member,
            op,
            invoke,
            complete,
            outcome,
        });
    }
    records
}

/// A watcher that resumes on another member whenever its watch ends.
async fn watcher(
    live: Live,
    net: Arc<Net>,
    stop: Arc<AtomicBool>,
    reached: Arc<AtomicI64>,
) -> Vec<(i64, String)> {
    let mut events = Vec::new();
    let mut last = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let Some((_, store)) = pick(&live, &net, n, false) else {
            continue;
        };
        let Ok(mut watch) = store.watch("/lin/", last).await else {
            continue;
        };
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), watch.next()).await;
            match next {
                Ok(Some(Ok(WatchEvent::Put { kv, .. }))) => {
                    last = kv.mod_revision;
                    reached.store(last, Ordering::Relaxed);
                    events.push((
                        kv.mod_revision,
                        String::from_utf8_lossy(&kv.value).into_owned(),
                    ));
                }
                Ok(Some(Ok(WatchEvent::Progress { revision }))) => {
                    last = last.max(revision);
                    reached.store(last, Ordering::Relaxed);
                }
                Ok(Some(Ok(WatchEvent::Delete { .. }))) => panic!("no deletes in this test"),
                Ok(Some(Err(StoreError::WatchLagged { resume_after }))) => {
                    last = resume_after;
                    break;
                }
                Ok(Some(Err(e))) => panic!("watch failed: {e}"),
                Ok(None) => break,
                Err(_) if stop.load(Ordering::Relaxed) => return events,
                Err(_) => {}
            }
        }
    }
    events
}

fn member(id: u64, root: &Path) -> Member {
    Member {
        id,
        dir: root.join(format!("m{id}")),
        addr: "127.0.0.1:0".parse().unwrap(),
        server: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_survive_faults_linearizably() {
    let root = tempfile::tempdir().unwrap();
    let net = Arc::new(Net {
        addrs: Mutex::new(HashMap::new()),
        cut: Mutex::new(HashSet::new()),
        tried_while_cut: AtomicU64::new(0),
        http: HttpTransport::new(None).unwrap(),
    });
    let live: Live = Arc::new(Mutex::new(HashMap::new()));
    let mut members: Vec<Member> = (1..=3).map(|id| member(id, root.path())).collect();
    start(&mut members[0], &net, &live, None).await;
    let seed = format!("http://{}", members[0].addr);
    for m in members.iter_mut().skip(1) {
        start(m, &net, &live, Some(seed.clone())).await;
    }
    let first = live.lock().unwrap()[&1].clone();
    wait_until("3 voters", Duration::from_secs(30), || {
        first.members().iter().filter(|m| m.voter).count() == 3
    })
    .await;

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(1));
    let clients: Vec<_> = (0..5)
        .map(|n| {
            tokio::spawn(client(
                n,
                live.clone(),
                net.clone(),
                stop.clone(),
                seq.clone(),
                t0,
            ))
        })
        .collect();
    let watch_stop = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(AtomicI64::new(0));
    let watch_task = tokio::spawn(watcher(
        live.clone(),
        net.clone(),
        watch_stop.clone(),
        reached.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Kill the leader, let the others elect a new one, restart it.
    let old = leader(&live).expect("a leader");
    eprintln!("{:?} killing leader {old}", t0.elapsed());
    kill(&mut members[old as usize - 1], &live).await;
    wait_until("a new leader", Duration::from_secs(10), || {
        leader(&live).is_some_and(|l| l != old)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    start(&mut members[old as usize - 1], &net, &live, None).await;

    // 2. Cut off a minority (one follower) long enough to need a snapshot.
    let lead = leader(&live).expect("a leader");
    let minority = (1..=3).find(|id| *id != lead).unwrap();
    let before = live.lock().unwrap()[&lead].current_revision();
    let cut_start = t0.elapsed();
    let tried_before = net.tried_while_cut.load(Ordering::Relaxed);
    net.cut.lock().unwrap().insert(minority);
    let lead_store = live.lock().unwrap()[&lead].clone();
    wait_until(
        "the majority commits past the log kept",
        Duration::from_secs(30),
        || lead_store.current_revision() > before + 80,
    )
    .await;
    wait_for_try_while_cut(&net, tried_before, "the cut-off minority").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut_end = t0.elapsed();
    net.cut.lock().unwrap().clear();
    let cut_minority = (minority, cut_start, cut_end);

    // 3. Cut off the leader; the majority elects another and carries on.
    let old = leader(&live).expect("a leader");
    let cut_start = t0.elapsed();
    let tried_before = net.tried_while_cut.load(Ordering::Relaxed);
    net.cut.lock().unwrap().insert(old);
    wait_until("a leader in the majority", Duration::from_secs(10), || {
        let live = live.lock().unwrap();
        live.iter()
            .any(|(id, s)| *id != old && s.leader().is_some_and(|l| l != old))
    })
    .await;
    wait_for_try_while_cut(&net, tried_before, "the cut-off leader").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut_end = t0.elapsed();
    net.cut.lock().unwrap().clear();
    let cut_leader = (old, cut_start, cut_end);
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    for c in clients {
        records.extend(c.await.unwrap());
    }

    // Everyone converges on the same state.
    let stores: Vec<Store> = live.lock().unwrap().values().cloned().collect();
    wait_until("all members converge", Duration::from_secs(30), || {
        let revs: HashSet<i64> = stores.iter().map(|s| s.current_revision()).collect();
        revs.len() == 1
    })
    .await;
    let final_revision = stores[0].current_revision();
    let hash = stores[0].state_hash();
    assert!(
        stores.iter().all(|s| s.state_hash() == hash),
        "members differ after converging"
    );

    // The whole history, in revision order, from a fresh watch.
    let mut history = Vec::new();
    let mut watch = stores[0].watch("/lin/", 0).await.unwrap();
    while history.last().map_or(0, |(r, _, _)| *r) < final_revision {
        match watch.next().await.unwrap().unwrap() {
            WatchEvent::Put { kv, .. } => history.push((
                kv.mod_revision,
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).parse::<u64>().unwrap(),
            )),
            WatchEvent::Progress { .. } => {}
            WatchEvent::Delete { .. } => panic!("no deletes in this test"),
        }
    }
    wait_until(
        "the resuming watcher catches up",
        Duration::from_secs(10),
        || reached.load(Ordering::Relaxed) >= final_revision,
    )
    .await;
    watch_stop.store(true, Ordering::Relaxed);
    let watched = watch_task.await.unwrap();
    let expected: Vec<(i64, String)> = history
        .iter()
        .map(|(r, _, v)| (*r, v.to_string()))
        .collect();
    assert_eq!(
        watched, expected,
        "the watch across faults must see every event exactly once, in order"
    );

    let acked = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Put { .. }))
        .count();
    let failed = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed))
        .count();
    eprintln!("first errors: {:#?}", ERRORS.lock().unwrap());
    eprintln!(
        "{} operations, {acked} acknowledged puts, {failed} failed, final revision {final_revision}",
        records.len()
    );
    assert!(
        acked > 100,
        "too few acknowledged writes ({acked}) to mean anything"
    );
    store_checker::check(&records, &history).unwrap();
    for (id, from, to) in [cut_minority, cut_leader] {
        let tried = records
            .iter()
            .filter(|r| r.member == id && r.invoke >= from && r.complete <= to)
            .count();
        eprintln!("member {id} cut off from {from:?} to {to:?}: {tried} operations tried there");
        assert!(tried > 0, "no operation tried on the cut-off member {id}");
        let acknowledged = records
            .iter()
            .filter(|r| r.member == id && r.invoke >= from && r.complete <= to)
            .filter(|r| !matches!(r.outcome, Outcome::Failed))
            .count();
        assert_eq!(
            acknowledged, 0,
            "cut-off member {id} acknowledged operations"
        );
    }

    // Restart every member from disk: identical state.
    for m in members.iter_mut() {
        kill(m, &live).await;
    }
    for m in members.iter_mut() {
        start(m, &net, &live, None).await;
    }
    wait_until(
        "a leader after full restart",
        Duration::from_secs(20),
        || leader(&live).is_some(),
    )
    .await;
    let stores: Vec<Store> = live.lock().unwrap().values().cloned().collect();
    wait_until("restored state", Duration::from_secs(20), || {
        stores.iter().all(|s| s.state_hash() == hash)
    })
    .await;
    assert!(
        stores
            .iter()
            .all(|s| s.current_revision() == final_revision)
    );
    for m in members.iter_mut() {
        kill(m, &live).await;
    }
}
