//! A real `skiff up` child process for the pod benchmarks: started on a
//! fresh (or reused) data directory with free ports from the repository root
//! (so `samples/wasm/*.wasm` image paths resolve), its admin kubeconfig, a
//! kube-rs client, the node server's address, the process's resident memory,
//! and stopping it with SIGTERM. Nothing here measures anything.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A running `skiff up`; call [`Cluster::stop`] to end it.
pub struct Cluster {
    child: Child,
    pub data_dir: PathBuf,
    pub client: kube::Client,
    /// `https://127.0.0.1:PORT` of the API server.
    pub api_url: String,
    /// The admin bearer token of the kubeconfig.
    pub token: String,
    /// From spawning the process to the first 200 from `/readyz`.
    pub ready_after: Duration,
    spawned: Instant,
}

/// The node agent as the API shows it.
pub struct NodeInfo {
    /// `http://IP:PORT` of the node server (the kubelet API).
    pub server_url: String,
    /// From spawning the process to the Node's Ready condition being True.
    pub ready_after: Duration,
}

impl Cluster {
    /// Starts `skiff up` on `data_dir` and waits for `/readyz`.
    pub async fn start(skiff: &Path, data_dir: &Path) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            Path::new("samples/wasm/hello.wasm").is_file(),
            "run from the repository root (samples/wasm/ not found)"
        );
        anyhow::ensure!(
            skiff.is_file(),
            "{} not found: cargo build --release --bin skiff",
            skiff.display()
        );
        std::fs::create_dir_all(data_dir)?;
        let kubeconfig = data_dir.join("kubeconfig.yaml");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("skiff.log"))?;
        let spawned = Instant::now();
        let mut child = Command::new(skiff)
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--node-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", skiff.display()))?;
        let deadline = spawned + Duration::from_secs(60);
        let yaml = loop {
            if let Ok(yaml) = std::fs::read_to_string(&kubeconfig) {
                break yaml;
            }
            if let Some(status) = child.try_wait()? {
                bail!("skiff up exited with {status}\n{}", log_tail(data_dir));
            }
            anyhow::ensure!(Instant::now() < deadline, "no kubeconfig after 60 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let doc: serde_json::Value = serde_yaml::from_str(&yaml).context("kubeconfig")?;
        let api_url = doc["clusters"][0]["cluster"]["server"]
            .as_str()
            .context("kubeconfig has no server")?
            .to_string();
        let token = doc["users"][0]["user"]["token"]
            .as_str()
            .context("kubeconfig has no token")?
            .to_string();
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&yaml)?,
            &Default::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        loop {
            if get(&client, "/readyz").await.is_ok() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no /readyz after 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Cluster {
            child,
            data_dir: data_dir.to_path_buf(),
            client,
            api_url,
            token,
            ready_after: spawned.elapsed(),
            spawned,
        })
    }

    /// Waits until the node has registered and is Ready.
    pub async fn wait_node_ready(&self, timeout: Duration) -> anyhow::Result<NodeInfo> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let deadline = Instant::now() + timeout;
        loop {
            for node in nodes.list(&Default::default()).await?.items {
                let status = node.status.unwrap_or_default();
                let ready = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if !ready {
                    continue;
                }
                let ip = status
                    .addresses
                    .iter()
                    .flatten()
                    .find(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .unwrap_or_else(|| "127.0.0.1".into());
                let port = status
                    .daemon_endpoints
                    .and_then(|d| d.kubelet_endpoint)
                    .map(|k| k.port)
                    .context("node without kubeletEndpoint")?;
                // After a restart the Node still shows the previous process's
                // status: ready means this process's node server answers.
                let addr = format!("{ip}:{port}");
                if http_get(&addr, "/healthz").await.is_err() {
                    continue;
                }
                return Ok(NodeInfo {
                    server_url: format!("http://{addr}"),
                    ready_after: self.spawned.elapsed(),
                });
            }
            if Instant::now() >= deadline {
                bail!("node not Ready after {timeout:?}\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// VmRSS of the skiff process, in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }

    /// user + system CPU time the skiff process has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid()).unwrap_or_default()
    }

    /// The user-mode part of [`Cluster::cpu_time`].
    pub fn user_cpu_time(&self) -> Duration {
        cpu_times_of(self.pid()).map(|t| t.user).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.data_dir)
    }

    /// SIGTERM, then waits up to 60 s for the process to exit (SIGKILL after).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("skiff did not stop within 60 s of SIGTERM");
            }
        }
        Ok(())
    }
}

/// GET `path` from the API; the body when the answer is a success.
pub async fn get(client: &kube::Client, path: &str) -> anyhow::Result<Vec<u8>> {
    let req = http::Request::get(path).body(kube::client::Body::from(Vec::new()))?;
    let resp = client.send(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    anyhow::ensure!(status.is_success(), "GET {path}: {status}");
    Ok(body)
}

/// One plain HTTP/1.1 GET to `addr`; the whole answer when it is a 200.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    anyhow::ensure!(
        buf.starts_with(b"HTTP/1.1 200"),
        "GET {path}: {}",
        String::from_utf8_lossy(&buf[..buf.len().min(200)])
    );
    Ok(buf)
}

/// utime + stime of process `pid` (from /proc/PID/stat, in USER_HZ = 100 ticks/s).
pub fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
    let t = cpu_times_of(pid)?;
    Ok(t.user + t.system)
}

/// A process's CPU time in user and in kernel mode.
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

/// utime and stime of process `pid` (/proc/PID/stat, 10 ms ticks).
pub fn cpu_times_of(pid: u32) -> anyhow::Result<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    Ok(CpuTimes {
        user: Duration::from_millis(ticks(14).context("no utime")? * 10),
        system: Duration::from_millis(ticks(15).context("no stime")? * 10),
    })
}

/// VmRSS of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS in /proc/PID/status")
}

fn log_tail(data_dir: &Path) -> String {
    let log = std::fs::read_to_string(data_dir.join("skiff.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A fresh data directory under the system temp dir, removed on drop.
pub fn temp_data_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("skiff-bench-pods-")
        .tempdir()?)
}
