//! A real store and API server on 127.0.0.1:0 in a temporary directory,
//! with an admin kube-rs client, a raw-request helper and polling helpers.

use std::time::Duration;

use kube::config::Kubeconfig;
use serde_json::Value;
use skiff_control_plane::api::{ApiConfig, ApiHandle, start};
use skiff_control_plane::store::{Store, StoreConfig, StoreOptions};
use tokio_util::sync::CancellationToken;

pub struct Cluster {
    pub client: kube::Client,
    pub handle: Option<ApiHandle>,
    pub store: Store,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(
            StoreOptions::default(),
            tempfile::tempdir().expect("tempdir"),
            "127.0.0.1:0",
        )
        .await
    }

    /// A cluster with explicit store options, data directory and listen address.
    pub async fn start_with(
        options: StoreOptions,
        dir: tempfile::TempDir,
        listen: &str,
    ) -> Cluster {
        let config = StoreConfig::new(dir.path().join("store"), "https://127.0.0.1:0");
        let store = Store::open_with(config, options)
            .await
            .expect("store opens");
        let shutdown = CancellationToken::new();
        let config = ApiConfig {
            listen: listen.parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            san_hosts: vec![],
            audit_log: None,
            shutdown: shutdown.clone(),
        };
        let handle = start(config, store.clone()).await.expect("API starts");
        let client = client_for(&handle.admin_kubeconfig).await;
        Cluster {
            client,
            handle: Some(handle),
            store,
            shutdown,
            dir,
        }
    }

    pub fn handle(&self) -> &ApiHandle {
        self.handle.as_ref().expect("running")
    }

    /// Writes the admin kubeconfig to a file and returns its path.
    pub fn kubeconfig_path(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("kubeconfig.yaml");
        std::fs::write(&path, &self.handle().admin_kubeconfig).expect("write kubeconfig");
        path
    }

    /// A raw request; returns the status and the body parsed as JSON (or a string).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.request_with(method, path, &[("content-type", content_type)], body)
            .await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body).expect("request");
        let resp = self
            .client
            .send(req.map(kube::client::Body::from))
            .await
            .expect("send");
        let status = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    /// Streams a watch request's events into a channel.
    pub async fn watch(&self, path: &str) -> tokio::sync::mpsc::Receiver<Value> {
        let req = http::Request::builder()
            .uri(path)
            .body(Vec::new())
            .expect("request");
        let resp = self
            .client
            .send(req.map(kube::client::Body::from))
            .await
            .expect("watch");
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let mut body = resp.into_body();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if let Ok(v) = serde_json::from_slice(&line)
                        && tx.send(v).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
        rx
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.stopped().await;
        }
        self.store.shutdown().await;
    }
}

pub async fn client_for(kubeconfig_yaml: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// A client that does not retry 429/503/504 answers itself (kube-rs does
/// by default, for minutes), for tests that assert on those answers.
pub async fn client_without_retries(kubeconfig_yaml: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml).expect("kubeconfig parses");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// Polls `f` until it returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
