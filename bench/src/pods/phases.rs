//! When each pod of a namespace was first seen in each phase: one watch of
//! the namespace's pods (raw watch stream, parsing only name, phase and
//! resourceVersion, so the benchmark's own CPU stays small next to skiff's),
//! resumed from the last resourceVersion when the server ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyExt;
use serde::Deserialize;

use super::cluster::get;

/// First-seen instants per pod name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// `spec.nodeName` set (bound by the scheduler).
    pub scheduled: Option<Instant>,
    pub running: Option<Instant>,
    pub succeeded: Option<Instant>,
    pub failed: Option<Instant>,
}

/// A running watch of one namespace's pods.
pub struct Phases {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    metadata: Meta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(rename = "nodeName", default)]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    phase: Option<String>,
}

impl Phases {
    /// Starts watching `namespace`'s pods; returns once the watch is open.
    pub async fn start(client: &kube::Client, namespace: &str) -> anyhow::Result<Phases> {
        let list: serde_json::Value = serde_json::from_slice(
            &get(
                client,
                &format!("/api/v1/namespaces/{namespace}/pods?limit=1"),
            )
            .await?,
        )?;
        let mut rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        let mut opened_tx = Some(opened_tx);
        let (client, ns, map) = (client.clone(), namespace.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let path = format!(
                    "/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=3600"
                );
                let Ok(req) = http::Request::get(path).body(kube::client::Body::from(Vec::new()))
                else {
                    return;
                };
                let resp = match client.send(req).await {
                    Ok(r) if r.status().is_success() => r,
                    _ => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Some(tx) = opened_tx.take() {
                    let _ = tx.send(());
                }
                let mut body = resp.into_body().into_data_stream();
                let mut buf: Vec<u8> = Vec::new();
                while let Some(Ok(chunk)) = body.next().await {
                    let now = Instant::now();
                    buf.extend_from_slice(&chunk);
                    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=nl).collect();
                        let Ok(event) = serde_json::from_slice::<Event>(&line) else {
                            continue;
                        };
                        if event.kind == "BOOKMARK" || event.kind == "ERROR" {
                            continue;
                        }
                        if !event.object.metadata.resource_version.is_empty() {
                            rv = event.object.metadata.resource_version.clone();
                        }
                        let phase = event.object.status.and_then(|s| s.phase);
                        let bound = event.object.spec.and_then(|s| s.node_name).is_some();
                        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                        let entry = map.entry(event.object.metadata.name).or_default();
                        if bound {
                            entry.scheduled.get_or_insert(now);
                        }
                        let slot = match phase.as_deref() {
                            Some("Running") => &mut entry.running,
                            Some("Succeeded") => &mut entry.succeeded,
                            Some("Failed") => &mut entry.failed,
                            _ => continue,
                        };
                        slot.get_or_insert(now);
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), opened_rx)
            .await
            .map_err(|_| anyhow::anyhow!("pod watch did not open within 30 s"))??;
        Ok(Phases { seen, task })
    }

    /// A copy of what has been seen so far.
    pub fn snapshot(&self) -> HashMap<String, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls until `done(seen)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&HashMap<String, Seen>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.seen.lock().unwrap_or_else(|p| p.into_inner())) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many pods have been seen with `pick(seen)` set.
pub fn count(seen: &HashMap<String, Seen>, pick: fn(&Seen) -> Option<Instant>) -> usize {
    seen.values().filter(|s| pick(s).is_some()).count()
}
