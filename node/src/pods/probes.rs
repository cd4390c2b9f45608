//! Container probes (startup, readiness, liveness) with httpGet, tcpSocket
//! and exec handlers. One task per started container: the startup probe
//! first, then readiness and liveness side by side; results go to the pod
//! worker only when a threshold flips them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::NodeContext;
use super::worker::{CtrKey, ProbeKind, Report};
use crate::runtime::{ContainerId, ExecRequest};

/// Where a probe reaches its container.
#[derive(Clone)]
pub struct ProbeTarget {
    pub pod_ip: IpAddr,
    pub host_ip: String,
    pub container: ContainerId,
    pub key: CtrKey,
    pub generation: u64,
}

/// Probe timing with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Counts consecutive results and says when the probe's verdict flips.
#[derive(Debug, Default)]
pub struct Verdict {
    successes: u32,
    failures: u32,
    current: Option<bool>,
}

impl Verdict {
    /// Records one result; returns the new verdict when it changed.
    pub fn record(&mut self, ok: bool, t: &Timing) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = if self.successes >= t.success_threshold {
            Some(true)
        } else if self.failures >= t.failure_threshold {
            Some(false)
        } else {
            None
        };
        match next {
            Some(v) if self.current != Some(v) => {
                self.current = Some(v);
                Some(v)
            }
            _ => None,
        }
    }
}

/// Starts the container's probe task (a no-op when it has no probes).
pub fn spawn_probes(
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    spec: Container,
    target: ProbeTarget,
    tx: mpsc::Sender<Report>,
    token: CancellationToken,
) {
    if spec.startup_probe.is_none()
        && spec.readiness_probe.is_none()
        && spec.liveness_probe.is_none()
    {
        return;
    }
    tokio::spawn(async move {
        let run = async {
            if let Some(p) = &spec.startup_probe
                && !probe_loop(&ctx, &pod, &spec, p, ProbeKind::Startup, &target, &tx).await
            {
                return;
            }
            let readiness = async {
                if let Some(p) = &spec.readiness_probe {
                    probe_loop(&ctx, &pod, &spec, p, ProbeKind::Readiness, &target, &tx).await;
                }
            };
            let liveness = async {
                if let Some(p) = &spec.liveness_probe {
                    probe_loop(&ctx, &pod, &spec, p, ProbeKind::Liveness, &target, &tx).await;
                }
            };
            tokio::join!(readiness, liveness);
        };
        tokio::select! {
            _ = token.cancelled() => {}
            _ = run => {}
        }
    });
}

/// Runs one probe. Startup returns true once it succeeded; liveness returns after
/// reporting a failure; readiness runs until cancelled.
async fn probe_loop(
    ctx: &NodeContext,
    pod: &Pod,
    spec: &Container,
    probe: &Probe,
    kind: ProbeKind,
    target: &ProbeTarget,
    tx: &mpsc::Sender<Report>,
) -> bool {
    let t = Timing::of(probe);
    tokio::time::sleep(t.initial_delay).await;
    let mut verdict = Verdict::default();
    loop {
        let (ok, message) = match tokio::time::timeout(
            t.timeout,
            run_probe(ctx, pod, spec, probe, target, t.timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => (false, format!("timeout after {:?}", t.timeout)),
        };
        if let Some(v) = verdict.record(ok, &t) {
            let report = Report::Probe {
                key: target.key,
                generation: target.generation,
                kind,
                ok: v,
                message: message.clone(),
            };
            if tx.send(report).await.is_err() {
                return false;
            }
            match (kind, v) {
                (ProbeKind::Startup, true) => return true,
                (ProbeKind::Startup | ProbeKind::Liveness, false) => return false,
                _ => {}
            }
        }
        tokio::time::sleep(t.period).await;
    }
}

fn port_number(spec: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            spec.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port as u16)
        }),
    }
}

/// Runs a probe handler once: (success, message).
pub async fn run_probe(
    ctx: &NodeContext,
    pod: &Pod,
    spec: &Container,
    probe: &Probe,
    target: &ProbeTarget,
    timeout: Duration,
) -> (bool, String) {
    let resolve = |port: &IntOrString| -> Result<SocketAddr, String> {
        let n = port_number(spec, port).ok_or_else(|| format!("unknown port {port:?}"))?;
        ctx.table
            .port(target.pod_ip, n)
            .ok_or_else(|| format!("nothing serves port {n}"))
    };
    if let Some(h) = &probe.http_get {
        let addr = match resolve(&h.port) {
            Ok(a) => a,
            Err(e) => return (false, e),
        };
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return match http_get(addr, &path, &headers).await {
            Ok(code) if (200..400).contains(&code) => (
                true,
                format!("HTTP probe succeeded with statuscode: {code}"),
            ),
            Ok(code) => (false, format!("HTTP probe failed with statuscode: {code}")),
            Err(e) => (
                false,
                format!("Get \"http://{}{}\": {e}", target.pod_ip, path),
            ),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        return match resolve(&t.port) {
            Ok(addr) => match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => (true, String::new()),
                Err(e) => (false, format!("dial tcp: {e}")),
            },
            Err(e) => (false, e),
        };
    }
    if let Some(e) = &probe.exec {
        let command = e.command.clone().unwrap_or_default();
        let mounts = ctx
            .table
            .get(
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                pod.metadata.name.as_deref().unwrap_or_default(),
            )
            .and_then(|v| v.containers.get(&spec.name).map(|c| c.mounts.clone()))
            .unwrap_or_default();
        let (module, args) = match super::exec_module::resolve(
            ctx.runtime.as_ref(),
            &command,
            &mounts,
            ctx.config.exec_toolbox.as_deref(),
        )
        .await
        {
            Ok(r) => r,
            Err(err) => return (false, err.to_string()),
        };
        let request = ExecRequest {
            module,
            args,
            stdin: None,
            stdout: None,
            stderr: None,
            timeout: Some(timeout),
        };
        return match ctx.runtime.exec(&target.container, request).await {
            Ok(exit) if exit.code == 0 => (true, String::new()),
            Ok(exit) => (
                false,
                format!("command {command:?} exited with {}", exit.code),
            ),
            Err(err) => (false, err.to_string()),
        };
    }
    (
        false,
        "probe has no supported handler (httpGet, tcpSocket, exec)".into(),
    )
}

/// One HTTP GET for a lifecycle hook; the status code or an error.
pub async fn run_probe_http(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    http_get(addr, path, &[]).await
}

/// A minimal HTTP/1.1 GET returning the status code.
async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 512];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut buf[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_verdicts_once() {
        let t = Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut v = Verdict::default();
        assert_eq!(v.record(true, &t), None);
        assert_eq!(v.record(true, &t), Some(true));
        assert_eq!(v.record(true, &t), None);
        assert_eq!(v.record(false, &t), None);
        assert_eq!(v.record(false, &t), None);
        assert_eq!(v.record(false, &t), Some(false));
        assert_eq!(v.record(false, &t), None);
    }

    #[test]
    fn defaults_match_kubernetes() {
        let t = Timing::of(&Probe::default());
        assert_eq!(
            (
                t.period,
                t.timeout,
                t.success_threshold,
                t.failure_threshold
            ),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
    }

    #[tokio::test]
    async fn http_get_reads_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(http_get(addr, "/healthz", &[]).await.unwrap(), 503);
    }
}
