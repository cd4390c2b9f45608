//! A real store and API server on 127.0.0.1:0 in a temporary directory,
//! with an admin kube-rs client, a raw-request helper and polling helpers.

use std::time::Duration;

use kube::config::Kubeconfig;
use serde_json::Value;
use skiff_control_plane::api::{ApiConfig, ApiHandle, start};
use skiff_control_plane::store::{Store, StoreConfig};
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
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(
            dir.path().join("store"),
            "https://127.0.0.1:0",
        ))
        .await
        .expect("store opens");
        let shutdown = CancellationToken::new();
        let config = ApiConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            san_hosts: vec![],
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
