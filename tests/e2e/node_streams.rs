//! The node server's streams through the API server, with real kubectl:
//! `logs -f` follows a running guest, `exec` runs a command in a wasm pod's
//! context (WebSocket with kubectl 1.32, SPDY with kubectl 1.20), `top`
//! reads the node's usage samples, and
//! `port-forward` reaches a wasi:http pod's port; a command whose kubectl
//! is killed stops instead of running on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Cluster, repo_root};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A plain HTTP/1.0 GET to 127.0.0.1:port; None while nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

#[test]
fn logs_follow_exec_and_port_forward() {
    let cluster = Cluster::start();
    cluster.kubectl(&[
        "apply",
        "-f",
        "samples/manifests/http-echo.yaml",
        "-f",
        "samples/manifests/worker.yaml",
    ]);
    cluster.kubectl(&["rollout", "status", "deploy/http-echo", "--timeout=90s"]);
    cluster.kubectl(&["rollout", "status", "deploy/worker", "--timeout=90s"]);

    // logs -f: new lines keep arriving from the running guest.
    let mut follow = Command::new("/usr/bin/kubectl")
        .args(["logs", "-f", "deploy/worker"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ticks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ticks.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(5))
            && line.contains("tick")
        {
            ticks.push(line);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(ticks.len() >= 3, "logs -f showed {ticks:?}");

    // kubectl top: the metrics API reads the node's usage samples.
    let mut top = String::new();
    cluster.wait_for("kubectl top pods", Duration::from_secs(40), || {
        let output = cluster.kubectl_output(&["top", "pods", "-l", "app=worker", "--no-headers"]);
        top = String::from_utf8_lossy(&output.stdout).into_owned();
        output.status.success() && top.contains("worker-")
    });
    assert!(
        top.contains("Mi") || top.contains("Ki"),
        "memory column: {top}"
    );
    let nodes = cluster.kubectl(&["top", "nodes", "--no-headers"]);
    assert!(nodes.contains("skiff-test"), "{nodes}");

    // exec over WebSocket (kubectl 1.32): a command in the pod's context.
    let listing = cluster.kubectl(&["exec", "deploy/http-echo", "--", "ls", "/config"]);
    assert!(listing.contains("app.conf"), "{listing}");
    let echoed = cluster.kubectl_stdin(
        &["exec", "-i", "deploy/http-echo", "--", "cat"],
        Some("through stdin\n"),
    );
    assert_eq!(echoed, "through stdin\n");
    let failed =
        cluster.kubectl_output(&["exec", "deploy/http-echo", "--", "cat", "/no/such/file"]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );

    // exec over SPDY (kubectl 1.20).
    let old = repo_root().join(".tools/kubectl-1.20/kubectl");
    let old = old.to_str().expect("path");
    let output = cluster.kubectl_at(
        old,
        &["exec", "deploy/http-echo", "--", "cat", "/config/app.conf"],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("greeting=Hello from a ConfigMap"));

    // port-forward to the wasi:http pod's containerPort.
    let port = free_port();
    let mut forward = Command::new("/usr/bin/kubectl")
        .args(["port-forward", "deploy/http-echo", &format!("{port}:8080")])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut answer = None;
    cluster.wait_for("port-forward to answer", Duration::from_secs(30), || {
        answer = http_get(port, "/config");
        answer.is_some()
    });
    let _ = forward.kill();
    let _ = forward.wait();
    let answer = answer.unwrap_or_default();
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "{answer}"
    );
    assert!(answer.contains("Hello from a ConfigMap"), "{answer}");
    assert!(answer.contains("\"secretTokenSet\":true"), "{answer}");
}

const TICKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: worker
    image: samples/wasm/worker.wasm
    volumeMounts: [{name: state, mountPath: /state}]
  volumes:
  - {name: state, emptyDir: {}}
"#;

/// How many lines `file` in the ticker pod holds (seen through another exec).
fn tick_lines(cluster: &Cluster, file: &str) -> usize {
    let out = cluster.kubectl_output(&["exec", "ticker", "--", "cat", file]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("tick "))
        .count()
}

/// Runs `kubectl exec ticker -- tick FILE 100` with `kubectl`, kills kubectl
/// once the command is writing, and waits until the file stops growing.
fn exec_stops_with_its_client(cluster: &Cluster, kubectl: &str, file: &str) {
    let mut exec = Command::new(kubectl)
        .args(["exec", "ticker", "--", "tick", file, "100"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl exec");
    cluster.wait_for(
        &format!("{file} to grow under {kubectl} exec"),
        Duration::from_secs(30),
        || tick_lines(cluster, file) >= 3,
    );
    assert!(
        matches!(exec.try_wait(), Ok(None)),
        "kubectl exec ended by itself"
    );
    let _ = exec.kill();
    let _ = exec.wait();
    // Stopped = no new line for a whole second (ten ticks' worth).
    let mut last = (tick_lines(cluster, file), Instant::now());
    cluster.wait_for(
        &format!("the command to stop after {kubectl} was killed"),
        Duration::from_secs(20),
        || {
            if last.1.elapsed() < Duration::from_secs(1) {
                return false;
            }
            let now = tick_lines(cluster, file);
            let stopped = now == last.0;
            last = (now, Instant::now());
            stopped
        },
    );
}

#[test]
fn exec_command_stops_when_kubectl_is_killed() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(TICKER));
    cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/ticker",
        "--timeout=90s",
    ]);
    // WebSocket (kubectl 1.32), then SPDY (kubectl 1.20).
    exec_stops_with_its_client(&cluster, "/usr/bin/kubectl", "/state/ws");
    let old = repo_root().join(".tools/kubectl-1.20/kubectl");
    exec_stops_with_its_client(&cluster, old.to_str().expect("path"), "/state/spdy");
}
