//! Components from the committed samples: a WASI p2 command and a
//! `wasi:http/incoming-handler` served per request (echo, env, concurrent
//! requests, in-process connections, stop).

use std::net::SocketAddr;
use std::time::Duration;

use skiff_runtime_wasm::{ArtifactKind, ExitReason, HttpListen};

use crate::support::*;

#[tokio::test]
async fn p2_command_prints_args_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let artifact = rt
        .pull(&sample("hello-p2.wasm").to_string_lossy(), &pull_options())
        .await
        .expect("pull");
    assert_eq!(artifact.kind(), ArtifactKind::P2Command);
    let (out, err) = (Capture::default(), Capture::default());
    let mut s = spec("hello", &["hello", "--flag"], &out, &err);
    s.env = vec![("POD_NAME".into(), "hello-1".into())];
    let status = rt.run(&artifact, s).await.expect("run").wait().await;
    assert_eq!(
        status.reason,
        ExitReason::Completed,
        "{status:?} {}",
        err.text()
    );
    let text = out.text();
    assert!(text.starts_with("Hello from skiff\n"), "{text}");
    assert!(text.contains("arg[0]=hello\narg[1]=--flag\n"), "{text}");
    assert!(text.contains("env POD_NAME=hello-1\n"), "{text}");
}

#[tokio::test]
async fn p2_command_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let artifact = rt
        .pull(&sample("hello-p2.wasm").to_string_lossy(), &pull_options())
        .await
        .expect("pull");
    let (out, err) = (Capture::default(), Capture::default());
    let mut s = spec("hello", &["hello"], &out, &err);
    s.env = vec![("EXIT_CODE".into(), "4".into())];
    let status = rt.run(&artifact, s).await.expect("run").wait().await;
    // WASI p2 `exit` carries only ok/err (Rust's std does not use
    // `exit-with-code`), so any failure is exit code 1.
    assert_eq!(
        (status.exit_code, status.reason),
        (1, ExitReason::Error),
        "{status:?}"
    );
}

async fn start_echo(
    rt: &skiff_runtime_wasm::WasmRuntime,
) -> (skiff_runtime_wasm::Instance, SocketAddr) {
    let artifact = rt
        .pull(&sample("http-echo.wasm").to_string_lossy(), &pull_options())
        .await
        .expect("pull");
    assert_eq!(artifact.kind(), ArtifactKind::HttpHandler);
    let (out, err) = (Capture::default(), Capture::default());
    let mut s = spec("echo", &["echo"], &out, &err);
    s.env = vec![("POD_NAME".into(), "echo-7".into())];
    s.listen = Some(HttpListen::Addr("127.0.0.1:0".parse().expect("addr")));
    s.memory_limit_bytes = Some(64 << 20);
    let instance = rt.run(&artifact, s).await.expect("run");
    let addr = instance.local_addr().expect("listening");
    (instance, addr)
}

#[tokio::test]
async fn http_handler_serves_requests_with_a_fresh_instance_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let (instance, addr) = start_echo(&rt).await;

    let (status, body) = http_request(addr, "GET", "/healthz", "").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_request(addr, "POST", "/echo?x=1", "payload").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"pod\":\"echo-7\""), "{body}");
    assert!(body.contains("\"body\":\"payload\""), "{body}");
    let (status, _) = http_request(addr, "GET", "/status/418", "").await;
    assert_eq!(status, 418);

    // Concurrent requests each get their own store.
    let many = (0..32).map(|i| {
        tokio::spawn(async move { http_request(addr, "GET", &format!("/n/{i}"), "").await })
    });
    for r in futures::future::join_all(many).await {
        assert_eq!(r.expect("request task").0, 200);
    }
    // Idle: no store is held, so no linear memory either.
    assert_eq!(instance.usage().memory_bytes, 0);
    assert!(instance.usage().cpu_time > Duration::ZERO);

    instance.stop();
    let status = tokio::time::timeout(Duration::from_secs(5), instance.wait())
        .await
        .expect("stops promptly");
    assert_eq!(status.reason, ExitReason::Completed);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn http_handler_serves_in_process_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let (instance, _) = start_echo(&rt).await;
    let (client, server) = tokio::io::duplex(64 << 10);
    instance.serve_connection(server).expect("serve");
    let (mut rd, mut wr) = tokio::io::split(client);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut raw))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    instance.stop();
    instance.wait().await;
}

#[tokio::test]
async fn http_handler_needs_listen_and_exec_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let artifact = rt
        .pull(&sample("http-echo.wasm").to_string_lossy(), &pull_options())
        .await
        .expect("pull");
    let (out, err) = (Capture::default(), Capture::default());
    assert!(
        rt.run(&artifact, spec("echo", &[], &out, &err))
            .await
            .is_err()
    );
    assert!(
        rt.exec(&artifact, spec("echo", &[], &out, &err))
            .await
            .is_err()
    );
}
